//! Reassembly of fragmented WebSocket messages.
//!
//! A WebSocket message may arrive in several fragments (RFC 6455, 5.4): a
//! first frame, continuation frames, and a final one. burrow's own peers
//! send whole messages, but an intermediary may split them, and a message
//! is the same message however it is cut. Both ends collect the pieces here
//! and handle the whole message as if it had come in one frame.
//!
//! burrow's writers cut one kind of message themselves: a large `Data` frame
//! goes as its 5-byte header, then its payload in the pieces its source
//! produced, so that the payload is copied only into the socket's buffer.
//! The receiver passes each piece on as it comes, without joining them.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::{
    frame::parse_data_header,
    protocol::{MAX_DATA_PAYLOAD, MAX_MESSAGE_SIZE},
    Frame,
};

/// One fragment of a WebSocket message, as both ends' WebSocket libraries
/// hand them over (each end maps its library's own type onto this one, so
/// that nothing here names a library).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The first fragment of a binary message.
    FirstBinary(Bytes),
    /// The first fragment of a text message.
    FirstText(Bytes),
    /// A fragment in the middle.
    Continue(Bytes),
    /// The last fragment.
    Last(Bytes),
}

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
    /// The pieces of a `Data` frame add up to more than a frame may carry.
    #[error("fragmented data frame exceeds the {MAX_DATA_PAYLOAD}-byte payload limit")]
    DataTooLarge,
    /// A text message, which the protocol does not use.
    #[error("only binary messages are allowed")]
    Text,
}

/// What a fragment completes.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// A whole message, its pieces joined: handle it as a message that came
    /// in one frame.
    Message(Bytes),
    /// A piece of a `Data` frame's payload, for a message whose first
    /// fragment was that frame's header alone (as burrow's writers send large
    /// ones): passed on as it comes, never joined or copied.
    Data(Frame),
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
    /// A `Data` frame's header came alone: the payload follows in pieces.
    Data {
        stream: u32,
        received: usize,
    },
    Joined(BytesMut),
}

impl Fragments {
    /// Takes one WebSocket fragment: what it completes, if anything.
    pub fn push(&mut self, item: Piece) -> Result<Option<Reassembled>, FragmentError> {
        match item {
            Piece::FirstBinary(part) => self.first(part).map(|()| None),
            Piece::Continue(part) => self.more(part),
            Piece::Last(part) => self.last(part),
            Piece::FirstText(_) => {
                self.open = Open::None;
                Err(FragmentError::Text)
            }
        }
    }

    /// The first fragment of a binary message.
    fn first(&mut self, part: Bytes) -> Result<(), FragmentError> {
        if !matches!(self.open, Open::None) {
            self.open = Open::None;
            return Err(FragmentError::AlreadyStarted);
        }
        match parse_data_header(&part) {
            Some(stream) => {
                self.open = Open::Data {
                    stream,
                    received: 0,
                };
                Ok(())
            }
            None => {
                self.open = Open::Joined(BytesMut::new());
                self.append(part)
            }
        }
    }

    /// A fragment in the middle: a piece of data to pass on, if the message
    /// is a `Data` frame.
    fn more(&mut self, part: Bytes) -> Result<Option<Reassembled>, FragmentError> {
        if let Open::Data { stream, received } = &mut self.open {
            let stream = *stream;
            *received += part.len();
            if *received > MAX_DATA_PAYLOAD {
                self.open = Open::None;
                return Err(FragmentError::DataTooLarge);
            }
            return Ok(
                (!part.is_empty()).then_some(Reassembled::Data(Frame::Data { stream, data: part }))
            );
        }
        self.append(part).map(|()| None)
    }

    /// The final fragment: the whole message, or the last piece of data.
    fn last(&mut self, part: Bytes) -> Result<Option<Reassembled>, FragmentError> {
        let piece = self.more(part)?;
        match std::mem::take(&mut self.open) {
            Open::Data { .. } => Ok(piece),
            Open::Joined(buf) => Ok(Some(Reassembled::Message(buf.freeze()))),
            Open::None => Err(FragmentError::NotStarted),
        }
    }

    fn append(&mut self, part: Bytes) -> Result<(), FragmentError> {
        let Open::Joined(buf) = &mut self.open else {
            return Err(FragmentError::NotStarted);
        };
        if buf.len() + part.len() > MAX_MESSAGE_SIZE {
            self.open = Open::None;
            return Err(FragmentError::TooLarge);
        }
        buf.extend_from_slice(&part);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::data_header;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn data(stream: u32, data: Bytes) -> Option<Reassembled> {
        Some(Reassembled::Data(Frame::Data { stream, data }))
    }

    #[test]
    fn pieces_make_the_whole_message() {
        let mut f = Fragments::default();
        f.first(b(b"ab")).unwrap();
        assert_eq!(f.more(b(b"")), Ok(None));
        assert_eq!(f.more(b(b"cd")), Ok(None));
        assert_eq!(f.last(b(b"e")), Ok(Some(Reassembled::Message(b(b"abcde")))));
        // Ready for the next message.
        f.first(b(b"x")).unwrap();
        assert_eq!(f.last(b(b"")), Ok(Some(Reassembled::Message(b(b"x")))));
    }

    #[test]
    fn data_after_a_lone_data_header_is_passed_on_uncopied() {
        let mut f = Fragments::default();
        let one = Bytes::from(vec![9u8; 1000]);
        let two = Bytes::from(vec![8u8; 3000]);
        f.first(data_header(3)).unwrap();
        assert_eq!(f.more(one.clone()), Ok(data(3, one.clone())));
        assert_eq!(f.more(b(b"")), Ok(None));
        let Ok(Some(Reassembled::Data(Frame::Data { stream, data: got }))) = f.last(two.clone())
        else {
            panic!("the last piece is data")
        };
        assert_eq!((stream, &got), (3, &two));
        assert_eq!(got.as_ptr(), two.as_ptr(), "payload was copied");
        // A header and an empty last piece: nothing to pass on, and done.
        f.first(data_header(5)).unwrap();
        assert_eq!(f.last(b(b"")), Ok(None));
        f.first(b(b"next")).unwrap();
    }

    #[test]
    fn a_header_for_the_connection_stream_is_not_a_data_header() {
        // Joined, and refused by the decoder as any such frame is.
        let mut f = Fragments::default();
        f.first(data_header(0)).unwrap();
        let Ok(Some(Reassembled::Message(msg))) = f.last(b(b"x")) else {
            panic!("joined")
        };
        assert!(Frame::decode(msg).is_err());
    }

    #[test]
    fn a_text_fragment_is_refused() {
        let mut f = Fragments::default();
        let text = Piece::FirstText(b(b"hi"));
        assert_eq!(f.push(text), Err(FragmentError::Text));
        assert_eq!(f.push(Piece::Last(b(b"x"))), Err(FragmentError::NotStarted));
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
        let most = Bytes::from(vec![0u8; MAX_DATA_PAYLOAD]);
        assert_eq!(f.more(most.clone()), Ok(data(1, most)));
        assert_eq!(f.last(b(b"x")), Err(FragmentError::DataTooLarge));
        f.first(b(b"next")).unwrap();
    }
}
