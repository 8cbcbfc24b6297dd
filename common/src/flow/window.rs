//! The receive window policy: how much credit a stream's reader hands back
//! to the peer, and when. Every decision about window sizes lives here.
//!
//! A reader returns credit once half its window has been consumed, so
//! `Window` frames stay few. A window that a reader drains faster than
//! credit can travel back is what limits a fast transfer, so such a reader's
//! window is widened: when half of it was consumed within [`GROW_WITHIN`],
//! the next grant adds as much again, up to [`MAX_WINDOW`]. A slow reader
//! keeps [`INITIAL_WINDOW`]. All widening draws on a [`WindowBudget`], so
//! readers that drain fast and then all stall cannot make a process hold
//! more than that on top of their initial windows.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::{Duration, Instant};

use crate::protocol::INITIAL_WINDOW;

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
    #[cfg(test)]
    pub(crate) fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// The widening budget of this process: 64 MiB, sixteen streams at
/// [`MAX_WINDOW`].
pub static WIDE_WINDOW_BUDGET: WindowBudget = WindowBudget::new(64 * 1024 * 1024);

/// One reader's window: what it has consumed since its last grant, and
/// how wide the window has grown.
#[derive(Debug)]
pub(crate) struct ReceiveWindow {
    unacked: u32,
    /// The current window: [`INITIAL_WINDOW`], widened for a fast reader.
    size: u32,
    /// When the current half window started to be consumed.
    since: Option<Instant>,
    /// Where the widening beyond [`INITIAL_WINDOW`] comes from.
    budget: &'static WindowBudget,
}

impl ReceiveWindow {
    /// A window of [`INITIAL_WINDOW`] that widens from `budget`.
    pub(crate) fn new(budget: &'static WindowBudget) -> Self {
        ReceiveWindow {
            unacked: 0,
            size: INITIAL_WINDOW,
            since: None,
            budget,
        }
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
        if self.size < MAX_WINDOW && now.duration_since(since) < GROW_WITHIN {
            let wider = self.size.saturating_mul(2).min(MAX_WINDOW);
            if self.budget.take(wider - self.size) {
                increment += wider - self.size;
                self.size = wider;
            }
        }
        self.since = Some(now);
        Some(increment)
    }
}

impl Drop for ReceiveWindow {
    fn drop(&mut self) {
        self.budget.give(self.size - INITIAL_WINDOW);
    }
}
