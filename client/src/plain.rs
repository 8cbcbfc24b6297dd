//! A plain request sent again over a raw connection, for the one answer
//! the pooled HTTP client cannot read: a status other than 101 that
//! carries `Upgrade: websocket` (a WebSocket server's 426 to a plain GET).
//! The client's HTTP/1 decoder takes such a head for a switch of protocols
//! and drops its body, so the request is sent again (only when it is safe
//! to repeat) and the answer read as an ordinary response.

use crate::{
    config::TunnelConfig,
    observe::Trace,
    reply::{Reply, StreamFailure},
    transport::Connector,
    upgrade::{refusal, send_raw},
};
use awc::{
    http::{header, Method},
    ClientResponse,
};
use burrow_common::{
    http1::parse_content_length,
    protocol::{HeaderList, RequestHead},
    ResetCode,
};
use bytes::Bytes;

/// `true` when `resp` is an answer whose body the pooled client withheld.
pub fn body_withheld(resp: &ClientResponse) -> bool {
    if resp.status().as_u16() == 101 {
        return false;
    }
    let upgrade = resp.headers().get(header::UPGRADE);
    if !upgrade.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        return false;
    }
    let headers = resp.headers();
    let sized = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_content_length(v.as_bytes()))
        .is_some_and(|n| n > 0);
    sized || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Sends `head` (a request without a body) over a connection of its own and
/// relays the answer; returns the body bytes sent.
pub async fn exchange(
    head: &RequestHead,
    tunnel: &TunnelConfig,
    connector: &Connector,
    reply: Reply<'_>,
    trace: &mut Trace,
) -> Result<u64, StreamFailure> {
    let local = tunnel.local.as_str();
    let method = Method::from_bytes(head.method.as_bytes()).ok();
    if !head.end_stream || !method.is_some_and(|m| m.is_safe()) {
        return Err(StreamFailure::new(
            ResetCode::LocalError,
            format!("{local} answered with `Upgrade: websocket` but no switch of protocols"),
        ));
    }
    let (start, rd, _wr) = send_raw(head, &with_close(&head.headers), tunnel, connector).await?;
    if start.status == 101 {
        return Err(StreamFailure::new(
            ResetCode::LocalError,
            format!("{local} switched protocols unasked"),
        ));
    }
    trace.response_head(start.status, start.fields(), None);
    refusal(start, rd, local, reply).await
}

/// `headers` with `connection: close`: the connection is this request's
/// alone, and its end marks the end of a body sent without a length.
fn with_close(headers: &HeaderList) -> HeaderList {
    let mut out: HeaderList = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(b"connection"))
        .cloned()
        .collect();
    out.push((
        Bytes::from_static(b"connection"),
        Bytes::from_static(b"close"),
    ));
    out
}
