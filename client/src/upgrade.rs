//! WebSocket upgrades: the local connection is a plain byte stream on which
//! the caller's handshake is written as it came (an HTTP client library
//! would replace `Sec-WebSocket-Key`), and after a 101 the bytes of both
//! directions are relayed as they are, under the stream's flow control.
//! Any other answer is an ordinary response with its body.

use burrow_common::{
    flow::RecvBody,
    headers::{find, strip_hop_by_hop_for_upgrade},
    protocol::{RequestHead, ResponseHead},
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::{
    config::TunnelConfig,
    http1::{read_stream, ResponseStart},
    local::Answer,
    observe::{Fields, Trace},
    plain::send_raw,
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
    if start.status != 101 {
        // A refusal (403, 404, 426...): an ordinary answer with a body.
        drop(caller);
        let answer = Answer::raw(start, Box::new(rd), false);
        return reply.answer(answer, local, trace).await;
    }
    let fields = trace
        .keeps_headers()
        .then(|| Fields::copied(start.fields()));
    trace.response_head(start.status, fields, None);
    let websocket =
        find(&head.headers, b"upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    drop(head);
    let watched = websocket.then_some(&*trace);
    let sent = switch(start, caller, rd, wr, local, reply, watched).await?;
    trace.response_bytes(sent);
    Ok(())
}

/// After a 101: relays the upgraded connection both ways. The local side
/// closing ends the stream; the caller closing only ends its direction, and
/// the local service answers with its close. A WebSocket's messages are
/// recorded in `watched`, when given.
async fn switch(
    mut start: ResponseStart,
    caller: RecvBody,
    rd: impl AsyncRead + Unpin,
    mut wr: impl AsyncWrite + Unpin,
    local: &str,
    reply: Reply<'_>,
    watched: Option<&Trace>,
) -> Result<u64, StreamFailure> {
    let idle = Trace::idle();
    let trace = watched.unwrap_or(&idle);
    strip_hop_by_hop_for_upgrade(&mut start.headers);
    reply.send_head(ResponseHead {
        status: start.status,
        headers: start.headers,
        end_stream: false,
        body: None,
    })?;
    let caller = trace.tap_messages(true, caller);
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
    let from_local = trace.tap_messages(false, read_stream(start.rest, rd));
    let from_local = reply.pump_local(from_local, local);
    let mut from_local = std::pin::pin!(from_local);
    let mut to_local = std::pin::pin!(to_local);
    tokio::select! {
        r = &mut from_local => r,
        _ = &mut to_local => from_local.await,
    }
}
