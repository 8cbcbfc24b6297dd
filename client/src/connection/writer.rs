//! The connection's writer: common's connection writer over awc's sink.

use actix_http::ws::Item;
use awc::ws;
use burrow_common::{
    connection::writer::{SinkClosed, WsOut, WsSink},
    fragments::Piece,
};
use futures_util::{stream::SplitSink, SinkExt};

use super::Ws;

/// The sending half of awc's WebSocket. Frames are fed as they come and
/// flushed once per round, so a burst shares its system calls.
pub(super) struct Socket(pub(super) SplitSink<Ws, ws::Message>);

impl WsSink for Socket {
    async fn send(&mut self, out: WsOut) -> Result<(), SinkClosed> {
        let msg = match out {
            WsOut::Binary(bytes) => ws::Message::Binary(bytes),
            WsOut::Fragment(piece) => ws::Message::Continuation(item(piece)),
            WsOut::Ping(payload) => ws::Message::Ping(payload),
            WsOut::Pong(payload) => ws::Message::Pong(payload),
        };
        self.0.feed(msg).await.map_err(|_| SinkClosed)
    }

    async fn flush(&mut self) -> Result<(), SinkClosed> {
        self.0.flush().await.map_err(|_| SinkClosed)
    }

    async fn close(mut self, close: Option<(u16, String)>) {
        if let Some((code, reason)) = close {
            let reason = ws::CloseReason {
                code: code.into(),
                description: Some(reason),
            };
            if self.0.send(ws::Message::Close(Some(reason))).await.is_err() {
                return;
            }
        }
        let _ = self.0.close().await;
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
