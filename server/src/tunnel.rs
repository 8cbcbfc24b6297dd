//! What every worker shares about one registered host: who may call it,
//! the limits its requests are held to, its streams in flight, its request
//! rate and its counts. The registry builds it at registration and again
//! on a reload, so the settings a request is checked against come with the
//! host's sessions, at no cost per request.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use burrow_common::flow::{InFlight, WindowMemory};

use crate::{callers::CallerRules, config::Limits, metrics::TunnelStats};

/// One registered host's shared state, handed out with its sessions.
#[derive(Debug, Default)]
pub struct TunnelState {
    /// Who may call the host; `None`: anyone.
    pub rules: Option<CallerRules>,
    /// The server's own rules for every tunnel's callers (`[access]`).
    pub server_rules: Option<Arc<CallerRules>>,
    /// What one request may ask.
    pub limits: Arc<Limits>,
    /// The host's counts.
    pub stats: Arc<TunnelStats>,
    /// Its streams in flight.
    pub in_flight: Arc<InFlight>,
    /// Its request rate, when the server limits it.
    pub rate: Option<Rate>,
    /// The widest window its answers grew to, over all its client's
    /// connections: what an answer on a long path opens with.
    pub window_memory: Arc<WindowMemory>,
}

impl TunnelState {
    /// A host's state with `rules` for its callers, under the server's
    /// `access` rules and `limits`, counting into `stats`. It goes on
    /// from the host's state `before` (a reload): the streams in flight
    /// and the tokens its requests spent are kept. Without one, they start
    /// afresh (a new holder).
    pub fn new(
        rules: Option<CallerRules>,
        access: Option<Arc<CallerRules>>,
        limits: Arc<Limits>,
        stats: Arc<TunnelStats>,
        before: Option<&TunnelState>,
    ) -> Self {
        let before_rate = before.and_then(|b| b.rate.as_ref());
        TunnelState {
            rules,
            server_rules: access,
            rate: limits
                .requests_per_second
                .map(|per_second| Rate::new(per_second, before_rate)),
            limits,
            stats,
            in_flight: before.map_or_else(Arc::default, |b| b.in_flight.clone()),
            window_memory: before.map_or_else(Arc::default, |b| b.window_memory.clone()),
        }
    }
}

/// A token bucket: `per_second` requests a second, in bursts of up to
/// twice that.
#[derive(Debug)]
pub struct Rate {
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl Rate {
    /// A bucket for `per_second` requests a second: full, or holding what
    /// is left in the bucket it replaces (`before`), at most its new burst.
    pub fn new(per_second: u32, before: Option<&Rate>) -> Self {
        let per_second = f64::from(per_second.max(1));
        let now = Instant::now();
        let left = before.map_or(2.0 * per_second, |b| b.tokens(now));
        Rate {
            per_second,
            bucket: Mutex::new((left.min(2.0 * per_second), now)),
        }
    }

    /// The tokens in the bucket at `now`.
    fn tokens(&self, now: Instant) -> f64 {
        let (tokens, last) = *self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        self.refilled(tokens, last, now)
    }

    /// `tokens` counted at `last`, refilled up to `now`, at most a burst.
    fn refilled(&self, tokens: f64, last: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        (tokens + elapsed * self.per_second).min(2.0 * self.per_second)
    }

    /// Takes one request's token, or says how long until there is one.
    pub fn take(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *bucket;
        *tokens = self.refilled(*tokens, *last, now);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_a_wait() {
        let rate = Rate::new(5, None);
        for i in 0..10 {
            assert!(rate.take().is_ok(), "request {i} is within the burst");
        }
        let wait = rate.take().expect_err("the bucket is empty");
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
    }

    #[test]
    fn a_new_bucket_keeps_what_was_spent_from_the_one_it_replaces() {
        let rate = Rate::new(5, None);
        for _ in 0..10 {
            rate.take().expect("within the burst");
        }
        // The same rate after a reload: still spent.
        assert!(Rate::new(5, Some(&rate)).take().is_err());
        // A lower rate: at most its own burst, and no more than was left.
        let half = Rate::new(100, None);
        for _ in 0..150 {
            half.take().expect("within the burst");
        }
        let lower = Rate::new(10, Some(&half));
        let mut passed = 0;
        while lower.take().is_ok() {
            passed += 1;
        }
        assert!((20..=21).contains(&passed), "{passed}");
    }
}
