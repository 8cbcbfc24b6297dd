//! One line per exchange in the client's log, as ngrok's console shows
//! them, and one warning per outage of a local service rather than one per
//! request. The lines are gathered and written in batches off the
//! forwarding threads ([`sink`]).

pub(crate) mod sink;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use burrow_common::ResetCode;

use crate::observe::{
    hub::{Subscriber, TrafficEvent},
    Capture, Exchange,
};
use log::{Level, LevelFilter};
use sink::Sink;

/// Where the lines go: `RUST_LOG=burrow::requests=off` silences them.
pub const TARGET: &str = "burrow::requests";

/// Logs each exchange at info; a local service that cannot be reached is
/// reported once when it goes down and once when it is back.
pub struct RequestLog {
    /// Hosts whose local service is down right now.
    down: Mutex<HashSet<String>>,
    /// Whether `down` holds any: answered requests look only at this.
    any_down: AtomicBool,
    /// The most detailed level `RUST_LOG` lets through for [`TARGET`].
    max: LevelFilter,
    sink: Sink,
}

impl RequestLog {
    /// A request log, or `None` when its lines would not be shown (filtered
    /// out, or standard error is `/dev/null`), so that the client records
    /// nothing per request.
    pub fn if_enabled() -> Option<RequestLog> {
        let max = [Level::Debug, Level::Info, Level::Warn]
            .into_iter()
            .find(|&l| log::log_enabled!(target: TARGET, l))?;
        if stderr_is_null() {
            return None;
        }
        let sink = match Sink::start() {
            Ok(sink) => sink,
            Err(e) => {
                log::warn!("no request log: its writer thread did not start: {e}");
                return None;
            }
        };
        Some(RequestLog {
            down: Mutex::default(),
            any_down: AtomicBool::new(false),
            max: max.to_level_filter(),
            sink,
        })
    }

    fn line(&self, level: Level, text: std::fmt::Arguments<'_>) {
        if level <= self.max {
            self.sink.line(level, TARGET, text);
        }
    }

    /// Records whether `host`'s local service answered; `true` when that
    /// changes what was known.
    fn set_down(&self, host: &str, down: bool) -> bool {
        if !down && !self.any_down.load(Ordering::Acquire) {
            return false;
        }
        let mut hosts = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if down {
            hosts.insert(host.to_owned())
        } else {
            hosts.remove(host)
        };
        self.any_down.store(!hosts.is_empty(), Ordering::Release);
        changed
    }
}

impl Subscriber for RequestLog {
    fn capture(&self) -> Capture {
        Capture::default()
    }

    fn events(&mut self, batch: &[TrafficEvent], dropped: u64) {
        if dropped > 0 {
            self.line(
                Level::Warn,
                format_args!("{dropped} exchanges left out of this log: they came faster than it was written"),
            );
        }
        for event in batch {
            if let TrafficEvent::Ended(e) = event {
                self.exchange(e);
            }
        }
    }

    fn flush(&mut self) {
        self.sink.flush();
    }
}

impl RequestLog {
    fn exchange(&self, e: &Exchange) {
        let ms = Millis(e.elapsed);
        let (method, uri) = (&e.method, &e.uri);
        match &e.failure {
            Some(f) if f.code == ResetCode::LocalUnreachable => {
                if self.set_down(&e.host, true) {
                    self.line(
                        Level::Warn,
                        format_args!(
                            "the local service for {} is unreachable ({}); callers get 502 until it is back",
                            e.host, f.reason
                        ),
                    );
                }
                self.line(
                    Level::Debug,
                    format_args!("{method} {uri} 502 local service unreachable"),
                );
            }
            Some(f) => self.line(
                Level::Info,
                format_args!("{method} {uri} failed after {ms} ms: {}", f.reason),
            ),
            None => {
                if self.set_down(&e.host, false) {
                    self.line(
                        Level::Info,
                        format_args!("the local service for {} answers again", e.host),
                    );
                }
                let size = Size(e.response_body.total);
                match e.status {
                    Some(status) => self.line(
                        Level::Info,
                        format_args!("{method} {uri} {status} {ms} ms {size}"),
                    ),
                    None => self.line(Level::Info, format_args!("{method} {uri} - {ms} ms {size}")),
                }
            }
        }
    }
}

/// A duration in milliseconds to a tenth, written with integers (a
/// float's formatting costs more than the rest of the line).
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0.as_micros() + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// A byte count as people read it.
struct Size(u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = |unit: u64| (self.0 * 10 + unit / 2) / unit;
        match self.0 {
            b if b < 1024 => write!(f, "{b} B"),
            b if b < 1024 * 1024 => {
                let t = tenths(1024);
                write!(f, "{}.{} KiB", t / 10, t % 10)
            }
            _ => {
                let t = tenths(1024 * 1024);
                write!(f, "{}.{} MiB", t / 10, t % 10)
            }
        }
    }
}

/// Whether standard error goes to `/dev/null`, where lines would be made
/// for nobody.
fn stderr_is_null() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/self/fd/2"),
        std::fs::metadata("/dev/null"),
    ) {
        (Ok(err), Ok(null)) => err.rdev() == null.rdev() && err.ino() == null.ino(),
        _ => false,
    }
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        let ms = |us| Millis(std::time::Duration::from_micros(us)).to_string();
        assert_eq!(
            [ms(0), ms(149), ms(150), ms(12_345)],
            ["0.0", "0.1", "0.2", "12.3"]
        );
        let size = |b| Size(b).to_string();
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(100 * 1024 * 1024), "100.0 MiB");
    }
}
