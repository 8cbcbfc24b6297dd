//! The connection to a local service as the pooled HTTP client sees it.
//!
//! The HTTP client writes a whole request before it reads the answer, and
//! writes a `date` field of its own into every request head. A proxy may do
//! neither, so its connections pass through [`LocalIo`], which:
//!
//! - drops the `date` line the client library appended, when the caller
//!   sent none (the library writes it last, right before the blank line);
//! - notices an answer that a service gives before it has the whole
//!   request and then closes (a service refusing an upload without reading
//!   it), keeps its bytes, and fails the write, so that the answer can be
//!   relayed from the kept bytes ([`Exchange::early_answer`]); a service
//!   that answers while it reads on (an echo) is let to read on;
//! - for a request that carries `Expect: 100-continue` (for which the
//!   client library sends the head and waits for an answer before the
//!   body), gives the library one `100 Continue`: when the local service
//!   sends its own, or after `exchange::EXPECT_WAIT` without an answer, as clients
//!   wait for a server that ignores the expectation. Other interim answers
//!   are taken out of the stream. A service that answers for good before
//!   asking for the body leaves its connection unfit for the next request
//!   (it may still wait for that body), so it is not used again.
//!
//! A connection also knows whether it carried a request before the one
//! being written and whether the service has sent a byte since, so that a
//! request lost on a kept-alive connection the service closed under it can
//! be told apart ([`Exchange::stale`], see [`crate::retry`]).
//!
//! Which request a connection is serving is known from the task-local
//! [`Exchange`] that [`Exchange::scope`] sets around each forwarded
//! request: the pooled client drives a connection inside the task of the
//! request using it.

use std::{
    cell::{Cell, RefCell},
    fmt,
    io::{self, IoSlice},
    pin::Pin,
    rc::{Rc, Weak},
    task::{Context, Poll},
};

mod exchange;

pub use exchange::Exchange;
use exchange::Interim;

use crate::{
    date_cut::Step,
    local_tls::{tcp_of, LocalStream},
};
use actix_rt::net::{ActixStream, Ready};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

tokio::task_local! {
    static EXCHANGE: Rc<Exchange>;
}

/// Most bytes read ahead of the client library.
const MAX_AHEAD: usize = 64 * 1024;

/// One connection to a local service and the bytes read from it ahead of
/// the client library.
pub struct Conn {
    tcp: RefCell<LocalStream>,
    ahead: RefCell<BytesMut>,
    /// The service closed its side (or the connection failed).
    ended: Cell<bool>,
    /// Not to be used for another request.
    spent: Cell<bool>,
    /// A write failed (the service refused the rest of the request).
    refused: Cell<Option<io::ErrorKind>>,
    /// The request it serves waits for interim answers (reads then go
    /// through [`Exchange::take_interim`]).
    expecting: Cell<bool>,
    /// A request has been written on it (it is kept alive once that one
    /// is answered).
    carried: Cell<bool>,
    /// The service has sent bytes since the request now being sent began.
    heard: Cell<bool>,
    /// The last bytes the client library was given: a chunked answer that
    /// ended whole ends with its last chunk, `0\r\n\r\n`.
    tail: Cell<[u8; 5]>,
}

impl Conn {
    /// Keeps the last bytes of `new` (read by the client library) in `tail`.
    fn saw(&self, new: &[u8]) {
        let mut tail = self.tail.get();
        match new.len() {
            n @ 5.. => tail.copy_from_slice(&new[n - 5..]),
            n => {
                tail.rotate_left(n);
                tail[5 - n..].copy_from_slice(new);
            }
        }
        self.tail.set(tail);
    }

    /// Whether this connection may serve `exchange`'s request: any, unless
    /// it is spent, and then only the request that spent it.
    fn is_serving(&self, exchange: &Rc<Exchange>) -> bool {
        !self.spent.get()
            || exchange
                .conn
                .borrow()
                .as_ref()
                .is_some_and(|c| std::ptr::eq(Rc::as_ptr(c), self))
    }

    /// Reads whatever the service has sent into the kept bytes, without
    /// waiting; the read interest stays registered with `cx`.
    fn fill(&self, cx: &mut Context<'_>) {
        let mut stream = self.tcp.borrow_mut();
        let mut ahead = self.ahead.borrow_mut();
        if let LocalStream::Plain(tcp) = &*stream {
            while ahead.len() < MAX_AHEAD && !self.ended.get() && tcp.poll_read_ready(cx).is_ready()
            {
                ahead.reserve(4096);
                match tcp.try_read_buf(&mut *ahead) {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The end, or an error: the client library meets it on
                    // its next read.
                    _ => self.ended.set(true),
                }
            }
            return;
        }
        // Over TLS, what is readable is what the session decrypts.
        let mut chunk = [0u8; 4096];
        while ahead.len() < MAX_AHEAD && !self.ended.get() {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    ahead.extend_from_slice(buf.filled())
                }
                Poll::Ready(_) => self.ended.set(true),
                Poll::Pending => break,
            }
        }
    }
}

/// A local connection as the pooled HTTP client's IO.
pub struct LocalIo(Rc<Conn>);

impl LocalIo {
    /// Wraps a new connection.
    pub fn new(tcp: LocalStream) -> Self {
        LocalIo(Rc::new(Conn {
            tcp: RefCell::new(tcp),
            ahead: RefCell::new(BytesMut::new()),
            ended: Cell::new(false),
            spent: Cell::new(false),
            refused: Cell::new(None),
            expecting: Cell::new(false),
            carried: Cell::new(false),
            heard: Cell::new(false),
            tail: Cell::new([0; 5]),
        }))
    }

    /// A handle on this connection's socket.
    pub fn socket(&self) -> SocketHandle {
        SocketHandle(Rc::downgrade(&self.0))
    }
}

/// A connection's socket, for a setting chosen after it opened (the
/// tunnel's, once its path is measured). It holds nothing open: once the
/// connection is gone, it reaches nothing.
#[derive(Debug, Clone, Default)]
pub struct SocketHandle(Weak<Conn>);

impl SocketHandle {
    /// Bounds the socket's unsent bytes (see
    /// [`burrow_common::outbox::keep_unsent_low`]), while it is open.
    pub fn keep_unsent_low(&self) {
        let Some(conn) = self.0.upgrade() else { return };
        if let Ok(stream) = conn.tcp.try_borrow() {
            burrow_common::outbox::keep_unsent_low(tcp_of(&stream));
        };
    }
}

impl fmt::Debug for LocalIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LocalIo")
            .field(&*self.0.tcp.borrow())
            .finish()
    }
}

fn current() -> Option<Rc<Exchange>> {
    EXCHANGE.try_with(Rc::clone).ok()
}

impl AsyncRead for LocalIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let read = self.read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let new = &buf.filled()[before..];
            match new.is_empty() {
                true if room => self.0.ended.set(true),
                true => {}
                false => {
                    self.0.heard.set(true);
                    self.0.saw(new);
                }
            }
        }
        read
    }
}

impl LocalIo {
    /// What [`AsyncRead::poll_read`] gives the client library.
    fn read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let conn = &self.0;
        let plain = !conn.spent.get() && !conn.expecting.get() && conn.ahead.borrow().is_empty();
        if plain {
            return Pin::new(&mut *conn.tcp.borrow_mut()).poll_read(cx, buf);
        }
        let exchange = current();
        if conn.spent.get() && !exchange.as_ref().is_some_and(|x| conn.is_serving(x)) {
            // Another request's look at a spent connection: it has ended.
            return Poll::Ready(Ok(()));
        }
        if let Some(x) = exchange.filter(|x| x.expect && !x.final_started.get()) {
            conn.fill(cx);
            x.take_interim(conn);
            conn.expecting.set(!x.final_started.get());
            if !x.final_started.get() && !conn.ended.get() {
                if x.interim.get() != Interim::Given {
                    return x.poll_continue(cx, buf).map(Ok);
                }
                // The final answer is still to come.
                return Poll::Pending;
            }
        }
        let mut ahead = conn.ahead.borrow_mut();
        if ahead.is_empty() {
            drop(ahead);
            return Pin::new(&mut *conn.tcp.borrow_mut()).poll_read(cx, buf);
        }
        let n = ahead.len().min(buf.remaining());
        buf.put_slice(&ahead[..n]);
        ahead.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LocalIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let conn = &self.0;
        let exchange = current();
        if let Some(kind) = conn.refused.get() {
            return answered_instead(exchange.as_deref(), conn, cx, Poll::Ready(Err(kind.into())));
        }
        let step = match &exchange {
            Some(x) => {
                x.attach(conn);
                x.date.plan(buf)
            }
            None => Step::Write,
        };
        let (at, len) = match step {
            Step::Write => (buf.len(), 0),
            Step::Cut(at, len) => (at, len),
        };
        let parts = [IoSlice::new(&buf[..at]), IoSlice::new(&buf[at + len..])];
        let written = Pin::new(&mut *conn.tcp.borrow_mut()).poll_write_vectored(cx, &parts);
        match written {
            Poll::Ready(Ok(n)) => {
                // Once the bytes before the line are out, the line is taken.
                let dropped = len > 0 && n >= at;
                let taken = if dropped { n + len } else { n };
                if let Some(x) = &exchange {
                    x.date.took(taken, dropped);
                }
                Poll::Ready(Ok(taken))
            }
            // A service that answers without reading stops taking bytes (or
            // closes): look for its answer before reporting.
            other => answered_instead(exchange.as_deref(), conn, cx, other),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.tcp.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.tcp.borrow_mut()).poll_shutdown(cx)
    }
}

/// `otherwise`, unless the service's final answer has started: then an
/// error that ends the client library's attempt. A write the service
/// refused is reported only once its connection has been read to the end:
/// the answer may be on its way still (the reactor may not have seen it).
fn answered_instead(
    exchange: Option<&Exchange>,
    conn: &Conn,
    cx: &mut Context<'_>,
    otherwise: Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    let Some(x) = exchange else {
        return otherwise;
    };
    let refused = matches!(otherwise, Poll::Ready(Err(_)));
    if x.poll_answer(cx, refused) {
        return Poll::Ready(Err(io::Error::other(
            "the local service answered before it had the whole request",
        )));
    }
    match otherwise {
        Poll::Ready(Err(e)) if !conn.ended.get() => {
            // The read interest is registered: the end (or the answer)
            // wakes this task.
            conn.refused.set(Some(e.kind()));
            Poll::Pending
        }
        other => other,
    }
}

impl ActixStream for LocalIo {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        if !self.0.ahead.borrow().is_empty() {
            return Poll::Ready(Ok(Ready::READABLE));
        }
        ActixStream::poll_read_ready(crate::local_tls::tcp_of(&self.0.tcp.borrow()), cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(crate::local_tls::tcp_of(&self.0.tcp.borrow()), cx)
    }
}
