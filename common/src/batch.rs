//! Several small frames in one WebSocket message.
//!
//! Under load a connection's writer finds many frames queued at once (the
//! heads and small answers of many requests). Sent one per message, each
//! costs a pass through both WebSocket codecs and the receiver's dispatch;
//! packed into one `Batch` message, they cost one. Large frames travel
//! alone, since packing copies them, and so do `Data` frames queued as
//! pieces ([`Outgoing::Data`]).
//!
//! ```text
//! +---------+-------------+-----------------------------------------+
//! | kind 9  | stream 0    | { length:32 BE | frame (length bytes) }+ |
//! +---------+-------------+-----------------------------------------+
//! ```
//!
//! Each packed frame is a complete frame as [`Frame::decode`] reads it; a
//! batch never holds another batch.
//!
//! [`Frame::decode`]: crate::Frame::decode

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{
    frame::{DecodeError, FRAME_HEADER_LEN},
    outbox::Outgoing,
    protocol::{CONNECTION_STREAM, MAX_MESSAGE_SIZE},
};

/// Frame kind of a batch message.
pub const KIND_BATCH: u8 = 9;

/// Frames up to this size are packed with their neighbours.
pub const PACK_LIMIT: usize = 16 * 1024;

const LEN_PREFIX: usize = 4;

/// Appends to `out` the messages that carry `items` in order: runs of
/// small frames become one batch (a run of one stays a plain frame), larger
/// frames and split `Data` frames are passed through as they are.
pub fn pack(items: impl IntoIterator<Item = Outgoing>, out: &mut Vec<Outgoing>) {
    let mut run: Vec<Bytes> = Vec::new();
    let mut run_len = FRAME_HEADER_LEN;
    for item in items {
        let frame = match item {
            Outgoing::Frame(frame) if frame.len() <= PACK_LIMIT => frame,
            other => {
                flush(&mut run, out);
                run_len = FRAME_HEADER_LEN;
                out.push(other);
                continue;
            }
        };
        if run_len + LEN_PREFIX + frame.len() > MAX_MESSAGE_SIZE {
            flush(&mut run, out);
            run_len = FRAME_HEADER_LEN;
        }
        run_len += LEN_PREFIX + frame.len();
        run.push(frame);
    }
    flush(&mut run, out);
}

fn flush(run: &mut Vec<Bytes>, out: &mut Vec<Outgoing>) {
    match run.len() {
        0 => {}
        1 => out.extend(run.drain(..).map(Outgoing::Frame)),
        _ => {
            let size = run.iter().map(|f| LEN_PREFIX + f.len()).sum::<usize>();
            let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + size);
            buf.put_u8(KIND_BATCH);
            buf.put_u32(CONNECTION_STREAM);
            for frame in run.drain(..) {
                // Packed frames are at most PACK_LIMIT bytes.
                buf.put_u32(frame.len() as u32);
                buf.put_slice(&frame);
            }
            out.push(Outgoing::Frame(buf.freeze()));
        }
    }
}

/// The frames in one received message: the message itself, or each frame
/// of a batch (sharing the message's bytes, not copied).
pub fn unpack(mut msg: Bytes) -> Result<Unpacked, DecodeError> {
    if msg.first() != Some(&KIND_BATCH) {
        return Ok(Unpacked::One(Some(msg)));
    }
    if msg.len() < FRAME_HEADER_LEN {
        return Err(DecodeError::TooShort(msg.len()));
    }
    msg.advance(1);
    let stream = msg.get_u32();
    if stream != CONNECTION_STREAM {
        return Err(DecodeError::WrongStream {
            kind: "batch",
            stream,
        });
    }
    if msg.is_empty() {
        return Err(DecodeError::Truncated {
            kind: "batch",
            field: "first frame",
        });
    }
    Ok(Unpacked::Batch(msg))
}

/// Iterator over the frames of one message; see [`unpack`]. A malformed
/// batch yields an error and then ends.
#[derive(Debug)]
pub enum Unpacked {
    /// A message holding one frame.
    One(Option<Bytes>),
    /// The rest of a batch.
    Batch(Bytes),
}

impl Iterator for Unpacked {
    type Item = Result<Bytes, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = match self {
            Unpacked::One(frame) => return frame.take().map(Ok),
            Unpacked::Batch(rest) => rest,
        };
        if rest.is_empty() {
            return None;
        }
        let item = next_packed(rest);
        if item.is_err() {
            rest.clear();
        }
        Some(item)
    }
}

fn next_packed(rest: &mut Bytes) -> Result<Bytes, DecodeError> {
    let truncated = |field| DecodeError::Truncated {
        kind: "batch",
        field,
    };
    if rest.len() < LEN_PREFIX {
        return Err(truncated("frame length"));
    }
    let len = rest.get_u32() as usize;
    if len > rest.len() {
        return Err(truncated("frame"));
    }
    let frame = rest.split_to(len);
    if frame.first() == Some(&KIND_BATCH) {
        return Err(DecodeError::UnknownKind(KIND_BATCH));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    fn window(stream: u32) -> Bytes {
        Frame::Window {
            stream,
            increment: stream,
        }
        .encode()
        .unwrap()
    }

    fn all(msg: Outgoing) -> Vec<Bytes> {
        let Outgoing::Frame(msg) = msg else {
            panic!("not a whole message: {msg:?}")
        };
        unpack(msg).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn packed(frames: &[Bytes]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        pack(frames.iter().cloned().map(Outgoing::Frame), &mut out);
        out
    }

    #[test]
    fn small_frames_share_a_message_and_come_back_in_order() {
        let frames: Vec<Bytes> = (1..=50).map(window).collect();
        let mut out = packed(&frames);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Outgoing::Frame(m) if m[0] == KIND_BATCH));
        assert_eq!(all(out.remove(0)), frames);
    }

    #[test]
    fn a_single_frame_and_large_frames_travel_alone_in_order() {
        let big = Frame::Data {
            stream: 3,
            data: Bytes::from(vec![7u8; PACK_LIMIT + 1]),
        }
        .encode()
        .unwrap();
        assert_eq!(packed(&[window(1)]), [Outgoing::Frame(window(1))]);
        let out = packed(&[window(1), window(3), big.clone(), window(5)]);
        assert_eq!(out.len(), 3);
        assert_eq!(all(out[0].clone()), [window(1), window(3)]);
        assert_eq!(out[1], Outgoing::Frame(big));
        assert_eq!(out[2], Outgoing::Frame(window(5)));
        assert_eq!(all(out[2].clone()), [window(5)]);
    }

    #[test]
    fn split_data_frames_pass_through_in_order() {
        let data = Outgoing::Data {
            stream: 7,
            pieces: vec![Bytes::from_static(b"pay"), Bytes::from_static(b"load")],
        };
        let mut out = Vec::new();
        let items = [
            Outgoing::Frame(window(1)),
            Outgoing::Frame(window(3)),
            data.clone(),
            Outgoing::Frame(window(5)),
        ];
        pack(items, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(all(out[0].clone()), [window(1), window(3)]);
        assert_eq!(out[1], data);
        assert_eq!(out[2], Outgoing::Frame(window(5)));
    }

    #[test]
    fn batches_stay_within_the_message_limit() {
        let frame = Frame::Data {
            stream: 1,
            data: Bytes::from(vec![1u8; PACK_LIMIT - FRAME_HEADER_LEN]),
        }
        .encode()
        .unwrap();
        let frames = vec![frame; 40];
        let out = packed(&frames);
        assert!(out.len() > 1);
        assert!(out
            .iter()
            .all(|m| matches!(m, Outgoing::Frame(m) if m.len() <= MAX_MESSAGE_SIZE)));
        let back: Vec<Bytes> = out.into_iter().flat_map(all).collect();
        assert_eq!(back, frames);
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        let head = |rest: &[u8]| {
            let mut b = vec![KIND_BATCH, 0, 0, 0, 0];
            b.extend_from_slice(rest);
            Bytes::from(b)
        };
        assert!(unpack(Bytes::from_static(&[KIND_BATCH, 0])).is_err());
        assert!(unpack(Bytes::from_static(&[KIND_BATCH, 0, 0, 0, 1, 0])).is_err());
        assert!(unpack(head(&[])).is_err());
        for bad in [
            &[0u8, 0][..],
            &[0, 0, 0, 9, 1],
            &[0, 0, 0, 5, 9, 0, 0, 0, 0],
        ] {
            let items: Vec<_> = unpack(head(bad)).unwrap().collect();
            assert_eq!(items.len(), 1, "{bad:?}");
            assert!(items[0].is_err(), "{bad:?}");
        }
    }
}
