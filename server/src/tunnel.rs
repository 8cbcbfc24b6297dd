//! What every worker shares about one registered host: who may call it,
//! the limits its requests are held to, its streams in flight, its request
//! rate and its counts. The registry builds it at registration and again
//! on a reload, so the settings a request is checked against come with the
//! host's sessions, at no cost per request.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use burrow_common::flow::InFlight;

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
}

impl TunnelState {
    /// A host's state with `rules` for its callers, under the server's
    /// `access` rules and `limits` (fresh counts and streams in flight).
    pub fn new(
        rules: Option<CallerRules>,
        access: Option<Arc<CallerRules>>,
        limits: Arc<Limits>,
    ) -> Self {
        TunnelState {
            rules,
            server_rules: access,
            rate: limits.requests_per_second.map(Rate::new),
            limits,
            ..TunnelState::default()
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
    /// A full bucket for `per_second` requests a second.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Rate {
            per_second,
            bucket: Mutex::new((2.0 * per_second, Instant::now())),
        }
    }

    /// Takes one request's token, or says how long until there is one.
    pub fn take(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *bucket;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(2.0 * self.per_second);
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
        let rate = Rate::new(5);
        for i in 0..10 {
            assert!(rate.take().is_ok(), "request {i} is within the burst");
        }
        let wait = rate.take().expect_err("the bucket is empty");
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
    }
}
