//! A session's writer: common's connection writer over actix-ws's session,
//! with a deadline once the session has stopped.

use std::time::Duration;

use actix_ws::{CloseReason, Item};
use burrow_common::{
    connection::writer::{write_loop as write_frames, SinkClosed, WsOut, WsSink},
    fragments::Piece,
    outbox::Pending,
};
use futures_util::future::{select, Either};
use tokio::sync::oneshot;

/// How long the writer may go on once its session has stopped, to send
/// what was queued before the close and the close itself. A client that
/// stopped reading does not keep the connection open longer.
const FLUSH_AFTER_STOP: Duration = Duration::from_secs(5);

/// Writes what `rx` delivers to `ws` (see common's `write_loop`). Once
/// `stopped` fires (the session ended), it has [`FLUSH_AFTER_STOP`] to
/// finish.
pub(super) async fn write_loop(ws: actix_ws::Session, rx: Pending, stopped: oneshot::Receiver<()>) {
    let writing = std::pin::pin!(write_frames(Socket(ws), rx));
    if let Either::Right((_, writing)) = select(writing, stopped).await {
        let _ = tokio::time::timeout(FLUSH_AFTER_STOP, writing).await;
    }
}

/// actix-ws's session as the writer's socket. Each frame is handed to the
/// response stream as it is sent: there is nothing to flush.
struct Socket(actix_ws::Session);

impl WsSink for Socket {
    async fn send(&mut self, out: WsOut) -> Result<(), SinkClosed> {
        let ws = &mut self.0;
        let sent = match out {
            WsOut::Binary(bytes) => ws.binary(bytes).await,
            WsOut::Fragment(piece) => ws.continuation(item(piece)).await,
            WsOut::Ping(payload) => ws.ping(&payload).await,
            WsOut::Pong(payload) => ws.pong(&payload).await,
        };
        sent.map_err(|actix_ws::Closed| SinkClosed)
    }

    async fn flush(&mut self) -> Result<(), SinkClosed> {
        Ok(())
    }

    async fn close(self, close: Option<(u16, String)>) {
        if let Some((code, reason)) = close {
            let reason = CloseReason {
                code: code.into(),
                description: Some(reason),
            };
            let _ = self.0.close(Some(reason)).await;
        }
    }
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
