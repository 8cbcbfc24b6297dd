//! A connection's writer: the only task that writes to its WebSocket.
//! Frames, pings, pongs and the close all come through the connection's
//! one queue, so they leave in the order they were queued.

use std::future::Future;

use bytes::Bytes;

use crate::{
    batch,
    fragments::Piece,
    outbox::{data_fragments, Control, Outgoing, Pending},
};

/// One WebSocket frame for the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    /// A whole binary message.
    Binary(Bytes),
    /// One fragment of a binary message.
    Fragment(Piece),
    /// A ping with this payload.
    Ping(Bytes),
    /// The answer to the peer's ping.
    Pong(Bytes),
}

/// The socket went away while the writer was sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkClosed;

/// The sending half of a connection's WebSocket, as each end's library
/// offers it.
pub trait WsSink {
    /// Sends one frame, or hands it to the library's buffer.
    fn send(&mut self, out: WsOut) -> impl Future<Output = Result<(), SinkClosed>>;
    /// Writes what the library buffered.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkClosed>>;
    /// Ends the socket: with the close handshake's code and reason when one
    /// was queued, or quietly when the queue ended without one.
    fn close(self, close: Option<(u16, String)>) -> impl Future<Output = ()>;
}

/// Writes what `rx` delivers to `sink`, in order, until a close is sent,
/// the socket fails or the queue ends. Whatever is queued when the writer
/// wakes goes out together: small frames share a message (see `batch`),
/// and one flush ends the round. Nothing is kept between rounds, so an
/// idle connection holds no buffers.
pub async fn write_loop<S: WsSink>(mut sink: S, mut rx: Pending) {
    while let Some(first) = rx.recv().await {
        let mut packed = Vec::new();
        batch::pack(std::iter::once(first).chain(rx.take_all()), &mut packed);
        // Boxed: a round holds the library's send futures, several hundred
        // bytes that every idle connection's writer would otherwise keep.
        let round = Box::pin(send_round(&mut sink, ws_frames(packed)));
        match round.await {
            Ok(None) => {}
            Ok(Some(close)) => return sink.close(Some(close)).await,
            Err(SinkClosed) => return,
        }
    }
    sink.close(None).await;
}

/// Sends `frames` in order and flushes, up to a close: the close's code and
/// reason, which end the writer.
async fn send_round<S: WsSink>(
    sink: &mut S,
    frames: Vec<Result<WsOut, (u16, String)>>,
) -> Result<Option<(u16, String)>, SinkClosed> {
    for frame in frames {
        match frame {
            Ok(out) => sink.send(out).await?,
            Err(close) => {
                sink.flush().await?;
                return Ok(Some(close));
            }
        }
    }
    sink.flush().await?;
    Ok(None)
}

/// The WebSocket frames that carry `packed`, in order (a close as an
/// error, since nothing follows it): a binary message each, except split
/// `Data` frames, which go as their fragments. Built before the writer
/// awaits, so its future stays small.
fn ws_frames(packed: Vec<Outgoing>) -> Vec<Result<WsOut, (u16, String)>> {
    let mut out = Vec::with_capacity(packed.len());
    for entry in packed {
        match entry {
            Outgoing::Frame(bytes) => out.push(Ok(WsOut::Binary(bytes))),
            Outgoing::Data { stream, pieces } => {
                out.extend(data_fragments(stream, pieces).map(|p| Ok(WsOut::Fragment(p))));
            }
            Outgoing::Control(Control::Ping(payload)) => out.push(Ok(WsOut::Ping(payload))),
            Outgoing::Control(Control::Pong(payload)) => out.push(Ok(WsOut::Pong(payload))),
            Outgoing::Control(Control::Close { code, reason }) => out.push(Err((code, reason))),
        }
    }
    out
}
