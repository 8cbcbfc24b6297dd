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
    /// Time to reset streams past the local timeout.
    Sweep,
    /// Time to see whether the connection has been idle long enough.
    IdleCheck,
    /// The silence timer ran out (perhaps only to be pushed forward).
    Silence,
    /// Request bodies' windows grew on another connection: promise as
    /// much here.
    Widened,
    /// The client is shutting down.
    Shutdown,
}

/// The read loop's timers: one per connection each, pushed forward lazily
/// (a timer per message would cost a wheel insertion and removal each
/// time).
struct Timers {
    silence: std::pin::Pin<Box<tokio::time::Sleep>>,
    heard: Instant,
    sweep: tokio::time::Interval,
    idle_check: tokio::time::Interval,
    busy_at: Instant,
    opened_then: u64,
}

impl Timers {
    fn new(
        local_timeout: Duration,
        drain_after: Option<Duration>,
        opened: u64,
        silence: Duration,
    ) -> Self {
        // Local response timeouts are enforced to within a quarter of their
        // length by one timer per connection, armed while streams are open.
        let every = (local_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut sweep = tokio::time::interval(every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The idle check: a connection that may drain looks a few times
        // per idle period whether it carried a request since.
        let idle_every = drain_after.map_or(silence, |d| (d / 4).max(IDLE_CHECK_MIN));
        let mut idle_check = tokio::time::interval(idle_every);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Timers {
            silence: Box::pin(tokio::time::sleep(silence)),
            heard: Instant::now(),
            sweep,
            idle_check,
            busy_at: Instant::now(),
            opened_then: opened,
        }
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
                Wake::Sweep => self.sweep(),
                Wake::Widened => self.promise(),
                Wake::IdleCheck => self.idle_check(&mut timers),
                Wake::Silence => {
                    if timers.heard.elapsed() >= silence {
                        let why = format!("no word from the server for {} s", silence.as_secs());
                        return Err(ConnError::Lost(why));
                    }
                    let next = timers.heard + silence;
                    timers.silence.as_mut().reset(next);
                }
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
        let open = !self.streams.borrow().is_empty();
        let may_drain = self.drain_after.is_some() && !self.drain_sent;
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
            _ = timers.sweep.tick(), if open => Wake::Sweep,
            _ = timers.idle_check.tick(), if may_drain => Wake::IdleCheck,
            () = timers.silence.as_mut() => Wake::Silence,
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
