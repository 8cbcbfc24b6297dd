//! `burrow`: the local side of the burrow HTTP tunnel.
//!
//! Connects a WebSocket to a `burrow-server`, registers the configured
//! hosts, and answers every request the server forwards by fetching the
//! matching local service. Once its first connection is registered, it
//! opens as many more as the server has workers (see [`pool`]).
//!
//! # Layout
//! The map of every module, with what it holds, is docs/ARCHITECTURE.md
//! (a test keeps it whole). In short:
//! - configuration: `config`, `url`, `header_rules`; `quick` (`burrow http
//!   TARGET` without a file), `login` (the server and token saved for it)
//!   and `identity` (the instance id kept across restarts);
//! - the connections to the server: `connection` (one WebSocket),
//!   `reconnect`, `pool` and `placement` (the extra connections), `tls`,
//!   `transport`, `shutdown`, `events`;
//! - one stream: `forward` (in stages), `reply` (the way back), `upload`,
//!   `whole`, `retry`, `upgrade` and `http1` (WebSocket upgrades), `plain`;
//! - the local service's connections: `local_io`, `date_cut`, `local_tls`;
//! - what is seen of the traffic: `observe`, `request_log`;
//! - [`run`]: the client as a whole.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub(crate) mod connection;
pub(crate) mod date_cut;
pub mod events;
pub(crate) mod failure;
pub(crate) mod forward;
pub(crate) mod header_rules;
pub(crate) mod http1;
pub mod identity;
pub mod inspect;
pub mod local;
pub(crate) mod local_io;
pub(crate) mod local_tls;
pub mod login;
pub mod observe;
pub(crate) mod placement;
pub(crate) mod plain;
pub(crate) mod pool;
pub mod quick;
pub(crate) mod reconnect;
pub(crate) mod reply;
pub mod request_log;
pub(crate) mod retry;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod upgrade;
pub(crate) mod upload;
pub(crate) mod url;
pub(crate) mod whole;

use std::{cell::RefCell, future::Future, rc::Rc, sync::Arc, time::Duration};

use tokio::sync::mpsc::UnboundedSender;

pub use config::ClientConfig;
pub use events::{ClientError, ClientEvent};
use forward::ForwardContext;
use observe::ExchangeObserver;
use placement::{CoveredWorkers, WorkerClaim};
use reconnect::{serve_until_refused, Keep};

/// How long a stopping client gives its requests in flight to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a running client may be given besides its configuration.
#[derive(Default)]
pub struct Options {
    /// Receives progress reports.
    pub events: Option<UnboundedSender<ClientEvent>>,
    /// Sees every exchange.
    pub observer: Option<Arc<dyn ExchangeObserver>>,
    /// The instance id to present; a fresh one for this run when `None`
    /// (see [`identity`]).
    pub instance: Option<String>,
    /// Stop, rather than retry, when the server cannot be reached before
    /// the tunnels were first registered: someone at a terminal who typed
    /// a wrong address wants to know, not to wait. Once registered, a lost
    /// server is always waited for.
    pub stop_if_unreachable: bool,
}

/// Serves the configured tunnels until a refusal ends the client or
/// `shutdown` resolves. Lost connections are retried with backoff,
/// forever. Extra connections close when idle and come back when requests
/// overlap again. On shutdown, every connection asks the server to send
/// no new request and closes once its requests in flight are answered, or
/// after [`SHUTDOWN_GRACE`].
pub async fn run(
    config: ClientConfig,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let (trigger, stop) = shutdown::shutdown_signal();
    let shared = pool::Shared {
        config: config.clone(),
        instance: options.instance.clone().unwrap_or_else(pool::instance_id),
        covered: CoveredWorkers::default(),
        shutdown: stop.clone(),
        observer: options.observer.clone(),
    };
    let first = Rc::new(FirstConnection {
        pool: RefCell::new(pool::Pool::new(shared.clone())),
        claim: WorkerClaim::new(shared.covered.clone()),
        config: config.clone(),
        events: options.events.clone(),
    });
    let serve = serve_until_refused(Keep {
        config: &config,
        ctx: Rc::new(ForwardContext::new(&config, options.observer)),
        instance: &shared.instance,
        role: first.clone(),
        events: options.events.as_ref(),
        shutdown: &stop,
        announce: true,
        stop_if_unreachable: options.stop_if_unreachable,
    });
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        result = &mut serve => return result,
        () = shutdown => {}
    }
    trigger.trigger();
    let drained = async {
        let result = serve.await;
        // The first connection has ended: nothing else uses its pool now.
        let mut pool = first.pool.replace(pool::Pool::new(shared.clone()));
        pool.closed().await;
        result
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, drained).await {
        Ok(result) => result,
        Err(_) => {
            log::warn!(
                "requests still in flight after {} s; stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    }
}

/// What the first connection's reports do: log and announce registration,
/// and open the rest of the pool.
struct FirstConnection {
    pool: RefCell<pool::Pool>,
    /// The server worker serving this connection, among the client's.
    claim: WorkerClaim,
    config: ClientConfig,
    events: Option<UnboundedSender<ClientEvent>>,
}

impl connection::Role for FirstConnection {
    fn registered(&self, ack: &burrow_common::HelloAck) -> bool {
        self.claim.take_any(ack);
        for (i, t) in self.config.tunnels.iter().enumerate() {
            log::info!(
                "tunnel ready: {} -> {}",
                self.config.public_url(&self.config.host_of(i)),
                t.local
            );
        }
        if let Some(events) = &self.events {
            let hosts = (0..self.config.tunnels.len()).map(|i| self.config.host_of(i));
            let _ = events.send(ClientEvent::Registered {
                hosts: hosts.collect(),
            });
        }
        let size = pool::pool_size(self.config.connections, ack.connections, pool::cores());
        self.pool.borrow_mut().grow_to(size);
        true
    }

    fn ended(&self) {
        self.claim.release();
    }

    fn round_trip(&self, rtt: Duration) {
        if let Some(events) = &self.events {
            let _ = events.send(ClientEvent::RoundTrip(rtt));
        }
    }

    fn stream_opened(&self, open: usize) {
        // Load is back (requests overlap) after extra connections closed
        // for being idle. One request at a time needs no more connections.
        if open > 1 && self.pool.borrow().is_short() {
            self.pool.borrow_mut().regrow();
        }
    }
}
