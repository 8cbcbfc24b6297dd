//! A request lost on a stale kept-alive connection: the local service
//! closed a connection the pooled client kept (it restarted, or closed it
//! as idle) just as the request was written on it, so no answer can come.
//! The pooled client checks a connection before reusing it, but the close
//! may cross the request on the wire.
//!
//! Such a request is sent once more, on a new connection, when that is
//! safe: its method is idempotent and it has no body (a body is streamed
//! from the caller as it arrives and cannot be sent again). Any other
//! request ends with a 502 that says why it was not sent again.
//!
//! Which requests were lost this way is told by the connection itself
//! ([`Exchange::stale`]: it had carried an earlier request and the service
//! sent nothing since this one began), not by the client library's error
//! alone: the library reports the same "connection closed before a
//! response" for a new connection the service closed unanswered, and a
//! request on a new connection was not a victim of the race, so sending it
//! again would only repeat it. Requests that succeed pay nothing for it:
//! two flags per connection, set as it is written and read, and the
//! request is rebuilt from its head only after a failure.

use std::{future::Future, pin::Pin};

use awc::{
    error::{ConnectError, SendRequestError},
    http::Method,
    ClientRequest, ClientResponse,
};
use burrow_common::{protocol::RequestHead, ResetCode};

use crate::{
    failure::{local_failure, StreamFailure},
    local_io::Exchange,
};

/// What the local service did, in the words of the caller's 502.
const STALE: &str = "closed a kept-alive connection as the request was sent";

/// `true` when `e` is the loss of a request on a stale kept-alive
/// connection: the connection ended, or a write or read on it failed,
/// before any byte of an answer. Failures to connect, time limits and
/// failures after the answer began are not.
pub fn lost_on_stale(exchange: &Exchange, e: &SendRequestError) -> bool {
    let lost = matches!(
        e,
        SendRequestError::Connect(ConnectError::Disconnected)
            | SendRequestError::Send(_)
            | SendRequestError::Response(_)
    );
    lost && exchange.stale()
}

/// Sends `head`, lost on a stale connection to the local service at
/// `local`, once more: the request `build` makes, on the client for
/// retries. Or, when it may not be sent again, the failure that says why.
///
/// The retry is sent as an exchange of its own, since the first attempt's
/// is spent (its `date` cut, its connection). `force_close`: its connection
/// carries this request only and never goes back to that client's pool,
/// so that every retry is on a new connection, never on another kept-alive
/// one that may be stale too.
pub fn send_again<'a>(
    head: &'a RequestHead,
    local: &'a str,
    build: impl FnOnce() -> Result<ClientRequest, StreamFailure> + 'a,
) -> Pin<Box<impl Future<Output = Result<ClientResponse, StreamFailure>> + 'a>> {
    // Boxed: retries are rare, and their state would otherwise widen the
    // future of every request (which awaits this one in place).
    Box::pin(async move {
        if let Some(why) = not_repeatable(&head.method, !head.end_stream) {
            let reason = format!("{local} {STALE}; {why}");
            return Err(StreamFailure::new(ResetCode::LocalError, reason));
        }
        log::debug!("{} {}: {local} {STALE}; sent again", head.method, head.uri);
        let exchange = Exchange::new(head, false);
        let sending = build()?.force_close().send_body(awc::body::None::new());
        Exchange::scope(exchange, sending)
            .await
            .map_err(|e| match e {
                // A service that is now down is unreachable, as for any request.
                SendRequestError::Connect(ref c) if !matches!(c, ConnectError::Disconnected) => {
                    local_failure(local, e)
                }
                e => StreamFailure::new(
                    ResetCode::LocalError,
                    format!(
                        "{local} {STALE}, and sent again on a new connection it failed too: {e}"
                    ),
                ),
            })
    })
}

/// Why a request with `method` (`has_body` when a body came with it)
/// may not be sent again; `None` when it may.
fn not_repeatable(method: &str, has_body: bool) -> Option<String> {
    let idempotent = Method::from_bytes(method.as_bytes()).is_ok_and(|m| {
        matches!(
            m,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
    });
    if !idempotent {
        Some(format!(
            "{method} is not retried because it may not be idempotent"
        ))
    } else if has_body {
        Some(format!(
            "a {method} with a body is not retried because the body cannot be sent again"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_requests_without_a_body_are_repeatable() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert_eq!(not_repeatable(method, false), None, "{method}");
        }
    }

    #[test]
    fn other_methods_and_bodies_are_not() {
        for method in ["POST", "PATCH", "CONNECT"] {
            let why = not_repeatable(method, false).unwrap_or_default();
            assert!(why.starts_with(method), "{why}");
        }
        let why = not_repeatable("PUT", true).unwrap_or_default();
        assert!(why.contains("body"), "{why}");
    }
}
