//! The rate of on-demand orders: hosts registered under a wildcard entry
//! come from clients, and a client that registers name after name must
//! not spend the account's standing with the authority (Let's Encrypt
//! counts new orders per account and refuses past its limits).

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// At most `max` starts in any `window`.
#[derive(Debug)]
pub struct RateLimit {
    max: usize,
    window: Duration,
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimit {
    /// A limit of `max` per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        RateLimit {
            max,
            window,
            recent: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    /// The most starts in one window.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts a start at `now` if the limit allows one.
    pub fn try_start(&self, now: Instant) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.max {
            return false;
        }
        recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_per_window_then_frees_one_as_each_ages_out() {
        let limit = RateLimit::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limit.try_start(t0));
        assert!(limit.try_start(t0 + Duration::from_secs(10)));
        assert!(!limit.try_start(t0 + Duration::from_secs(59)));
        assert!(limit.try_start(t0 + Duration::from_secs(60)));
        assert!(!limit.try_start(t0 + Duration::from_secs(69)));
        assert!(limit.try_start(t0 + Duration::from_secs(70)));
    }
}
