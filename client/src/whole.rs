//! A local answer's body checked for being whole: the pooled HTTP client
//! ends a body quietly when the service closes its connection early (short
//! of its `Content-Length`, or before the last chunk), and such a body must
//! reach the caller cut, not ended.

use std::{
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use awc::http::header::{HeaderMap, TRANSFER_ENCODING};
use bytes::Bytes;
use futures_util::Stream;

use crate::local_io::Exchange;

/// How the local answer's body is framed, to tell an answer the service
/// cut short (the client library ends such a body quietly) from a whole
/// one, so that the caller's answer is cut too instead of ending cleanly.
pub(crate) struct Framing {
    length: Option<u64>,
    chunked: bool,
}

impl Framing {
    /// The framing `headers` give a body whose `length` was read from them.
    pub(crate) fn of(headers: &HeaderMap, length: Option<u64>) -> Self {
        let chunked = headers
            .get(TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        Framing { length, chunked }
    }

    /// Why a body that ended after `sent` bytes is not whole, if it is
    /// not; `cut` when a chunked one ended without its last chunk.
    fn short(&self, sent: u64, cut: bool) -> Option<String> {
        match self.length {
            Some(len) if sent < len => Some(format!(
                "the connection closed after {sent} of its {len} bytes"
            )),
            _ if cut && self.chunked => {
                Some("the connection closed before the last chunk of the answer".into())
            }
            _ => None,
        }
    }
}

/// The local answer's body, ending with an error instead of its end when
/// the service cut it short: the stream is then reset, not ended, and the
/// caller's answer is cut too.
pub(crate) struct Whole<S> {
    body: S,
    framing: Framing,
    /// The exchange whose connection carried the answer.
    exchange: Option<Rc<Exchange>>,
    sent: u64,
    done: bool,
}

impl<S> Whole<S> {
    /// `body`, framed as `framing` says, read on `exchange`'s connection
    /// (`None`: another one, whose end is not checked for its last chunk).
    pub(crate) fn new(body: S, framing: Framing, exchange: Option<Rc<Exchange>>) -> Self {
        Whole {
            body,
            framing,
            exchange,
            sent: 0,
            done: false,
        }
    }
}

impl<S, E> Stream for Whole<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = std::task::ready!(Pin::new(&mut self.body).poll_next(cx));
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.sent += chunk.len() as u64;
                Some(Ok(chunk))
            }
            Some(Err(e)) => Some(Err(e.to_string())),
            None if self.done => None,
            None => {
                self.done = true;
                let cut = self.exchange.as_ref().is_some_and(|x| x.cut_short());
                self.framing.short(self.sent, cut).map(Err)
            }
        })
    }
}
