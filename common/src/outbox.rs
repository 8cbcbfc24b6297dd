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
//! large `Data` entries queued and not yet taken by the writer hold room
//! ([`DATA_QUEUE_LIMIT`] at most, about what keeps a socket busy): a pump
//! takes room ([`Outbox::data_room`]) before queueing one, and a head or a
//! small frame waits behind that much at most. Room is handed out first
//! come, first served (a fair semaphore), and a pump asks for one frame's
//! worth a turn (see `flow::pump`), so streams that all have bytes to send
//! take the connection in turn, a frame each: woken all at once, the one
//! that ran first would take every frame's worth of room.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    fragments::Piece,
    frame::{data_header, EncodeError, Frame},
    queue::{queue, Receiver, Sender},
};

/// Most bytes of large `Data` entries a connection's queue holds before
/// pumps wait: eight full frames, a few milliseconds of a fast link.
pub const DATA_QUEUE_LIMIT: usize = 512 * 1024;

/// Most bytes a tunnel's socket holds that the kernel has not sent yet
/// (`TCP_NOTSENT_LOWAT`). Without a bound the kernel takes as much as its
/// send buffer grows to, megabytes on a long path, and a small answer
/// queued behind a download waits for all of it to leave: a round trip
/// more at the tail. Bounded, those bytes wait in the queue instead, where
/// a head or a small frame passes them. This is a few milliseconds of a
/// fast link's sending, enough that a busy writer keeps the socket fed.
///
/// The client bounds its tunnel socket, which carries downloads, once the
/// path is found long; on a short one the bound saves little and costs a
/// fast download more wake-ups. The server's stays unbounded: there the
/// bound kept a fast upload's bytes in the server's memory instead, 8-10
/// MiB more at its peak, for little less wait (docs/PERFORMANCE.md, "No
/// bufferbloat").
pub const SOCKET_UNSENT: u32 = 128 * 1024;

/// Bounds the unsent bytes of the tunnel socket `socket` to
/// [`SOCKET_UNSENT`]. Where the system has no such bound the socket keeps
/// its default; an error leaves it so too (the tunnel works either way).
pub fn keep_unsent_low(socket: &impl std::os::fd::AsFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(socket).set_tcp_notsent_lowat(SOCKET_UNSENT);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

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
    /// Room for large `Data` bytes: taken by pumps, given back as the
    /// writer takes their entries; closed once the writer is gone.
    room: Arc<Semaphore>,
}

/// Room in a connection's queue for one large `Data` entry, taken in turn
/// (see the module's documentation); given back if not used.
#[derive(Debug)]
pub struct DataRoom<'a>(SemaphorePermit<'a>);

impl Outbox {
    /// A new queue and the receiving end its writer task drains.
    pub fn new() -> (Outbox, Pending) {
        let (tx, rx) = queue();
        let room = Arc::new(Semaphore::new(DATA_QUEUE_LIMIT));
        let pending = Pending {
            rx,
            room: Arc::clone(&room),
        };
        (Outbox { tx, room }, pending)
    }

    /// Waits for room for a large `Data` entry of `len` bytes (at most
    /// [`MAX_DATA_PAYLOAD`]), after the pumps that asked before.
    ///
    /// [`MAX_DATA_PAYLOAD`]: crate::protocol::MAX_DATA_PAYLOAD
    pub async fn data_room(&self, len: usize) -> Result<DataRoom<'_>, SendError> {
        let len = len.min(crate::protocol::MAX_DATA_PAYLOAD) as u32;
        match self.room.acquire_many(len).await {
            Ok(permit) => Ok(DataRoom(permit)),
            Err(_) => Err(SendError::Closed),
        }
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
    /// (see [`Outgoing::Data`]), in `room` taken for them (at least as many
    /// bytes as they hold; more is given back).
    pub fn send_data(
        &self,
        stream: u32,
        pieces: Vec<Bytes>,
        room: DataRoom<'_>,
    ) -> Result<(), SendError> {
        let DataRoom(mut room) = room;
        let len: usize = pieces.iter().map(Bytes::len).sum();
        if len > room.num_permits() {
            return Err(EncodeError::DataTooLarge(len).into());
        }
        // What the pieces do not fill goes back at once.
        drop(room.split(room.num_permits() - len));
        self.tx
            .send(Outgoing::Data { stream, pieces })
            .map_err(|_| SendError::Closed)?;
        // Held by the entry now: the writer gives it back as it takes it.
        room.forget();
        Ok(())
    }
}

/// The writer's end of a connection's frame queue: what it takes leaves
/// the count of queued `Data` bytes.
pub struct Pending {
    rx: Receiver<Outgoing>,
    room: Arc<Semaphore>,
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
            self.room.add_permits(pieces.iter().map(Bytes::len).sum());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Pumps waiting for room learn that the tunnel is closed.
        self.room.close();
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("room", &self.room.available_permits())
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

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_tunnel_socket_keeps_few_unsent_bytes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let lowat = || socket2::SockRef::from(&socket).tcp_notsent_lowat().unwrap();
        assert_eq!(lowat(), 0, "the system's default");
        keep_unsent_low(&socket);
        assert_eq!(lowat(), SOCKET_UNSENT);
    }

    #[tokio::test]
    async fn room_for_data_goes_in_turn_and_ends_with_the_writer() {
        use futures_util::FutureExt;
        let (outbox, mut pending) = Outbox::new();
        let frame = 64 * 1024;
        let piece = || vec![Bytes::from(vec![0u8; frame])];
        for _ in 0..DATA_QUEUE_LIMIT / frame {
            let room = outbox.data_room(frame).now_or_never().expect("room");
            outbox.send_data(1, piece(), room.unwrap()).unwrap();
        }
        // Full. Heads and control frames are never held back.
        outbox.send(&Frame::End { stream: 2 }).unwrap();
        let mut first = Box::pin(outbox.data_room(frame));
        let mut second = Box::pin(outbox.data_room(frame));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        // The writer takes an entry: the first to ask gets the room, and
        // asking again puts it behind the second.
        assert!(matches!(pending.recv().await, Some(Outgoing::Data { .. })));
        let room = (&mut first).now_or_never().expect("first served").unwrap();
        outbox.send_data(1, piece(), room).unwrap();
        let mut again = Box::pin(outbox.data_room(frame));
        assert!(matches!(pending.recv().await, Some(Outgoing::Data { .. })));
        assert!((&mut again).now_or_never().is_none(), "its turn is later");
        let room = (&mut second).now_or_never().expect("in turn").unwrap();
        // Room not filled goes back: half a frame here.
        let half = vec![Bytes::from(vec![0u8; frame / 2])];
        outbox.send_data(3, half, room).unwrap();
        assert!(matches!(pending.recv().await, Some(Outgoing::Data { .. })));
        assert!((&mut again).now_or_never().is_some(), "half and half");
        // The writer going away frees a waiting pump with the news.
        pending.take_all();
        while let Some(room) = outbox.data_room(frame).now_or_never() {
            outbox.send_data(1, piece(), room.unwrap()).unwrap();
        }
        let waiting = outbox.data_room(frame);
        drop(pending);
        assert_eq!(waiting.await.map(|_| ()), Err(SendError::Closed));
    }
}
