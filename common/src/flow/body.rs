//! A stream's incoming body: the events its connection delivers, and the
//! reader that turns them into a byte stream while handing credit back.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::Stream;
use thiserror::Error;

#[cfg(test)]
use super::window::WindowBudget;
use super::{
    credit::RecvCredit,
    in_flight::InFlightSlot,
    window::{unmeasured, OpenedWindow, ReceiveWindow, WIDE_WINDOW_BUDGET},
};
use crate::{frame::Frame, outbox::Outbox, protocol::ResetCode, queue::Receiver};

/// What the dispatcher of a connection delivers to a stream's reader.
#[derive(Debug)]
pub enum BodyEvent {
    /// The response head (server side; always the first event of a stream
    /// and consumed before the body is read).
    Head(Box<crate::protocol::ResponseHead>),
    /// The local service asked for the request body (an interim `100
    /// Continue`; server side, before the head).
    Continue,
    /// Body bytes.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The peer reset the stream.
    Reset(ResetCode, String),
    /// No response head came within the opener's limit (server side: the
    /// session enforces it and has already reset the stream).
    Expired,
}

/// Why a received body did not complete.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The peer reset the stream.
    #[error("{code}{}{reason}", if reason.is_empty() { "" } else { ": " })]
    Reset {
        /// The reset code received.
        code: ResetCode,
        /// The reset's detail text.
        reason: String,
    },
    /// The tunnel closed before the body was complete.
    #[error("tunnel closed before the body was complete")]
    TunnelClosed,
}

/// Runs a closure when dropped, unless disarmed: how a stream's reader tells
/// its connection that nobody wants the stream any more.
pub struct CancelOnDrop(Option<Box<dyn FnOnce()>>);

impl CancelOnDrop {
    /// Arms `f`.
    pub fn new(f: impl FnOnce() + 'static) -> Self {
        CancelOnDrop(Some(Box::new(f)))
    }

    /// A guard that does nothing.
    pub fn none() -> Self {
        CancelOnDrop(None)
    }

    /// Drops `f` without running it.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A stream's incoming body as a `Stream` of byte chunks. It hands credit
/// back to the peer as chunks are taken from it, and cancels the stream if
/// dropped before the body ended.
pub struct RecvBody {
    stream: u32,
    rx: Receiver<BodyEvent>,
    outbox: Outbox,
    credit: Arc<RecvCredit>,
    window: ReceiveWindow,
    done: bool,
    cancel: CancelOnDrop,
    /// The stream's place among its tunnel's streams in flight, given
    /// back when the body is done with.
    _slot: Option<InFlightSlot>,
}

impl RecvBody {
    /// A body reader for `stream`, fed by `rx`.
    pub fn new(
        stream: u32,
        rx: Receiver<BodyEvent>,
        outbox: Outbox,
        credit: Arc<RecvCredit>,
        cancel: CancelOnDrop,
    ) -> Self {
        RecvBody {
            stream,
            rx,
            outbox,
            credit,
            window: ReceiveWindow::new(&WIDE_WINDOW_BUDGET, unmeasured()),
            done: false,
            cancel,
            _slot: None,
        }
    }

    /// Takes the window made when the stream opened (see
    /// [`OpenedWindow::on`]).
    pub fn with_window(mut self, window: OpenedWindow) -> Self {
        self.window = window.0;
        self
    }

    /// Holds `slot` until this body is dropped.
    pub fn holding(mut self, slot: Option<InFlightSlot>) -> Self {
        self._slot = slot;
        self
    }

    fn consumed(&mut self, n: usize) {
        if let Some(increment) = self.window.consumed(n) {
            self.credit.give(increment);
            // If the tunnel is gone the body ends with an error on the next poll.
            let _ = self.outbox.send(&Frame::Window {
                stream: self.stream,
                increment,
            });
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.cancel.disarm();
    }

    /// Draws this body's widening from `budget` instead of
    /// [`WIDE_WINDOW_BUDGET`].
    #[cfg(test)]
    pub(crate) fn with_budget(mut self, budget: &'static WindowBudget) -> Self {
        self.window = ReceiveWindow::new(budget, unmeasured());
        self
    }
}

impl Stream for RecvBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(BodyEvent::Data(bytes))) => {
                self.consumed(bytes.len());
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(BodyEvent::End)) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(BodyEvent::Head(_) | BodyEvent::Continue)) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset {
                    code: ResetCode::ProtocolError,
                    reason: "a second head inside the body".into(),
                })))
            }
            // Only a stream still waiting for its head expires; should one
            // reach a body, it ends as the cancel it is.
            Poll::Ready(Some(BodyEvent::Expired)) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset {
                    code: ResetCode::Cancel,
                    reason: "no response head in time".into(),
                })))
            }
            Poll::Ready(Some(BodyEvent::Reset(code, reason))) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset { code, reason })))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::TunnelClosed)))
            }
        }
    }
}
