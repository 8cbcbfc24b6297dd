//! Why a stream ended early: the `Reset` the server turns into the
//! caller's status, made by the local leg ([`crate::local`]) and the way
//! back ([`crate::reply`]) alike.

use awc::error::{ConnectError, SendRequestError};
use burrow_common::ResetCode;

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
