//! The way back to the server for one stream's answer, shared by plain
//! requests ([`crate::forward`]) and WebSocket upgrades ([`crate::upgrade`]).

use std::{cell::Cell, rc::Rc};

use awc::error::{ConnectError, SendRequestError};
use burrow_common::{
    flow::{pump_body, PumpError, SendCredit},
    protocol::ResponseHead,
    Frame, Outbox, ResetCode,
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

/// A stream ending early: the `Reset` sent to the server, which turns it
/// into the caller's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    /// The reset code.
    pub code: ResetCode,
    /// What went wrong, for the server's error page and logs.
    pub reason: String,
}

impl StreamFailure {
    /// A failure with `code` and `reason`.
    pub fn new(code: ResetCode, reason: impl Into<String>) -> Self {
        StreamFailure {
            code,
            reason: reason.into(),
        }
    }
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

    /// Resets the stream with `failure`'s code and reason.
    pub fn reset(self, failure: StreamFailure) {
        let _ = self.outbox.send(&Frame::Reset {
            stream: self.id,
            code: failure.code,
            reason: failure.reason,
        });
    }
}

/// A response head that could not be queued or encoded.
pub fn head_failure(e: impl std::fmt::Display) -> StreamFailure {
    StreamFailure::new(
        ResetCode::LocalError,
        format!("cannot send the response head: {e}"),
    )
}

/// A request to the local service at `local` that the pooled HTTP client
/// could not send, or that got no answer.
pub fn local_failure(local: &str, e: SendRequestError) -> StreamFailure {
    match e {
        // The client library's name for a connection that ended before
        // the answer's head.
        SendRequestError::Connect(ConnectError::Disconnected) => StreamFailure::new(
            ResetCode::LocalError,
            format!("{local} closed the connection without answering"),
        ),
        SendRequestError::Connect(e) => StreamFailure::new(
            ResetCode::LocalUnreachable,
            format!("cannot connect to {local}: {e}"),
        ),
        SendRequestError::Url(e) => {
            StreamFailure::new(ResetCode::BadRequest, format!("invalid URL: {e}"))
        }
        SendRequestError::Body(e) => {
            StreamFailure::new(ResetCode::Cancel, format!("request body ended early: {e}"))
        }
        other => StreamFailure::new(
            ResetCode::LocalError,
            format!("request to {local} failed: {other}"),
        ),
    }
}
