//! The queue of frames waiting for a connection's WebSocket writer.
//!
//! Producers (the session, request handlers, body pumps) push frames without
//! waiting; one writer task per connection drains the queue into the socket.
//! The queue itself is unbounded, but what can be in it is bounded: body bytes
//! only enter it against flow-control credit (at most one window per stream),
//! and control frames are a handful per stream.
//!
//! A window sized for a long path lets one stream queue megabytes, and a
//! head queued behind them waits for all of them to reach the socket: the
//! small request beside a download would take several round trips. So the
//! large `Data` entries queued and not yet taken by the writer are counted
//! ([`DATA_QUEUE_LIMIT`] at most, about what keeps a socket busy): a pump
//! waits for room ([`Outbox::data_room`]) before queueing more, and a head
//! or a small frame waits behind that much at most.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Notify;

use crate::{
    fragments::Piece,
    frame::{data_header, EncodeError, Frame},
    queue::{queue, Receiver, Sender},
};

/// Most bytes of large `Data` entries a connection's queue holds before
/// pumps wait: eight full frames, a few milliseconds of a fast link.
pub const DATA_QUEUE_LIMIT: usize = 512 * 1024;

/// Why a frame could not be queued.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// The connection's writer is gone: the tunnel is closed.
    #[error("tunnel connection closed")]
    Closed,
    /// The frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One entry of a connection's frame queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// An encoded frame: a binary message of its own, or part of a batch.
    Frame(Bytes),
    /// A `Data` frame kept as its stream and the pieces of its payload. The
    /// writer sends the header, then each piece, as the fragments of one
    /// binary message: a large payload is never copied into a frame buffer.
    Data {
        /// The stream the payload belongs to.
        stream: u32,
        /// The body bytes, as the source produced them.
        pieces: Vec<Bytes>,
    },
    /// A WebSocket control frame, sent in its turn after what was queued
    /// before it.
    Control(Control),
}

/// A WebSocket control frame for a connection's writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// A ping with this payload.
    Ping(Bytes),
    /// The answer to a peer's ping.
    Pong(Bytes),
    /// The close handshake, with its code (RFC 6455, 7.4) and reason; the
    /// writer sends nothing after it.
    Close {
        /// The close code.
        code: u16,
        /// Why, in words.
        reason: String,
    },
}

#[cfg(test)]
impl Outgoing {
    /// The frame this entry carries (a `Data` entry's pieces joined).
    pub(crate) fn decode(self) -> Result<Frame, crate::DecodeError> {
        match self {
            Outgoing::Frame(bytes) => Frame::decode(bytes),
            Outgoing::Data { stream, pieces } => Ok(Frame::Data {
                stream,
                data: pieces.concat().into(),
            }),
            Outgoing::Control(c) => panic!("a control frame, not a protocol frame: {c:?}"),
        }
    }
}

/// The WebSocket fragments that carry a `Data` entry, in sending order: the
/// frame's header, then each piece of its payload, the final one marked.
pub fn data_fragments(stream: u32, mut pieces: Vec<Bytes>) -> impl Iterator<Item = Piece> {
    if pieces.is_empty() {
        pieces.push(Bytes::new());
    }
    let last = pieces.len() - 1;
    std::iter::once(Piece::FirstBinary(data_header(stream))).chain(
        pieces
            .into_iter()
            .enumerate()
            .map(move |(i, piece)| match i == last {
                true => Piece::Last(piece),
                false => Piece::Continue(piece),
            }),
    )
}

/// Sending half of a connection's frame queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: Sender<Outgoing>,
    data: Arc<DataQueued>,
}

/// The large `Data` bytes in a queue, and the pumps waiting for room.
#[derive(Debug, Default)]
struct DataQueued {
    bytes: AtomicUsize,
    /// The writer is gone: nobody will make room.
    closed: AtomicBool,
    room: Notify,
}

impl DataQueued {
    fn taken(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        if before > DATA_QUEUE_LIMIT && before - n <= DATA_QUEUE_LIMIT {
            self.room.notify_waiters();
        }
    }
}

impl Outbox {
    /// A new queue and the receiving end its writer task drains.
    pub fn new() -> (Outbox, Pending) {
        let (tx, rx) = queue();
        let data = Arc::new(DataQueued::default());
        let pending = Pending {
            rx,
            data: Arc::clone(&data),
        };
        (Outbox { tx, data }, pending)
    }

    /// Waits until the queue has room for more large `Data` entries (see
    /// the module's documentation); at once when it has.
    pub async fn data_room(&self) {
        loop {
            if self.has_room() {
                return;
            }
            let notified = self.data.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the second look, so a wake-up between the
            // look and the wait is not lost.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    fn has_room(&self) -> bool {
        self.data.bytes.load(Ordering::Acquire) <= DATA_QUEUE_LIMIT
            || self.data.closed.load(Ordering::Acquire)
    }

    /// Encodes and queues a frame.
    pub fn send(&self, frame: &Frame) -> Result<(), SendError> {
        let bytes = frame.encode()?;
        self.send_encoded(bytes)
    }

    /// Queues an already encoded frame.
    pub fn send_encoded(&self, bytes: Bytes) -> Result<(), SendError> {
        self.tx
            .send(Outgoing::Frame(bytes))
            .map_err(|_| SendError::Closed)
    }

    /// Queues a WebSocket control frame behind everything queued so far.
    pub fn send_control(&self, control: Control) -> Result<(), SendError> {
        self.tx
            .send(Outgoing::Control(control))
            .map_err(|_| SendError::Closed)
    }

    /// Queues `pieces` as one `Data` frame on `stream`, without copying them
    /// (see [`Outgoing::Data`]). At most [`MAX_DATA_PAYLOAD`] bytes in all.
    ///
    /// [`MAX_DATA_PAYLOAD`]: crate::protocol::MAX_DATA_PAYLOAD
    pub fn send_data(&self, stream: u32, pieces: Vec<Bytes>) -> Result<(), SendError> {
        let len = pieces.iter().map(Bytes::len).sum();
        if len > crate::protocol::MAX_DATA_PAYLOAD {
            return Err(EncodeError::DataTooLarge(len).into());
        }
        self.data.bytes.fetch_add(len, Ordering::AcqRel);
        self.tx
            .send(Outgoing::Data { stream, pieces })
            .map_err(|_| {
                self.data.taken(len);
                SendError::Closed
            })
    }
}

/// The writer's end of a connection's frame queue: what it takes leaves
/// the count of queued `Data` bytes.
pub struct Pending {
    rx: Receiver<Outgoing>,
    data: Arc<DataQueued>,
}

impl Pending {
    /// The next entry, waiting for one; `None` once every `Outbox` is gone.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let next = self.rx.recv().await;
        self.taken(next.as_ref());
        next
    }

    /// The next entry if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let next = self.rx.try_recv();
        self.taken(next.as_ref());
        next
    }

    /// Everything queued now.
    pub fn take_all(&mut self) -> VecDeque<Outgoing> {
        let all = self.rx.take_all();
        all.iter().for_each(|o| self.taken(Some(o)));
        all
    }

    fn taken(&self, entry: Option<&Outgoing>) {
        if let Some(Outgoing::Data { pieces, .. }) = entry {
            self.data.taken(pieces.iter().map(Bytes::len).sum());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.data.closed.store(true, Ordering::Release);
        self.data.room.notify_waiters();
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragments::{Fragments, Reassembled};

    #[test]
    fn data_fragments_reach_the_receiver_as_the_pieces_sent() {
        let pieces = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")];
        let mut f = Fragments::default();
        let mut got = Vec::new();
        for item in data_fragments(4, pieces.clone()) {
            got.extend(f.push(item).unwrap());
        }
        let expect: Vec<Reassembled> = pieces
            .into_iter()
            .map(|data| Reassembled::Data(Frame::Data { stream: 4, data }))
            .collect();
        assert_eq!(got, expect);
        // No pieces: still one whole message, carrying nothing.
        let empty: Vec<Piece> = data_fragments(4, Vec::new()).collect();
        assert_eq!(empty.len(), 2);
        assert!(matches!(&empty[1], Piece::Last(b) if b.is_empty()));
    }

    #[tokio::test]
    async fn pumps_wait_while_the_queue_holds_its_limit_of_data() {
        use futures_util::FutureExt;
        let (outbox, mut pending) = Outbox::new();
        let piece = || vec![Bytes::from(vec![0u8; 64 * 1024])];
        for _ in 0..DATA_QUEUE_LIMIT / (64 * 1024) {
            outbox.send_data(1, piece()).unwrap();
        }
        // At the limit: room still.
        assert!(outbox.data_room().now_or_never().is_some());
        outbox.send_data(1, piece()).unwrap();
        // Heads and control frames are never held back.
        outbox.send(&Frame::End { stream: 2 }).unwrap();
        let mut waiting = Box::pin(outbox.data_room());
        assert!((&mut waiting).now_or_never().is_none());
        // The writer takes one entry: room, and the waiting pump is woken.
        assert!(matches!(pending.recv().await, Some(Outgoing::Data { .. })));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken");
        // Everything taken, then more than the limit again: the writer
        // going away frees a waiting pump too.
        pending.take_all();
        for _ in 0..=DATA_QUEUE_LIMIT / (64 * 1024) {
            outbox.send_data(1, piece()).unwrap();
        }
        let waiting = outbox.data_room();
        drop(pending);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("freed when the writer is gone");
    }
}
