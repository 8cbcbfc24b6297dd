//! A session's writer: the only task that writes to its WebSocket. Frames,
//! pings, pongs and the close all go through the session's one queue, so
//! they leave in the order they were queued.

use std::time::Duration;

use actix_ws::{CloseReason, Item};
use burrow_common::{
    batch,
    fragments::Piece,
    outbox::{data_fragments, Control, Outgoing, Pending},
};
use bytes::Bytes;
use futures_util::future::{select, Either};
use tokio::sync::oneshot;

/// How long the writer may go on once its session has stopped, to send
/// what was queued before the close and the close itself. A client that
/// stopped reading does not keep the connection open longer.
const FLUSH_AFTER_STOP: Duration = Duration::from_secs(5);

/// One WebSocket frame the writer sends.
enum WsOut {
    Binary(Bytes),
    Fragment(Item),
    Control(Control),
}

/// Writes what `rx` delivers to `ws`, in order, until a close is sent, the
/// socket fails or the queue closes. Once `stopped` fires (the session
/// ended), it has [`FLUSH_AFTER_STOP`] to finish.
pub(super) async fn write_loop(ws: actix_ws::Session, rx: Pending, stopped: oneshot::Receiver<()>) {
    let writing = std::pin::pin!(write_all(ws, rx));
    if let Either::Right((_, writing)) = select(writing, stopped).await {
        let _ = tokio::time::timeout(FLUSH_AFTER_STOP, writing).await;
    }
}

/// The writer's work. Whatever is queued when it wakes goes out together:
/// small frames share a message (see `batch`). Nothing is kept between
/// rounds, so an idle session holds no buffers.
async fn write_all(mut ws: actix_ws::Session, mut rx: Pending) {
    while let Some(first) = rx.recv().await {
        let mut packed = Vec::new();
        batch::pack(std::iter::once(first).chain(rx.take_all()), &mut packed);
        // Boxed: sending holds actix-ws's send futures, several hundred
        // bytes that every idle session would otherwise keep in its writer.
        let round = Box::pin(send_all(&mut ws, ws_messages(packed)));
        match round.await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                let _ = ws.close(Some(reason)).await;
                return;
            }
            Err(actix_ws::Closed) => return,
        }
    }
}

/// Sends `messages` in order, up to a close: the close's reason, which
/// ends the writer; an error means the WebSocket is closed.
async fn send_all(
    ws: &mut actix_ws::Session,
    messages: Vec<WsOut>,
) -> Result<Option<CloseReason>, actix_ws::Closed> {
    for msg in messages {
        match msg {
            WsOut::Binary(bytes) => ws.binary(bytes).await?,
            WsOut::Fragment(item) => ws.continuation(item).await?,
            WsOut::Control(Control::Ping(payload)) => ws.ping(&payload).await?,
            WsOut::Control(Control::Pong(payload)) => ws.pong(&payload).await?,
            WsOut::Control(Control::Close { code, reason }) => {
                return Ok(Some(CloseReason {
                    code: code.into(),
                    description: Some(reason),
                }))
            }
        }
    }
    Ok(None)
}

/// A fragment as the WebSocket library takes it.
fn item(piece: Piece) -> Item {
    match piece {
        Piece::FirstBinary(b) => Item::FirstBinary(b),
        Piece::FirstText(b) => Item::FirstText(b),
        Piece::Continue(b) => Item::Continue(b),
        Piece::Last(b) => Item::Last(b),
    }
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
                out.extend(data_fragments(stream, pieces).map(|p| WsOut::Fragment(item(p))));
            }
            Outgoing::Control(control) => out.push(WsOut::Control(control)),
        }
    }
    out
}
