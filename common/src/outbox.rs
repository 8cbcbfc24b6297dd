//! The queue of encoded frames waiting for a connection's WebSocket writer.
//!
//! Producers (the session, request handlers, body pumps) push frames without
//! waiting; one writer task per connection drains the queue into the socket.
//! The queue itself is unbounded, but what can be in it is bounded: body bytes
//! only enter it against flow-control credit (at most one window per stream),
//! and control frames are a handful per stream.

use bytes::Bytes;
use thiserror::Error;

use crate::{
    frame::{EncodeError, Frame},
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

/// Sending half of a connection's frame queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: Sender<Bytes>,
}

impl Outbox {
    /// A new queue and the receiver its writer task drains.
    pub fn new() -> (Outbox, Receiver<Bytes>) {
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
        self.tx.send(bytes).map_err(|_| SendError::Closed)
    }

    /// `true` once the writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
