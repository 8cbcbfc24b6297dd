//! Request and response heads: encoded straight from the header fields an
//! HTTP stack holds, and decoded into [`RequestHead`] and [`ResponseHead`].

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    header_only, reader::Reader, DecodeError, EncodeError, FLAG_CREDIT, FLAG_END_STREAM,
    FLAG_INLINE_BODY, FLAG_UPGRADE, FRAME_HEADER_LEN, KIND_REQUEST_HEAD, KIND_RESPONSE_HEAD,
};
use crate::protocol::{RequestHead, ResponseHead, MAX_HEAD_SIZE, MAX_INLINE_BODY};

pub(super) fn encode_request_head(stream: u32, head: &RequestHead) -> Result<Bytes, EncodeError> {
    let target = RequestTarget {
        host: &head.host,
        method: &head.method,
        uri: &head.uri,
        end_stream: head.end_stream,
        upgrade: head.upgrade,
        credit: head.credit,
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
    /// Opening credit drawn for the body (see [`RequestHead::credit`]).
    pub credit: u32,
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
    if target.credit > 0 {
        if target.end_stream {
            return Err(EncodeError::TooLarge("credit of a request without a body"));
        }
        flags |= FLAG_CREDIT;
    }
    buf.put_u8(flags);
    if target.credit > 0 {
        buf.put_u32(target.credit);
    }
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

pub(super) fn encode_response_head(stream: u32, head: &ResponseHead) -> Result<Bytes, EncodeError> {
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

/// The header fields of a frame made by [`encode_response_head_from`] with
/// an inline body of `inline` bytes, as they were encoded: each name and
/// value behind its `u16` length (the count before them left out), for a
/// copy in one piece.
pub fn encoded_response_fields(frame: &[u8], inline: usize) -> &[u8] {
    // The frame's header, then flags, status and the field count.
    let start = FRAME_HEADER_LEN + 1 + 2 + 2;
    let end = frame.len().saturating_sub(inline);
    frame.get(start..end).unwrap_or_default()
}

/// The payload of a `RequestHead` frame.
pub(super) fn decode_request_head(r: &mut Reader) -> Result<RequestHead, DecodeError> {
    let flags = r.flags(FLAG_END_STREAM | FLAG_UPGRADE | FLAG_CREDIT)?;
    let end_stream = flags & FLAG_END_STREAM != 0;
    let credit = if flags & FLAG_CREDIT != 0 {
        if end_stream {
            // Credit for a body that does not follow.
            return Err(DecodeError::UnknownFlags {
                kind: "request-head",
                flags,
            });
        }
        match r.u32("credit")? {
            0 => return Err(DecodeError::ZeroCredit),
            credit => credit,
        }
    } else {
        0
    };
    let host = r.text8("host")?;
    let method = r.text8("method")?;
    let uri = r.text16("uri")?;
    let headers = r.headers()?;
    r.finish()?;
    Ok(RequestHead {
        host,
        method,
        uri,
        headers,
        end_stream,
        upgrade: flags & FLAG_UPGRADE != 0,
        credit,
    })
}

/// The payload of a `ResponseHead` frame, with its inline body if any.
pub(super) fn decode_response_head(r: &mut Reader) -> Result<ResponseHead, DecodeError> {
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
        let body = r.rest();
        if body.len() > MAX_INLINE_BODY {
            return Err(DecodeError::InlineBodyTooLarge(body.len()));
        }
        Some(body)
    } else {
        r.finish()?;
        None
    };
    Ok(ResponseHead {
        status,
        headers,
        end_stream,
        body,
    })
}
