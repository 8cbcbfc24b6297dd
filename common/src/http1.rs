//! HTTP/1.1 message framing that both ends apply: which responses carry a
//! body, a `Content-Length` value read as a length, and chunked transfer
//! coding decoded from whatever pieces a body arrives in.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// `true` for statuses whose responses never carry a body, whatever their
/// headers say: 1xx, 204 and 304 (RFC 9110, sections 6.4.1 and 8.6).
pub fn status_has_no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// A `Content-Length` value as a length: ASCII digits, optionally surrounded
/// by spaces; `None` for anything else (a sign, a list, garbage).
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Why a request head cannot be written to a local service as HTTP/1.1,
/// or `None` when it can: the method must be a token, the target a path
/// without spaces or control characters, each field name a token and each
/// value free of control characters other than tab. Checked once, before
/// anything of the request is written, whichever way it is sent: a CR, LF
/// or NUL passed on would let a forged head split the request in two.
pub fn request_head_problem<'a>(
    method: &str,
    target: &str,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<String> {
    if !is_token(method.as_bytes()) {
        return Some(format!("invalid method {method:?}"));
    }
    if !target.starts_with('/') || !no_space_or_control(target.as_bytes()) {
        return Some(format!("request target {target:?} is not a path"));
    }
    for (name, value) in fields {
        if !is_token(name) {
            let name = String::from_utf8_lossy(name);
            return Some(format!("invalid header name {name:?}"));
        }
        if has_control(value) {
            let name = String::from_utf8_lossy(name);
            return Some(format!("invalid value for header {name}"));
        }
    }
    None
}

// Byte classes. Every request's method, target and fields are checked at
// both ends, so each check is one table lookup or a few comparisons a
// byte, over the whole field without stopping early (which lets the
// compiler check many bytes at once): a search of a list of allowed
// characters for each byte was a measurable part of every request
// (docs/PERFORMANCE.md, "What the rest is made of").

/// `true` for an HTTP token (RFC 9110, 5.6.2): a method or a field name.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| TOKEN[b as usize])
}

/// `true` when a field value holds a control character other than tab
/// (CR, LF and NUL among them), which may not be written into a head.
fn has_control(value: &[u8]) -> bool {
    value.iter().fold(false, |bad, &b| {
        bad | (b < b' ' && b != b'\t') | (b == 0x7f)
    })
}

/// `true` when `bytes` holds no space and no control character: what a
/// request target may hold.
fn no_space_or_control(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |ok, &b| ok & (b > b' ') & (b != 0x7f))
}

/// `true` when `bytes` is visible ASCII, spaces and tabs only.
pub fn is_visible_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        ok & ((b == b'\t') | (b' '..=b'~').contains(&b))
    })
}

/// The bytes of a token: letters, digits and ``!#$%&'*+-.^_`|~``.
const TOKEN: [bool; 256] = byte_class(b"!#$%&'*+-.^_`|~");

/// The bytes a request target of the plainest kind holds (a path and
/// query any URI parser takes): letters, digits and `/?-._~%!$&'()*+,;=:@`.
pub const PLAIN_PATH: [bool; 256] = byte_class(b"/?-._~%!$&'()*+,;=:@");

/// A table of letters, digits and `extra`.
const fn byte_class(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line that is not one.
    #[error("invalid chunk size")]
    InvalidSize,
    /// The data of a chunk is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Size,
    Data(u64),
    Crlf,
    Done,
}

/// Decodes a chunked body incrementally: feed it the bytes as they arrive
/// and take the body out. Chunk extensions and trailers are dropped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    phase: Phase,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { phase: Phase::Size }
    }
}

impl ChunkedDecoder {
    /// `true` once the last (zero-size) chunk has been read.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The next piece of body decoded from `buf` (consuming what it used),
    /// or `None` when `buf` holds no more body for now: more input is
    /// needed, or the body is complete (see [`ChunkedDecoder::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ChunkError> {
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.phase = if size == 0 {
                            Phase::Done
                        } else {
                            Phase::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(ChunkError::InvalidSize),
                },
                Phase::Data(_) if buf.is_empty() => return Ok(None),
                Phase::Data(left) => {
                    let n = left.min(buf.len() as u64);
                    let out = buf.split_to(n as usize).freeze();
                    self.phase = if n == left {
                        Phase::Crlf
                    } else {
                        Phase::Data(left - n)
                    };
                    return Ok(Some(out));
                }
                Phase::Crlf if buf.len() < 2 => return Ok(None),
                Phase::Crlf => {
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::MissingCrlf);
                    }
                    buf.advance(2);
                    self.phase = Phase::Size;
                }
            }
        }
    }

    /// Decodes a whole chunked body held in memory; what follows its last
    /// chunk is ignored. An incomplete body yields what it holds.
    pub fn decode_all(body: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(body);
        let mut out = Vec::with_capacity(body.len());
        while let Some(piece) = decoder.decode(&mut buf)? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_byte_class_holds_exactly_its_bytes() {
        for b in 0..=255u8 {
            let one = [b];
            let alnum = b.is_ascii_alphanumeric();
            let control = (b < b' ' && b != b'\t') || b == 0x7f;
            assert_eq!(
                is_token(&one),
                alnum || b"!#$%&'*+-.^_`|~".contains(&b),
                "{b}"
            );
            assert_eq!(
                PLAIN_PATH[b as usize],
                alnum || b"/?-._~%!$&'()*+,;=:@".contains(&b)
            );
            assert_eq!(has_control(&one), control, "{b}");
            assert_eq!(no_space_or_control(&one), b > b' ' && b != 0x7f, "{b}");
            assert_eq!(
                is_visible_ascii(&one),
                b == b'\t' || (0x20..0x7f).contains(&b)
            );
            // Anywhere in a longer field, after and before good bytes.
            let mut long = b"abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
            long.insert(b as usize % 30, b);
            assert_eq!(has_control(&long), control, "{b} inside");
            assert_eq!(is_token(&long), is_token(&one), "{b} inside");
            assert_eq!(
                is_visible_ascii(&long),
                is_visible_ascii(&one),
                "{b} inside"
            );
        }
        assert!(!is_token(b""));
        assert!(!has_control(b"") && no_space_or_control(b"") && is_visible_ascii(b""));
    }

    #[test]
    fn a_request_head_with_a_line_break_or_nul_anywhere_is_refused() {
        let fields: [(&[u8], &[u8]); 2] = [(b"host", b"a"), (b"x-ok", b"tab\there \x80")];
        assert_eq!(request_head_problem("GET", "/a?b", fields), None);
        for bad in ["\r", "\n", "\0"] {
            let method = format!("GET{bad}");
            let target = format!("/a{bad}b");
            let name = format!("x{bad}y");
            let value = format!("v{bad}w");
            let ok: [(&[u8], &[u8]); 1] = [(b"x", b"v")];
            assert!(request_head_problem(&method, "/", ok).is_some());
            assert!(request_head_problem("GET", &target, ok).is_some());
            let name_field: [(&[u8], &[u8]); 1] = [(name.as_bytes(), b"v")];
            assert!(request_head_problem("GET", "/", name_field).is_some());
            let value_field: [(&[u8], &[u8]); 1] = [(b"x", value.as_bytes())];
            assert!(request_head_problem("GET", "/", value_field).is_some());
        }
        assert!(request_head_problem("GET", "http://a/", []).is_some());
        assert!(request_head_problem("", "/", []).is_some());
    }

    #[test]
    fn bodiless_statuses() {
        for s in [100, 101, 199, 204, 304] {
            assert!(status_has_no_body(s), "{s}");
        }
        for s in [200, 201, 205, 301, 404, 426, 500] {
            assert!(!status_has_no_body(s), "{s}");
        }
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b" 7 "), Some(7));
        assert_eq!(parse_content_length(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"1,1",
            b"x",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn chunked_bodies_decode_from_any_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                while let Some(piece) = decoder.decode(&mut buf).unwrap() {
                    out.extend_from_slice(&piece);
                }
            }
            assert_eq!(out, b"hello world", "cut at {cut}");
            assert!(decoder.is_done());
        }
        assert_eq!(ChunkedDecoder::decode_all(wire).unwrap(), b"hello world");
    }

    #[test]
    fn chunked_garbage_is_an_error() {
        assert_eq!(
            ChunkedDecoder::decode_all(b"zz\r\n"),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(
            ChunkedDecoder::decode_all(b"2\r\nabXY"),
            Err(ChunkError::MissingCrlf)
        );
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"hel"[..])
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(!decoder.is_done());
    }
}
