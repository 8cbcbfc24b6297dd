//! One request's dealings with the local connection it goes out on: the
//! `date` line to leave out, the interim answers of a request that expects
//! `100-continue`, and whether the connection had carried a request before.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use burrow_common::{headers::find, protocol::RequestHead};
use bytes::Buf;
use tokio::{io::ReadBuf, time::Sleep};

use super::{Conn, LocalIo, EXCHANGE};
use crate::date_cut::DateCut;

/// How long a request with `Expect: 100-continue` waits for the local
/// service's `100 Continue` before its body is sent anyway (as curl and
/// Go's HTTP client wait).
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);
/// The `100 Continue` the client library is given.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Largest interim response head taken out of the stream.
const MAX_INTERIM_HEAD: usize = 8 * 1024;

/// One request's dealings with the local connection it is sent on.
#[derive(Default)]
pub struct Exchange {
    pub(super) expect: bool,
    pub(super) conn: RefCell<Option<Rc<Conn>>>,
    /// The `date` line the client library adds, to leave out.
    pub(super) date: DateCut,
    /// Where the answer stands, for a request that expects `100-continue`.
    pub(super) interim: Cell<Interim>,
    /// The end of the wait for the service's `100 Continue`.
    pub(super) deadline: RefCell<Option<Pin<Box<Sleep>>>>,
    /// The service's final answer has started.
    pub(super) final_started: Cell<bool>,
    /// The connection it went out on had carried an earlier request (it
    /// was a kept-alive one).
    pub(super) reused: Cell<bool>,
}

/// A request's progress through the interim answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Interim {
    /// Waiting for the service's `100 Continue`.
    #[default]
    Waiting,
    /// `CONTINUE[n..]` is still to be given to the client library.
    Giving(usize),
    /// The client library has its `100 Continue`.
    Given,
}

impl Exchange {
    /// An exchange for the request of `head`; `expect` when it asks for
    /// `100-continue` (and has a body).
    pub fn new(head: &RequestHead, expect: bool) -> Rc<Self> {
        let strip_date = find(&head.headers, b"date").is_none();
        Rc::new(Exchange {
            date: DateCut::new(strip_date, head.end_stream),
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

    /// Whether a chunked answer read on this exchange's connection was cut
    /// short: the service closed the connection before the last chunk.
    /// (The client library ends such a body as if it were whole.) An
    /// answer with trailer fields after its last chunk, on a connection
    /// the service then closes, looks cut short too: rare enough.
    pub fn cut_short(&self) -> bool {
        self.conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.ended.get() && &c.tail.get() != b"0\r\n\r\n")
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

    pub(super) fn attach(&self, conn: &Rc<Conn>) {
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
    pub(super) fn take_interim(&self, conn: &Conn) {
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
    pub(super) fn poll_continue(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<()> {
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
