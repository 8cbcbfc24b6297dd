//! A session's writer: the only task that writes to its WebSocket, so
//! frames leave in the order they were queued.

use actix_ws::Item;
use burrow_common::{
    batch,
    outbox::{data_fragments, Outgoing},
    queue::Receiver,
};
use bytes::Bytes;

/// One WebSocket frame the writer sends.
enum WsOut {
    Binary(Bytes),
    Fragment(Item),
}

/// Writes what `rx` delivers to `ws` until either closes. Whatever is
/// queued when the writer wakes goes out together: small frames share a
/// message (see `batch`). Nothing is kept between rounds, so an idle
/// session holds no buffers.
pub(super) async fn write_loop(mut ws: actix_ws::Session, mut rx: Receiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        let mut packed = Vec::new();
        batch::pack(std::iter::once(first).chain(rx.take_all()), &mut packed);
        // Boxed: sending holds actix-ws's send futures, several hundred
        // bytes that every idle session would otherwise keep in its writer.
        let round = Box::pin(send_all(&mut ws, ws_messages(packed)));
        if round.await.is_err() {
            return;
        }
    }
}

/// Sends `messages` in order; an error means the WebSocket is closed.
async fn send_all(
    ws: &mut actix_ws::Session,
    messages: Vec<WsOut>,
) -> Result<(), actix_ws::Closed> {
    for msg in messages {
        match msg {
            WsOut::Binary(bytes) => ws.binary(bytes).await?,
            WsOut::Fragment(item) => ws.continuation(item).await?,
        }
    }
    Ok(())
}

/// The WebSocket frames that carry `packed`, in order: a binary message
/// each, except split `Data` frames, which go as their fragments. Built
/// before the writer awaits, so its future (kept by every session) stays
/// small.
fn ws_messages(packed: Vec<Outgoing>) -> Vec<WsOut> {
    let mut out = Vec::with_capacity(packed.len());
    for entry in packed {
        match entry {
            Outgoing::Frame(bytes) => out.push(WsOut::Binary(bytes)),
            Outgoing::Data { stream, pieces } => {
                out.extend(data_fragments(stream, pieces).map(WsOut::Fragment));
            }
        }
    }
    out
}
