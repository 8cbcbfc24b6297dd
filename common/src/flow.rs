//! Per-stream flow control and body transfer.
//!
//! Each stream starts with [`INITIAL_WINDOW`] bytes of credit in each
//! direction. A sender takes credit before queueing `Data` and waits, on its
//! own task, when there is none; a receiver hands credit back with `Window`
//! frames as its consumer drains (once half a window has been consumed, to
//! keep control frames few). A slow reader therefore holds back its own
//! stream only, and each stream buffers at most one window at the receiver.
//!
//! A window that a reader drains faster than credit can travel back is what
//! limits a fast transfer, so a receiver widens it for such a reader: when
//! half the window was consumed within [`GROW_WITHIN`], the next grant adds
//! as much again, up to [`MAX_WINDOW`]. A slow reader keeps the initial one.
//! All the widening of a process draws on one [`WindowBudget`], so readers
//! that drain fast and then all stall cannot make a receiver hold more than
//! that on top of their initial windows.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use thiserror::Error;
use tokio::sync::Notify;

use tokio::time::{Duration, Instant};

use crate::{
    batch::PACK_LIMIT,
    frame::{data_frame_buffer, Frame},
    outbox::{Outbox, SendError},
    protocol::{ResetCode, INITIAL_WINDOW, MAX_DATA_PAYLOAD},
    queue::Receiver,
};

/// Credit a sender may spend on one stream; shared between the task that
/// sends the body and the dispatcher that receives `Window` frames.
#[derive(Debug)]
pub struct SendCredit {
    state: Mutex<CreditState>,
    notify: Notify,
}

#[derive(Debug)]
struct CreditState {
    available: u64,
    closed: bool,
}

/// The stream was closed while the sender waited for credit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("stream closed")]
pub struct StreamClosed;

impl SendCredit {
    /// Credit starting at [`INITIAL_WINDOW`].
    pub fn new() -> Arc<SendCredit> {
        Arc::new(SendCredit {
            state: Mutex::new(CreditState {
                available: u64::from(INITIAL_WINDOW),
                closed: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        // The state is two plain fields; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds credit granted by the peer.
    pub fn grant(&self, increment: u32) {
        let mut s = self.lock();
        s.available = s.available.saturating_add(u64::from(increment));
        drop(s);
        self.notify.notify_one();
    }

    /// Ends the stream for the sender: waiting and future `acquire` calls fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// `true` once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits for credit and takes up to `want` bytes of it (at least one).
    pub async fn acquire(&self, want: usize) -> Result<usize, StreamClosed> {
        loop {
            {
                let mut s = self.lock();
                if s.closed {
                    return Err(StreamClosed);
                }
                if s.available > 0 {
                    let n = (want as u64).min(s.available);
                    s.available -= n;
                    return Ok(n as usize);
                }
            }
            // `notify_one` stores a permit if nobody waits yet, so a grant
            // between the check above and this await is not lost.
            self.notify.notified().await;
        }
    }
}

/// When a stream last moved bytes in either direction, for idle timeouts.
/// Shared between the tasks that move a stream's bytes and the owner of its
/// table entry.
#[derive(Debug)]
pub struct Activity {
    epoch: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Records that the stream moved bytes now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the stream last moved bytes.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The widest a stream's receive window grows, for a reader that keeps up.
pub const MAX_WINDOW: u32 = 4 * 1024 * 1024;

/// A reader that consumes half its window within this time has its window
/// doubled: at 512 KiB that is over 25 MB/s, at 2 MiB over 100 MB/s.
pub const GROW_WITHIN: Duration = Duration::from_millis(10);

/// Bytes of window that streams may hold beyond [`INITIAL_WINDOW`], shared:
/// a stream takes from it to widen its window and gives it back when its
/// body is dropped.
#[derive(Debug)]
pub struct WindowBudget {
    left: AtomicU64,
}

impl WindowBudget {
    /// A budget of `bytes`.
    pub const fn new(bytes: u64) -> Self {
        WindowBudget {
            left: AtomicU64::new(bytes),
        }
    }

    /// Takes `n` bytes if that many are left.
    fn take(&self, n: u32) -> bool {
        let n = u64::from(n);
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn give(&self, n: u32) {
        self.left.fetch_add(u64::from(n), Ordering::AcqRel);
    }

    /// Bytes not taken.
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// The widening budget of this process: 64 MiB, sixteen streams at
/// [`MAX_WINDOW`].
pub static WIDENING: WindowBudget = WindowBudget::new(64 * 1024 * 1024);

/// Receive-side accounting of one stream: how much the peer may still send.
#[derive(Debug)]
pub struct RecvCredit {
    remaining: AtomicI64,
}

impl RecvCredit {
    /// Accounting starting at [`INITIAL_WINDOW`].
    pub fn new() -> Arc<RecvCredit> {
        Arc::new(RecvCredit {
            remaining: AtomicI64::new(i64::from(INITIAL_WINDOW)),
        })
    }

    /// Records `n` received bytes; `false` if the peer overran its credit.
    pub fn take(&self, n: usize) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.remaining.fetch_sub(n, Ordering::AcqRel) >= n
    }

    /// Records credit handed back to the peer.
    pub fn give(&self, n: u32) {
        self.remaining.fetch_add(i64::from(n), Ordering::AcqRel);
    }
}

/// What the dispatcher of a connection delivers to a stream's reader.
#[derive(Debug)]
pub enum BodyEvent {
    /// The response head (server side; always the first event of a stream
    /// and consumed before the body is read).
    Head(Box<crate::protocol::ResponseHead>),
    /// Body bytes.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The peer reset the stream.
    Reset(ResetCode, String),
    /// No response head came within the opener's limit (server side: the
    /// session enforces it and has already reset the stream).
    Expired,
}

/// Why a received body did not complete.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The peer reset the stream.
    #[error("{code}{}{reason}", if reason.is_empty() { "" } else { ": " })]
    Reset {
        /// The reset code received.
        code: ResetCode,
        /// The reset's detail text.
        reason: String,
    },
    /// The tunnel closed before the body was complete.
    #[error("tunnel closed before the body was complete")]
    TunnelClosed,
}

/// Runs a closure when dropped, unless disarmed: how a stream's reader tells
/// its connection that nobody wants the stream any more.
pub struct CancelOnDrop(Option<Box<dyn FnOnce()>>);

impl CancelOnDrop {
    /// Arms `f`.
    pub fn new(f: impl FnOnce() + 'static) -> Self {
        CancelOnDrop(Some(Box::new(f)))
    }

    /// A guard that does nothing.
    pub fn none() -> Self {
        CancelOnDrop(None)
    }

    /// Drops `f` without running it.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A stream's incoming body as a `Stream` of byte chunks. It hands credit
/// back to the peer as chunks are taken from it, and cancels the stream if
/// dropped before the body ended.
pub struct RecvBody {
    stream: u32,
    rx: Receiver<BodyEvent>,
    outbox: Outbox,
    credit: Arc<RecvCredit>,
    unacked: u32,
    /// The current window: [`INITIAL_WINDOW`], widened for a fast reader.
    window: u32,
    /// When the current half window started to be consumed.
    since: Option<Instant>,
    /// Where the widening beyond [`INITIAL_WINDOW`] came from.
    budget: &'static WindowBudget,
    done: bool,
    cancel: CancelOnDrop,
}

impl RecvBody {
    /// A body reader for `stream`, fed by `rx`.
    pub fn new(
        stream: u32,
        rx: Receiver<BodyEvent>,
        outbox: Outbox,
        credit: Arc<RecvCredit>,
        cancel: CancelOnDrop,
    ) -> Self {
        RecvBody {
            stream,
            rx,
            outbox,
            credit,
            unacked: 0,
            window: INITIAL_WINDOW,
            since: None,
            budget: &WIDENING,
            done: false,
            cancel,
        }
    }

    fn consumed(&mut self, n: usize) {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.unacked = self.unacked.saturating_add(n as u32);
        if self.unacked >= self.window / 2 {
            let mut increment = std::mem::take(&mut self.unacked);
            if self.window < MAX_WINDOW && now.duration_since(since) < GROW_WITHIN {
                let wider = self.window.saturating_mul(2).min(MAX_WINDOW);
                if self.budget.take(wider - self.window) {
                    increment += wider - self.window;
                    self.window = wider;
                }
            }
            self.since = Some(now);
            self.credit.give(increment);
            // If the tunnel is gone the body ends with an error on the next poll.
            let _ = self.outbox.send(&Frame::Window {
                stream: self.stream,
                increment,
            });
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.cancel.disarm();
    }

    /// Draws this body's widening from `budget` instead of [`WIDENING`].
    pub fn with_budget(mut self, budget: &'static WindowBudget) -> Self {
        self.budget = budget;
        self
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        self.budget.give(self.window - INITIAL_WINDOW);
    }
}

impl Stream for RecvBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(BodyEvent::Data(bytes))) => {
                self.consumed(bytes.len());
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(BodyEvent::End)) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(BodyEvent::Head(_))) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset {
                    code: ResetCode::ProtocolError,
                    reason: "a second head inside the body".into(),
                })))
            }
            // Only a stream still waiting for its head expires; should one
            // reach a body, it ends as the cancel it is.
            Poll::Ready(Some(BodyEvent::Expired)) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset {
                    code: ResetCode::Cancel,
                    reason: "no response head in time".into(),
                })))
            }
            Poll::Ready(Some(BodyEvent::Reset(code, reason))) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::Reset { code, reason })))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(Some(Err(BodyError::TunnelClosed)))
            }
        }
    }
}

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
    let mut ended = false;
    while !ended {
        let mut chunk = match leftover.take() {
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
        // What the source has ready now, up to the credit at hand.
        let mut pieces = Vec::new();
        let mut filled = 0;
        loop {
            if chunk.len() > room - filled {
                leftover = Some(chunk.split_off(room - filled));
            }
            filled += chunk.len();
            if !chunk.is_empty() {
                pieces.push(chunk);
            }
            if leftover.is_some() || filled == room {
                break;
            }
            match body.next().now_or_never() {
                Some(Some(next)) => chunk = next.map_err(PumpError::Source)?,
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if filled < room {
            credit.grant((room - filled) as u32);
        }
        let queued = if filled > PACK_LIMIT && filled / pieces.len() >= MIN_PIECE {
            outbox.send_data(stream, pieces)
        } else {
            // Small, or many crumbs: one copy into one frame.
            let mut frame = data_frame_buffer(stream, filled);
            pieces.iter().for_each(|p| frame.extend_from_slice(p));
            outbox.send_encoded(frame.freeze())
        };
        queued.map_err(|_| PumpError::TunnelClosed)?;
        sent += filled as u64;
    }
    outbox.send(&Frame::End { stream }).map_err(|e| match e {
        SendError::Closed | SendError::Encode(_) => PumpError::TunnelClosed,
    })?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outgoing;
    use futures_util::stream;
    use std::convert::Infallible;

    #[tokio::test]
    async fn pump_splits_and_waits_for_credit() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let big = Bytes::from(vec![7u8; INITIAL_WINDOW as usize + 100]);
        let body = stream::iter(vec![Ok::<_, Infallible>(big)]);
        let pump = tokio::spawn({
            let credit = credit.clone();
            let outbox = outbox.clone();
            async move { pump_body(1, body, &credit, &outbox).await.map_err(|_| ()) }
        });
        let mut got = 0usize;
        while got < INITIAL_WINDOW as usize {
            match rx.recv().await.unwrap().decode().unwrap() {
                Frame::Data { data, .. } => {
                    assert!(data.len() <= MAX_DATA_PAYLOAD);
                    got += data.len();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, INITIAL_WINDOW as usize);
        // No credit left: the pump must be waiting, not sending.
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_none());
        credit.grant(1000);
        match rx.recv().await.unwrap().decode().unwrap() {
            Frame::Data { data, .. } => assert_eq!(data.len(), 100),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            rx.recv().await.unwrap().decode().unwrap(),
            Frame::End { stream: 1 }
        );
        assert_eq!(pump.await.unwrap(), Ok(INITIAL_WINDOW as u64 + 100));
    }

    #[tokio::test]
    async fn ready_small_chunks_share_a_frame() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let chunks: Vec<Result<Bytes, Infallible>> =
            (0..100u8).map(|i| Ok(Bytes::from(vec![i; 1000]))).collect();
        let sent = pump_body(5, stream::iter(chunks), &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        assert_eq!(sent, 100_000);
        let mut frames = Vec::new();
        while let Some(b) = rx.try_recv() {
            frames.push(b.decode().unwrap());
        }
        // 100 kB in 1 kB chunks: two frames (64 KiB + the rest) and End.
        assert_eq!(
            frames.len(),
            3,
            "{:?}",
            frames.iter().map(|f| f.stream()).collect::<Vec<_>>()
        );
        let mut all = Vec::new();
        for f in &frames[..2] {
            match f {
                Frame::Data { data, .. } => all.extend_from_slice(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(frames[2], Frame::End { stream: 5 });
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; 1000]).collect();
        assert_eq!(all, expected);
        // Unused credit was handed back: all but what was sent is available.
        assert_eq!(
            credit.acquire(usize::MAX).await,
            Ok(INITIAL_WINDOW as usize - 100_000)
        );
    }

    #[tokio::test]
    async fn large_chunks_are_queued_without_a_copy() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let big = Bytes::from(vec![3u8; MAX_DATA_PAYLOAD + 20_000]);
        let body = stream::iter(vec![Ok::<_, Infallible>(big.clone())]);
        let sent = pump_body(9, body, &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        assert_eq!(sent, big.len() as u64);
        // Two entries pointing into the source's own buffer, then End.
        for (len, offset) in [(MAX_DATA_PAYLOAD, 0), (20_000, MAX_DATA_PAYLOAD)] {
            match rx.try_recv() {
                Some(Outgoing::Data { stream, pieces }) => {
                    assert_eq!((stream, pieces.len(), pieces[0].len()), (9, 1, len));
                    assert_eq!(pieces[0].as_ptr(), big[offset..].as_ptr(), "copied");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            rx.try_recv().unwrap().decode().unwrap(),
            Frame::End { stream: 9 }
        );

        // Socket-sized chunks ready together: one frame of those very chunks.
        let chunks: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 8192])).collect();
        let body = stream::iter(chunks.clone().into_iter().map(Ok::<_, Infallible>));
        pump_body(11, body, &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        match rx.try_recv() {
            Some(Outgoing::Data { stream: 11, pieces }) => {
                let same = pieces
                    .iter()
                    .zip(&chunks)
                    .all(|(p, c)| p.as_ptr() == c.as_ptr());
                assert!(pieces.len() == 8 && same, "copied or regrouped");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn closing_credit_stops_a_waiting_pump() {
        let (outbox, _rx) = Outbox::new();
        let credit = SendCredit::new();
        let body = stream::iter(vec![Ok::<_, Infallible>(Bytes::from(vec![
            0u8;
            INITIAL_WINDOW
                as usize
                * 2
        ]))]);
        let pump = tokio::spawn({
            let credit = credit.clone();
            async move {
                matches!(
                    pump_body(1, body, &credit, &outbox).await,
                    Err(PumpError::StreamClosed)
                )
            }
        });
        tokio::task::yield_now().await;
        credit.close();
        assert!(pump.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn recv_body_grants_credit_and_reports_end() {
        let (outbox, mut out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let credit = RecvCredit::new();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancelled.clone();
        let mut body = RecvBody::new(
            3,
            rx,
            outbox,
            credit.clone(),
            CancelOnDrop::new(move || flag.store(true, Ordering::SeqCst)),
        );
        // Half a window, read slowly: credit for exactly that comes back.
        let half = INITIAL_WINDOW as usize / 2;
        assert!(credit.take(half));
        tx.send(BodyEvent::Data(Bytes::from(vec![1u8; half - 1])))
            .unwrap();
        tx.send(BodyEvent::Data(Bytes::from(vec![1u8; 1]))).unwrap();
        tx.send(BodyEvent::End).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap().len(), half - 1);
        tokio::time::advance(GROW_WITHIN).await;
        assert_eq!(body.next().await.unwrap().unwrap().len(), 1);
        assert_eq!(
            out_rx.try_recv().unwrap().decode().unwrap(),
            Frame::Window {
                stream: 3,
                increment: INITIAL_WINDOW / 2
            }
        );
        assert!(body.next().await.is_none());
        drop(body);
        assert!(
            !cancelled.load(Ordering::SeqCst),
            "completed body must not cancel"
        );
        // The credit given back lets the peer send a full window again.
        assert!(credit.take(INITIAL_WINDOW as usize));
        assert!(!credit.take(1));
    }

    /// A stream's receiving end, fed by a peer that stays within its credit.
    struct Fed {
        credit: Arc<RecvCredit>,
        tx: crate::queue::Sender<BodyEvent>,
        body: RecvBody,
        out_rx: crate::queue::Receiver<Outgoing>,
    }

    impl Fed {
        fn new(budget: &'static WindowBudget) -> Fed {
            let (outbox, out_rx) = Outbox::new();
            let (tx, rx) = crate::queue::queue();
            let credit = RecvCredit::new();
            let body = RecvBody::new(3, rx, outbox, credit.clone(), CancelOnDrop::none())
                .with_budget(budget);
            Fed {
                credit,
                tx,
                body,
                out_rx,
            }
        }

        /// Sends `n` bytes at once and reads them: the credit granted back.
        async fn grant_after(&mut self, n: usize) -> u32 {
            assert!(self.credit.take(n), "the peer stays within its credit");
            self.tx
                .send(BodyEvent::Data(Bytes::from(vec![0u8; n])))
                .unwrap();
            assert_eq!(self.body.next().await.unwrap().unwrap().len(), n);
            match self.out_rx.try_recv().unwrap().decode().unwrap() {
                Frame::Window { increment, .. } => increment,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_reader_gets_a_wider_window_up_to_the_limit() {
        static BUDGET: WindowBudget = WindowBudget::new(64 << 20);
        let mut fed = Fed::new(&BUDGET);
        let mut window = INITIAL_WINDOW;
        let mut grants = Vec::new();
        for _ in 0..6 {
            // Half the current window, read at once.
            grants.push(fed.grant_after(window as usize / 2).await);
            window = (window * 2).min(MAX_WINDOW);
        }
        // Doubling: each grant returns what was read plus the widening.
        let k = 1024;
        assert_eq!(
            grants,
            [768 * k, 1536 * k, 3072 * k, 2048 * k, 2048 * k, 2048 * k]
        );
        // The peer may now have a whole MAX_WINDOW outstanding, and no more.
        assert!(fed.credit.take(MAX_WINDOW as usize));
        assert!(!fed.credit.take(1));
        // The widening came from the budget, and goes back with the body.
        assert_eq!(
            BUDGET.left(),
            (64 << 20) - u64::from(MAX_WINDOW - INITIAL_WINDOW)
        );
        drop(fed);
        assert_eq!(BUDGET.left(), 64 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn widening_stops_when_the_budget_is_spent() {
        // Room for 512 KiB + 1 MiB of widening: the window reaches 2 MiB.
        static BUDGET: WindowBudget = WindowBudget::new(1536 << 10);
        let mut fed = Fed::new(&BUDGET);
        let mut grants = Vec::new();
        for half in [256 << 10, 512 << 10, 1 << 20, 1 << 20] {
            grants.push(fed.grant_after(half).await);
        }
        let k = 1024;
        assert_eq!(grants, [768 * k, 1536 * k, 1024 * k, 1024 * k]);
        assert_eq!(BUDGET.left(), 0);
        drop(fed);
        assert_eq!(BUDGET.left(), 1536 << 10);
    }

    #[tokio::test]
    async fn dropping_an_unfinished_body_cancels() {
        let (outbox, _out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancelled.clone();
        let body = RecvBody::new(
            1,
            rx,
            outbox,
            RecvCredit::new(),
            CancelOnDrop::new(move || flag.store(true, Ordering::SeqCst)),
        );
        tx.send(BodyEvent::Data(Bytes::from_static(b"x"))).unwrap();
        drop(body);
        assert!(cancelled.load(Ordering::SeqCst));
    }

    #[test]
    fn activity_measures_idle_time() {
        let a = Activity::new();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(a.idle_for() >= std::time::Duration::from_millis(30));
        a.touch();
        assert!(a.idle_for() < std::time::Duration::from_millis(30));
    }

    #[tokio::test]
    async fn reset_and_closed_tunnel_are_errors() {
        let (outbox, _out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let mut body = RecvBody::new(
            1,
            rx,
            outbox.clone(),
            RecvCredit::new(),
            CancelOnDrop::none(),
        );
        tx.send(BodyEvent::Reset(ResetCode::LocalError, "boom".into()))
            .unwrap();
        let err = body.next().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "local service error: boom");
        let (tx, rx) = crate::queue::queue::<BodyEvent>();
        let mut body = RecvBody::new(2, rx, outbox, RecvCredit::new(), CancelOnDrop::none());
        drop(tx);
        assert_eq!(body.next().await.unwrap(), Err(BodyError::TunnelClosed));
    }
}
