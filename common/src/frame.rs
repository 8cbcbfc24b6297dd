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

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::protocol::{
    HeaderList, Hello, HelloAck, RequestHead, ResetCode, ResponseHead, CONNECTION_STREAM,
    MAX_DATA_PAYLOAD, MAX_HEAD_SIZE, MAX_INLINE_BODY,
};

/// Size of the fixed frame header (kind and stream id).
pub const FRAME_HEADER_LEN: usize = 5;

const KIND_HELLO: u8 = 1;
const KIND_HELLO_ACK: u8 = 2;
const KIND_REQUEST_HEAD: u8 = 3;
const KIND_RESPONSE_HEAD: u8 = 4;
const KIND_DATA: u8 = 5;
const KIND_END: u8 = 6;
const KIND_RESET: u8 = 7;
const KIND_WINDOW: u8 = 8;
/// Kind 9 is a batch of frames (see [`crate::batch`]).
const KIND_DRAIN: u8 = 10;

const FLAG_END_STREAM: u8 = 0x01;
const FLAG_UPGRADE: u8 = 0x02;
const FLAG_INLINE_BODY: u8 = 0x04;

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
    /// The sender may send `increment` more body bytes on this stream.
    Window {
        /// The stream the credit is for.
        stream: u32,
        /// Additional bytes granted; never zero.
        increment: u32,
    },
    /// The client asks the server to take no new streams on this
    /// connection and to close it once its open streams are done (stream 0,
    /// no payload; see `docs/PROTOCOL.md` section 4.5).
    Drain,
}

/// Why a frame could not be encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// A head field or the whole head is larger than the protocol allows.
    #[error("{0} is too large to send")]
    TooLarge(&'static str),
    /// A `Data` frame carries more than [`MAX_DATA_PAYLOAD`] bytes.
    #[error("data frame of {0} bytes exceeds the {MAX_DATA_PAYLOAD}-byte limit")]
    DataTooLarge(usize),
}

/// Why a received message is not a valid frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("frame of {0} bytes is shorter than the 5-byte header")]
    TooShort(usize),
    /// A frame kind this version does not know.
    #[error("unknown frame kind {0:#04x} (is the peer running a newer burrow?)")]
    UnknownKind(u8),
    /// The payload ended before a field was complete.
    #[error("{kind} frame truncated while reading {field}")]
    Truncated {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// Bytes left over after the last field.
    #[error("{0} frame has {1} unexpected trailing bytes")]
    Trailing(&'static str, usize),
    /// A text field is not UTF-8.
    #[error("{kind} frame field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A handshake payload is not the expected JSON.
    #[error("invalid {kind} payload: {detail}")]
    InvalidJson {
        /// Frame kind being decoded.
        kind: &'static str,
        /// What serde reported.
        detail: String,
    },
    /// A stream frame on stream 0, or a connection frame on another stream.
    #[error("{kind} frame on wrong stream id {stream}")]
    WrongStream {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Stream id found.
        stream: u32,
    },
    /// A `Data` payload over the limit.
    #[error("data frame of {0} bytes exceeds the {MAX_DATA_PAYLOAD}-byte limit")]
    DataTooLarge(usize),
    /// An inline response body over the limit.
    #[error("inline body of {0} bytes exceeds the {MAX_INLINE_BODY}-byte limit")]
    InlineBodyTooLarge(usize),
    /// A `Window` frame granting nothing.
    #[error("window frame with zero increment")]
    ZeroWindow,
    /// An unknown flag bit is set.
    #[error("{kind} frame has unknown flags {flags:#04x}")]
    UnknownFlags {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Flags byte found.
        flags: u8,
    },
}

impl Frame {
    /// The stream id this frame belongs to (0 for handshake frames).
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Hello(_) | Frame::HelloAck(_) | Frame::Drain => CONNECTION_STREAM,
            Frame::RequestHead { stream, .. }
            | Frame::ResponseHead { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::End { stream }
            | Frame::Reset { stream, .. }
            | Frame::Window { stream, .. } => *stream,
        }
    }

    /// The frame kind's name, as used in errors and logs (`"data"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::HelloAck(_) => "hello-ack",
            Frame::RequestHead { .. } => "request-head",
            Frame::ResponseHead { .. } => "response-head",
            Frame::Data { .. } => "data",
            Frame::End { .. } => "end",
            Frame::Reset { .. } => "reset",
            Frame::Window { .. } => "window",
            Frame::Drain => "drain",
        }
    }

    /// Encodes the frame into one WebSocket message payload.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        match self {
            Frame::Hello(hello) => Ok(json_frame(KIND_HELLO, hello)),
            Frame::HelloAck(ack) => Ok(json_frame(KIND_HELLO_ACK, ack)),
            Frame::RequestHead { stream, head } => encode_request_head(*stream, head),
            Frame::ResponseHead { stream, head } => encode_response_head(*stream, head),
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
        let is_connection_frame = matches!(kind, KIND_HELLO | KIND_HELLO_ACK | KIND_DRAIN);
        if is_connection_frame != (stream == CONNECTION_STREAM) {
            return Err(DecodeError::WrongStream { kind: name, stream });
        }
        let mut r = Reader {
            buf: msg,
            kind: name,
        };
        let frame = match kind {
            KIND_HELLO => Frame::Hello(r.json()?),
            KIND_HELLO_ACK => Frame::HelloAck(r.json()?),
            KIND_REQUEST_HEAD => {
                let flags = r.flags(FLAG_END_STREAM | FLAG_UPGRADE)?;
                let host = r.text8("host")?;
                let method = r.text8("method")?;
                let uri = r.text16("uri")?;
                let headers = r.headers()?;
                r.finish()?;
                Frame::RequestHead {
                    stream,
                    head: RequestHead {
                        host,
                        method,
                        uri,
                        headers,
                        end_stream: flags & FLAG_END_STREAM != 0,
                        upgrade: flags & FLAG_UPGRADE != 0,
                    },
                }
            }
            KIND_RESPONSE_HEAD => {
                let flags = r.flags(FLAG_END_STREAM | FLAG_INLINE_BODY)?;
                let end_stream = flags & FLAG_END_STREAM != 0;
                let status = r.u16("status")?;
                let headers = r.headers()?;
                let body = if flags & FLAG_INLINE_BODY != 0 {
                    if !end_stream {
                        return Err(DecodeError::UnknownFlags {
                            kind: "response-head",
                            flags,
                        });
                    }
                    let body = std::mem::take(&mut r.buf);
                    if body.len() > MAX_INLINE_BODY {
                        return Err(DecodeError::InlineBodyTooLarge(body.len()));
                    }
                    Some(body)
                } else {
                    r.finish()?;
                    None
                };
                Frame::ResponseHead {
                    stream,
                    head: ResponseHead {
                        status,
                        headers,
                        end_stream,
                        body,
                    },
                }
            }
            KIND_DATA => {
                if r.buf.len() > MAX_DATA_PAYLOAD {
                    return Err(DecodeError::DataTooLarge(r.buf.len()));
                }
                Frame::Data {
                    stream,
                    data: r.buf,
                }
            }
            KIND_END => {
                r.finish()?;
                Frame::End { stream }
            }
            KIND_RESET => {
                let code = ResetCode::from_u8(r.u8("code")?);
                let rest = std::mem::take(&mut r.buf);
                let reason = String::from_utf8_lossy(&rest).into_owned();
                Frame::Reset {
                    stream,
                    code,
                    reason,
                }
            }
            KIND_WINDOW => {
                let increment = r.u32("increment")?;
                r.finish()?;
                if increment == 0 {
                    return Err(DecodeError::ZeroWindow);
                }
                Frame::Window { stream, increment }
            }
            KIND_DRAIN => {
                r.finish()?;
                Frame::Drain
            }
            _ => return Err(DecodeError::UnknownKind(kind)),
        };
        Ok(frame)
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
        _ => return None,
    })
}

fn header_only(kind: u8, stream: u32, payload: usize) -> BytesMut {
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

fn encode_request_head(stream: u32, head: &RequestHead) -> Result<Bytes, EncodeError> {
    let target = RequestTarget {
        host: &head.host,
        method: &head.method,
        uri: &head.uri,
        end_stream: head.end_stream,
        upgrade: head.upgrade,
    };
    encode_request_head_from(
        stream,
        &target,
        head.headers.iter().map(|(n, v)| (&n[..], &v[..])),
    )
}

/// The fields of a `RequestHead` other than its headers, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// Public host the request was routed by.
    pub host: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Path and query.
    pub uri: &'a str,
    /// `true` when no body follows.
    pub end_stream: bool,
    /// `true` for a WebSocket upgrade.
    pub upgrade: bool,
}

/// Encodes a `RequestHead` frame straight from header fields held elsewhere
/// (an HTTP server's request), with no intermediate list: the same bytes as
/// [`Frame::RequestHead`] with those fields.
pub fn encode_request_head_from<'a>(
    stream: u32,
    target: &RequestTarget<'_>,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Bytes, EncodeError> {
    let host = u8::try_from(target.host.len()).map_err(|_| EncodeError::TooLarge("host"))?;
    let method = u8::try_from(target.method.len()).map_err(|_| EncodeError::TooLarge("method"))?;
    let uri = u16::try_from(target.uri.len()).map_err(|_| EncodeError::TooLarge("uri"))?;
    let mut buf = header_only(KIND_REQUEST_HEAD, stream, 256 + target.uri.len());
    let mut flags = 0;
    if target.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if target.upgrade {
        flags |= FLAG_UPGRADE;
    }
    buf.put_u8(flags);
    buf.put_u8(host);
    buf.put_slice(target.host.as_bytes());
    buf.put_u8(method);
    buf.put_slice(target.method.as_bytes());
    buf.put_u16(uri);
    buf.put_slice(target.uri.as_bytes());
    put_fields(&mut buf, headers, "request head")?;
    Ok(buf.freeze())
}

/// Writes a header count and the fields, refusing a head over
/// [`MAX_HEAD_SIZE`] (everything after the frame header counts).
fn put_fields<'a>(
    buf: &mut BytesMut,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    what: &'static str,
) -> Result<(), EncodeError> {
    let count_at = buf.len();
    buf.put_u16(0);
    let mut count: u16 = 0;
    for (name, value) in headers {
        let n = u16::try_from(name.len()).map_err(|_| EncodeError::TooLarge("header name"))?;
        let v = u16::try_from(value.len()).map_err(|_| EncodeError::TooLarge("header value"))?;
        count = count
            .checked_add(1)
            .ok_or(EncodeError::TooLarge("header count"))?;
        buf.put_u16(n);
        buf.put_slice(name);
        buf.put_u16(v);
        buf.put_slice(value);
        if buf.len() - FRAME_HEADER_LEN > MAX_HEAD_SIZE {
            return Err(EncodeError::TooLarge(what));
        }
    }
    buf[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    if buf.len() - FRAME_HEADER_LEN > MAX_HEAD_SIZE {
        return Err(EncodeError::TooLarge(what));
    }
    Ok(())
}

fn encode_response_head(stream: u32, head: &ResponseHead) -> Result<Bytes, EncodeError> {
    encode_response_head_from(
        stream,
        head.status,
        head.headers.iter().map(|(n, v)| (&n[..], &v[..])),
        head.end_stream,
        head.body.as_deref(),
    )
}

/// Encodes a `ResponseHead` frame straight from header fields held
/// elsewhere (an HTTP client's header map), with no intermediate list: the
/// same bytes as [`Frame::ResponseHead`] with those fields. `body`, if any,
/// is the whole body (at most [`MAX_INLINE_BODY`], and `end_stream` set).
pub fn encode_response_head_from<'a>(
    stream: u32,
    status: u16,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    end_stream: bool,
    body: Option<&[u8]>,
) -> Result<Bytes, EncodeError> {
    let inline = body.map_or(0, <[u8]>::len);
    if inline > MAX_INLINE_BODY || (body.is_some() && !end_stream) {
        return Err(EncodeError::TooLarge("inline body"));
    }
    let mut buf = header_only(KIND_RESPONSE_HEAD, stream, 256 + inline);
    let mut flags = if end_stream { FLAG_END_STREAM } else { 0 };
    if body.is_some() {
        flags |= FLAG_INLINE_BODY;
    }
    buf.put_u8(flags);
    buf.put_u16(status);
    put_fields(&mut buf, headers, "response head")?;
    if let Some(body) = body {
        buf.put_slice(body);
    }
    Ok(buf.freeze())
}

/// Field reader over a frame payload; every read is bounds-checked.
struct Reader {
    buf: Bytes,
    kind: &'static str,
}

impl Reader {
    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            kind: self.kind,
            field,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(self.truncated(field));
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u32())
    }

    /// The flags byte, refusing bits outside `known`.
    fn flags(&mut self, known: u8) -> Result<u8, DecodeError> {
        let flags = self.u8("flags")?;
        if flags & !known != 0 {
            return Err(DecodeError::UnknownFlags {
                kind: self.kind,
                flags,
            });
        }
        Ok(flags)
    }

    fn text(&mut self, len: usize, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            field,
        })
    }

    fn text8(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u8(field)? as usize;
        self.text(len, field)
    }

    fn text16(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(field)? as usize;
        self.text(len, field)
    }

    fn headers(&mut self) -> Result<HeaderList, DecodeError> {
        let count = self.u16("header count")? as usize;
        // Each header needs at least 4 bytes: do not trust `count` for the allocation.
        let mut headers = Vec::with_capacity(count.min(self.buf.len() / 4));
        for _ in 0..count {
            let n = self.u16("header name length")? as usize;
            let name = self.take(n, "header name")?;
            let v = self.u16("header value length")? as usize;
            let value = self.take(v, "header value")?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, DecodeError> {
        serde_json::from_slice(&self.buf).map_err(|e| DecodeError::InvalidJson {
            kind: self.kind,
            detail: e.to_string(),
        })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.kind, self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            drain: true,
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
        round_trip(Frame::Drain);
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
        };
        assert!(!format!("{t:?}").contains("very-secret"));
    }
}
