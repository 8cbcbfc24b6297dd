//! The core of one tunnel connection, the same at both ends: what an
//! incoming WebSocket message means ([`Link::receive`]: pings answered,
//! pongs timed, fragments joined, batches split into frames) and the
//! writer that is the only user of the socket's sending half
//! ([`writer::write_loop`]).
//!
//! Each end maps its WebSocket library's types onto [`WsIn`] and
//! [`writer::WsSink`], so nothing here names a library. What the frames
//! mean stays with each end: the server opens streams and awaits their
//! answers, the client forwards them; both keep their streams' windows
//! through [`crate::flow`], on the [`PathState`] the link measures.

pub mod streams;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::{
    batch::{self, Unpacked},
    flow::PathState,
    fragments::{FragmentError, Fragments, Piece, Reassembled},
    outbox::{Control, SendError},
    DecodeError, Frame, Outbox,
};

/// One WebSocket message or control frame as it arrived.
#[derive(Debug)]
pub enum WsIn {
    /// A whole binary message.
    Binary(Bytes),
    /// One fragment of a message.
    Fragment(Piece),
    /// The peer's ping.
    Ping(Bytes),
    /// The answer to a ping.
    Pong(Bytes),
    /// The peer's close, with its reason if it gave one.
    Close(Option<String>),
    /// A text message, which the protocol does not use.
    Text,
}

/// What a received message asks of the end.
#[derive(Debug)]
pub enum Incoming {
    /// Protocol frames to handle in order (none for a control frame or a
    /// fragment that completes nothing).
    Frames(Frames),
    /// The peer closed the connection, for this reason if it gave one.
    Closed(Option<String>),
}

/// Why a message broke the protocol.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// Fragments out of order, too large, or a text message.
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    /// A batch that does not parse.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The frames of one received message: a piece of a `Data` frame's payload
/// as it came, or each frame of a whole message. A frame that does not
/// decode yields its error; the end stops there.
#[derive(Debug, Default)]
pub struct Frames {
    data: Option<Frame>,
    message: Option<Unpacked>,
}

impl Iterator for Frames {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(frame) = self.data.take() {
            return Some(Ok(frame));
        }
        let next = self.message.as_mut()?.next()?;
        Some(next.and_then(Frame::decode))
    }
}

/// Which end sends the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// This end pings on a timer ([`Link::ping`]); a peer's ping gets its
    /// pong.
    Sends,
    /// The peer pings on a timer: each of its pings gets its pong and a
    /// ping of this end's own, so both ends know the round trip without a
    /// second timer.
    Follows,
}

/// One connection's state below its streams.
#[derive(Debug)]
pub struct Link {
    outbox: Outbox,
    path: Arc<PathState>,
    /// The binary message arriving in fragments, if any.
    fragments: Fragments,
    heartbeat: Heartbeat,
}

impl Link {
    /// The core of a connection that queues its frames on `outbox` and
    /// measures its round trip into `path`.
    pub fn new(outbox: Outbox, path: Arc<PathState>, heartbeat: Heartbeat) -> Link {
        Link {
            outbox,
            path,
            fragments: Fragments::default(),
            heartbeat,
        }
    }

    /// The connection's frame queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// What the connection knows of its path.
    pub fn path(&self) -> &Arc<PathState> {
        &self.path
    }

    /// Takes one message off the socket: control frames are answered here,
    /// and whatever protocol frames it carries are handed back.
    pub fn receive(&mut self, msg: WsIn) -> Result<Incoming, ReceiveError> {
        let mut frames = Frames::default();
        match msg {
            WsIn::Binary(msg) => frames.message = Some(batch::unpack(msg)?),
            WsIn::Fragment(piece) => match self.fragments.push(piece)? {
                Some(Reassembled::Message(msg)) => frames.message = Some(batch::unpack(msg)?),
                Some(Reassembled::Data(frame)) => frames.data = Some(frame),
                None => {}
            },
            WsIn::Ping(payload) => {
                let _ = self.outbox.send_control(Control::Pong(payload));
                if self.heartbeat == Heartbeat::Follows {
                    let _ = self.ping();
                }
            }
            WsIn::Pong(payload) => {
                self.path.pong(&payload);
            }
            WsIn::Close(reason) => return Ok(Incoming::Closed(reason)),
            WsIn::Text => return Err(FragmentError::Text.into()),
        }
        Ok(Incoming::Frames(frames))
    }

    /// Pings the peer; its pong measures the round trip.
    pub fn ping(&self) -> Result<(), SendError> {
        self.outbox.send_control(Control::Ping(self.path.ping()))
    }

    /// Queues the close handshake behind everything queued so far; the
    /// writer sends nothing after it.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.outbox.send_control(Control::Close {
            code,
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests;
