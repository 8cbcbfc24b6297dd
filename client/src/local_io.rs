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
//!   sends its own, or after [`EXPECT_WAIT`] without an answer, as clients
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
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use crate::{
    date_cut::{DateCut, Step},
    local_tls::LocalStream,
};
use actix_rt::net::{ActixStream, Ready};
use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

tokio::task_local! {
    static EXCHANGE: Rc<Exchange>;
}

/// How long a request with `Expect: 100-continue` waits for the local
/// service's `100 Continue` before its body is sent anyway (as curl and
/// Go's HTTP client wait).
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);
/// The `100 Continue` the client library is given.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Largest interim response head taken out of the stream.
const MAX_INTERIM_HEAD: usize = 8 * 1024;
/// Most bytes read ahead of the client library.
const MAX_AHEAD: usize = 64 * 1024;

/// One request's dealings with the local connection it is sent on.
#[derive(Default)]
pub struct Exchange {
    expect: bool,
    conn: RefCell<Option<Rc<Conn>>>,
    /// The `date` line the client library adds, to leave out.
    date: DateCut,
    /// Where the answer stands, for a request that expects `100-continue`.
    interim: Cell<Interim>,
    /// The end of the wait for the service's `100 Continue`.
    deadline: RefCell<Option<Pin<Box<Sleep>>>>,
    /// The service's final answer has started.
    final_started: Cell<bool>,
    /// The connection it went out on had carried an earlier request (it
    /// was a kept-alive one).
    reused: Cell<bool>,
}

/// A request's progress through the interim answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Interim {
    /// Waiting for the service's `100 Continue`.
    #[default]
    Waiting,
    /// `CONTINUE[n..]` is still to be given to the client library.
    Giving(usize),
    /// The client library has its `100 Continue`.
    Given,
}

impl Exchange {
    /// An exchange for a request; `strip_date` when the caller sent no
    /// `date`, `expect` when the request asks for `100-continue`.
    pub fn new(strip_date: bool, expect: bool) -> Rc<Self> {
        Rc::new(Exchange {
            date: DateCut::new(strip_date),
            expect,
            ..Exchange::default()
        })
    }

    /// Runs `fut` (the request's whole exchange) with `this` as the
    /// exchange its local connection serves.
    pub fn scope<F: Future>(this: Rc<Self>, fut: F) -> impl Future<Output = F::Output> {
        EXCHANGE.scope(this, fut)
    }

    /// The connection, when the local service answered before it had the
    /// whole request: read the answer from it.
    pub fn early_answer(&self) -> Option<LocalIo> {
        let conn = self.conn.borrow().clone()?;
        let waiting = !conn.ahead.borrow().is_empty();
        waiting.then_some(LocalIo(conn))
    }

    /// Whether the request went out on a kept-alive connection that had
    /// carried an earlier request, and the service has sent nothing since:
    /// the service closed that connection as the request was sent (or had
    /// closed it just before), so the request cannot have been answered.
    pub fn stale(&self) -> bool {
        let conn = self.conn.borrow();
        let silent = |c: &Rc<Conn>| !c.heard.get() && c.ahead.borrow().is_empty();
        self.reused.get() && conn.as_ref().is_some_and(silent)
    }

    /// Whether the request asks for `100-continue`.
    pub fn expects(&self) -> bool {
        self.expect
    }

    /// Looks at what the service sent while the request is being written:
    /// `true` when its final answer has started and it wants no more of
    /// the request: it closed the connection, or (`refused`) a write to it
    /// failed. A service that answers while it still reads (an echo) is
    /// let to read on.
    pub fn poll_answer(&self, cx: &mut Context<'_>, refused: bool) -> bool {
        let Some(conn) = self.conn.borrow().clone() else {
            return false;
        };
        conn.fill(cx);
        self.take_interim(&conn);
        let answered = !conn.ahead.borrow().is_empty() && self.final_started.get();
        answered && (refused || conn.ended.get())
    }

    fn attach(&self, conn: &Rc<Conn>) {
        let mut slot = self.conn.borrow_mut();
        if !slot.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *slot = Some(conn.clone());
            conn.expecting.set(self.expect);
            // The first write of a request: what the connection carried and
            // heard before belongs to earlier requests.
            self.reused.set(conn.carried.replace(true));
            conn.heard.set(false);
        }
    }

    /// Takes interim answers (1xx other than 101) off the front of the kept
    /// bytes, for a request that expects them; a `100` while waiting is
    /// passed on as [`CONTINUE`].
    fn take_interim(&self, conn: &Conn) {
        let mut ahead = conn.ahead.borrow_mut();
        while !self.final_started.get() && !ahead.is_empty() {
            if !self.expect {
                self.final_started.set(true);
                break;
            }
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(&ahead) {
                Ok(httparse::Status::Complete(len))
                    if resp
                        .code
                        .is_some_and(|c| (100..200).contains(&c) && c != 101) =>
                {
                    if resp.code == Some(100) && self.interim.get() == Interim::Waiting {
                        self.interim.set(Interim::Giving(0));
                    }
                    ahead.advance(len);
                }
                Ok(httparse::Status::Partial) if ahead.len() < MAX_INTERIM_HEAD => break,
                // A final answer, or one the client library will reject.
                _ => {
                    self.final_started.set(true);
                    if self.interim.get() == Interim::Waiting {
                        conn.spent.set(true);
                    }
                }
            }
        }
    }

    /// For a request that expects `100-continue` and waits for it: the
    /// next bytes of [`CONTINUE`] once it is due, `Pending` before.
    fn poll_continue(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<()> {
        if self.interim.get() == Interim::Waiting {
            let mut deadline = self.deadline.borrow_mut();
            let sleep = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(EXPECT_WAIT)));
            std::task::ready!(sleep.as_mut().poll(cx));
            self.interim.set(Interim::Giving(0));
        }
        if let Interim::Giving(from) = self.interim.get() {
            let n = buf.remaining().min(CONTINUE.len() - from);
            buf.put_slice(&CONTINUE[from..from + n]);
            let next = from + n;
            let done = next == CONTINUE.len();
            self.interim.set(if done {
                Interim::Given
            } else {
                Interim::Giving(next)
            });
        }
        Poll::Ready(())
    }
}

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
}

impl Conn {
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
        }))
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
        let read = self.read(cx, buf);
        if buf.filled().len() > before {
            self.0.heard.set(true);
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
