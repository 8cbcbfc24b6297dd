//! The only writer of a connection's socket.

use awc::ws;
use burrow_common::{
    batch,
    outbox::{data_fragments, Outgoing},
    queue,
};
use futures_util::SinkExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::Ws;

/// The only writer of the socket. Frames are fed as they come and flushed
/// when the queue runs dry, so bursts share system calls.
pub(super) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, ws::Message>,
    mut frames: queue::Receiver<Outgoing>,
    mut control: UnboundedReceiver<ws::Message>,
) {
    let mut packed = Vec::new();
    let mut messages = Vec::new();
    loop {
        tokio::select! {
            biased;
            m = control.recv() => match m {
                Some(m) => messages.push(m),
                None => break,
            },
            f = frames.recv() => match f {
                // Everything queued goes out together; small frames share
                // a message (see `batch`).
                Some(first) => {
                    batch::pack(std::iter::once(first).chain(frames.take_all()), &mut packed);
                    for out in packed.drain(..) {
                        match out {
                            Outgoing::Frame(msg) => messages.push(ws::Message::Binary(msg)),
                            Outgoing::Data { stream, pieces } => messages.extend(
                                data_fragments(stream, pieces).map(ws::Message::Continuation),
                            ),
                        }
                    }
                }
                None => break,
            },
        }
        for msg in messages.drain(..) {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}
