//! The way back to the server for one stream's answer, shared by plain
//! requests ([`crate::forward`]) and WebSocket upgrades ([`crate::upgrade`]).

use std::{cell::Cell, rc::Rc};

use burrow_common::{
    flow::{pump_body, PumpError, SendCredit},
    frame::{encode_response_head_from, encoded_response_fields},
    protocol::{ResponseHead, MAX_INLINE_BODY},
    Frame, Outbox, ResetCode,
};

pub use crate::failure::StreamFailure;
use crate::{
    local::Answer,
    observe::{Fields, Trace},
    upload::OnContinue,
};

/// Whether a stream's response head has been queued. The connection resets
/// streams still unanswered after the local timeout on a periodic sweep, so
/// a request costs no timer of its own.
#[derive(Clone, Debug, Default)]
pub struct Answered(Rc<Cell<bool>>);

impl Answered {
    /// Records that the head is queued (or about to be).
    pub fn set(&self) {
        self.0.set(true);
    }

    /// `true` once the head is queued.
    pub fn get(&self) -> bool {
        self.0.get()
    }
}

/// Where one stream's answer goes: the stream, the connection's frame
/// queue, the stream's send credit and its answered flag.
#[derive(Clone, Copy)]
pub struct Reply<'a> {
    /// The stream.
    pub id: u32,
    /// The connection's frame queue.
    pub outbox: &'a Outbox,
    /// The stream's credit for body bytes.
    pub credit: &'a SendCredit,
    /// Set once the response head is queued.
    pub answered: &'a Answered,
}

impl Reply<'_> {
    /// Queues the response head.
    pub fn send_head(self, head: ResponseHead) -> Result<(), StreamFailure> {
        self.answered.set();
        self.outbox
            .send(&Frame::ResponseHead {
                stream: self.id,
                head,
            })
            .map_err(head_failure)
    }

    /// Queues an already encoded response head.
    pub fn send_encoded_head(self, frame: bytes::Bytes) -> Result<(), StreamFailure> {
        self.answered.set();
        self.outbox.send_encoded(frame).map_err(head_failure)
    }

    /// Sends what the local service at `local` produces as the body. The
    /// server going away ends it quietly; the local side failing is a
    /// [`StreamFailure`]. Returns the bytes sent.
    pub async fn pump_local<E: std::fmt::Display>(
        self,
        body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
        local: &str,
    ) -> Result<u64, StreamFailure> {
        match pump_body(self.id, body, self.credit, self.outbox).await {
            Ok(sent) => Ok(sent),
            Err(PumpError::StreamClosed) | Err(PumpError::TunnelClosed) => Ok(0),
            Err(PumpError::Source(e)) => Err(StreamFailure::new(
                ResetCode::LocalError,
                format!("reading from {local} failed: {e}"),
            )),
        }
    }

    /// Sends the local service's `answer` back: its head, then its body
    /// under the stream's credit. A small body of known length travels
    /// inside the head, one frame for the whole answer (waiting for it
    /// holds at most [`MAX_INLINE_BODY`] bytes).
    pub async fn answer(
        self,
        mut answer: Answer,
        local: &str,
        trace: &mut Trace,
    ) -> Result<(), StreamFailure> {
        let mut end_stream = answer.ends_here();
        let mut inline = None;
        if let Some(len) = answer
            .length()
            .filter(|n| !end_stream && *n <= MAX_INLINE_BODY as u64)
        {
            inline = answer.read_whole(len as usize, local).await?;
            end_stream = inline.is_some();
        }
        let status = answer.status();
        // Encoded straight from the answer's fields: no intermediate list.
        let frame = encode_response_head_from(
            self.id,
            status,
            answer.fields(),
            end_stream,
            inline.as_deref(),
        )
        .map_err(head_failure)?;
        // Kept as encoded, one copy, rather than a second walk of the
        // answer's header map.
        let inline_len = inline.as_ref().map_or(0, |b| b.len());
        let fields = trace
            .keeps_headers()
            .then(|| Fields::encoded(encoded_response_fields(&frame, inline_len)));
        self.send_encoded_head(frame)?;
        if end_stream {
            // The whole answer is queued: the connection's writer, woken by
            // it, sends it before this task records the exchange and lets
            // go of the local connection, so neither delays the caller.
            writer_first().await;
        }
        trace.response_head(status, fields, inline.as_deref());
        if end_stream {
            return Ok(());
        }
        let sent = self
            .pump_local(trace.tap_response(answer.body()), local)
            .await?;
        trace.response_bytes(sent);
        Ok(())
    }

    /// What lets the caller send the body of a request that expects
    /// `100-continue`, once the local service asked for it: a `100` head.
    pub fn on_continue(self) -> OnContinue {
        let (stream, outbox) = (self.id, self.outbox.clone());
        Box::new(move || {
            let head = ResponseHead {
                status: 100,
                headers: Vec::new(),
                end_stream: false,
                body: None,
            };
            let _ = outbox.send(&Frame::ResponseHead { stream, head });
        })
    }

    /// Resets the stream with `failure`'s code and reason.
    pub fn reset(self, failure: StreamFailure) {
        let _ = self.outbox.send(&Frame::Reset {
            stream: self.id,
            code: failure.code,
            reason: failure.reason,
        });
    }
}

/// Lets the tasks already woken on this thread run, among them the
/// connection's writer when a frame was just queued, then goes on.
///
/// Not `tokio::task::yield_now`: that one defers the wake-up to the
/// runtime's next look at its sockets, a system call more per request.
/// Waking itself puts this task behind those already in the queue.
async fn writer_first() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// A response head that could not be queued or encoded.
pub fn head_failure(e: impl std::fmt::Display) -> StreamFailure {
    StreamFailure::new(
        ResetCode::LocalError,
        format!("cannot send the response head: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use tokio::{sync::Notify, task::LocalSet};

    use super::writer_first;

    #[tokio::test]
    async fn a_task_woken_before_goes_first() {
        let set = LocalSet::new();
        let (woken, wrote) = (Rc::new(Notify::new()), Rc::new(Cell::new(false)));
        let writer = {
            let (woken, wrote) = (woken.clone(), wrote.clone());
            set.spawn_local(async move {
                woken.notified().await;
                wrote.set(true);
            })
        };
        let seen = set
            .run_until(async move {
                // The writer waits; a frame queued wakes it.
                tokio::task::yield_now().await;
                woken.notify_one();
                let before = wrote.get();
                writer_first().await;
                (before, wrote.get())
            })
            .await;
        assert_eq!(seen, (false, true));
        writer.await.expect("the writer ran");
    }
}
