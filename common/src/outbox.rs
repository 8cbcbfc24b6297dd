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
    frame::{DecodeError, EncodeError, Frame},
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
    /// A `Data` frame kept as its stream and payload. The writer sends its
    /// header and its payload as the two fragments of one binary message, so
    /// a large payload is never copied into a frame buffer on the way.
    Data {
        /// The stream the payload belongs to.
        stream: u32,
        /// The body bytes, as the source produced them.
        payload: Bytes,
    },
}

impl Outgoing {
    /// The frame this entry carries.
    pub fn decode(self) -> Result<Frame, DecodeError> {
        match self {
            Outgoing::Frame(bytes) => Frame::decode(bytes),
            Outgoing::Data { stream, payload } => Ok(Frame::Data {
                stream,
                data: payload,
            }),
        }
    }
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

    /// Queues `payload` as a `Data` frame on `stream`, without copying it
    /// (see [`Outgoing::Data`]). At most [`MAX_DATA_PAYLOAD`] bytes.
    ///
    /// [`MAX_DATA_PAYLOAD`]: crate::protocol::MAX_DATA_PAYLOAD
    pub fn send_data(&self, stream: u32, payload: Bytes) -> Result<(), SendError> {
        if payload.len() > crate::protocol::MAX_DATA_PAYLOAD {
            return Err(EncodeError::DataTooLarge(payload.len()).into());
        }
        self.tx
            .send(Outgoing::Data { stream, payload })
            .map_err(|_| SendError::Closed)
    }

    /// `true` once the writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
