//! What a connection knows of its path, for the receive windows of its
//! streams: the round-trip time its own pings measure, and how much
//! widening its streams may hold together.
//!
//! A ping carries the time it was sent (microseconds since the path was
//! made, eight bytes); the peer's pong echoes it, as WebSocket requires,
//! so the round trip is read off the pong with nothing kept per ping. A
//! pong whose payload is not one of ours (an old peer's, or one from
//! before the path was made) is ignored. The origin is the path's own, not
//! the process's: a clock shared by every connection would have to be
//! read first by someone, and a path made before that read would stamp
//! its first pings as time zero.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use tokio::time::Instant;

use super::window::{WindowBudget, GROW_WITHIN};

/// Widening the streams of one connection may hold together: two streams
/// at [`super::MAX_WINDOW`].
pub const CONNECTION_WINDOW_BUDGET: u64 = 32 * 1024 * 1024;

/// One connection's path.
#[derive(Debug)]
pub struct PathState {
    /// Where this path's ping stamps count from.
    origin: Instant,
    /// The smoothed round trip in microseconds; 0 until measured.
    srtt_us: AtomicU64,
    /// What this connection's streams may widen by, together.
    pub(crate) budget: WindowBudget,
}

impl Default for PathState {
    fn default() -> Self {
        PathState::new()
    }
}

impl PathState {
    /// A path not measured yet, with [`CONNECTION_WINDOW_BUDGET`].
    pub fn new() -> PathState {
        PathState::with_budget(CONNECTION_WINDOW_BUDGET)
    }

    /// A path whose streams may widen by `bytes` together.
    pub fn with_budget(bytes: u64) -> PathState {
        PathState {
            origin: Instant::now(),
            srtt_us: AtomicU64::new(0),
            budget: WindowBudget::new(bytes),
        }
    }

    /// The smoothed round-trip time, once a pong has come back.
    pub fn rtt(&self) -> Option<Duration> {
        match self.srtt_us.load(Ordering::Acquire) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Whether the path is long: two round trips beyond [`GROW_WITHIN`],
    /// where a window opened wide pays (on a shorter one the first grant
    /// comes back before the initial window is spent) and a hop between
    /// threads costs nothing next to the round trip.
    pub fn is_long(&self) -> bool {
        self.rtt().is_some_and(|rtt| rtt * 2 > GROW_WITHIN)
    }

    /// Adds one measured round trip: the first is taken as it is, later
    /// ones move the estimate by an eighth, as TCP smooths its own.
    pub fn sample(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .srtt_us
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(if old == 0 { us } else { (old * 7 + us) / 8 })
            });
    }

    /// A ping's payload: the time now.
    pub fn ping(&self) -> Bytes {
        Bytes::copy_from_slice(&self.micros(Instant::now()).to_be_bytes())
    }

    /// Reads a pong: the round trip of one of this process's pings, if it
    /// is one.
    pub fn pong(&self, payload: &[u8]) -> Option<Duration> {
        let sent = u64::from_be_bytes(payload.try_into().ok()?);
        let now = self.micros(Instant::now());
        // A payload from the future is not ours.
        let rtt = Duration::from_micros(now.checked_sub(sent)?);
        self.sample(rtt);
        Some(rtt)
    }

    /// Microseconds from this path's origin to `at`.
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pong_of_our_ping_measures_the_round_trip() {
        let path = PathState::new();
        assert_eq!(path.rtt(), None);
        let ping = path.ping();
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(path.pong(&ping), Some(Duration::from_millis(50)));
        assert_eq!(path.rtt(), Some(Duration::from_millis(50)));
        // Later samples move it by an eighth.
        let ping = path.ping();
        tokio::time::advance(Duration::from_millis(130)).await;
        path.pong(&ping);
        assert_eq!(path.rtt(), Some(Duration::from_millis(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn pongs_that_are_not_ours_are_ignored() {
        let path = PathState::new();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(path.pong(b""), None);
        assert_eq!(path.pong(b"hello"), None);
        assert_eq!(path.pong(&u64::MAX.to_be_bytes()), None);
        assert_eq!(path.rtt(), None);
    }
}
