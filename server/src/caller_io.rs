//! A caller's connection, as the HTTP service reads and writes it.
//!
//! The HTTP/1.1 service answers a request head it cannot parse (a header
//! name with a space, two `Host` fields, a request line that is not one)
//! itself, before any handler runs, with an empty 400. A caller deserves to
//! know what was wrong, so this layer keeps the start of each request as it
//! is read and, when that empty 400 goes out, writes a 400 whose plain-text
//! body says what was wrong instead.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use actix_rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// How the HTTP service's own answer to an unparsable head begins.
const EMPTY_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n";
/// The most of a request's start kept for the diagnosis.
const KEPT: usize = 8 * 1024;

/// The bytes a caller's connection carries: TCP, or TLS over it.
pub type Wire = burrow_common::wire::Wire<TcpStream, TlsStream<TcpStream>>;

/// The TCP connection beneath `wire`.
fn tcp_of(wire: &Wire) -> &TcpStream {
    match wire {
        Wire::Plain(tcp) => tcp,
        Wire::Tls(tls) => tls.get_ref().0,
    }
}

/// A caller's connection.
pub struct CallerIo {
    tcp: Wire,
    /// The start of the request being read (at most `KEPT` bytes).
    head: Vec<u8>,
    /// Reads are kept until the head is complete.
    recording: bool,
    /// The 400 being written instead of the service's, how much of it is
    /// out, and how long the service's was.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl CallerIo {
    /// Wraps an accepted connection (for TLS, once its handshake is done;
    /// `tls::wire` has set `TCP_NODELAY`).
    pub fn new(tcp: Wire) -> Self {
        CallerIo {
            tcp,
            head: Vec::new(),
            recording: true,
            replacing: None,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        tcp_of(&self.tcp).peer_addr().ok()
    }
}

impl AsyncRead for CallerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.recording {
            let new = &buf.filled()[before..];
            let from = this.head.len().saturating_sub(3);
            let room = KEPT - this.head.len();
            this.head.extend_from_slice(&new[..new.len().min(room)]);
            let complete = memchr::memmem::find(&this.head[from..], b"\r\n\r\n").is_some();
            this.recording = !complete && this.head.len() < KEPT;
        }
        read
    }
}

impl AsyncWrite for CallerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            if !buf.starts_with(EMPTY_400) {
                if buf.starts_with(b"HTTP/1.") {
                    // An answer is going out: what is read next is a new
                    // request (or, after a 101, not HTTP at all, and then
                    // only its first KEPT bytes are kept).
                    this.head.clear();
                    this.recording = true;
                }
                return Pin::new(&mut this.tcp).poll_write(cx, buf);
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Pin::new(&mut this.tcp).poll_write(cx, buf);
            };
            let answer = explained(&buf[..end + 4], &what_was_wrong(&this.head));
            this.replacing = Some((answer, 0, end + 4));
        }
        let Some((answer, sent, original)) = &mut this.replacing else {
            return Poll::Ready(Ok(0));
        };
        while *sent < answer.len() {
            match Pin::new(&mut this.tcp).poll_write(cx, &answer[*sent..]) {
                Poll::Ready(Ok(n)) => *sent += n,
                other => return other,
            }
        }
        let original = *original;
        this.replacing = None;
        Poll::Ready(Ok(original))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The service's empty 400 (`original`, its whole head) with `reason` as
/// its body; its other fields (`connection`, `date`) stay.
fn explained(original: &[u8], reason: &str) -> Vec<u8> {
    let body = format!("400 Bad Request: {reason}.\n");
    let mut out = Vec::with_capacity(original.len() + body.len() + 64);
    out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n");
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(&original[EMPTY_400.len()..]);
    out.extend_from_slice(body.as_bytes());
    out
}

/// What is wrong with the request that starts with `head`, in words.
pub fn what_was_wrong(head: &[u8]) -> String {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut slots);
    let reason = match req.parse(head) {
        Err(httparse::Error::HeaderName) => {
            "a header name holds a character names may not have (a space, say)"
        }
        Err(httparse::Error::HeaderValue) => "a header value holds a control character",
        Err(httparse::Error::Token) => "the request line does not start with a valid method",
        Err(httparse::Error::Version) => {
            "the request line does not end with a valid HTTP version (HTTP/1.1 is expected)"
        }
        Err(httparse::Error::NewLine) => "a line does not end with CRLF",
        Err(httparse::Error::TooManyHeaders) => "the request has too many header fields",
        Err(httparse::Error::Status) => "the request line is not valid",
        Ok(httparse::Status::Partial) => "the request head is incomplete or too large",
        Ok(httparse::Status::Complete(_)) => field_problem(req.headers),
    };
    reason.to_owned()
}

/// What is wrong with fields that parse one by one.
fn field_problem(fields: &[httparse::Header<'_>]) -> &'static str {
    let count = |name: &str| {
        fields
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    let lengths: Vec<&[u8]> = fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value)
        .collect();
    if count("host") > 1 {
        "the request has more than one Host field"
    } else if lengths
        .iter()
        .any(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit))
    {
        "Content-Length is not a number"
    } else if lengths.windows(2).any(|w| w[0] != w[1]) {
        "the request has Content-Length fields that disagree"
    } else if !lengths.is_empty() && count("transfer-encoding") > 0 {
        "the request has both Content-Length and Transfer-Encoding"
    } else {
        "the request head is not valid HTTP/1.1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_malformation_is_named() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "more than one Host",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
                "header name",
            ),
            (b"GARBAGE\r\n\r\n", "request line"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "disagree",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "not a number",
            ),
        ];
        for (head, words) in cases {
            let reason = what_was_wrong(head);
            assert!(reason.contains(words), "{reason}");
        }
    }

    #[test]
    fn the_explained_answer_keeps_the_other_fields() {
        let original =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let out = String::from_utf8(explained(original, "why")).unwrap();
        assert!(
            out.ends_with("connection: close\r\n\r\n400 Bad Request: why.\n"),
            "{out}"
        );
        assert!(out.contains("content-length: 22\r\n"), "{out}");
    }
}
