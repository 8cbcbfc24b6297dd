//! Reassembly of fragmented WebSocket messages.
//!
//! A WebSocket message may arrive in several fragments (RFC 6455, 5.4): a
//! first frame, continuation frames, and a final one. burrow's own peers
//! send whole messages, but an intermediary may split them, and a message
//! is the same message however it is cut. Both ends collect the pieces here
//! and handle the whole message as if it had come in one frame.
//!
//! burrow's writers cut one kind of message themselves: a large `Data` frame
//! goes as its 5-byte header then its payload, so that the payload is copied
//! only into the socket's buffer. Such a message is decoded from its two
//! pieces, without joining them.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::{
    frame::{data_header, parse_data_header, FRAME_HEADER_LEN},
    protocol::MAX_MESSAGE_SIZE,
    Frame,
};

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

/// A message put back together.
#[derive(Debug, PartialEq, Eq)]
pub enum Whole {
    /// The pieces joined: handle it as a message that came in one frame.
    Message(Bytes),
    /// A `Data` frame that came as its header then its payload (as burrow's
    /// writers send large ones): decoded without joining, so the payload is
    /// not copied.
    Frame(Frame),
}

/// The pieces of the binary message being received, if any.
#[derive(Debug, Default)]
pub struct Fragments {
    open: Open,
}

#[derive(Debug, Default)]
enum Open {
    #[default]
    None,
    /// Only a `Data` frame's header so far, for this stream.
    DataHeader(u32),
    Joined(BytesMut),
}

impl Fragments {
    /// The first fragment of a binary message.
    pub fn first(&mut self, part: Bytes) -> Result<(), FragmentError> {
        if !matches!(self.open, Open::None) {
            self.open = Open::None;
            return Err(FragmentError::AlreadyStarted);
        }
        match parse_data_header(&part) {
            Some(stream) => {
                self.open = Open::DataHeader(stream);
                Ok(())
            }
            None => {
                self.open = Open::Joined(BytesMut::new());
                self.append(&part)
            }
        }
    }

    /// A fragment in the middle.
    pub fn more(&mut self, part: Bytes) -> Result<(), FragmentError> {
        if part.is_empty() && !matches!(self.open, Open::None) {
            return Ok(());
        }
        self.append(&part)
    }

    /// The final fragment: the whole message.
    pub fn last(&mut self, part: Bytes) -> Result<Whole, FragmentError> {
        if let Open::DataHeader(stream) = self.open {
            self.open = Open::None;
            if part.len() > MAX_MESSAGE_SIZE - FRAME_HEADER_LEN {
                return Err(FragmentError::TooLarge);
            }
            return Ok(Whole::Frame(Frame::Data { stream, data: part }));
        }
        self.append(&part)?;
        match std::mem::take(&mut self.open) {
            Open::Joined(buf) => Ok(Whole::Message(buf.freeze())),
            _ => Err(FragmentError::NotStarted),
        }
    }

    fn append(&mut self, part: &[u8]) -> Result<(), FragmentError> {
        if let Open::DataHeader(stream) = self.open {
            // More than two pieces: join them after all.
            let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + part.len());
            buf.extend_from_slice(&data_header(stream));
            self.open = Open::Joined(buf);
        }
        let Open::Joined(buf) = &mut self.open else {
            return Err(FragmentError::NotStarted);
        };
        if buf.len() + part.len() > MAX_MESSAGE_SIZE {
            self.open = Open::None;
            return Err(FragmentError::TooLarge);
        }
        buf.extend_from_slice(part);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn pieces_make_the_whole_message() {
        let mut f = Fragments::default();
        f.first(b(b"ab")).unwrap();
        f.more(b(b"")).unwrap();
        f.more(b(b"cd")).unwrap();
        assert_eq!(f.last(b(b"e")).unwrap(), Whole::Message(b(b"abcde")));
        // Ready for the next message.
        f.first(b(b"x")).unwrap();
        assert_eq!(f.last(b(b"")).unwrap(), Whole::Message(b(b"x")));
    }

    #[test]
    fn a_data_header_then_its_payload_is_the_frame_without_a_copy() {
        let mut f = Fragments::default();
        let payload = Bytes::from(vec![9u8; 1000]);
        f.first(data_header(3)).unwrap();
        f.more(b(b"")).unwrap();
        let Whole::Frame(Frame::Data { stream, data }) = f.last(payload.clone()).unwrap() else {
            panic!("not decoded as a data frame");
        };
        assert_eq!((stream, &data), (3, &payload));
        assert_eq!(data.as_ptr(), payload.as_ptr(), "payload was copied");
    }

    #[test]
    fn a_data_header_cut_further_is_joined_and_means_the_same() {
        let mut f = Fragments::default();
        f.first(data_header(3)).unwrap();
        f.more(b(b"ab")).unwrap();
        let whole = f.last(b(b"cd")).unwrap();
        let Whole::Message(msg) = whole else {
            panic!("three pieces are joined")
        };
        assert_eq!(
            Frame::decode(msg).unwrap(),
            Frame::Data {
                stream: 3,
                data: b(b"abcd")
            }
        );
        // A header for the connection stream is no data header: joined, and
        // refused by the decoder as any such frame is.
        f.first(data_header(0)).unwrap();
        let Whole::Message(msg) = f.last(b(b"x")).unwrap() else {
            panic!("not a data frame")
        };
        assert!(Frame::decode(msg).is_err());
    }

    #[test]
    fn out_of_order_and_oversized_pieces_are_refused() {
        let mut f = Fragments::default();
        assert_eq!(f.more(b(b"a")), Err(FragmentError::NotStarted));
        assert_eq!(f.last(b(b"a")), Err(FragmentError::NotStarted));
        f.first(b(b"a")).unwrap();
        assert_eq!(f.first(b(b"b")), Err(FragmentError::AlreadyStarted));
        f.first(Bytes::from(vec![0u8; MAX_MESSAGE_SIZE])).unwrap();
        assert_eq!(f.more(b(b"x")), Err(FragmentError::TooLarge));
        assert_eq!(f.last(b(b"x")), Err(FragmentError::NotStarted));
        f.first(data_header(1)).unwrap();
        let too_big = Bytes::from(vec![0u8; MAX_MESSAGE_SIZE]);
        assert_eq!(f.last(too_big), Err(FragmentError::TooLarge));
        f.first(b(b"next")).unwrap();
    }
}
