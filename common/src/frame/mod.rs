//! Binary frames: every WebSocket binary message between client and server
//! is one frame, or a batch of them (see [`crate::batch`]).
//!
//! ```text
//! +--------+------------------+----------------------+
//! | kind:8 | stream id:32 BE  | payload (kind-specific) |
//! +--------+------------------+----------------------+
//! ```
//!
//! `docs/PROTOCOL.md` describes each payload byte by byte.

mod error;
mod head;
mod reader;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use error::{DecodeError, EncodeError};
pub use head::{
    encode_request_head_from, encode_response_head_from, encoded_response_fields, RequestTarget,
};
use reader::Reader;

use crate::protocol::{
    Hello, HelloAck, RequestHead, ResetCode, ResponseHead, CONNECTION_STREAM, MAX_DATA_PAYLOAD,
};

/// Size of the fixed frame header (kind and stream id).
pub const FRAME_HEADER_LEN: usize = 5;

pub(crate) const KIND_HELLO: u8 = 1;
const KIND_HELLO_ACK: u8 = 2;
pub(crate) const KIND_REQUEST_HEAD: u8 = 3;
pub(crate) const KIND_RESPONSE_HEAD: u8 = 4;
const KIND_DATA: u8 = 5;
const KIND_END: u8 = 6;
const KIND_RESET: u8 = 7;
const KIND_WINDOW: u8 = 8;
/// Kind 9 is a batch of frames (see [`crate::batch`]).
const KIND_DRAIN: u8 = 10;
const KIND_GO_AWAY: u8 = 11;

pub(crate) const FLAG_END_STREAM: u8 = 0x01;
pub(crate) const FLAG_UPGRADE: u8 = 0x02;
pub(crate) const FLAG_INLINE_BODY: u8 = 0x04;
/// A `RequestHead`'s flag: a u32 credit follows the flags.
pub(crate) const FLAG_CREDIT: u8 = 0x04;

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client's handshake (stream 0, JSON payload).
    Hello(Hello),
    /// Server's answer to the handshake (stream 0, JSON payload).
    HelloAck(HelloAck),
    /// Opens a stream: the request the server received (server to client).
    RequestHead {
        /// Stream id chosen by the server.
        stream: u32,
        /// The request head.
        head: RequestHead,
    },
    /// The local service's response head (client to server).
    ResponseHead {
        /// The stream being answered.
        stream: u32,
        /// The response head.
        head: ResponseHead,
    },
    /// Body bytes of a stream, in either direction.
    Data {
        /// The stream the bytes belong to.
        stream: u32,
        /// At most [`MAX_DATA_PAYLOAD`] bytes.
        data: Bytes,
    },
    /// The sender's body on this stream is complete.
    End {
        /// The stream whose body ended.
        stream: u32,
    },
    /// The sender abandons the stream in both directions.
    Reset {
        /// The stream being abandoned.
        stream: u32,
        /// Why.
        code: ResetCode,
        /// Human-readable detail, possibly empty.
        reason: String,
    },
    /// The sender may send `increment` more body bytes on this stream; on
    /// stream 0 (client to server), the server may give `increment` more
    /// to the request bodies of the streams it opens (their
    /// [`RequestHead::credit`]).
    Window {
        /// The stream the credit is for, or 0.
        stream: u32,
        /// Additional bytes granted; never zero.
        increment: u32,
    },
    /// The client asks the server to take no new streams on this
    /// connection and to close it once its open streams are done (stream 0,
    /// no payload; see `docs/PROTOCOL.md` section 4.5).
    Drain,
    /// The server is shutting down: it opens no new stream on this
    /// connection, lets the open ones finish, then closes it (server to
    /// client, stream 0, no payload; `docs/PROTOCOL.md` section 4.6).
    GoAway,
}

impl Frame {
    /// The stream id this frame belongs to (0 for handshake frames).
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Hello(_) | Frame::HelloAck(_) | Frame::Drain | Frame::GoAway => {
                CONNECTION_STREAM
            }
            Frame::RequestHead { stream, .. }
            | Frame::ResponseHead { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::End { stream }
            | Frame::Reset { stream, .. }
            | Frame::Window { stream, .. } => *stream,
        }
    }

    /// The frame's kind byte on the wire.
    fn kind(&self) -> u8 {
        match self {
            Frame::Hello(_) => KIND_HELLO,
            Frame::HelloAck(_) => KIND_HELLO_ACK,
            Frame::RequestHead { .. } => KIND_REQUEST_HEAD,
            Frame::ResponseHead { .. } => KIND_RESPONSE_HEAD,
            Frame::Data { .. } => KIND_DATA,
            Frame::End { .. } => KIND_END,
            Frame::Reset { .. } => KIND_RESET,
            Frame::Window { .. } => KIND_WINDOW,
            Frame::Drain => KIND_DRAIN,
            Frame::GoAway => KIND_GO_AWAY,
        }
    }

    /// The frame kind's name, as used in errors and logs (`"data"`, ...).
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("unknown")
    }

    /// Encodes the frame into one WebSocket message payload.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        match self {
            Frame::Hello(hello) => Ok(json_frame(KIND_HELLO, hello)),
            Frame::HelloAck(ack) => Ok(json_frame(KIND_HELLO_ACK, ack)),
            Frame::RequestHead { stream, head } => head::encode_request_head(*stream, head),
            Frame::ResponseHead { stream, head } => head::encode_response_head(*stream, head),
            Frame::Data { stream, data } => encode_data(*stream, data),
            Frame::End { stream } => Ok(header_only(KIND_END, *stream, 0).freeze()),
            Frame::Reset {
                stream,
                code,
                reason,
            } => {
                // The reason is advisory: cut it rather than fail the reset.
                let reason = truncate_utf8(reason, 1024);
                let mut buf = header_only(KIND_RESET, *stream, 1 + reason.len());
                buf.put_u8(code.to_u8());
                buf.put_slice(reason.as_bytes());
                Ok(buf.freeze())
            }
            Frame::Window { stream, increment } => {
                let mut buf = header_only(KIND_WINDOW, *stream, 4);
                buf.put_u32(*increment);
                Ok(buf.freeze())
            }
            Frame::Drain => Ok(header_only(KIND_DRAIN, CONNECTION_STREAM, 0).freeze()),
            Frame::GoAway => Ok(header_only(KIND_GO_AWAY, CONNECTION_STREAM, 0).freeze()),
        }
    }

    /// Decodes one WebSocket message payload. Body bytes of `Data` frames are
    /// shared with `msg`, not copied.
    pub fn decode(mut msg: Bytes) -> Result<Frame, DecodeError> {
        if msg.len() < FRAME_HEADER_LEN {
            return Err(DecodeError::TooShort(msg.len()));
        }
        let kind = msg.get_u8();
        let stream = msg.get_u32();
        let name = kind_name(kind).ok_or(DecodeError::UnknownKind(kind))?;
        let is_connection_frame = matches!(
            kind,
            KIND_HELLO | KIND_HELLO_ACK | KIND_DRAIN | KIND_GO_AWAY
        );
        // A Window is for a stream, or on stream 0 the credit promised
        // to the streams the server opens (docs/PROTOCOL.md, section 6).
        if kind != KIND_WINDOW && is_connection_frame != (stream == CONNECTION_STREAM) {
            return Err(DecodeError::WrongStream { kind: name, stream });
        }
        let mut r = Reader::new(msg, name);
        match kind {
            KIND_HELLO => Ok(Frame::Hello(r.json()?)),
            KIND_HELLO_ACK => Ok(Frame::HelloAck(r.json()?)),
            KIND_REQUEST_HEAD => Ok(Frame::RequestHead {
                stream,
                head: head::decode_request_head(&mut r)?,
            }),
            KIND_RESPONSE_HEAD => Ok(Frame::ResponseHead {
                stream,
                head: head::decode_response_head(&mut r)?,
            }),
            KIND_DATA => {
                let data = r.rest();
                if data.len() > MAX_DATA_PAYLOAD {
                    return Err(DecodeError::DataTooLarge(data.len()));
                }
                Ok(Frame::Data { stream, data })
            }
            KIND_END => r.finish().map(|()| Frame::End { stream }),
            KIND_RESET => {
                let code = ResetCode::from_u8(r.u8("code")?);
                let reason = String::from_utf8_lossy(&r.rest()).into_owned();
                Ok(Frame::Reset {
                    stream,
                    code,
                    reason,
                })
            }
            KIND_WINDOW => {
                let increment = r.u32("increment")?;
                r.finish()?;
                if increment == 0 {
                    return Err(DecodeError::ZeroWindow);
                }
                Ok(Frame::Window { stream, increment })
            }
            KIND_DRAIN => r.finish().map(|()| Frame::Drain),
            KIND_GO_AWAY => r.finish().map(|()| Frame::GoAway),
            _ => Err(DecodeError::UnknownKind(kind)),
        }
    }
}

/// A buffer holding a `Data` frame's header, for up to `capacity` body bytes
/// to be appended (at most [`MAX_DATA_PAYLOAD`]).
pub fn data_frame_buffer(stream: u32, capacity: usize) -> BytesMut {
    header_only(KIND_DATA, stream, capacity)
}

/// A `Data` frame's header alone: the frame is this followed by its payload.
pub fn data_header(stream: u32) -> Bytes {
    header_only(KIND_DATA, stream, 0).freeze()
}

/// The stream of `head` if it is exactly the header of a `Data` frame on a
/// request stream, as [`data_header`] makes it.
pub fn parse_data_header(head: &[u8]) -> Option<u32> {
    match head {
        [KIND_DATA, s @ ..] if s.len() == 4 => {
            let stream = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
            (stream != CONNECTION_STREAM).then_some(stream)
        }
        _ => None,
    }
}

/// Encodes a `Data` frame straight from a byte slice (one copy, into the frame).
fn encode_data(stream: u32, data: &[u8]) -> Result<Bytes, EncodeError> {
    if data.len() > MAX_DATA_PAYLOAD {
        return Err(EncodeError::DataTooLarge(data.len()));
    }
    let mut buf = header_only(KIND_DATA, stream, data.len());
    buf.put_slice(data);
    Ok(buf.freeze())
}

fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        KIND_HELLO => "hello",
        KIND_HELLO_ACK => "hello-ack",
        KIND_REQUEST_HEAD => "request-head",
        KIND_RESPONSE_HEAD => "response-head",
        KIND_DATA => "data",
        KIND_END => "end",
        KIND_RESET => "reset",
        KIND_WINDOW => "window",
        KIND_DRAIN => "drain",
        KIND_GO_AWAY => "go-away",
        _ => return None,
    })
}

pub(crate) fn header_only(kind: u8, stream: u32, payload: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + payload);
    buf.put_u8(kind);
    buf.put_u32(stream);
    buf
}

fn json_frame<T: serde::Serialize>(kind: u8, value: &T) -> Bytes {
    let mut buf = header_only(kind, CONNECTION_STREAM, 128).writer();
    // Serialising these plain structs into memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    buf.into_inner().freeze()
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HeaderList, MAX_INLINE_BODY};
    use crate::protocol::{TunnelRequest, TunnelVerdict, PROTOCOL_VERSION};

    fn hl(pairs: &[(&str, &[u8])]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(v),
                )
            })
            .collect()
    }

    fn round_trip(frame: Frame) {
        let bytes = frame.encode().expect("encode");
        assert_eq!(Frame::decode(bytes).expect("decode"), frame);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            tunnels: vec![TunnelRequest {
                host: "demo.localhost".into(),
                token: "s3cret".into(),
                access: Default::default(),
            }],
            instance: None,
        }));
        round_trip(Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            tunnels: Vec::new(),
            instance: Some("0123456789abcdef0123456789abcdef".into()),
        }));
        round_trip(Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            tunnels: vec![
                TunnelVerdict {
                    host: "a.localhost".into(),
                    accepted: true,
                    reason: None,
                    retry: false,
                },
                TunnelVerdict {
                    host: "b.localhost".into(),
                    accepted: false,
                    reason: Some("bad token".into()),
                    retry: false,
                },
                TunnelVerdict {
                    host: "c.localhost".into(),
                    accepted: false,
                    reason: Some("held".into()),
                    retry: true,
                },
            ],
            error: None,
            connections: Some(2),
            worker: Some(1),
            node: Some("a1b2".into()),
            drain: true,
            ping_secs: Some(15),
        }));
        round_trip(Frame::RequestHead {
            stream: 7,
            head: RequestHead {
                host: "demo.localhost".into(),
                method: "POST".into(),
                uri: "/a%20b?q=%2F&x".into(),
                headers: hl(&[
                    ("content-type", b"application/octet-stream"),
                    ("cookie", b"a=1"),
                    ("cookie", b"b=2"),
                    ("x-bin", &[0x80, 0xff, b'\t']),
                ]),
                end_stream: false,
                upgrade: false,
                credit: 3 << 20,
            },
        });
        round_trip(Frame::RequestHead {
            stream: 9,
            head: RequestHead {
                host: "demo.localhost".into(),
                method: "GET".into(),
                uri: "/ws".into(),
                headers: hl(&[("upgrade", b"websocket"), ("connection", b"upgrade")]),
                end_stream: false,
                upgrade: true,
                credit: 0,
            },
        });
        round_trip(Frame::ResponseHead {
            stream: u32::MAX,
            head: ResponseHead {
                status: 304,
                headers: hl(&[("set-cookie", b"a=1"), ("set-cookie", b"b=2")]),
                end_stream: true,
                body: None,
            },
        });
        round_trip(Frame::ResponseHead {
            stream: 11,
            head: ResponseHead {
                status: 200,
                headers: hl(&[("content-length", b"5")]),
                end_stream: true,
                body: Some(Bytes::from_static(b"hello")),
            },
        });
        round_trip(Frame::ResponseHead {
            stream: 13,
            head: ResponseHead {
                status: 200,
                headers: hl(&[("content-length", b"0")]),
                end_stream: true,
                body: Some(Bytes::new()),
            },
        });
        round_trip(Frame::Data {
            stream: 3,
            data: Bytes::from(vec![0u8, 1, 2, 255]),
        });
        round_trip(Frame::Data {
            stream: 3,
            data: Bytes::from(vec![9u8; MAX_DATA_PAYLOAD]),
        });
        round_trip(Frame::Data {
            stream: 3,
            data: Bytes::new(),
        });
        round_trip(Frame::End { stream: 1 });
        round_trip(Frame::Reset {
            stream: 5,
            code: ResetCode::LocalUnreachable,
            reason: "connect to 127.0.0.1:3000 refused".into(),
        });
        round_trip(Frame::Reset {
            stream: 5,
            code: ResetCode::Other(200),
            reason: String::new(),
        });
        round_trip(Frame::Window {
            stream: 9,
            increment: 65536,
        });
        // Stream 0: credit promised to the streams the server opens.
        round_trip(Frame::Window {
            stream: 0,
            increment: 5 << 20,
        });
        round_trip(Frame::Drain);
        round_trip(Frame::GoAway);
    }

    #[test]
    fn response_head_from_fields_decodes_as_sent() {
        let fields: [(&[u8], &[u8]); 3] = [
            (b"content-type", b"text/plain"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ];
        let bytes =
            encode_response_head_from(9, 200, fields.iter().copied(), true, Some(b"hi")).unwrap();
        // The fields as encoded: each part behind its length, nothing else.
        let mut encoded = Vec::new();
        for (name, value) in fields {
            for part in [name, value] {
                encoded.extend_from_slice(&(part.len() as u16).to_be_bytes());
                encoded.extend_from_slice(part);
            }
        }
        assert_eq!(encoded_response_fields(&bytes, 2), &encoded[..]);
        let expect = ResponseHead {
            status: 200,
            headers: hl(&[
                ("content-type", b"text/plain"),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
            ]),
            end_stream: true,
            body: Some(Bytes::from_static(b"hi")),
        };
        assert_eq!(
            Frame::decode(bytes).unwrap(),
            Frame::ResponseHead {
                stream: 9,
                head: expect
            }
        );
        // Too many bytes of headers is refused, not truncated.
        let big = vec![b'x'; 60_000];
        let many = (0..5).map(|_| (&b"x-big"[..], &big[..]));
        assert!(matches!(
            encode_response_head_from(9, 200, many, false, None),
            Err(EncodeError::TooLarge("response head"))
        ));
    }

    #[test]
    fn encode_data_matches_frame_encoding() {
        let via_fn = encode_data(4, b"hello").unwrap();
        let via_frame = Frame::Data {
            stream: 4,
            data: Bytes::from_static(b"hello"),
        }
        .encode()
        .unwrap();
        assert_eq!(via_fn, via_frame);
        assert_eq!(
            &via_fn[..],
            &[KIND_DATA, 0, 0, 0, 4, b'h', b'e', b'l', b'l', b'o']
        );
    }

    #[test]
    fn reset_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let bytes = Frame::Reset {
            stream: 1,
            code: ResetCode::LocalError,
            reason: long,
        }
        .encode()
        .unwrap();
        match Frame::decode(bytes).unwrap() {
            Frame::Reset { reason, .. } => {
                assert!(reason.len() <= 1024);
                assert!(reason.chars().all(|c| c == 'é'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_values_are_refused_at_encode() {
        let data = vec![0u8; MAX_DATA_PAYLOAD + 1];
        assert_eq!(
            encode_data(1, &data),
            Err(EncodeError::DataTooLarge(MAX_DATA_PAYLOAD + 1))
        );
        let head = RequestHead {
            host: "h".into(),
            method: "GET".into(),
            uri: "/".into(),
            headers: vec![(
                Bytes::from_static(b"x-big"),
                Bytes::from(vec![b'a'; 70_000]),
            )],
            end_stream: true,
            upgrade: false,
            credit: 0,
        };
        assert!(Frame::RequestHead { stream: 1, head }.encode().is_err());
        let head = ResponseHead {
            status: 200,
            headers: (0..100)
                .map(|_| (Bytes::from_static(b"x"), Bytes::from(vec![b'a'; 3000])))
                .collect(),
            end_stream: false,
            body: None,
        };
        assert_eq!(
            Frame::ResponseHead { stream: 1, head }.encode(),
            Err(EncodeError::TooLarge("response head"))
        );
        let head = ResponseHead {
            status: 200,
            headers: vec![],
            end_stream: true,
            body: Some(Bytes::from(vec![0u8; MAX_INLINE_BODY + 1])),
        };
        assert_eq!(
            Frame::ResponseHead { stream: 1, head }.encode(),
            Err(EncodeError::TooLarge("inline body"))
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (vec![], DecodeError::TooShort(0)),
            (vec![KIND_DATA, 0, 0], DecodeError::TooShort(3)),
            (vec![0x7f, 0, 0, 0, 1], DecodeError::UnknownKind(0x7f)),
            (
                vec![KIND_DATA, 0, 0, 0, 0, 1],
                DecodeError::WrongStream {
                    kind: "data",
                    stream: 0,
                },
            ),
            (
                vec![KIND_HELLO, 0, 0, 0, 1, b'{', b'}'],
                DecodeError::WrongStream {
                    kind: "hello",
                    stream: 1,
                },
            ),
            (
                vec![KIND_END, 0, 0, 0, 1, 0],
                DecodeError::Trailing("end", 1),
            ),
            (
                vec![KIND_DRAIN, 0, 0, 0, 3],
                DecodeError::WrongStream {
                    kind: "drain",
                    stream: 3,
                },
            ),
            (
                vec![KIND_DRAIN, 0, 0, 0, 0, 7],
                DecodeError::Trailing("drain", 1),
            ),
            (
                vec![KIND_WINDOW, 0, 0, 0, 1, 0, 0],
                DecodeError::Truncated {
                    kind: "window",
                    field: "increment",
                },
            ),
            (
                vec![KIND_WINDOW, 0, 0, 0, 1, 0, 0, 0, 0],
                DecodeError::ZeroWindow,
            ),
            (
                // Credit for a request without a body.
                vec![KIND_REQUEST_HEAD, 0, 0, 0, 1, 0x05, 0, 0, 1, 0],
                DecodeError::UnknownFlags {
                    kind: "request-head",
                    flags: 0x05,
                },
            ),
            (
                vec![KIND_REQUEST_HEAD, 0, 0, 0, 1, 0x04, 0, 0, 0, 0],
                DecodeError::ZeroCredit,
            ),
            (
                vec![KIND_RESET, 0, 0, 0, 1],
                DecodeError::Truncated {
                    kind: "reset",
                    field: "code",
                },
            ),
            (
                vec![KIND_RESPONSE_HEAD, 0, 0, 0, 1, 0x80, 0, 200, 0, 0],
                DecodeError::UnknownFlags {
                    kind: "response-head",
                    flags: 0x80,
                },
            ),
            (
                vec![KIND_RESPONSE_HEAD, 0, 0, 0, 1, FLAG_UPGRADE, 0, 200, 0, 0],
                DecodeError::UnknownFlags {
                    kind: "response-head",
                    flags: FLAG_UPGRADE,
                },
            ),
            (
                // An inline body on a stream that claims more follows.
                vec![
                    KIND_RESPONSE_HEAD,
                    0,
                    0,
                    0,
                    1,
                    FLAG_INLINE_BODY,
                    0,
                    200,
                    0,
                    0,
                    b'x',
                ],
                DecodeError::UnknownFlags {
                    kind: "response-head",
                    flags: FLAG_INLINE_BODY,
                },
            ),
            (
                vec![KIND_RESPONSE_HEAD, 0, 0, 0, 1, 0, 0, 200, 0, 1, 0, 9, b'a'],
                DecodeError::Truncated {
                    kind: "response-head",
                    field: "header name",
                },
            ),
            (
                // Claims 65535 headers with no bytes behind them.
                vec![KIND_RESPONSE_HEAD, 0, 0, 0, 1, 0, 0, 200, 0xff, 0xff],
                DecodeError::Truncated {
                    kind: "response-head",
                    field: "header name length",
                },
            ),
            (
                vec![KIND_REQUEST_HEAD, 0, 0, 0, 1, 0, 2, 0xc3, 0x28],
                DecodeError::InvalidUtf8 {
                    kind: "request-head",
                    field: "host",
                },
            ),
            (
                vec![KIND_REQUEST_HEAD, 0, 0, 0, 1, 0, 1, b'h', 3, b'G', b'E'],
                DecodeError::Truncated {
                    kind: "request-head",
                    field: "method",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Frame::decode(Bytes::from(input.clone())),
                Err(expected),
                "input {input:?}"
            );
        }
        let mut big = vec![KIND_DATA, 0, 0, 0, 1];
        big.extend(std::iter::repeat_n(0u8, MAX_DATA_PAYLOAD + 1));
        assert_eq!(
            Frame::decode(Bytes::from(big)),
            Err(DecodeError::DataTooLarge(MAX_DATA_PAYLOAD + 1))
        );
        let bad_json = Frame::decode(Bytes::from_static(&[KIND_HELLO, 0, 0, 0, 0, b'{']));
        assert!(matches!(
            bad_json,
            Err(DecodeError::InvalidJson { kind: "hello", .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_head_is_an_error() {
        let bytes = Frame::RequestHead {
            stream: 1,
            head: RequestHead {
                host: "demo.localhost".into(),
                method: "GET".into(),
                uri: "/x".into(),
                headers: hl(&[("accept", b"*/*")]),
                end_stream: true,
                upgrade: false,
                credit: 0,
            },
        }
        .encode()
        .unwrap();
        for cut in 0..bytes.len() {
            assert!(Frame::decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn token_is_masked_in_debug_output() {
        let t = TunnelRequest {
            host: "h".into(),
            token: "very-secret".into(),
            access: crate::access::AccessRules {
                basic_auth: Some("user:very-secret".into()),
                ..Default::default()
            },
        };
        assert!(!format!("{t:?}").contains("very-secret"));
    }
}
