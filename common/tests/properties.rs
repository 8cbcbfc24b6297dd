//! Property tests of what the network hands the decoders: random frames
//! round-trip through encode and decode, and random or mutated bytes (a
//! frame, a batch, a handshake) give an error, never a panic.

use burrow_common::{
    access::{AccessRules, IpRange},
    batch,
    protocol::{RequestHead, ResponseHead, TunnelRequest},
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
    )
        .prop_map(
            |(host, method, uri, headers, end_stream, upgrade)| RequestHead {
                host,
                method,
                uri,
                headers,
                end_stream,
                upgrade,
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
        (stream.clone(), prop::collection::vec(any::<u8>(), 0..2048)).prop_map(|(stream, data)| {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(frame in frame()) {
        let bytes = frame.encode().expect("a valid frame encodes");
        prop_assert_eq!(Frame::decode(bytes).expect("and decodes"), frame);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let bytes = Bytes::from(bytes);
        let _ = Frame::decode(bytes.clone());
        let _ = batch::unpack(bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        frame in frame(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = frame.encode().expect("encodes").to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        let mutated = Bytes::from(bytes[..cut].to_vec());
        if let Ok(decoded) = Frame::decode(mutated.clone()) {
            // Whatever decodes is a frame that encodes again.
            let _ = decoded.encode();
        }
        let _ = batch::unpack(mutated);
    }

    #[test]
    fn random_handshakes_never_panic(json in "[ -~]{0,200}") {
        // A hello frame: kind 1, stream 0, then the JSON.
        let mut bytes = vec![1u8, 0, 0, 0, 0];
        bytes.extend_from_slice(json.as_bytes());
        let _ = Frame::decode(Bytes::from(bytes));
        if let Ok(rules) = serde_json::from_str::<AccessRules>(&json) {
            let _ = rules.validate();
        }
    }

    #[test]
    fn random_address_ranges_never_panic(text in "[0-9a-f.:/]{0,50}") {
        if let Ok(range) = text.parse::<IpRange>() {
            let _ = range.contains("127.0.0.1".parse().expect("ip"));
            let _ = range.contains("::1".parse().expect("ip"));
        }
    }
}
