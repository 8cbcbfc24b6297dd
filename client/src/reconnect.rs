//! One connection kept up: opened again at once when it drops, then with
//! capped, jittered exponential backoff, until the server refuses the tunnels for good, the connection is
//! drained on request, or the client shuts down.

use std::{
    cell::Cell,
    hash::{BuildHasher, Hasher},
    rc::Rc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::UnboundedSender;

use crate::{
    config::ClientConfig,
    connection::{self, ConnError, Role},
    events::{ClientError, ClientEvent},
    forward::ForwardContext,
    shutdown::Shutdown,
};

/// First pause before reconnecting.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Exponential backoff with jitter, capped.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: INITIAL_BACKOFF,
            max,
        }
    }

    fn reset(&mut self) {
        self.next = INITIAL_BACKOFF;
    }

    /// The next pause: between half and all of the current step, so clients
    /// cut off together do not come back together.
    fn pause(&mut self) -> Duration {
        let step = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        let random = random_u64();
        let half = step / 2;
        half + half.mul_f64((random % 1000) as f64 / 1000.0)
    }
}

/// A random number: the standard library seeds each `RandomState` from the
/// operating system's randomness (and steps it for every new one).
pub(crate) fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What one kept-up connection needs.
pub(crate) struct Keep<'a> {
    pub config: &'a ClientConfig,
    pub ctx: Rc<ForwardContext>,
    pub instance: &'a str,
    pub role: Rc<dyn Role>,
    pub events: Option<&'a UnboundedSender<ClientEvent>>,
    pub shutdown: &'a Shutdown,
    /// Whether this connection's outages are the client's to report (the
    /// first connection); the pool's extra ones stay quiet, or a server
    /// restart would log once per connection.
    pub announce: bool,
    /// Stop when the server cannot be reached before the connection was
    /// ever registered.
    pub stop_if_unreachable: bool,
}

/// How often a long outage is mentioned again.
const OUTAGE_REMINDER: Duration = Duration::from_secs(60);

/// The time since the connection was last registered, when it is not:
/// logged once as it begins, reminded of once a minute, and its length
/// logged when the connection is registered again.
struct Outage {
    announce: bool,
    /// Since when, how many attempts so far, when it was last mentioned.
    state: Cell<Option<(Instant, u32, Instant)>>,
}

impl Outage {
    /// A failed attempt (or the drop that starts the outage).
    fn failed(&self, err: &ConnError) {
        let now = Instant::now();
        match self.state.get() {
            None => {
                self.state.set(Some((now, 1, now)));
                let level = match (self.announce, err) {
                    (false, _) => log::Level::Debug,
                    (true, ConnError::Connect { .. }) => log::Level::Warn,
                    (true, _) => log::Level::Info,
                };
                // A refusal that may clear (a host another client holds,
                // perhaps this one's own connection not yet seen to drop)
                // is waited out: say so, and how to stop.
                let next = match err {
                    ConnError::Refused { .. } => "; trying again until it is free (Ctrl-C to stop)",
                    _ => "; reconnecting",
                };
                log::log!(level, "{err}{next}");
            }
            Some((since, attempts, told)) if self.announce && told.elapsed() >= OUTAGE_REMINDER => {
                let secs = since.elapsed().as_secs();
                log::info!("still reconnecting after {secs} s ({attempts} attempts): {err}");
                self.state.set(Some((since, attempts + 1, now)));
            }
            Some((since, attempts, told)) => {
                log::debug!("{err}");
                self.state.set(Some((since, attempts + 1, told)));
            }
        }
    }

    /// The connection is registered again.
    fn ended(&self) {
        if let Some((since, attempts, _)) = self.state.take() {
            let level = match self.announce {
                true => log::Level::Info,
                false => log::Level::Debug,
            };
            let secs = since.elapsed().as_secs_f64();
            log::log!(level, "reconnected after {secs:.1} s ({attempts} attempts)");
        }
    }
}

/// A connection's role, with the outage ended when it registers.
struct Watched {
    role: Rc<dyn Role>,
    outage: Rc<Outage>,
    /// Set once the connection has been registered.
    ever: Rc<Cell<bool>>,
}

impl Role for Watched {
    fn registered(&self, ack: &burrow_common::HelloAck) -> bool {
        let kept = self.role.registered(ack);
        if kept {
            self.outage.ended();
            self.ever.set(true);
        }
        kept
    }

    fn ended(&self) {
        self.role.ended();
    }

    fn drain_when_idle(&self) -> Option<Duration> {
        self.role.drain_when_idle()
    }

    fn stream_opened(&self, open: usize) {
        self.role.stream_opened(open);
    }

    fn round_trip(&self, rtt: Duration) {
        self.role.round_trip(rtt);
    }
}

/// What to do after a connection ended.
enum Step {
    /// Stop, with this result.
    Stop(Result<(), ClientError>),
    /// Open another connection at once, without counting a failure.
    Again,
    /// Count the failure and open another, at once or after a pause.
    Retry { at_once: bool },
}

fn next_step(err: &ConnError, backoff: &mut Backoff) -> Step {
    match err {
        ConnError::Refused {
            reason,
            retry: false,
        } => Step::Stop(Err(ClientError::Refused(reason.clone()))),
        ConnError::Drained => {
            log::debug!("{err}");
            Step::Stop(Ok(()))
        }
        // Not a failure: try again at once for another worker.
        ConnError::WorkerTaken(_) => {
            log::debug!("{err}");
            Step::Again
        }
        ConnError::Lost(_) | ConnError::Protocol(_) | ConnError::ServerLeft => {
            backoff.reset();
            Step::Retry { at_once: true }
        }
        ConnError::Connect { .. } | ConnError::Refused { .. } => Step::Retry { at_once: false },
    }
}

/// Serves one connection, reconnecting, until the server refuses the
/// tunnels for good (an error), or the connection was drained (idle, or
/// the client shutting down) (`Ok`). A registered connection that drops is
/// opened again at once; failed attempts after that back off.
pub(crate) async fn serve_until_refused(keep: Keep<'_>) -> Result<(), ClientError> {
    let mut backoff = Backoff::new(keep.config.max_backoff);
    let outage = Rc::new(Outage {
        announce: keep.announce,
        state: Cell::new(None),
    });
    let ever = Rc::new(Cell::new(false));
    let role: Rc<dyn Role> = Rc::new(Watched {
        role: keep.role.clone(),
        outage: outage.clone(),
        ever: ever.clone(),
    });
    loop {
        let served = connection::serve(
            keep.config,
            keep.ctx.clone(),
            keep.instance,
            role.clone(),
            keep.shutdown,
        )
        .await;
        let err = served
            .err()
            .unwrap_or(ConnError::Lost("connection ended".into()));
        if keep.stop_if_unreachable && !ever.get() {
            if let ConnError::Connect { url, detail } = &err {
                let why = format!(
                    "cannot reach the server at {url} ({detail}): is it running, and is \
                     the address right?"
                );
                return Err(ClientError::Unreachable(why));
            }
        }
        let at_once = match next_step(&err, &mut backoff) {
            Step::Stop(result) => return result,
            Step::Again => continue,
            Step::Retry { at_once } => at_once,
        };
        if keep.shutdown.is_requested() {
            return Ok(());
        }
        outage.failed(&err);
        if let Some(events) = keep.events {
            let _ = events.send(ClientEvent::Disconnected {
                reason: err.to_string(),
            });
        }
        if at_once {
            continue;
        }
        let pause = backoff.pause();
        log::debug!("reconnecting in {:.1} s", pause.as_secs_f64());
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = keep.shutdown.requested() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let mut steps = Vec::new();
        for _ in 0..6 {
            steps.push(b.pause());
        }
        let expected = [250u64, 500, 1000, 2000, 2000, 2000];
        for (got, full) in steps.iter().zip(expected) {
            let full = Duration::from_millis(full);
            assert!(*got >= full / 2 && *got <= full, "{got:?} vs {full:?}");
        }
        b.reset();
        assert!(b.pause() <= INITIAL_BACKOFF);
    }
}
