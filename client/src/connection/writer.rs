//! The only writer of a connection's socket.

use actix_http::ws::Item;
use awc::ws;
use burrow_common::{
    batch,
    fragments::Piece,
    outbox::{data_fragments, Control, Outgoing, Pending},
};
use futures_util::SinkExt;

use super::Ws;

/// The only writer of the socket: frames and control frames (pongs) in the
/// order they were queued. Frames are fed as they come and flushed when
/// the queue runs dry, so bursts share system calls.
pub(super) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, ws::Message>,
    mut frames: Pending,
) {
    let mut packed = Vec::new();
    let mut messages = Vec::new();
    // Everything queued goes out together; small frames share a message
    // (see `batch`).
    while let Some(first) = frames.recv().await {
        batch::pack(std::iter::once(first).chain(frames.take_all()), &mut packed);
        for out in packed.drain(..) {
            match out {
                Outgoing::Frame(msg) => messages.push(ws::Message::Binary(msg)),
                Outgoing::Data { stream, pieces } => messages.extend(
                    data_fragments(stream, pieces).map(|p| ws::Message::Continuation(item(p))),
                ),
                Outgoing::Control(control) => messages.push(message(control)),
            }
        }
        for msg in messages.drain(..) {
            let last = matches!(msg, ws::Message::Close(_));
            if sink.feed(msg).await.is_err() {
                return;
            }
            if last {
                let _ = sink.flush().await;
                return;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
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

/// The WebSocket message for a control frame.
fn message(control: Control) -> ws::Message {
    match control {
        Control::Ping(payload) => ws::Message::Ping(payload),
        Control::Pong(payload) => ws::Message::Pong(payload),
        Control::Close { code, reason } => ws::Message::Close(Some(ws::CloseReason {
            code: code.into(),
            description: Some(reason),
        })),
    }
}
