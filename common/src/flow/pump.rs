//! Sending a body onto the tunnel under flow control.

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use thiserror::Error;

use super::credit::SendCredit;
use crate::{
    batch::PACK_LIMIT,
    frame::{data_frame_buffer, Frame},
    outbox::{Outbox, SendError},
    protocol::MAX_DATA_PAYLOAD,
};

/// How sending a body onto the tunnel failed.
#[derive(Debug, Error)]
pub enum PumpError<E> {
    /// Reading the body failed (caller went away, local service failed).
    #[error("reading the body failed: {0}")]
    Source(E),
    /// The peer closed or reset the stream.
    #[error("stream closed by the peer")]
    StreamClosed,
    /// The tunnel connection is gone.
    #[error("tunnel closed")]
    TunnelClosed,
}

/// Body chunks at least this large on average are sent without a copy: one
/// WebSocket fragment each. Smaller ones are cheaper copied than framed.
pub const MIN_PIECE: usize = 4096;

/// Sends `body` on `stream` as `Data` frames under flow control, then `End`.
/// On error nothing more is sent: the caller decides whether to reset.
///
/// Each frame carries what the source has ready (up to [`MAX_DATA_PAYLOAD`]
/// and the credit at hand): a source that yields many small chunks, as
/// bodies read from a socket do, costs few frames. Nothing waits to fill a
/// frame. Over [`PACK_LIMIT`] bytes, in pieces of [`MIN_PIECE`] bytes or more
/// on average, the chunks are queued as they are, never copied (see
/// [`Outgoing::Data`]); otherwise they are copied into one frame, which may
/// then share a message with others (see [`batch`]).
///
/// [`Outgoing::Data`]: crate::outbox::Outgoing::Data
/// [`batch`]: crate::batch
pub async fn pump_body<S, E>(
    stream: u32,
    body: S,
    credit: &SendCredit,
    outbox: &Outbox,
) -> Result<u64, PumpError<E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    let mut sent = 0u64;
    let mut leftover: Option<Bytes> = None;
    loop {
        let chunk = match leftover.take() {
            Some(b) => b,
            None => match body.next().await {
                Some(chunk) => chunk.map_err(PumpError::Source)?,
                None => break,
            },
        };
        if chunk.is_empty() {
            continue;
        }
        let room = credit
            .acquire(MAX_DATA_PAYLOAD)
            .await
            .map_err(|_| PumpError::StreamClosed)?;
        let ready = gather(chunk, room, &mut body, &mut leftover)?;
        if ready.filled < room {
            credit.grant((room - ready.filled) as u32);
        }
        queue_data(stream, ready.pieces, ready.filled, outbox).await?;
        sent += ready.filled as u64;
        if ready.ended {
            break;
        }
    }
    outbox.send(&Frame::End { stream }).map_err(|e| match e {
        SendError::Closed | SendError::Encode(_) => PumpError::TunnelClosed,
    })?;
    Ok(sent)
}

/// The chunks one `Data` frame carries.
struct Ready {
    pieces: Vec<Bytes>,
    filled: usize,
    /// The source ended while gathering.
    ended: bool,
}

/// `chunk` and whatever more the source has ready now, up to `room` bytes;
/// what does not fit goes to `leftover`.
fn gather<S, E>(
    mut chunk: Bytes,
    room: usize,
    body: &mut std::pin::Pin<&mut S>,
    leftover: &mut Option<Bytes>,
) -> Result<Ready, PumpError<E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut ready = Ready {
        pieces: Vec::new(),
        filled: 0,
        ended: false,
    };
    loop {
        if chunk.len() > room - ready.filled {
            *leftover = Some(chunk.split_off(room - ready.filled));
        }
        ready.filled += chunk.len();
        if !chunk.is_empty() {
            ready.pieces.push(chunk);
        }
        if leftover.is_some() || ready.filled == room {
            return Ok(ready);
        }
        match body.next().now_or_never() {
            Some(Some(next)) => chunk = next.map_err(PumpError::Source)?,
            Some(None) => {
                ready.ended = true;
                return Ok(ready);
            }
            None => return Ok(ready),
        }
    }
}

/// Queues one `Data` frame: large pieces as they are, in their turn for
/// the connection's queue (a window's worth queued at once would hold up
/// every other stream's frames, see `outbox`), small ones copied into one
/// frame.
async fn queue_data<E>(
    stream: u32,
    pieces: Vec<Bytes>,
    filled: usize,
    outbox: &Outbox,
) -> Result<(), PumpError<E>> {
    let queued = if filled > PACK_LIMIT && filled / pieces.len() >= MIN_PIECE {
        match outbox.data_room(filled).await {
            Ok(room) => outbox.send_data(stream, pieces, room),
            Err(e) => Err(e),
        }
    } else {
        // Small, or many crumbs: one copy into one frame.
        let mut frame = data_frame_buffer(stream, filled);
        pieces.iter().for_each(|p| frame.extend_from_slice(p));
        outbox.send_encoded(frame.freeze())
    };
    queued.map_err(|_| PumpError::TunnelClosed)
}
