//! WebSocket upgrades: the local connection is a plain byte stream on which
//! the caller's handshake is written as it came (an HTTP client library
//! would replace `Sec-WebSocket-Key`), and after a 101 the bytes of both
//! directions are relayed as they are, under the stream's flow control.
//! Any other answer is an ordinary response with its body.

use crate::local_tls::LocalStream;
use burrow_common::{
    flow::RecvBody,
    headers::{find, strip_hop_by_hop, strip_hop_by_hop_for_upgrade},
    http1::{parse_content_length, status_has_no_body},
    protocol::{HeaderList, RequestHead, ResponseHead},
    ResetCode,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::{
    config::TunnelConfig,
    http1::{dechunk, limit, read_response_head, read_stream, request_bytes, ResponseStart},
    observe::Trace,
    reply::{Reply, StreamFailure},
    transport::Connector,
};

/// Performs the caller's upgrade against the local service of `tunnel`
/// and, after a 101, relays bytes until either side closes.
pub async fn relay(
    head: RequestHead,
    caller: RecvBody,
    tunnel: &TunnelConfig,
    connector: &Connector,
    reply: Reply<'_>,
    trace: &mut Trace,
) -> Result<(), StreamFailure> {
    let local = tunnel.local.as_str();
    let (start, rd, wr) = send_raw(&head, &head.headers, tunnel, connector).await?;
    trace.response_head(start.status, start.fields(), None);
    let sent = if start.status == 101 {
        switch(start, caller, rd, wr, local, reply).await?
    } else {
        drop(caller);
        refusal(start, rd, local, reply).await?
    };
    trace.response_bytes(sent);
    Ok(())
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

/// After a 101: relays the upgraded connection both ways. The local side
/// closing ends the stream; the caller closing only ends its direction, and
/// the local service answers with its close.
async fn switch(
    mut start: ResponseStart,
    caller: RecvBody,
    rd: impl AsyncRead + Unpin,
    mut wr: impl AsyncWrite + Unpin,
    local: &str,
    reply: Reply<'_>,
) -> Result<u64, StreamFailure> {
    strip_hop_by_hop_for_upgrade(&mut start.headers);
    reply.send_head(ResponseHead {
        status: start.status,
        headers: start.headers,
        end_stream: false,
        body: None,
    })?;
    let to_local = async move {
        let mut caller = std::pin::pin!(caller);
        while let Some(Ok(bytes)) = caller.next().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The caller closed its side (or left): pass the close on.
        let _ = wr.shutdown().await;
    };
    let from_local = reply.pump_local(read_stream(start.rest, rd), local);
    let mut from_local = std::pin::pin!(from_local);
    let mut to_local = std::pin::pin!(to_local);
    tokio::select! {
        r = &mut from_local => r,
        _ = &mut to_local => from_local.await,
    }
}

/// A refusal (403, 404, 426...): an ordinary response with a body, framed
/// by Content-Length, by chunked encoding, or by the connection closing.
pub(crate) async fn refusal(
    mut start: ResponseStart,
    rd: impl AsyncRead + Unpin,
    local: &str,
    reply: Reply<'_>,
) -> Result<u64, StreamFailure> {
    let chunked = find(&start.headers, b"transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"));
    strip_hop_by_hop(&mut start.headers);
    let length = find(&start.headers, b"content-length").and_then(|v| parse_content_length(v));
    let end_stream = length == Some(0) || status_has_no_body(start.status);
    reply.send_head(ResponseHead {
        status: start.status,
        headers: start.headers,
        end_stream,
        body: None,
    })?;
    if end_stream {
        return Ok(0);
    }
    let body = read_stream(start.rest, rd);
    if chunked {
        reply.pump_local(dechunk(body), local).await
    } else if let Some(n) = length {
        reply.pump_local(limit(body, n), local).await
    } else {
        reply.pump_local(body, local).await
    }
}
