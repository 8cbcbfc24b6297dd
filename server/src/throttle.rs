//! Failed registrations per address: a stranger guessing tokens (or host
//! names) at the control path is slowed to a few guesses a minute, and
//! told so, while clients with the right token are not affected.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Refused registrations one address may make per [`WINDOW`].
pub const MAX_FAILURES: u32 = 20;
/// The window failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before stale ones are dropped.
const TRACKED: usize = 65_536;

/// Failed registrations by address, each in its window.
#[derive(Debug, Default)]
pub struct FailedAttempts {
    by_addr: HashMap<IpAddr, (u32, Instant)>,
}

impl FailedAttempts {
    /// How long `addr` must wait before it may register again, if it has
    /// used up its failures.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let (count, since) = self.by_addr.get(&addr)?;
        let ends = *since + WINDOW;
        (*count >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    /// Counts one refused registration from `addr`.
    pub fn record(&mut self, addr: IpAddr, now: Instant) {
        if self.by_addr.len() >= TRACKED {
            self.by_addr.retain(|_, (_, since)| now < *since + WINDOW);
        }
        let entry = self.by_addr.entry(addr).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let mut failed = FailedAttempts::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(failed.blocked(ip, t0), None);
            failed.record(ip, t0);
        }
        let wait = failed
            .blocked(ip, t0 + Duration::from_secs(10))
            .expect("blocked");
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(failed.blocked(other, t0), None);
        assert_eq!(failed.blocked(ip, t0 + WINDOW), None);
        failed.record(ip, t0 + WINDOW);
        assert_eq!(failed.blocked(ip, t0 + WINDOW), None, "a fresh window");
    }
}
