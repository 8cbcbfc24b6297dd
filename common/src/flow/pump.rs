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
/// every other stream's frames, see `outbox`), a frame per turn; small
/// ones copied into one frame.
async fn queue_data<E>(
    stream: u32,
    pieces: Vec<Bytes>,
    filled: usize,
    outbox: &Outbox,
) -> Result<(), PumpError<E>> {
    let queued = if filled > PACK_LIMIT && filled / pieces.len() >= MIN_PIECE {
        let room = outbox.data_room(filled).await;
        let queued = room.and_then(|room| outbox.send_data(stream, pieces, room));
        // The room the writer gives back goes to the pumps waiting for it
        // in turn, and what none waits for is free: a pump that found room
        // free would take frame after frame of it in one run, while the
        // connection's other pumps, woken with it, wait to be run. Each
        // frame ends the run, so that they ask in turn.
        tokio::task::yield_now().await;
        queued
    } else {
        // Small, or many crumbs: one copy into one frame.
        let mut frame = data_frame_buffer(stream, filled);
        pieces.iter().for_each(|p| frame.extend_from_slice(p));
        outbox.send_encoded(frame.freeze())
    };
    queued.map_err(|_| PumpError::TunnelClosed)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use futures_util::stream;

    use super::*;
    use crate::outbox::{Outgoing, DATA_QUEUE_LIMIT};

    /// Lets every task that is ready run until none is.
    async fn settle() {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn pumps_of_one_connection_take_its_room_a_frame_each() {
        let (outbox, mut pending) = Outbox::new();
        for stream in [1, 3] {
            let (credit, outbox) = (SendCredit::new(), outbox.clone());
            credit.grant(64 << 20);
            let chunks =
                (0..64).map(|_| Ok::<_, Infallible>(Bytes::from(vec![0; MAX_DATA_PAYLOAD])));
            tokio::spawn(
                async move { pump_body(stream, stream::iter(chunks), &credit, &outbox).await },
            );
        }
        settle().await;
        let frames = DATA_QUEUE_LIMIT / MAX_DATA_PAYLOAD;
        // The writer takes the whole queue at once, round after round: the
        // room it gives back must go to both streams alike, not to the one
        // that happens to run first.
        let mut sent = [0usize; 2];
        for round in 0..6 {
            let taken = pending.take_all();
            assert_eq!(taken.len(), frames, "round {round}: the queue is full");
            if round > 0 {
                for entry in taken {
                    match entry {
                        Outgoing::Data { stream, .. } => sent[(stream / 2) as usize] += 1,
                        _ => panic!("only Data is queued"),
                    }
                }
                assert!(
                    sent[0].abs_diff(sent[1]) <= 1,
                    "round {round}: frames of streams 1 and 3: {sent:?}"
                );
            }
            settle().await;
        }
    }
}
