//! A request head checked by the rules the HTTP/1.1 service applies to it,
//! before the service sees it, so that a refusal can say what was wrong.
//!
//! The rules are the service's own (actix-http's `h1` decoder): whatever
//! it would refuse with its empty 400 is named here, and nothing it takes
//! is refused. Where the two could differ, the head passes and the service
//! decides, with its plain 400.

use std::mem::MaybeUninit;

use burrow_common::http1::{is_visible_ascii, PLAIN_PATH};
use thiserror::Error;

/// The most header fields the HTTP service takes in one head.
const MAX_FIELDS: usize = 96;
/// The longest head the HTTP service reads before it gives up (its read
/// buffer's limit).
pub(crate) const MAX_HEAD: usize = 128 * 1024;
/// The method of the stand-in head a refused one is replaced with. A
/// caller's head with this method is refused too, so only the stand-in
/// ever reaches the service with it.
pub const REFUSED_METHOD: &str = "BURROW-REFUSED";

/// What follows a request head that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: the next byte starts the next head.
    None,
    /// A body of this many bytes.
    Length(u64),
    /// A chunked body.
    Chunked,
    /// The rest of the connection belongs to this request: a WebSocket
    /// upgrade, or CONNECT.
    Rest,
}

/// What is wrong with a request head the HTTP service would refuse. Each
/// reads as the sentence a caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[repr(u8)]
pub enum HeadProblem {
    /// httparse: a header name with a character names may not hold.
    #[error("a header name holds a character names may not have (a space, say)")]
    HeaderName,
    /// httparse: a control character in a value.
    #[error("a header value holds a control character")]
    HeaderValue,
    /// httparse: a method or target with a character it may not hold.
    #[error("the request line's method or target holds a character it may not have")]
    Token,
    /// httparse: the version.
    #[error("the request line does not end with a valid HTTP version (HTTP/1.1 is expected)")]
    Version,
    /// httparse: a line end.
    #[error("a line does not end with CRLF")]
    NewLine,
    /// More fields than the service takes.
    #[error("the request has more than 96 header fields")]
    TooManyFields,
    /// httparse: anything else about the request line.
    #[error("the request line is not valid")]
    RequestLine,
    /// The target does not parse as a URI.
    #[error("the request target is not a valid URI")]
    Target,
    /// Two `Host` fields.
    #[error("the request has more than one Host field")]
    TwoHosts,
    /// An HTTP/1.1 request without `Host`.
    #[error("an HTTP/1.1 request must have a Host field")]
    NoHost,
    /// A `Content-Length` that is not a length.
    #[error("Content-Length is not a number")]
    BadLength,
    /// Two `Content-Length` fields.
    #[error("the request has more than one Content-Length field")]
    TwoLengths,
    /// Two `Transfer-Encoding` fields.
    #[error("the request has more than one Transfer-Encoding field")]
    TwoEncodings,
    /// A transfer coding other than chunked.
    #[error("Transfer-Encoding may only be chunked")]
    BadEncoding,
    /// `Transfer-Encoding` in HTTP/1.0.
    #[error("an HTTP/1.0 request may not have Transfer-Encoding")]
    EncodingInHttp10,
    /// Both framings at once.
    #[error("the request has both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    /// An HTTP/1.0 POST without a length.
    #[error("an HTTP/1.0 POST must have Content-Length")]
    PostWithoutLength,
    /// The head did not end within `MAX_HEAD` bytes.
    #[error("the request head is larger than 128 KiB")]
    TooLarge,
    /// The stand-in's method, sent by a caller.
    #[error("the method BURROW-REFUSED is reserved")]
    Reserved,
}

impl HeadProblem {
    /// Every problem, at the index of its code.
    const ALL: [HeadProblem; 19] = [
        HeadProblem::HeaderName,
        HeadProblem::HeaderValue,
        HeadProblem::Token,
        HeadProblem::Version,
        HeadProblem::NewLine,
        HeadProblem::TooManyFields,
        HeadProblem::RequestLine,
        HeadProblem::Target,
        HeadProblem::TwoHosts,
        HeadProblem::NoHost,
        HeadProblem::BadLength,
        HeadProblem::TwoLengths,
        HeadProblem::TwoEncodings,
        HeadProblem::BadEncoding,
        HeadProblem::EncodingInHttp10,
        HeadProblem::LengthAndEncoding,
        HeadProblem::PostWithoutLength,
        HeadProblem::TooLarge,
        HeadProblem::Reserved,
    ];

    /// The number the stand-in head carries in its path.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The problem a stand-in head's code names.
    pub(crate) fn from_code(code: &str) -> Option<HeadProblem> {
        Self::ALL.get(code.parse::<usize>().ok()?).copied()
    }
}

impl From<httparse::Error> for HeadProblem {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::HeaderName => HeadProblem::HeaderName,
            httparse::Error::HeaderValue => HeadProblem::HeaderValue,
            httparse::Error::Token => HeadProblem::Token,
            httparse::Error::Version => HeadProblem::Version,
            httparse::Error::NewLine => HeadProblem::NewLine,
            httparse::Error::TooManyHeaders => HeadProblem::TooManyFields,
            httparse::Error::Status => HeadProblem::RequestLine,
        }
    }
}

/// Checks the request head at the start of `bytes`: its length and what
/// follows it, `None` while it is incomplete, or why the service would
/// refuse it.
pub(crate) fn check(bytes: &[u8]) -> Result<Option<(usize, Framing)>, HeadProblem> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut slots)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if bytes.len() >= MAX_HEAD => return Err(HeadProblem::TooLarge),
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadProblem::RequestLine);
    };
    if method == REFUSED_METHOD {
        return Err(HeadProblem::Reserved);
    }
    if !plain_path(target) {
        http::Uri::try_from(target).map_err(|_| HeadProblem::Target)?;
    }
    let fields = Fields::read(req.headers, minor == 1)?;
    Ok(Some((len, fields.framing(method, minor == 1)?)))
}

/// What the fields of a head say about its framing.
#[derive(Default)]
struct Fields {
    host: bool,
    length: Option<u64>,
    /// A `Transfer-Encoding` field was seen (in any version).
    encoding: bool,
    chunked: bool,
    websocket: bool,
}

impl Fields {
    /// Reads `fields` one by one, as the service does.
    fn read(fields: &[httparse::Header<'_>], http11: bool) -> Result<Fields, HeadProblem> {
        let mut seen = Fields::default();
        for field in fields {
            let name = field.name;
            let value = visible(field.value);
            if name.eq_ignore_ascii_case("content-length") {
                if seen.length.is_some() {
                    return Err(HeadProblem::TwoLengths);
                }
                let digits = value.map(str::trim).ok_or(HeadProblem::BadLength)?;
                if digits.starts_with('+') {
                    return Err(HeadProblem::BadLength);
                }
                seen.length = Some(digits.parse().map_err(|_| HeadProblem::BadLength)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // The service counts the field only in HTTP/1.1, and
                // refuses it in HTTP/1.0 once all fields are read.
                if seen.encoding && http11 {
                    return Err(HeadProblem::TwoEncodings);
                }
                seen.encoding = true;
                if http11 {
                    match value.map(str::trim) {
                        Some(v) if v.eq_ignore_ascii_case("chunked") => seen.chunked = true,
                        Some(v) if v.eq_ignore_ascii_case("identity") => {}
                        _ => return Err(HeadProblem::BadEncoding),
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                if seen.host {
                    return Err(HeadProblem::TwoHosts);
                }
                seen.host = true;
            } else if name.eq_ignore_ascii_case("upgrade") {
                seen.websocket |= value.is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
            }
        }
        Ok(seen)
    }

    /// What follows the head, or why the fields together are refused.
    fn framing(&self, method: &str, http11: bool) -> Result<Framing, HeadProblem> {
        if http11 && !self.host {
            return Err(HeadProblem::NoHost);
        }
        if self.encoding {
            if !http11 {
                return Err(HeadProblem::EncodingInHttp10);
            }
            if !self.chunked {
                return Err(HeadProblem::BadEncoding);
            }
            if self.length.is_some() {
                return Err(HeadProblem::LengthAndEncoding);
            }
        }
        let none = !self.chunked && !self.websocket && self.length.is_none();
        if !http11 && method == "POST" && none {
            return Err(HeadProblem::PostWithoutLength);
        }
        Ok(if self.chunked {
            Framing::Chunked
        } else if self.websocket {
            Framing::Rest
        } else if let Some(n) = self.length.filter(|&n| n > 0) {
            Framing::Length(n)
        } else if method == "CONNECT" {
            Framing::Rest
        } else {
            Framing::None
        })
    }
}

/// `true` for a path and query of characters any URI parser takes: the
/// common target, checked without the copy a parse would make.
fn plain_path(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| PLAIN_PATH[b as usize])
}

/// `value` as text when it is visible ASCII, spaces and tabs only (what
/// the service reads a value as text from).
fn visible(value: &[u8]) -> Option<&str> {
    is_visible_ascii(value)
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(head: &str) -> HeadProblem {
        check(head.as_bytes()).expect_err(head)
    }

    #[test]
    fn each_malformation_is_named() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HeadProblem::TwoHosts),
            ("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", HeadProblem::HeaderName),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", HeadProblem::HeaderValue),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", HeadProblem::HeaderValue),
            ("GARBAGE\r\n\r\n", HeadProblem::Token),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HeadProblem::Version),
            ("GET / HTTP/1.1\r\n\r\n", HeadProblem::NoHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", HeadProblem::TwoLengths),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", HeadProblem::BadLength),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", HeadProblem::BadLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", HeadProblem::BadEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", HeadProblem::BadEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", HeadProblem::TwoEncodings),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", HeadProblem::LengthAndEncoding),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", HeadProblem::EncodingInHttp10),
            ("POST / HTTP/1.0\r\n\r\n", HeadProblem::PostWithoutLength),
            ("BURROW-REFUSED /1 HTTP/1.1\r\nHost: a\r\n\r\n", HeadProblem::Reserved),
        ];
        for (head, want) in cases {
            assert_eq!(problem(head), want, "{head:?}");
        }
    }

    #[test]
    fn framing_follows_the_service() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::None),
            ("GET / HTTP/1.0\r\n\r\n", Framing::None),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                Framing::None,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n\r\n",
                Framing::Length(12),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                Framing::Rest,
            ),
            ("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", Framing::Rest),
            ("\r\nGET / HTTP/1.1\nHost: a\n\n", Framing::None),
        ];
        for (head, want) in cases {
            let (len, framing) = check(head.as_bytes()).expect(head).expect(head);
            assert_eq!((len, framing), (head.len(), want), "{head:?}");
        }
    }

    #[test]
    fn an_unfinished_head_waits_until_it_is_too_large() {
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(check(&long), Err(HeadProblem::TooLarge));
    }

    /// What the HTTP service itself makes of `head`: taken, refused, or
    /// waiting for more.
    fn service_takes(head: &[u8]) -> Option<bool> {
        use actix_codec::Decoder;
        let mut codec = actix_http::h1::Codec::new(actix_http::ServiceConfig::default());
        match codec.decode(&mut bytes::BytesMut::from(head)) {
            Ok(Some(_)) => Some(true),
            Ok(None) => None,
            Err(_) => Some(false),
        }
    }

    // The service's configuration starts its date timer, on a runtime.
    #[actix_rt::test]
    async fn the_check_agrees_with_the_service_on_every_odd_byte_anywhere() {
        let heads = [
            "GET /a?b=c HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n",
            "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
            "PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\n",
        ];
        let odd = [
            0u8, b'\r', b'\n', b' ', b'\t', b':', b'+', b'/', b'x', b'"', 0x7f, 0x80, 0xff,
        ];
        let mut tried = 0;
        for head in heads {
            for at in 0..head.len() {
                for &b in &odd {
                    let mut bytes = head.as_bytes().to_vec();
                    bytes[at] = b;
                    for bytes in [
                        bytes.clone(),
                        [&bytes[..at], &[b], &head.as_bytes()[at..]].concat(),
                    ] {
                        let ours = match check(&bytes) {
                            Ok(Some(_)) => Some(true),
                            Ok(None) => None,
                            Err(_) => Some(false),
                        };
                        let theirs = service_takes(&bytes);
                        assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&bytes));
                        tried += 1;
                    }
                }
            }
        }
        assert!(tried > 4000, "{tried}");
    }

    #[test]
    fn codes_name_their_problem() {
        for (i, p) in HeadProblem::ALL.iter().enumerate() {
            assert_eq!(p.code() as usize, i);
            assert_eq!(HeadProblem::from_code(&i.to_string()), Some(*p));
        }
        assert_eq!(HeadProblem::from_code("19"), None);
        assert_eq!(HeadProblem::from_code("x"), None);
    }
}
