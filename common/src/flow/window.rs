//! The receive window policy: how much credit a stream's reader hands back
//! to the peer, and when. Every decision about window sizes lives here.
//!
//! A reader returns credit once half its window has been consumed, so
//! `Window` frames stay few. What limits a transfer over a long path is a
//! window smaller than the path's bandwidth times its round trip: such a
//! reader drains half its window within about a round trip, however fast
//! the path. So a window is doubled when half of it was consumed within
//! two round trips of the connection ([`super::PathState`], measured by its
//! pings; [`GROW_WITHIN`] at the least, for short paths whose scheduling
//! delays dwarf the round trip), up to [`MAX_WINDOW`] on a path whose two
//! round trips are longer than that and [`SHORT_MAX_WINDOW`] on a shorter
//! one, as QUIC's receivers
//! tune theirs; or widened at once to what the path carries in two round
//! trips at the rate that half window came in, when that is more (the
//! bandwidth-delay product, as h2's BDP pings estimate it). A reader that takes more than [`SHRINK_AFTER`] times that
//! to drain half its window is slower than its path: its window is halved
//! (to [`INITIAL_WINDOW`] at the least) by withholding the difference from
//! the next grants, since credit once given cannot be taken back.
//!
//! Widening draws on two budgets: the connection's and the process's
//! ([`WIDE_WINDOW_BUDGET`]), so that readers that drain fast and then all
//! stall cannot make a connection or a process hold more than these on top
//! of their initial windows. A slow reader holds back only its own stream.

use std::sync::{
    atomic::{AtomicU32, AtomicU64, Ordering},
    Arc,
};

use tokio::{
    sync::{futures::Notified, Notify},
    time::{Duration, Instant},
};

use super::path::PathState;
use crate::protocol::INITIAL_WINDOW;

/// The widest a stream's receive window grows, for a reader that keeps up:
/// enough for about 100 MiB/s over 100 ms.
pub const MAX_WINDOW: u32 = 16 * 1024 * 1024;

/// The shortest "quickly" for the widening: half a window consumed within
/// this time (or two round trips, if longer) doubles the window.
pub const GROW_WITHIN: Duration = Duration::from_millis(10);

/// The widest a window grows on a short path (two round trips within
/// [`GROW_WITHIN`]), where scheduling rather than the round trip delays the
/// credit: 4 MiB is what a fast reader on loopback uses, and a round trip
/// measured while the machine is busy must not make it hold more.
pub const SHORT_MAX_WINDOW: u32 = 4 * 1024 * 1024;

/// A reader that takes this many times "quickly" to consume half its
/// window has it halved.
pub const SHRINK_AFTER: u32 = 8;

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
    pub(crate) fn take(&self, n: u32) -> bool {
        let n = u64::from(n);
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    pub(crate) fn give(&self, n: u32) {
        self.left.fetch_add(u64::from(n), Ordering::AcqRel);
    }

    /// Bytes not taken.
    #[cfg(test)]
    pub(crate) fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// The widening budget of this process: eight streams at [`MAX_WINDOW`].
pub static WIDE_WINDOW_BUDGET: WindowBudget = WindowBudget::new(128 * 1024 * 1024);

/// The path of streams whose connection does not measure one: never
/// measured, so their windows widen by [`GROW_WITHIN`] alone.
pub(crate) fn unmeasured() -> Arc<PathState> {
    static NONE: std::sync::OnceLock<Arc<PathState>> = std::sync::OnceLock::new();
    Arc::clone(NONE.get_or_init(|| Arc::new(PathState::with_budget(u64::MAX / 2))))
}

/// One reader's window: what it has consumed since its last grant, and
/// how wide the window has grown.
#[derive(Debug)]
pub(crate) struct ReceiveWindow {
    unacked: u32,
    /// The current window: [`INITIAL_WINDOW`], widened for a fast reader.
    size: u32,
    /// Credit still to be withheld from grants, after a shrink.
    owed: u32,
    /// When the current half window started to be consumed.
    since: Option<Instant>,
    /// Where the widening beyond [`INITIAL_WINDOW`] comes from, besides
    /// the connection's budget.
    budget: &'static WindowBudget,
    path: Arc<PathState>,
    /// Where the window's widest size is noted for the streams that open
    /// after it, if anywhere.
    memory: Option<Arc<WindowMemory>>,
}

/// The widest window the streams of one peer's connections grew to
/// (shared by a client's connections to one host, which cross the same
/// path): what a stream opening on a long path starts with, and what a
/// client promises the request bodies to come (see
/// [`super::OpeningCredit`]).
#[derive(Debug, Default)]
pub struct WindowMemory {
    widest: AtomicU32,
    /// Wakes the connections that promise from it when it grows.
    grown: Notify,
}

impl WindowMemory {
    pub(crate) fn grew_to(&self, size: u32) {
        if self.widest.fetch_max(size, Ordering::Relaxed) < size {
            self.grown.notify_waiters();
        }
    }

    pub(crate) fn widest(&self) -> u32 {
        self.widest.load(Ordering::Relaxed)
    }

    /// Resolves once the widest window grows after this future is first
    /// polled: a connection that has carried nothing since then promises
    /// the new width (creating the future costs nothing; polling it takes
    /// a lock, for connections on long paths only).
    pub fn grown(&self) -> Notified<'_> {
        self.grown.notified()
    }
}

impl ReceiveWindow {
    /// A window of [`INITIAL_WINDOW`] on `path`, widening from `path`'s
    /// budget and `budget`.
    pub(crate) fn new(budget: &'static WindowBudget, path: Arc<PathState>) -> Self {
        ReceiveWindow {
            unacked: 0,
            size: INITIAL_WINDOW,
            owed: 0,
            since: None,
            budget,
            path,
            memory: None,
        }
    }

    /// A window on `path` that opens as wide as the widest `memory` holds,
    /// when the path is long (two round trips beyond
    /// [`GROW_WITHIN`]) and the budgets allow; with the widening, to grant
    /// the peer at once.
    pub(crate) fn opening(
        budget: &'static WindowBudget,
        path: Arc<PathState>,
        memory: Arc<WindowMemory>,
    ) -> (Self, u32) {
        let mut window = ReceiveWindow::new(budget, path);
        let long = window.path.is_long();
        let wanted = memory.widest().min(MAX_WINDOW);
        window.memory = Some(memory);
        let extra = wanted.saturating_sub(window.size);
        if long && extra > 0 && window.take(extra) {
            window.size += extra;
            return (window, extra);
        }
        (window, 0)
    }

    /// A window of [`INITIAL_WINDOW`] and `extra` on `path`, whose widening
    /// by `extra` the budgets gave already (to a promise, see
    /// [`super::OpeningCredit`]).
    pub(crate) fn drawn(
        budget: &'static WindowBudget,
        path: Arc<PathState>,
        memory: Arc<WindowMemory>,
        extra: u32,
    ) -> Self {
        let mut window = ReceiveWindow::new(budget, path);
        window.size = INITIAL_WINDOW + extra;
        window.memory = Some(memory);
        window
    }

    /// Records `n` bytes consumed by the reader; returns the credit to
    /// grant the peer now, if any.
    pub(crate) fn consumed(&mut self, n: usize) -> Option<u32> {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.unacked = self.unacked.saturating_add(n as u32);
        if self.unacked < self.size / 2 {
            return None;
        }
        let mut increment = std::mem::take(&mut self.unacked);
        let took = now.duration_since(since);
        let rtt = self.path.rtt();
        let two_trips = rtt.map_or(Duration::ZERO, |rtt| rtt * 2);
        let quickly = two_trips.max(GROW_WITHIN);
        if took < quickly {
            // A short path (where GROW_WITHIN decides) keeps the windows, and
            // the memory, it always had.
            let limit = if two_trips > GROW_WITHIN {
                MAX_WINDOW
            } else {
                SHORT_MAX_WINDOW
            };
            // What the path carries in two round trips at the rate this
            // half window came in, if that is more than twice the window:
            // a long fast path gets its window in one step, not five.
            let wanted = rtt.map_or(0, |rtt| {
                let rate = f64::from(increment) / took.max(Duration::from_millis(1)).as_secs_f64();
                (rate * (rtt * 2).as_secs_f64()) as u64
            });
            increment += self.widen(wanted, limit);
        } else if took > quickly * SHRINK_AFTER {
            self.narrow();
        }
        let paid = self.owed.min(increment);
        if paid > 0 {
            self.owed -= paid;
            increment -= paid;
            self.give(paid);
        }
        self.since = Some(now);
        (increment > 0).then_some(increment)
    }

    /// Widens the window to `wanted` bytes, or at least doubles it, as far
    /// as `limit` and both budgets allow; returns the widening.
    fn widen(&mut self, wanted: u64, limit: u32) -> u32 {
        let doubled = self.size.saturating_mul(2);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        for wider in [wanted.max(doubled), doubled] {
            let extra = wider.min(limit).saturating_sub(self.size);
            if extra > 0 && self.take(extra) {
                self.size += extra;
                if let Some(memory) = &self.memory {
                    memory.grew_to(self.size);
                }
                return extra;
            }
        }
        0
    }

    fn take(&self, n: u32) -> bool {
        take_both(self.budget, &self.path, n)
    }

    /// Halves the window; the difference is withheld from coming grants.
    fn narrow(&mut self) {
        let narrower = (self.size / 2).max(INITIAL_WINDOW);
        self.owed += self.size - narrower;
        self.size = narrower;
    }

    fn give(&self, n: u32) {
        give_both(self.budget, &self.path, n);
    }

    /// The current window.
    #[cfg(test)]
    pub(crate) fn size(&self) -> u32 {
        self.size
    }
}

/// Takes `n` bytes from `budget` and `path`'s, or from neither.
pub(crate) fn take_both(budget: &WindowBudget, path: &PathState, n: u32) -> bool {
    if !budget.take(n) {
        return false;
    }
    if !path.budget.take(n) {
        budget.give(n);
        return false;
    }
    true
}

/// Gives `n` bytes back to `budget` and `path`'s.
pub(crate) fn give_both(budget: &WindowBudget, path: &PathState, n: u32) {
    budget.give(n);
    path.budget.give(n);
}

/// A stream's receive window made as the stream opens, before its body's
/// reader exists: see [`OpenedWindow::on`].
#[derive(Debug)]
pub struct OpenedWindow(pub(crate) ReceiveWindow);

impl OpenedWindow {
    /// The window of a stream opening on `path`, noting in `memory` how
    /// wide it grows, and the credit beyond the initial window to grant
    /// the peer with the request (0: none). The opener must send that
    /// grant, and give it to the stream's `RecvCredit`, before any frame
    /// that lets the peer answer.
    pub fn on(path: Arc<PathState>, memory: Arc<WindowMemory>) -> (OpenedWindow, u32) {
        let (window, extra) = ReceiveWindow::opening(&WIDE_WINDOW_BUDGET, path, memory);
        (OpenedWindow(window), extra)
    }
}

impl Drop for ReceiveWindow {
    fn drop(&mut self) {
        self.give(self.size - INITIAL_WINDOW + self.owed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u32 = 1024;

    /// Consumes half the window at once, `after` the last grant.
    async fn half_after(w: &mut ReceiveWindow, after: Duration) -> Option<u32> {
        tokio::time::advance(after).await;
        w.consumed(w.size() as usize / 2)
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_path_widens_a_window_the_short_rule_would_keep() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        let path = Arc::new(PathState::new());
        path.sample(Duration::from_millis(100));
        let mut w = ReceiveWindow::new(&BUDGET, path);
        w.consumed(0);
        // Half a window per 150 ms: slower than GROW_WITHIN, but within two
        // round trips of this path, so the window is what holds it back.
        let mut sizes = Vec::new();
        for _ in 0..7 {
            half_after(&mut w, Duration::from_millis(150)).await;
            sizes.push(w.size() / K);
        }
        assert_eq!(sizes, [1024, 2048, 4096, 8192, 16384, 16384, 16384]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_on_a_long_path_opens_as_wide_as_the_widest_before_it_within_the_budgets() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        let memory = Arc::new(WindowMemory::default());
        let long = Arc::new(PathState::with_budget(12 << 20));
        long.sample(Duration::from_millis(50));
        // Nothing widened yet: the initial window, no grant ahead.
        let (mut first, ahead) = ReceiveWindow::opening(&BUDGET, long.clone(), memory.clone());
        assert_eq!((first.size(), ahead), (INITIAL_WINDOW, 0));
        first.consumed(0);
        half_after(&mut first, Duration::from_millis(5)).await;
        assert_eq!(first.size(), 5 << 20);
        // The next stream (on this connection or another of the same
        // memory) opens at 5 MiB, granting the difference ahead.
        let (second, ahead) = ReceiveWindow::opening(&BUDGET, long.clone(), memory.clone());
        assert_eq!(second.size(), 5 << 20);
        assert_eq!(ahead, (5 << 20) - INITIAL_WINDOW);
        // 3 MiB of the connection's 12 are left: a third opens at the
        // initial window.
        let (third, ahead) = ReceiveWindow::opening(&BUDGET, long.clone(), memory.clone());
        assert_eq!((third.size(), ahead), (INITIAL_WINDOW, 0));
        drop((first, second, third));
        assert_eq!(long.budget.left(), 12 << 20, "every widening given back");
        // A short path never opens wide, whatever the memory holds.
        let short = Arc::new(PathState::with_budget(8 << 20));
        short.sample(Duration::from_millis(1));
        let (w, ahead) = ReceiveWindow::opening(&BUDGET, short, memory);
        assert_eq!((w.size(), ahead), (INITIAL_WINDOW, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_long_path_gets_its_bandwidth_delay_product_at_once() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        let path = Arc::new(PathState::new());
        path.sample(Duration::from_millis(50));
        let mut w = ReceiveWindow::new(&BUDGET, path);
        w.consumed(0);
        // 256 KiB in 5 ms is 50 MiB/s: two round trips of it are 5 MiB.
        let grant = half_after(&mut w, Duration::from_millis(5)).await;
        assert_eq!(w.size(), 5 << 20);
        assert_eq!(grant, Some(256 * K + (5 << 20) - INITIAL_WINDOW));
        // Faster still: capped.
        half_after(&mut w, Duration::from_millis(1)).await;
        assert_eq!(w.size(), MAX_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_path_stops_where_it_always_did() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        let path = Arc::new(PathState::new());
        path.sample(Duration::from_micros(200));
        let mut w = ReceiveWindow::new(&BUDGET, path);
        w.consumed(0);
        for _ in 0..8 {
            half_after(&mut w, Duration::from_millis(1)).await;
        }
        assert_eq!(w.size(), SHORT_MAX_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_round_trip_the_short_rule_holds() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        let mut w = ReceiveWindow::new(&BUDGET, Arc::new(PathState::new()));
        w.consumed(0);
        assert_eq!(
            half_after(&mut w, Duration::from_millis(150)).await,
            Some(256 * K)
        );
        assert_eq!(w.size(), INITIAL_WINDOW);
        half_after(&mut w, Duration::from_millis(5)).await;
        assert_eq!(w.size(), 2 * INITIAL_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_gives_the_widening_back_a_grant_at_a_time() {
        static BUDGET: WindowBudget = WindowBudget::new(64 << 20);
        let path = Arc::new(PathState::with_budget(64 << 20));
        let mut w = ReceiveWindow::new(&BUDGET, Arc::clone(&path));
        w.consumed(0);
        // Fast: 512 KiB -> 1 -> 2 -> 4 MiB. The peer may have a whole
        // window outstanding: `outstanding` follows it.
        let mut outstanding = i64::from(INITIAL_WINDOW);
        for _ in 0..3 {
            let n = i64::from(w.size() / 2);
            let grant = half_after(&mut w, Duration::from_millis(1)).await;
            outstanding += i64::from(grant.unwrap_or(0)) - n;
        }
        assert_eq!(w.size(), 4096 * K);
        assert_eq!(BUDGET.left(), (64 << 20) - u64::from(3584 * K));
        // Slow: each half takes a second. The window halves each time; the
        // peer's credit shrinks with it, never above the window.
        let mut sizes = Vec::new();
        for _ in 0..4 {
            let n = i64::from(w.size() / 2);
            let grant = half_after(&mut w, Duration::from_secs(1)).await;
            outstanding += i64::from(grant.unwrap_or(0)) - n;
            assert_eq!(
                outstanding,
                i64::from(w.size()),
                "the peer's credit is the window"
            );
            sizes.push(w.size() / K);
        }
        assert_eq!(sizes, [2048, 1024, 512, 512]);
        drop(w);
        assert_eq!(BUDGET.left(), 64 << 20);
        assert_eq!(path.budget.left(), 64 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_s_budget_bounds_its_streams_together() {
        static BUDGET: WindowBudget = WindowBudget::new(1 << 30);
        // Room for one stream to reach 2 MiB (1.5 MiB of widening).
        let path = Arc::new(PathState::with_budget(1536 * K as u64));
        let mut a = ReceiveWindow::new(&BUDGET, Arc::clone(&path));
        let mut b = ReceiveWindow::new(&BUDGET, Arc::clone(&path));
        a.consumed(0);
        b.consumed(0);
        for _ in 0..4 {
            half_after(&mut a, Duration::from_millis(1)).await;
        }
        for _ in 0..4 {
            half_after(&mut b, Duration::from_millis(1)).await;
        }
        assert_eq!((a.size() / K, b.size() / K), (2048, 512));
        // The process budget gave back what the connection refused.
        assert_eq!(BUDGET.left(), (1 << 30) - u64::from(1536 * K));
        drop(a);
        half_after(&mut b, Duration::from_millis(1)).await;
        assert_eq!(b.size() / K, 1024);
    }
}
