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
use sink::{Lines, Sink};

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

    /// Adds a line made by `format_args!` (the rare ones).
    fn say(&self, lines: &mut Lines<'_>, level: Level, text: std::fmt::Arguments<'_>) {
        if level <= self.max {
            lines.line(level, TARGET, |out| {
                // Writing into a Vec fails only when a Display impl does.
                let _ = std::io::Write::write_fmt(out, text);
            });
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
        self.sink.lines(|lines| {
            if dropped > 0 {
                self.say(
                    lines,
                    Level::Warn,
                    format_args!("{dropped} exchanges left out of this log: they came faster than it was written"),
                );
            }
            for event in batch {
                if let TrafficEvent::Ended(e) = event {
                    self.exchange(e, lines);
                }
            }
        });
    }

    fn flush(&mut self) {
        self.sink.flush();
    }
}

impl RequestLog {
    fn exchange(&self, e: &Exchange, lines: &mut Lines<'_>) {
        let ms = Millis(e.elapsed);
        let (method, uri) = (&e.method, &e.uri);
        match &e.failure {
            Some(f) if f.code == ResetCode::LocalUnreachable => {
                if self.set_down(&e.host, true) {
                    self.say(
                        lines,
                        Level::Warn,
                        format_args!(
                            "the local service for {} is unreachable ({}); callers get 502 until it is back",
                            e.host, f.reason
                        ),
                    );
                }
                self.say(
                    lines,
                    Level::Debug,
                    format_args!("{method} {uri} 502 local service unreachable"),
                );
            }
            Some(f) => self.say(
                lines,
                Level::Info,
                format_args!("{method} {uri} failed after {ms} ms: {}", f.reason),
            ),
            None => {
                if self.set_down(&e.host, false) {
                    self.say(
                        lines,
                        Level::Info,
                        format_args!("the local service for {} answers again", e.host),
                    );
                }
                if Level::Info <= self.max {
                    let size = Size(e.response_body.total);
                    lines.line(Level::Info, TARGET, |out| answered(out, e, ms, size));
                }
            }
        }
    }
}

/// `{method} {uri} {status} {ms} ms {size}` (`-` for no status), the line
/// of nearly every exchange: written by hand, far cheaper than through
/// `format_args!` (docs/PERFORMANCE.md, "Counted again").
fn answered(out: &mut Vec<u8>, e: &Exchange, ms: Millis, size: Size) {
    out.extend_from_slice(e.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(e.uri.as_bytes());
    out.push(b' ');
    match e.status {
        Some(status) => decimal(out, u64::from(status)),
        None => out.push(b'-'),
    }
    out.push(b' ');
    ms.put(out);
    out.extend_from_slice(b" ms ");
    size.put(out);
}

/// `n` in decimal.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `tenths` as `whole.tenth`.
fn tenths(out: &mut Vec<u8>, tenths: u64) {
    decimal(out, tenths / 10);
    out.push(b'.');
    out.push(b'0' + (tenths % 10) as u8);
}

/// A duration in milliseconds to a tenth, written with integers (a
/// float's formatting costs more than the rest of the line).
struct Millis(std::time::Duration);

impl Millis {
    fn put(&self, out: &mut Vec<u8>) {
        let tenths_of_ms = (self.0.as_micros() + 50) / 100;
        tenths(out, u64::try_from(tenths_of_ms).unwrap_or(u64::MAX));
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(24);
        self.put(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// A byte count as people read it.
struct Size(u64);

impl Size {
    fn put(&self, out: &mut Vec<u8>) {
        let in_tenths = |unit: u64| (self.0 * 10 + unit / 2) / unit;
        match self.0 {
            b if b < 1024 => {
                decimal(out, b);
                out.extend_from_slice(b" B");
            }
            b if b < 1024 * 1024 => {
                tenths(out, in_tenths(1024));
                out.extend_from_slice(b" KiB");
            }
            _ => {
                tenths(out, in_tenths(1024 * 1024));
                out.extend_from_slice(b" MiB");
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

    fn text(put: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        put(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        let ms = |us| Millis(std::time::Duration::from_micros(us)).to_string();
        assert_eq!(
            [ms(0), ms(149), ms(150), ms(12_345), ms(98_765_432)],
            ["0.0", "0.1", "0.2", "12.3", "98765.4"]
        );
        let size = |b| text(|out| Size(b).put(out));
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(size(u64::MAX / 16), "1099511627776.0 MiB");
    }

    #[test]
    fn an_answered_exchange_reads_method_target_status_time_size() {
        let mut e = Exchange::new_for("a.localhost", "GET", "/x?q=1");
        e.status = Some(404);
        let line = |e: &Exchange, us, bytes| {
            let ms = Millis(std::time::Duration::from_micros(us));
            text(|out| answered(out, e, ms, Size(bytes)))
        };
        assert_eq!(line(&e, 2_345, 13), "GET /x?q=1 404 2.3 ms 13 B");
        e.status = None;
        assert_eq!(line(&e, 0, 2048), "GET /x?q=1 - 0.0 ms 2.0 KiB");
    }
}
