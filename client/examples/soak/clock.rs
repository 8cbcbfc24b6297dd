//! Times as the processes' logs print them (UTC), so a failure the soak
//! reports can be found in those logs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `HH:MM:SS.mmm` of a wall-clock time, in UTC.
pub fn utc(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

pub fn utc_now() -> String {
    utc(SystemTime::now())
}

/// The run's start, to turn instants into offsets and wall-clock times.
#[derive(Clone, Copy)]
pub struct Origin {
    instant: Instant,
    system: SystemTime,
}

impl Origin {
    pub fn now() -> Origin {
        Origin {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// Seconds since the start.
    pub fn offset(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.instant).as_secs_f64()
    }

    /// `t+12.3 s (01:47:31.204 UTC)`.
    pub fn show(&self, at: Instant) -> String {
        let wall = self.system + at.saturating_duration_since(self.instant);
        format!("t+{:.1} s ({} UTC)", self.offset(at), utc(wall))
    }
}

/// Seconds with one decimal.
pub fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}
