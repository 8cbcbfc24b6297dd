//! Reassembly of fragmented WebSocket messages.
//!
//! A WebSocket message may arrive in several fragments (RFC 6455, 5.4): a
//! first frame, continuation frames, and a final one. burrow's own peers
//! send whole messages, but an intermediary may split them, and a message
//! is the same message however it is cut. Both ends collect the pieces here
//! and handle the whole message as if it had come in one frame.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::protocol::MAX_MESSAGE_SIZE;

/// Why a fragment was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FragmentError {
    /// A continuation without a first fragment.
    #[error("continuation fragment without a first fragment")]
    NotStarted,
    /// A first fragment while another message is still open.
    #[error("new fragmented message before the previous one ended")]
    AlreadyStarted,
    /// The pieces add up to more than a message may hold.
    #[error("fragmented message exceeds the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLarge,
}

/// The pieces of the binary message being received, if any.
#[derive(Debug, Default)]
pub struct Fragments {
    open: Option<BytesMut>,
}

impl Fragments {
    /// The first fragment of a binary message.
    pub fn first(&mut self, part: &[u8]) -> Result<(), FragmentError> {
        if self.open.is_some() {
            self.open = None;
            return Err(FragmentError::AlreadyStarted);
        }
        self.open = Some(BytesMut::new());
        self.append(part)
    }

    /// A fragment in the middle.
    pub fn more(&mut self, part: &[u8]) -> Result<(), FragmentError> {
        self.append(part)
    }

    /// The final fragment: the whole message.
    pub fn last(&mut self, part: &[u8]) -> Result<Bytes, FragmentError> {
        self.append(part)?;
        self.open
            .take()
            .map(BytesMut::freeze)
            .ok_or(FragmentError::NotStarted)
    }

    fn append(&mut self, part: &[u8]) -> Result<(), FragmentError> {
        let buf = self.open.as_mut().ok_or(FragmentError::NotStarted)?;
        if buf.len() + part.len() > MAX_MESSAGE_SIZE {
            self.open = None;
            return Err(FragmentError::TooLarge);
        }
        buf.extend_from_slice(part);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_the_whole_message() {
        let mut f = Fragments::default();
        f.first(b"ab").unwrap();
        f.more(b"").unwrap();
        f.more(b"cd").unwrap();
        assert_eq!(f.last(b"e").unwrap(), Bytes::from_static(b"abcde"));
        // Ready for the next message.
        f.first(b"x").unwrap();
        assert_eq!(f.last(b"").unwrap(), Bytes::from_static(b"x"));
    }

    #[test]
    fn out_of_order_and_oversized_pieces_are_refused() {
        let mut f = Fragments::default();
        assert_eq!(f.more(b"a"), Err(FragmentError::NotStarted));
        assert_eq!(f.last(b"a"), Err(FragmentError::NotStarted));
        f.first(b"a").unwrap();
        assert_eq!(f.first(b"b"), Err(FragmentError::AlreadyStarted));
        f.first(&vec![0u8; MAX_MESSAGE_SIZE]).unwrap();
        assert_eq!(f.more(b"x"), Err(FragmentError::TooLarge));
        assert_eq!(f.last(b"x"), Err(FragmentError::NotStarted));
    }
}
