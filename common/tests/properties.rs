//! Property tests of what the network hands the decoders: random frames
//! round-trip through encode and decode, alone and packed in batches; and
//! random or mutated bytes (a frame, a batch, a handshake) give an error or
//! a frame that encodes back to itself, never a panic, and a malformed
//! batch ends with its one error.

use burrow_common::{
    access::{AccessRules, IpRange},
    batch,
    outbox::Outgoing,
    protocol::{RequestHead, ResponseHead, TunnelRequest, MAX_MESSAGE_SIZE},
    Frame, Hello, ResetCode,
};
use bytes::Bytes;
use proptest::prelude::*;

fn header_list() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    prop::collection::vec(("[a-z][a-z0-9-]{0,20}", "[ -~]{0,40}"), 0..8).prop_map(|fields| {
        fields
            .into_iter()
            .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
            .collect()
    })
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    (
        "[a-z0-9.-]{1,30}",
        "[A-Z]{1,8}",
        "/[ -~]{0,60}",
        header_list(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(host, method, uri, headers, end_stream, upgrade, credit)| RequestHead {
                host,
                method,
                uri,
                headers,
                end_stream,
                upgrade,
                // Credit only for a body that follows.
                credit: if end_stream { 0 } else { credit },
            },
        )
}

fn response_head() -> impl Strategy<Value = ResponseHead> {
    (
        100u16..600,
        header_list(),
        any::<bool>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
    )
        .prop_map(|(status, headers, end_stream, body)| {
            // A body travels inline only with the end of the stream.
            let body = body.filter(|_| end_stream).map(Bytes::from);
            ResponseHead {
                status,
                headers,
                end_stream,
                body,
            }
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    let stream = 1u32..u32::MAX;
    prop_oneof![
        (stream.clone(), request_head())
            .prop_map(|(stream, head)| Frame::RequestHead { stream, head }),
        (stream.clone(), response_head())
            .prop_map(|(stream, head)| Frame::ResponseHead { stream, head }),
        // Some larger than a batch takes, which travel alone.
        (
            stream.clone(),
            prop_oneof![4 => 0..2048usize, 1 => 16_000..20_000usize]
        )
            .prop_flat_map(|(stream, len)| (Just(stream), prop::collection::vec(any::<u8>(), len)))
            .prop_map(|(stream, data)| {
                Frame::Data {
                    stream,
                    data: data.into(),
                }
            }),
        stream.clone().prop_map(|stream| Frame::End { stream }),
        (stream.clone(), any::<u8>(), "[ -~]{0,80}").prop_map(|(stream, code, reason)| {
            Frame::Reset {
                stream,
                code: ResetCode::from_u8(code),
                reason,
            }
        }),
        (stream, 1u32..).prop_map(|(stream, increment)| Frame::Window { stream, increment }),
        Just(Frame::Drain),
        Just(Frame::GoAway),
        (
            "[a-z.]{1,20}",
            "[ -~]{1,20}",
            prop::option::of("[a-f0-9]{1,32}")
        )
            .prop_map(|(host, token, instance)| {
                Frame::Hello(Hello {
                    version: 5,
                    tunnels: vec![TunnelRequest {
                        host,
                        token: token.as_str().into(),
                        access: AccessRules::default(),
                    }],
                    instance,
                })
            }),
    ]
}

/// Every item of a received message, unpacked: the frames, and the
/// error that ends a malformed batch. Checks on the way that an error is
/// the last item, and that the frames never hold more bytes than came.
fn unpack_all(msg: Bytes) -> Result<Vec<Bytes>, ()> {
    let total = msg.len();
    let Ok(items) = batch::unpack(msg) else {
        return Err(());
    };
    // Each packed frame takes at least its 4-byte length: more items than
    // that is an iterator that does not end.
    let items: Vec<_> = items.take(total / 4 + 2).collect();
    assert!(
        items.len() <= total / 4 + 1,
        "{} items from {total} bytes",
        items.len()
    );
    let errors = items.iter().filter(|i| i.is_err()).count();
    assert!(errors <= 1, "{errors} errors in one message");
    assert!(
        errors == 0 || items.last().is_some_and(Result::is_err),
        "a frame after an error"
    );
    let frames: Vec<Bytes> = items.into_iter().filter_map(Result::ok).collect();
    let bytes: usize = frames.iter().map(Bytes::len).sum();
    assert!(bytes <= total, "{bytes} bytes of frames out of {total}");
    match errors {
        0 => Ok(frames),
        _ => Err(()),
    }
}

/// A decoded frame is one the encoder writes again, and it reads back as
/// the same frame.
fn assert_canonical(decoded: &Frame) -> Result<(), TestCaseError> {
    let again = decoded.encode().expect("a decoded frame encodes");
    prop_assert_eq!(&Frame::decode(again).expect("and decodes"), decoded);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(frame in frame()) {
        let bytes = frame.encode().expect("a valid frame encodes");
        prop_assert_eq!(Frame::decode(bytes).expect("and decodes"), frame);
    }

    #[test]
    fn batches_carry_every_frame_in_order(frames in prop::collection::vec(frame(), 0..40)) {
        let encoded: Vec<Bytes> = frames.iter().map(|f| f.encode().expect("encodes")).collect();
        let mut messages = Vec::new();
        batch::pack(encoded.into_iter().map(Outgoing::Frame), &mut messages);
        let mut unpacked = Vec::new();
        for message in messages {
            let Outgoing::Frame(message) = message else {
                panic!("a whole frame was split");
            };
            prop_assert!(message.len() <= MAX_MESSAGE_SIZE);
            for frame in unpack_all(message).expect("a packed message unpacks") {
                unpacked.push(Frame::decode(frame).expect("a packed frame decodes"));
            }
        }
        prop_assert_eq!(unpacked, frames);
    }

    #[test]
    fn random_bytes_decode_to_canonical_frames_or_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        batched in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if batched && bytes.len() >= 5 {
            // A batch header, so that the batch reader sees the rest.
            bytes[..5].copy_from_slice(&[batch::KIND_BATCH, 0, 0, 0, 0]);
        }
        let bytes = Bytes::from(bytes);
        if let Ok(frame) = Frame::decode(bytes.clone()) {
            assert_canonical(&frame)?;
        }
        if let Ok(frames) = unpack_all(bytes) {
            for frame in frames.into_iter().filter_map(|f| Frame::decode(f).ok()) {
                assert_canonical(&frame)?;
            }
        }
    }

    #[test]
    fn mutated_frames_decode_to_canonical_frames_or_errors(
        frames in prop::collection::vec(frame(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        head_edits in prop::collection::vec((0usize..24, any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        // The frames in one batch (or one frame alone), then mutated and cut.
        let encoded: Vec<Bytes> = frames.iter().map(|f| f.encode().expect("encodes")).collect();
        let mut messages = Vec::new();
        batch::pack(encoded.into_iter().map(Outgoing::Frame), &mut messages);
        let Some(Outgoing::Frame(message)) = messages.into_iter().next() else {
            panic!("no message");
        };
        let mut bytes = message.to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        // The kinds, flags and lengths at the start are worth more edits.
        let start = message.len().min(24);
        for (at, byte) in head_edits.into_iter().filter(|(at, _)| *at < start) {
            bytes[at] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        let mutated = Bytes::from(bytes[..cut].to_vec());
        if let Ok(decoded) = Frame::decode(mutated.clone()) {
            assert_canonical(&decoded)?;
        }
        if let Ok(frames) = unpack_all(mutated) {
            for frame in frames.into_iter().filter_map(|f| Frame::decode(f).ok()) {
                assert_canonical(&frame)?;
            }
        }
    }

    #[test]
    fn random_handshakes_decode_or_fail_cleanly(json in "[ -~]{0,200}") {
        // A hello frame: kind 1, stream 0, then the JSON.
        let mut bytes = vec![1u8, 0, 0, 0, 0];
        bytes.extend_from_slice(json.as_bytes());
        if let Ok(frame) = Frame::decode(Bytes::from(bytes)) {
            prop_assert!(matches!(frame, Frame::Hello(_)));
            assert_canonical(&frame)?;
        }
        if let Ok(rules) = serde_json::from_str::<AccessRules>(&json) {
            if rules.validate().is_ok() {
                // Valid rules survive the trip to the server and back.
                let text = serde_json::to_string(&rules).expect("serializes");
                let back: AccessRules = serde_json::from_str(&text).expect("parses");
                prop_assert_eq!(back, rules);
            }
        }
    }

    #[test]
    fn address_ranges_print_as_they_parse(text in "[0-9a-f.:/]{0,50}") {
        if let Ok(range) = text.parse::<IpRange>() {
            let printed = range.to_string();
            prop_assert_eq!(printed.parse::<IpRange>().expect("a printed range parses"), range);
            let v4: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
            let v6: std::net::IpAddr = "::1".parse().expect("ip");
            // A range holds an address only of its own family.
            prop_assert!(!(range.contains(v4) && range.contains(v6)));
        }
    }
}

/// One frame of each kind, small enough to try every bit and every cut.
fn samples() -> Vec<Frame> {
    let fields = vec![(Bytes::from_static(b"x-a"), Bytes::from_static(b"1"))];
    vec![
        Frame::RequestHead {
            stream: 1,
            head: RequestHead {
                host: "a.example".into(),
                method: "GET".into(),
                uri: "/p?q".into(),
                headers: fields.clone(),
                end_stream: true,
                upgrade: false,
                credit: 0,
            },
        },
        Frame::ResponseHead {
            stream: 3,
            head: ResponseHead {
                status: 200,
                headers: fields,
                end_stream: true,
                body: Some(Bytes::from_static(b"hello")),
            },
        },
        Frame::Data {
            stream: 5,
            data: Bytes::from_static(b"data"),
        },
        Frame::End { stream: 7 },
        Frame::Reset {
            stream: 9,
            code: ResetCode::LocalError,
            reason: "why".into(),
        },
        Frame::Window {
            stream: 11,
            increment: 65536,
        },
    ]
}

#[test]
fn every_bit_flipped_and_every_cut_decodes_canonically_or_fails() {
    let encoded: Vec<Bytes> = samples().iter().map(|f| f.encode().unwrap()).collect();
    let mut messages = encoded.clone();
    let mut packed = Vec::new();
    batch::pack(encoded.into_iter().map(Outgoing::Frame), &mut packed);
    messages.extend(packed.into_iter().filter_map(|m| match m {
        Outgoing::Frame(m) => Some(m),
        Outgoing::Data { .. } | Outgoing::Control(_) => None,
    }));
    let check = |bytes: Vec<u8>| {
        let bytes = Bytes::from(bytes);
        if let Ok(frame) = Frame::decode(bytes.clone()) {
            assert_canonical(&frame).unwrap();
        }
        if let Ok(frames) = unpack_all(bytes) {
            for frame in frames.into_iter().filter_map(|f| Frame::decode(f).ok()) {
                assert_canonical(&frame).unwrap();
            }
        }
    };
    for message in messages {
        for bit in 0..message.len() * 8 {
            let mut bytes = message.to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            check(bytes);
        }
        for cut in 0..message.len() {
            check(message[..cut].to_vec());
        }
    }
}
