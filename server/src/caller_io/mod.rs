//! A caller's connection, as the HTTP service reads and writes it.
//!
//! The HTTP/1.1 service answers a request head it cannot parse (a header
//! name with a space, two `Host` fields, a request line that is not one)
//! itself, before any handler runs, with an empty 400. A caller deserves to
//! know what was wrong. So every head is checked here (`check`) before
//! the service reads it, by the service's own rules, and one it would
//! refuse never reaches it: a stand-in head takes its place, which the
//! app answers with a 400 that says what was wrong, in turn
//! after the answers to the requests before it, and the connection closes.
//! The `gate` follows bodies by their framing, so bytes in a body are
//! never taken for a head. Nothing written to the caller is looked at.

mod check;
mod gate;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{ready, Context, Poll},
};

use actix_rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use check::MAX_HEAD;
pub use check::{HeadProblem, REFUSED_METHOD};
use gate::{Gate, Scan};

/// The stand-in's path: a fixed one, so that the app's router matches it
/// by a comparison, not a pattern, on every request's way past it.
pub const REFUSED_PATH: &str = "/.burrow/refused";
/// The stand-in's field that carries the problem's code.
pub const REFUSED_FIELD: &str = "x-burrow-refused";

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
    /// The caller's address, read once.
    peer: Option<SocketAddr>,
    gate: Gate,
    /// The start of a head read but not yet complete: the service gets it
    /// once it is whole and checked.
    held: Vec<u8>,
    /// Bytes for the service that did not fit its buffer yet, and how many
    /// of them it has.
    out: Vec<u8>,
    given: usize,
    /// A head was refused: the stand-in is the last the service reads.
    refused: bool,
}

impl CallerIo {
    /// Wraps an accepted connection (for TLS, once its handshake is done;
    /// `tls::wire` has set `TCP_NODELAY`).
    pub fn new(tcp: Wire) -> Self {
        CallerIo {
            peer: tcp_of(&tcp).peer_addr().ok(),
            tcp,
            gate: Gate::default(),
            held: Vec::new(),
            out: Vec::new(),
            given: 0,
            refused: false,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Keeps the caller's address as text with the connection's data (the
    /// HTTP service's connect hook), for [`CallerIp::of`].
    pub fn remember_ip(&self, data: &mut actix_http::Extensions) {
        if let Some(peer) = self.peer {
            data.insert(CallerIp(peer.ip().to_string().into()));
        }
    }

    /// Moves what is waiting in `out` into `buf`; `true` if any moved.
    fn give(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let waiting = &self.out[self.given..];
        let n = waiting.len().min(buf.remaining());
        buf.put_slice(&waiting[..n]);
        self.given += n;
        if self.given == self.out.len() {
            self.out.clear();
            self.given = 0;
        }
        n > 0
    }

    /// Puts the stand-in for a refused head in the service's way; nothing
    /// read after it is given to the service.
    fn refuse(&mut self, problem: HeadProblem) {
        let stand_in = format!(
            "{REFUSED_METHOD} {REFUSED_PATH} HTTP/1.1\r\nhost: refused.invalid\r\n\
             {REFUSED_FIELD}: {}\r\n\r\n",
            problem.code()
        );
        self.out.extend_from_slice(stand_in.as_bytes());
        self.held = Vec::new();
        self.refused = true;
    }

    /// Shows the gate the held head with the bytes just read after it
    /// (`new`), when they may have completed it.
    fn hold_more(&mut self, new: &[u8]) {
        let may_end =
            memchr::memchr(b'\n', new).is_some() || self.held.len() + new.len() >= MAX_HEAD;
        self.held.extend_from_slice(new);
        if !may_end {
            return;
        }
        match self.gate.scan(&self.held) {
            Scan::Passed => self.out.append(&mut self.held),
            Scan::Hold(at) => self.out.extend(self.held.drain(..at)),
            Scan::Refuse(at, problem) => {
                self.out.extend_from_slice(&self.held[..at]);
                self.refuse(problem);
            }
        }
    }

    /// Shows the gate `buf`'s bytes from `before` on, as read, and keeps
    /// in `buf` only those that may pass now.
    fn pass(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        if !self.held.is_empty() {
            self.hold_more(&buf.filled()[before..]);
            buf.set_filled(before);
            self.give(buf);
            return;
        }
        match self.gate.scan(&buf.filled()[before..]) {
            Scan::Passed => {}
            Scan::Hold(at) => {
                self.held.extend_from_slice(&buf.filled()[before + at..]);
                buf.set_filled(before + at);
            }
            Scan::Refuse(at, problem) => {
                buf.set_filled(before + at);
                self.refuse(problem);
                self.give(buf);
            }
        }
    }
}

/// A caller's IP address as text, made once per connection: every request
/// forwarded names it (`X-Forwarded-For`), and formatting it each time was
/// a measurable part of each request (docs/PERFORMANCE.md, "Counted
/// again").
pub struct CallerIp(Box<str>);

impl CallerIp {
    /// The text of `req`'s caller's address: kept with its connection, or
    /// made now (a request that came another way, as in tests).
    pub fn of(req: &actix_web::HttpRequest) -> Option<std::borrow::Cow<'_, str>> {
        match req.conn_data::<CallerIp>() {
            Some(ip) => Some(std::borrow::Cow::Borrowed(&*ip.0)),
            None => req.peer_addr().map(|a| a.ip().to_string().into()),
        }
    }
}

impl AsyncRead for CallerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 || this.give(buf) {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.refused {
                // The connection closes after the stand-in's answer.
                return Poll::Pending;
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                // The end: a head still held was never complete.
                return Poll::Ready(Ok(()));
            }
            this.pass(buf, before);
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for CallerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
