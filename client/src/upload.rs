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

use burrow_common::{flow::BodyError, protocol::ResponseHead, Frame, Outbox};
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

/// A request body watched for the local service's answers.
pub struct Upload<B> {
    body: B,
    exchange: Rc<Exchange>,
    /// The stream and its connection's frame queue, while the caller still
    /// waits for `100 Continue`.
    to_continue: Option<(u32, Outbox)>,
}

impl<B> Upload<B> {
    /// `body` for the request of `exchange`; `expect` (the stream and the
    /// connection's frame queue) when the caller waits for `100 Continue`.
    pub fn new(body: B, exchange: Rc<Exchange>, expect: Option<(u32, Outbox)>) -> Self {
        Upload {
            body,
            exchange,
            to_continue: expect,
        }
    }
}

impl<B> Stream for Upload<B>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    type Item = Result<Bytes, UploadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some((stream, outbox)) = self.to_continue.take() {
            let head = ResponseHead {
                status: 100,
                headers: Vec::new(),
                end_stream: false,
                body: None,
            };
            let _ = outbox.send(&Frame::ResponseHead { stream, head });
        }
        if self.exchange.poll_answer(cx, false) {
            return Poll::Ready(Some(Err(UploadError::Answered)));
        }
        Pin::new(&mut self.body)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(UploadError::from)))
    }
}
