//! A request body on its way to the local service. While the HTTP client
//! takes it chunk by chunk, it watches the local connection: an answer
//! given before the body is through, by a service that then closes, ends
//! the upload (the answer is then relayed, see [`crate::local_io`]). For a request that carries
//! `Expect: 100-continue`, the client library asks for the body only once
//! the local service said `100 Continue` (or the wait for it is over): the
//! first ask tells the server to let the caller send.

use std::{
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use burrow_common::flow::BodyError;
use bytes::Bytes;
use futures_util::Stream;
use thiserror::Error;

use crate::local_io::Exchange;

/// Why an upload stopped.
#[derive(Debug, Error)]
pub enum UploadError {
    /// The local service answered before it had the whole body.
    #[error("the local service answered before it had the whole request")]
    Answered,
    /// The caller's body failed.
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// What to do when the local service asks for the body of a request that
/// expects `100-continue` (a forwarded one lets its caller send).
pub type OnContinue = Box<dyn FnOnce()>;

/// A request body watched for the local service's answers.
pub struct Upload<B> {
    body: B,
    exchange: Rc<Exchange>,
    /// Runs at the first ask for the body.
    on_continue: Option<OnContinue>,
}

impl<B> Upload<B> {
    /// `body` for the request of `exchange`; `on_continue` runs at the
    /// client library's first ask for it.
    pub fn new(body: B, exchange: Rc<Exchange>, on_continue: Option<OnContinue>) -> Self {
        Upload {
            body,
            exchange,
            on_continue,
        }
    }
}

impl<B> Stream for Upload<B>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    type Item = Result<Bytes, UploadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(on_continue) = self.on_continue.take() {
            on_continue();
        }
        if self.exchange.poll_answer(cx, false) {
            return Poll::Ready(Some(Err(UploadError::Answered)));
        }
        Pin::new(&mut self.body)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(UploadError::from)))
    }
}
