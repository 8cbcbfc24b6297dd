//! `burrow`: the local side of the burrow HTTP tunnel.
//!
//! Connects a WebSocket to a `burrow-server`, registers the configured
//! hosts, and answers every request the server forwards by fetching the
//! matching local service. Once its first connection is registered, it
//! opens as many more as the server has workers (see [`pool`]).
//!
//! # Layout
//! - [`config`]: the TOML configuration, loaded and validated.
//! - [`connection`]: one WebSocket connection: handshake, dispatch, writer.
//! - [`forward`]: one stream: the local request and the streamed answer.
//! - [`net`]: HTTP clients with the socket options the tunnel wants.
//! - [`pool`]: the extra connections, each on its own thread.
//! - [`upgrade`]: WebSocket upgrades relayed as raw bytes.
//! - [`run`]: the reconnect loop around connections.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod connection;
#[cfg(feature = "demo")]
pub mod demo;
pub mod forward;
pub mod net;
pub mod pool;
pub mod upgrade;

use std::{
    cell::RefCell,
    hash::{BuildHasher, Hasher},
    rc::Rc,
    time::Duration,
};

use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;

pub use config::ClientConfig;
use connection::ConnError;
use forward::ForwardContext;

/// Progress reports of a running client, for embedding and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted every tunnel; requests may now arrive.
    Registered {
        /// The hosts now served.
        hosts: Vec<String>,
    },
    /// The connection ended; the client will reconnect.
    Disconnected {
        /// Why it ended.
        reason: String,
    },
}

/// Why the client stopped for good.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused a tunnel (bad token, unknown host, version): trying
    /// again would not help.
    #[error("{0}")]
    Refused(String),
}

/// Longest wait for a TCP connection to a local service.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serves the configured tunnels until a refusal ends the client. Lost
/// connections are retried with backoff, forever. Extra connections close
/// when idle and come back when requests overlap again. `events`, when given,
/// receives progress reports.
pub async fn run(
    config: ClientConfig,
    events: Option<UnboundedSender<ClientEvent>>,
) -> Result<(), ClientError> {
    let instance = pool::instance_id();
    let covered = pool::Covered::default();
    let first = Rc::new(FirstConnection {
        pool: RefCell::new(pool::Pool::new(
            config.clone(),
            instance.clone(),
            covered.clone(),
        )),
        seat: pool::Seat::new(covered),
        config: config.clone(),
        events: events.clone(),
    });
    serve_until_refused(&config, &instance, first, events.as_ref()).await
}

/// What the first connection's reports do: log and announce registration,
/// and open the rest of the pool.
struct FirstConnection {
    pool: RefCell<pool::Pool>,
    /// The server worker serving this connection, among the client's.
    seat: pool::Seat,
    config: ClientConfig,
    events: Option<UnboundedSender<ClientEvent>>,
}

impl connection::Observer for FirstConnection {
    fn registered(&self, ack: &burrow_common::HelloAck) -> bool {
        // The first connection stays wherever it lands.
        self.seat.take(ack, true);
        for t in self.config.tunnels.iter() {
            log::info!(
                "tunnel ready: {} -> {}",
                self.config.public_url(&t.host),
                t.local
            );
        }
        if let Some(events) = &self.events {
            let hosts = self.config.tunnels.iter().map(|t| t.host.clone());
            let _ = events.send(ClientEvent::Registered {
                hosts: hosts.collect(),
            });
        }
        let size = pool::pool_size(self.config.connections, ack.connections, pool::cores());
        self.pool.borrow_mut().grow_to(size);
        true
    }

    fn ended(&self) {
        self.seat.leave();
    }

    fn stream_opened(&self, open: usize) {
        // Load is back (requests overlap) after extra connections closed
        // for being idle. One request at a time needs no more connections.
        if open > 1 && self.pool.borrow().is_short() {
            self.pool.borrow_mut().regrow();
        }
    }
}

/// One connection, reconnected with backoff until the server refuses the
/// tunnels for good (an error) or drains it on request (`Ok`).
pub(crate) async fn serve_until_refused(
    config: &ClientConfig,
    instance: &str,
    observer: Rc<dyn connection::Observer>,
    events: Option<&UnboundedSender<ClientEvent>>,
) -> Result<(), ClientError> {
    let ctx = Rc::new(ForwardContext {
        http: net::http_client(LOCAL_CONNECT_TIMEOUT),
        tunnels: config.tunnels.clone(),
        local_timeout: config.local_timeout,
        connect_timeout: LOCAL_CONNECT_TIMEOUT,
    });
    let mut backoff = Backoff::new(config.max_backoff);
    loop {
        let err = match connection::serve(config, ctx.clone(), instance, observer.clone()).await {
            Ok(()) => ConnError::Lost("connection ended".into()),
            Err(e) => e,
        };
        match &err {
            ConnError::Refused {
                reason,
                retry: false,
            } => return Err(ClientError::Refused(reason.clone())),
            ConnError::Lost(_) | ConnError::Protocol(_) => {
                backoff.reset();
                log::warn!("{err}");
            }
            ConnError::Drained => {
                log::debug!("{err}");
                return Ok(());
            }
            ConnError::Misplaced(_) => {
                // Not a failure: try again at once for another worker.
                log::debug!("{err}");
                continue;
            }
            ConnError::Connect { .. } | ConnError::Refused { .. } => log::warn!("{err}"),
        }
        if let Some(events) = events {
            let _ = events.send(ClientEvent::Disconnected {
                reason: err.to_string(),
            });
        }
        let pause = backoff.pause();
        log::info!("reconnecting in {:.1} s", pause.as_secs_f64());
        tokio::time::sleep(pause).await;
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
