//! Where the request log's lines go: gathered in memory and written to
//! standard error by a thread of their own, a batch at a time.
//!
//! A line written as its request ends costs a `write(2)` per request, and
//! with a connection per thread the lock around standard error makes
//! threads wait on (and wake) each other: about 2.5 µs of CPU and 12 % of
//! the requests per second in the benchmark (docs/PERFORMANCE.md, "The
//! request log"). Gathered, the lines of a batch of exchanges are
//! formatted together on the event hub's thread ([`Sink::lines`]: one
//! clock reading, and one lock per [`PART`] of lines) and copied into a
//! buffer; the writer is woken by the first lines after a write, lets
//! [`GATHER`] pass so that a busy tunnel's lines go out together, and
//! writes them in one call. A reader of standard error that falls behind
//! (a pipe nobody reads) never holds a request up: past [`MAX_PENDING`]
//! bytes, lines are counted rather than kept, and the count is written
//! when the reader is back.

use std::{
    cell::{Cell, RefCell},
    io::{IsTerminal, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::Level;

/// How long the writer waits, once woken, for more lines to join a batch:
/// short enough that a person watching sees a request at once.
const GATHER: Duration = Duration::from_millis(50);

/// Most bytes kept for the writer: a second of a busy tunnel's lines.
const MAX_PENDING: usize = 1 << 20;

/// The lines for the writer, and what it needs to know to write them.
struct Pending {
    bytes: Vec<u8>,
    /// Lines left out since the last write (the buffer was full).
    dropped: u64,
    /// The writer waits for a first line (and must be woken by it).
    waiting: bool,
    /// No more lines come: write what is left and end.
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
    /// Held while a batch is written, so that a flush waits for the write
    /// that took the lines before it.
    out: Mutex<()>,
    colour: bool,
}

/// The request log's output, and its writer thread while it lives.
pub struct Sink {
    shared: Arc<Shared>,
}

thread_local! {
    /// Where lines are formatted, outside the lock.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The second last shown, and how it reads.
    static STAMP: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [b'-'; 20])) };
}

/// Lines formatted together and handed to the writer at once.
pub struct Lines<'a> {
    out: &'a mut Vec<u8>,
    stamp: [u8; 20],
    count: u64,
    /// Where they go, a part at a time.
    to: &'a Shared,
}

/// Lines handed to the writer in parts of about this size: a batch of long
/// lines is not left out whole when only its end would not fit.
const PART: usize = 64 * 1024;

impl Lines<'_> {
    /// Adds one line, as the process's other log lines look:
    /// `[time LEVEL target] text`, the text written by `text`.
    pub fn line(&mut self, level: Level, target: &str, text: impl FnOnce(&mut Vec<u8>)) {
        let (start, end) = match (self.to.colour, level) {
            (false, _) => ("", ""),
            (true, Level::Error) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::Warn) => ("\x1b[33m", "\x1b[0m"),
            (true, Level::Info) => ("\x1b[32m", "\x1b[0m"),
            (true, _) => ("\x1b[34m", "\x1b[0m"),
        };
        let out = &mut *self.out;
        out.push(b'[');
        out.extend_from_slice(&self.stamp);
        out.push(b' ');
        out.extend_from_slice(start.as_bytes());
        // Five wide, as `{level:<5}` pads it.
        let name = level.as_str();
        out.extend_from_slice(name.as_bytes());
        out.extend(std::iter::repeat_n(b' ', 5usize.saturating_sub(name.len())));
        out.extend_from_slice(end.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b"] ");
        text(out);
        out.push(b'\n');
        self.count += 1;
        if self.out.len() >= PART {
            self.to.push(self.out, self.count);
            self.out.clear();
            self.count = 0;
        }
    }
}

/// How `second` reads, worked out once per second on each thread.
fn stamp(second: u64) -> [u8; 20] {
    STAMP.with(|last| match last.get() {
        (s, stamp) if s == second => stamp,
        _ => {
            let stamp = utc(second);
            last.set((second, stamp));
            stamp
        }
    })
}

impl Sink {
    /// A sink whose writer thread starts now.
    pub fn start() -> std::io::Result<Sink> {
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var("RUST_LOG_STYLE").map_or(true, |s| s != "never");
        let shared = Arc::new(Shared::new(colour));
        let writer = Arc::clone(&shared);
        thread::Builder::new()
            .name("burrow-log".into())
            .spawn(move || writer.run())?;
        Ok(Sink { shared })
    }

    /// Adds the lines `write` makes, stamped with one reading of the
    /// clock and handed to the writer a part at a time: a batch of
    /// exchanges costs one clock reading and a lock per part, not one of
    /// each per line.
    pub fn lines(&self, write: impl FnOnce(&mut Lines<'_>)) {
        SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            let mut lines = Lines {
                out: &mut out,
                stamp: stamp(now_secs()),
                count: 0,
                to: &self.shared,
            };
            write(&mut lines);
            let count = lines.count;
            if count > 0 {
                self.shared.push(&out, count);
            }
        });
    }

    /// Writes the lines gathered so far, now.
    pub fn flush(&self) {
        self.shared.write_batch(&mut Vec::new());
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        self.flush();
    }
}

impl Shared {
    /// Nothing pending yet; lines in colour when `colour`.
    fn new(colour: bool) -> Shared {
        Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                dropped: 0,
                waiting: false,
                closed: false,
            }),
            ready: Condvar::new(),
            out: Mutex::new(()),
            colour,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `count` whole lines for the writer, or counts them as left
    /// out when the writer is that far behind.
    fn push(&self, lines: &[u8], count: u64) {
        let wake = {
            let mut p = self.lock();
            if p.bytes.len() + lines.len() > MAX_PENDING {
                p.dropped += count;
                return;
            }
            let wake = p.bytes.is_empty() && p.waiting;
            p.bytes.extend_from_slice(lines);
            p.waiting &= !wake;
            wake
        };
        if wake {
            self.ready.notify_one();
        }
    }

    /// The writer thread: a batch per wake-up, until the sink is dropped.
    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            let mut p = self.lock();
            while p.bytes.is_empty() && p.dropped == 0 && !p.closed {
                p.waiting = true;
                p = self.ready.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            p.waiting = false;
            let closed = p.closed;
            drop(p);
            if closed {
                return;
            }
            thread::sleep(GATHER);
            self.write_batch(&mut batch);
        }
    }

    /// Takes what is pending and writes it, with the count of lines left
    /// out, if any.
    fn write_batch(&self, batch: &mut Vec<u8>) {
        let _out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = {
            let mut p = self.lock();
            std::mem::swap(&mut p.bytes, batch);
            std::mem::take(&mut p.dropped)
        };
        if dropped > 0 {
            let _ = writeln!(
                batch,
                "[{} WARN  {}] {dropped} request lines left out: standard error was not read as fast as they came",
                String::from_utf8_lossy(&utc(now_secs())),
                super::TARGET
            );
        }
        if !batch.is_empty() {
            // Nowhere to report a failed write to: standard error is it.
            let _ = std::io::stderr().lock().write_all(batch);
        }
        batch.clear();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, as the other log
/// lines show time (days to a civil date as in H. Hinnant's algorithm).
pub(crate) fn utc(secs: u64) -> [u8; 20] {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 20];
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    out.copy_from_slice(&text.as_bytes()[..20]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_the_calendar_does() {
        assert_eq!(&utc(0), b"1970-01-01T00:00:00Z");
        assert_eq!(&utc(951_782_400), b"2000-02-29T00:00:00Z");
        assert_eq!(&utc(1_796_397_107), b"2026-12-04T15:11:47Z");
        assert_eq!(&utc(4_107_542_399), b"2100-02-28T23:59:59Z");
    }

    /// Lines stamped `second`, formatted into `out`, going to `to`.
    fn lines<'a>(out: &'a mut Vec<u8>, second: u64, to: &'a Shared) -> Lines<'a> {
        Lines {
            out,
            stamp: utc(second),
            count: 0,
            to,
        }
    }

    #[test]
    fn lines_look_like_the_other_log_lines_and_are_counted() {
        let (shared, mut out) = (Shared::new(false), Vec::new());
        let mut lines = lines(&mut out, 1_796_397_107, &shared);
        lines.line(Level::Info, "burrow::requests", |o| {
            o.extend_from_slice(b"GET / 200")
        });
        lines.line(Level::Debug, "t", |_| ());
        assert_eq!(lines.count, 2);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "[2026-12-04T15:11:47Z INFO  burrow::requests] GET / 200\n[2026-12-04T15:11:47Z DEBUG t] \n"
        );
    }

    #[test]
    fn a_long_batch_goes_in_parts_and_only_what_does_not_fit_is_left_out() {
        let room = 3 * PART / 2;
        let (shared, mut out) = (Shared::new(false), Vec::new());
        shared.lock().bytes = vec![b'x'; MAX_PENDING - room];
        let mut lines = lines(&mut out, 0, &shared);
        let long = vec![b'a'; 1000];
        for _ in 0..200 {
            lines.line(Level::Info, "t", |o| o.extend_from_slice(&long));
        }
        // Each line is 1,032 bytes: a part is 64 lines. The first part fits
        // in what room is left, the next two do not; eight lines wait.
        let line = 1032;
        assert_eq!(lines.count, 8);
        assert_eq!(out.len(), 8 * line);
        let p = shared.lock();
        assert_eq!(p.bytes.len(), MAX_PENDING - room + 64 * line);
        assert_eq!(p.dropped, 128);
    }
}
