//! The queue of frames waiting for a connection's WebSocket writer.
//!
//! Producers (the session, request handlers, body pumps) push frames without
//! waiting; one writer task per connection drains the queue into the socket.
//! The queue itself is unbounded, but what can be in it is bounded: body bytes
//! only enter it against flow-control credit (at most one window per stream),
//! and control frames are a handful per stream.

use bytes::Bytes;
use thiserror::Error;

use crate::{
    fragments::Piece,
    frame::{data_header, EncodeError, Frame},
    queue::{queue, Receiver, Sender},
};

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
}

impl Outbox {
    /// A new queue and the receiver its writer task drains.
    pub fn new() -> (Outbox, Receiver<Outgoing>) {
        let (tx, rx) = queue();
        (Outbox { tx }, rx)
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
        self.tx
            .send(Outgoing::Data { stream, pieces })
            .map_err(|_| SendError::Closed)
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
}
