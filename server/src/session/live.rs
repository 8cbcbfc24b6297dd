//! How many sessions run, for the drain to know when the last is gone.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of running sessions, and a wake-up when it reaches zero (the
/// end of a drain).
#[derive(Default)]
pub struct Live {
    count: AtomicUsize,
    none_left: Notify,
}

impl Live {
    /// Sessions running now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub(super) fn started(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn stopped(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    /// Resolves once no session runs.
    pub async fn none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}
