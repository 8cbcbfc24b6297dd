//! The client's extra connections, each on a thread of its own.
//!
//! The server says how many workers it has in its handshake answer; once
//! the first connection is registered, the client opens the rest, each
//! served by its own thread with its own local HTTP client, and each on a
//! worker of its own (see [`crate::placement`]). They are opened at once
//! rather than under load: a request that crosses threads on the server
//! hands its body's buffers from one worker's allocator heap to another's.
//! An extra connection that carries no request for a while (the
//! configuration's `idle_connection_secs`) asks the server to drain it: the
//! server takes no new stream on it and closes it once its last one is done,
//! so no request is lost. The first connection reopens the missing ones as
//! soon as requests overlap on it again, so an idle client (or one serving
//! a request at a time) holds one connection.
//! Every connection presents the same instance id, which is how the server
//! tells a client's own connections (which share its hosts) from another
//! client's (which are refused a held host).

use std::{rc::Rc, sync::Arc, time::Duration};

use burrow_common::HelloAck;
use futures_util::future::{self, Either};
use tokio::sync::oneshot;

use crate::{
    config::{ClientConfig, MAX_CONNECTIONS},
    connection::Role,
    forward::ForwardContext,
    observe::ExchangeObserver,
    placement::{CoveredWorkers, WorkerClaim},
    reconnect::{serve_until_refused, Keep},
    shutdown::Shutdown,
};

/// What an extra connection does with its reports: it takes a server worker
/// no other connection of the client covers, reconnecting (a few times)
/// when it lands on a covered one, and drains when idle.
struct ExtraConnection {
    claim: WorkerClaim,
    /// The configuration's `idle_connection`.
    drain_when_idle: Option<Duration>,
}

impl Role for ExtraConnection {
    fn registered(&self, ack: &HelloAck) -> bool {
        self.claim.take_uncovered(ack)
    }

    fn ended(&self) {
        self.claim.release();
    }

    fn drain_when_idle(&self) -> Option<Duration> {
        self.drain_when_idle
    }
}

/// An id for this client process: 128 random bits, so different from any
/// other process's.
pub fn instance_id() -> String {
    use crate::reconnect::random_u64;
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// Most connections a client opens on the server's suggestion alone.
pub const MAX_SUGGESTED: u32 = 8;

/// How many connections to hold: the configured number (at most
/// [`MAX_CONNECTIONS`]), else what the server suggests, but no more than
/// this machine's cores (each connection has a thread) nor
/// [`MAX_SUGGESTED`]; one if the server says nothing.
pub fn pool_size(configured: Option<u32>, suggested: Option<u32>, cores: u32) -> u32 {
    match configured {
        Some(n) => n.clamp(1, MAX_CONNECTIONS),
        None => suggested.unwrap_or(1).min(cores).clamp(1, MAX_SUGGESTED),
    }
}

/// This machine's cores, as far as the process may use them.
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// What every connection of a client shares.
#[derive(Clone)]
pub struct Shared {
    /// The configuration.
    pub config: ClientConfig,
    /// The client's instance id.
    pub instance: String,
    /// The workers its connections cover.
    pub covered: CoveredWorkers,
    /// Its stop signal.
    pub shutdown: Shutdown,
    /// Sees every exchange on every connection.
    pub observer: Option<Arc<dyn ExchangeObserver>>,
}

/// The connections beyond the first, each on its own thread. Dropping the
/// pool stops them at once; [`Pool::closed`] waits for them to drain.
pub struct Pool {
    shared: Shared,
    /// Dropping a sender stops its connection's thread; a thread that ended
    /// (its connection drained) leaves its sender closed.
    members: Vec<oneshot::Sender<()>>,
    /// The connections to hold under load, counting the first.
    size: u32,
}

impl Pool {
    /// A pool without extra connections yet.
    pub fn new(shared: Shared) -> Self {
        Pool {
            shared,
            members: Vec::new(),
            size: 1,
        }
    }

    /// `true` when some extra connection has closed (drained while idle)
    /// and is not open again yet.
    pub fn is_short(&self) -> bool {
        self.members.len() + 1 < self.size as usize || self.members.iter().any(|m| m.is_closed())
    }

    /// Opens the extra connections that closed, back to the pool's size.
    pub fn regrow(&mut self) {
        if self.open_until(self.size) > 0 {
            log::debug!("serving over {} connections again", self.members.len() + 1);
        }
    }

    /// Opens extra connections until the client holds `total`, counting
    /// the first. Never closes any.
    pub fn grow_to(&mut self, total: u32) {
        self.size = total;
        if self.open_until(total) > 0 {
            log::info!(
                "serving over {} connections to the server",
                self.members.len() + 1
            );
        }
    }

    /// Resolves once every extra connection's thread has ended (after a
    /// shutdown, once each has drained).
    pub async fn closed(&mut self) {
        for member in &mut self.members {
            member.closed().await;
        }
    }

    /// Opens connections until the client holds `total` (forgetting those
    /// whose thread ended); returns how many it opened.
    fn open_until(&mut self, total: u32) -> usize {
        self.members.retain(|m| !m.is_closed());
        let before = self.members.len();
        while self.members.len() + 1 < total as usize && !self.shared.shutdown.is_requested() {
            let n = self.members.len() + 2;
            match spawn_extra(self.shared.clone(), n) {
                Ok(stop) => {
                    log::debug!("opened connection {n}");
                    self.members.push(stop);
                }
                Err(e) => {
                    log::warn!("cannot start a thread for connection {n}: {e}");
                    break;
                }
            }
        }
        self.members.len() - before
    }
}

/// Starts extra connection `n` on a thread of its own; dropping the
/// returned sender stops it.
fn spawn_extra(shared: Shared, n: usize) -> std::io::Result<oneshot::Sender<()>> {
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("burrow-conn-{n}"))
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let role = Rc::new(ExtraConnection {
                    claim: WorkerClaim::new(shared.covered.clone()),
                    drain_when_idle: shared.config.idle_connection,
                });
                let serve = serve_until_refused(Keep {
                    config: &shared.config,
                    ctx: Rc::new(ForwardContext::new(&shared.config, shared.observer.clone())),
                    instance: &shared.instance,
                    role,
                    events: None,
                    shutdown: &shared.shutdown,
                    announce: false,
                    stop_if_unreachable: false,
                });
                match future::select(Box::pin(serve), stopped).await {
                    Either::Left((Err(e), _)) => log::warn!("connection {n} stopped: {e}"),
                    Either::Left((Ok(()), _)) | Either::Right(_) => {}
                }
            })
        })?;
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_follows_config_then_server_then_one() {
        assert_eq!(pool_size(Some(3), Some(2), 2), 3);
        assert_eq!(pool_size(Some(100), None, 2), MAX_CONNECTIONS);
        assert_eq!(pool_size(None, Some(2), 4), 2);
        assert_eq!(pool_size(None, Some(4), 2), 2, "no more than the cores");
        assert_eq!(pool_size(None, None, 4), 1);
        assert_eq!(pool_size(None, Some(0), 4), 1);
        assert_eq!(pool_size(None, Some(1000), 64), MAX_SUGGESTED);
    }

    #[test]
    fn instance_ids_differ() {
        let a = instance_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, instance_id());
    }
}
