//! A connection's read loop: what wakes it (the socket, its timers, the
//! stop signal) and what each wake does.

use std::time::Duration;

use actix_http::ws::Item;
use awc::ws;
use burrow_common::{
    connection::{Incoming, WsIn},
    fragments::Piece,
    Frame,
};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{dispatch::Dispatcher, ConnError, Ws};
use crate::shutdown::Shutdown;

/// Shortest period of a connection's local-timeout sweep.
const SWEEP_MIN: Duration = Duration::from_millis(100);
/// Longest period of a connection's local-timeout sweep.
const SWEEP_MAX: Duration = Duration::from_secs(5);
/// Shortest period of the idle check.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(100);

/// What woke the read loop.
enum Wake {
    /// A WebSocket frame, the end of the socket, or its error.
    Socket(Option<Result<ws::Frame, awc::error::WsProtocolError>>),
    /// The alarm rang: one of the timers' deadlines may have come.
    Alarm,
    /// Request bodies' windows grew on another connection: promise as
    /// much here.
    Widened,
    /// The client is shutting down.
    Shutdown,
}

/// The read loop's timers (the local-timeout sweep, the idle check and the
/// silence), kept as deadlines behind one alarm armed for the earliest.
/// The loop polls its timers on each wake the socket does not settle, and
/// a tokio timer's poll is not free: one is polled instead of three
/// (docs/PERFORMANCE.md, "Counted again"). Deadlines move only when the
/// alarm rings (the silence is pushed forward lazily, by the time last
/// heard), so the alarm is not reset as messages come.
struct Timers {
    alarm: std::pin::Pin<Box<tokio::time::Sleep>>,
    heard: Instant,
    silence: Duration,
    sweep_every: Duration,
    /// `None` while no stream is open, so that an idle connection sleeps.
    next_sweep: Option<Instant>,
    /// The idle check's period and next time, with a drain after idling
    /// only.
    idle_check: Option<(Duration, Instant)>,
    busy_at: Instant,
    opened_then: u64,
}

/// The timers' work that came due.
#[derive(Debug, Default, PartialEq, Eq)]
struct Due {
    sweep: bool,
    idle_check: bool,
    silent: bool,
}

impl Timers {
    fn new(
        local_timeout: Duration,
        drain_after: Option<Duration>,
        opened: u64,
        silence: Duration,
    ) -> Self {
        let now = Instant::now();
        // Local response timeouts are enforced to within a quarter of their
        // length by one sweep per connection (it looks only while streams
        // are open).
        let sweep_every = (local_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        // The idle check: a connection that may drain looks a few times
        // per idle period whether it carried a request since.
        let idle_every = drain_after.map(|d| (d / 4).max(IDLE_CHECK_MIN));
        let mut timers = Timers {
            alarm: Box::pin(tokio::time::sleep_until(now)),
            heard: now,
            silence,
            sweep_every,
            next_sweep: Some(now + sweep_every),
            idle_check: idle_every.map(|every| (every, now + every)),
            busy_at: now,
            opened_then: opened,
        };
        timers.arm();
        timers
    }

    /// Arms the alarm for the earliest deadline (unless it is set so).
    fn arm(&mut self) {
        let mut at = self.heard + self.silence;
        if let Some(sweep) = self.next_sweep {
            at = at.min(sweep);
        }
        if let Some((_, next)) = self.idle_check {
            at = at.min(next);
        }
        if at != self.alarm.deadline() {
            self.alarm.as_mut().reset(at);
        }
    }

    /// Takes the sweep up again once a stream is open (after it found
    /// none): at most once a sweep period.
    fn streams_open(&mut self) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(Instant::now() + self.sweep_every);
            self.arm();
        }
    }

    /// What came due by `now` (the sweep only while streams are `open`),
    /// each deadline that passed moved on (as `MissedTickBehavior::Delay`
    /// would), and the alarm armed again.
    fn ring(&mut self, now: Instant, open: bool) -> Due {
        let mut due = Due::default();
        if self.next_sweep.is_some_and(|at| now >= at) {
            due.sweep = open;
            self.next_sweep = open.then(|| now + self.sweep_every);
        }
        if let Some((every, next)) = &mut self.idle_check {
            if now >= *next {
                due.idle_check = true;
                *next = now + *every;
            }
        }
        due.silent = now.saturating_duration_since(self.heard) >= self.silence;
        self.arm();
        due
    }
}

impl Dispatcher {
    /// Serves the connection until it ends; `Err(Drained)` once a drain it
    /// asked for is complete.
    pub(super) async fn read_loop(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<Ws>,
        shutdown: &Shutdown,
    ) -> Result<(), ConnError> {
        let silence = self.silence;
        let mut timers = Timers::new(
            self.ctx.local_timeout,
            self.drain_after,
            self.opened,
            silence,
        );
        // One future for the connection's life: polled only until it fires.
        let mut stop = std::pin::pin!(shutdown.requested());
        let mut stopping = false;
        loop {
            let stop = (!stopping).then_some(stop.as_mut());
            match self.wake(stream, &mut timers, stop).await {
                Wake::Socket(next) => {
                    timers.heard = Instant::now();
                    self.on_socket(next)?;
                }
                Wake::Alarm => {
                    let open = !self.streams.borrow().is_empty();
                    let due = timers.ring(Instant::now(), open);
                    if due.silent {
                        let why = format!("no word from the server for {} s", silence.as_secs());
                        return Err(ConnError::Lost(why));
                    }
                    if due.sweep {
                        self.sweep();
                    }
                    if due.idle_check && !self.drain_sent {
                        self.idle_check(&mut timers);
                    }
                }
                Wake::Widened => self.promise(),
                Wake::Shutdown if self.can_drain => {
                    stopping = true;
                    self.ask_drain();
                }
                Wake::Shutdown => return Err(ConnError::Drained),
            }
        }
    }

    /// The next thing to do. `stop` is the shutdown signal until it has
    /// fired.
    async fn wake(
        &self,
        stream: &mut futures_util::stream::SplitStream<Ws>,
        timers: &mut Timers,
        stop: Option<std::pin::Pin<&mut impl std::future::Future<Output = ()>>>,
    ) -> Wake {
        if !self.streams.borrow().is_empty() {
            timers.streams_open();
        }
        // Only a long path's connections promise (and pay the lock).
        let long = self.opening.on_long_path();
        let stop = async {
            match stop {
                Some(stop) => stop.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            next = stream.next() => Wake::Socket(next),
            () = timers.alarm.as_mut() => Wake::Alarm,
            () = self.ctx.body_windows.grown(), if long => Wake::Widened,
            () = stop => Wake::Shutdown,
        }
    }

    /// Asks the server to drain the connection once it has carried no
    /// request for the configured time.
    fn idle_check(&mut self, timers: &mut Timers) {
        let open = !self.streams.borrow().is_empty();
        if open || self.opened != timers.opened_then {
            timers.busy_at = Instant::now();
            timers.opened_then = self.opened;
        } else if self
            .drain_after
            .is_some_and(|d| timers.busy_at.elapsed() >= d)
        {
            log::debug!("connection idle; asking the server to drain it");
            self.ask_drain();
        }
    }

    fn ask_drain(&mut self) {
        if self.drain_sent {
            return;
        }
        self.drain_sent = self.link.outbox().send(&Frame::Drain).is_ok();
    }

    fn on_socket(
        &mut self,
        next: Option<Result<ws::Frame, awc::error::WsProtocolError>>,
    ) -> Result<(), ConnError> {
        let item = match next {
            None if self.server_leaving => return Err(ConnError::ServerLeft),
            None => return Err(ConnError::Lost("server closed the connection".into())),
            Some(Err(e)) => return Err(ConnError::Protocol(e.to_string())),
            Some(Ok(item)) => item,
        };
        let pong = matches!(item, ws::Frame::Pong(_));
        let received = self.link.receive(ws_in(item));
        if let (true, Some(rtt)) = (pong, self.link.path().rtt()) {
            self.role.round_trip(rtt);
            self.socket.fit(self.link.path());
        }
        match received {
            Ok(Incoming::Frames(frames)) => self.dispatch_frames(frames),
            Ok(Incoming::Closed(_)) if self.drain_sent => Err(ConnError::Drained),
            Ok(Incoming::Closed(_)) if self.server_leaving => Err(ConnError::ServerLeft),
            Ok(Incoming::Closed(why)) => {
                let why = why.unwrap_or_else(|| "no reason given".into());
                Err(ConnError::Lost(format!("server closed the tunnel: {why}")))
            }
            Err(e) => Err(ConnError::Protocol(e.to_string())),
        }
    }
}

/// A frame as the WebSocket library hands it over, in common's terms.
fn ws_in(frame: ws::Frame) -> WsIn {
    match frame {
        ws::Frame::Binary(msg) => WsIn::Binary(msg),
        ws::Frame::Continuation(item) => WsIn::Fragment(match item {
            Item::FirstBinary(b) => Piece::FirstBinary(b),
            Item::FirstText(b) => Piece::FirstText(b),
            Item::Continue(b) => Piece::Continue(b),
            Item::Last(b) => Piece::Last(b),
        }),
        ws::Frame::Ping(payload) => WsIn::Ping(payload),
        ws::Frame::Pong(payload) => WsIn::Pong(payload),
        ws::Frame::Close(reason) => WsIn::Close(reason.and_then(|r| r.description)),
        ws::Frame::Text(_) => WsIn::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn the_alarm_rings_for_each_timer_in_turn_and_the_sweep_sleeps_while_idle() {
        // Sweep every 100 ms, idle check every 250 ms, silence after 1 s.
        let mut t = Timers::new(400 * MS, Some(1000 * MS), 0, 1000 * MS);
        let start = t.heard;
        assert_eq!(t.alarm.deadline(), start + 100 * MS);
        assert_eq!(t.ring(start + 50 * MS, true), Due::default());
        let due = t.ring(start + 100 * MS, true);
        assert_eq!(
            (due.sweep, due.idle_check, due.silent),
            (true, false, false)
        );
        assert_eq!(t.alarm.deadline(), start + 200 * MS);
        // No stream open when it comes due: the sweep stops, the idle
        // check and the silence go on.
        assert_eq!(t.ring(start + 200 * MS, false), Due::default());
        assert_eq!(t.alarm.deadline(), start + 250 * MS);
        let due = t.ring(start + 250 * MS, false);
        assert_eq!((due.sweep, due.idle_check), (false, true));
        assert_eq!(t.alarm.deadline(), start + 500 * MS);
        // A stream opens: the sweep is back, a period from now.
        t.streams_open();
        assert!(t.alarm.deadline() < start + 500 * MS);
        // Heard from lately: no silence yet; long ago: silence.
        t.heard = start + 900 * MS;
        assert!(!t.ring(start + 1500 * MS, true).silent);
        assert!(t.ring(start + 1900 * MS, true).silent);
    }

    #[tokio::test]
    async fn without_a_drain_there_is_no_idle_check() {
        let mut t = Timers::new(40_000 * MS, None, 0, 30_000 * MS);
        let start = t.heard;
        // The sweep at its longest period; no idle check at all.
        assert_eq!(t.alarm.deadline(), start + SWEEP_MAX);
        let due = t.ring(start + SWEEP_MAX, false);
        assert_eq!(due, Due::default());
        assert_eq!(t.alarm.deadline(), start + 30_000 * MS);
    }
}
