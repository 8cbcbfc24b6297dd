//! Requests over a raw connection of their own ([`send_raw`]: WebSocket
//! upgrades use it too), and a plain request sent again that way, for the one answer
//! the pooled HTTP client cannot read: a status other than 101 that
//! carries `Upgrade: websocket` (a WebSocket server's 426 to a plain GET).
//! The client's HTTP/1 decoder takes such a head for a switch of protocols
//! and drops its body, so the request is sent again (only when it is safe
//! to repeat) and the answer read as an ordinary response.

use crate::{
    config::TunnelConfig,
    failure::StreamFailure,
    http1::{read_response_head, request_bytes, ResponseStart},
    local_tls::LocalStream,
    transport::Connector,
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
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

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

/// Sends `head` (a request without a body) over a connection of its own;
/// returns the answer's head (the tunnel's response rules applied) and the
/// connection to read its body from.
pub async fn exchange(
    head: &RequestHead,
    tunnel: &TunnelConfig,
    connector: &Connector,
) -> Result<(ResponseStart, ReadHalf<LocalStream>), StreamFailure> {
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
    Ok((start, rd))
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

/// Sends `head` with `headers` over a connection of its own to the local
/// service of `tunnel`; returns the response head and both halves of the
/// connection.
pub(crate) async fn send_raw(
    head: &RequestHead,
    headers: &HeaderList,
    tunnel: &TunnelConfig,
    connector: &Connector,
) -> Result<(ResponseStart, ReadHalf<LocalStream>, WriteHalf<LocalStream>), StreamFailure> {
    let local = tunnel.local.as_str();
    let url = &tunnel.local_url;
    let failed = |what: String| StreamFailure::new(ResetCode::LocalError, what);
    let io = connector.connect(url.origin()).await.map_err(|e| {
        StreamFailure::new(
            ResetCode::LocalUnreachable,
            format!("cannot connect to {local}: {e}"),
        )
    })?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let request = match &tunnel.headers {
        None => request_bytes(&head.method, url.prefix(), &head.uri, headers),
        Some(rules) => {
            let mut headers = headers.clone();
            rules.apply_request_list(&mut headers);
            request_bytes(&head.method, url.prefix(), &head.uri, &headers)
        }
    };
    wr.write_all(&request)
        .await
        .map_err(|e| failed(format!("writing to {local}: {e}")))?;
    let mut start = read_response_head(&mut rd)
        .await
        .map_err(|e| failed(format!("{local}: {e}")))?;
    if let Some(rules) = &tunnel.headers {
        rules.response.apply_list(&mut start.headers);
    }
    Ok((start, rd, wr))
}
