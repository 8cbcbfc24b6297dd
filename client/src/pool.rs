//! The client's extra connections.
//!
//! A server hands each request to a connection on the worker thread that
//! accepted it, when the client has one there, so the request never crosses
//! threads. The server says how many workers it has in its handshake
//! answer; once the first connection is registered, the client opens the
//! rest, each served by a thread of its own with its own local HTTP client.
//! They are opened at once rather than under load: a request that crosses
//! threads on the server hands its body's buffers from one worker's
//! allocator heap to another's, which held tens of MiB during one upload.
//! An extra connection that carries no request for a while (the
//! configuration's `idle_connection_secs`) asks the server to drain it: the
//! server takes no new stream on it and closes it once its last one is done,
//! so no request is lost. The first connection reopens the missing ones as
//! soon as requests overlap on it again, so an idle client (or one serving
//! a request at a time) holds one connection.
//! Every connection presents the same instance id, which is how the server
//! tells a client's own connections (which share its hosts) from another
//! client's (which are refused a held host).

use std::{
    cell::Cell,
    rc::Rc,
    sync::{Arc, Mutex},
    time::Duration,
};

use burrow_common::HelloAck;
use futures_util::future::{self, Either};
use tokio::sync::oneshot;

use crate::{
    config::{ClientConfig, MAX_CONNECTIONS},
    connection::Observer,
};

/// Times an extra connection that landed on a covered server worker is
/// opened again before it settles for that worker.
const PLACEMENT_ATTEMPTS: u32 = 8;

/// The server workers the client's registered connections are served by,
/// one entry per connection.
#[derive(Clone, Default)]
pub struct Covered(Arc<Mutex<Vec<u32>>>);

impl Covered {
    /// Records a connection on `worker`, unless `worker` is already covered
    /// while some of the server's `workers` are not, and `insist` is false.
    /// Returns whether it was recorded.
    pub fn claim(&self, worker: u32, workers: Option<u32>, insist: bool) -> bool {
        let Ok(mut covered) = self.0.lock() else {
            return true;
        };
        if !insist && covered.contains(&worker) {
            let mut distinct = covered.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let all_covered = workers.is_some_and(|n| distinct.len() >= n as usize);
            if !all_covered {
                return false;
            }
        }
        covered.push(worker);
        true
    }

    /// Forgets one connection on `worker`.
    pub fn release(&self, worker: u32) {
        if let Ok(mut workers) = self.0.lock() {
            if let Some(i) = workers.iter().position(|w| *w == worker) {
                workers.swap_remove(i);
            }
        }
    }
}

/// Where one connection sits among the server's workers: it records the
/// worker serving it in the client's [`Covered`] while it is registered.
pub struct Seat {
    covered: Covered,
    mine: Cell<Option<u32>>,
}

impl Seat {
    /// A connection's seat among the client's `covered` workers.
    pub fn new(covered: Covered) -> Self {
        Seat {
            covered,
            mine: Cell::new(None),
        }
    }

    /// Takes the worker named in `ack` (see [`Covered::claim`]); `true`
    /// when taken or when the server names none.
    pub fn take(&self, ack: &HelloAck, insist: bool) -> bool {
        let Some(worker) = ack.worker else {
            return true;
        };
        if !self.covered.claim(worker, ack.connections, insist) {
            return false;
        }
        self.mine.set(Some(worker));
        true
    }

    /// Gives the worker back (the connection has ended).
    pub fn leave(&self) {
        if let Some(worker) = self.mine.take() {
            self.covered.release(worker);
        }
    }
}

/// What an extra connection does with its reports: it takes a server worker
/// no other connection of the client covers, reconnecting (a few times)
/// when it lands on a covered one.
struct Extra {
    seat: Seat,
    attempts: Cell<u32>,
    /// The configuration's `idle_connection`.
    drain_when_idle: Option<Duration>,
}

impl Observer for Extra {
    fn registered(&self, ack: &HelloAck) -> bool {
        let insist = self.attempts.get() >= PLACEMENT_ATTEMPTS;
        if !self.seat.take(ack, insist) {
            self.attempts.set(self.attempts.get() + 1);
            return false;
        }
        self.attempts.set(0);
        true
    }

    fn ended(&self) {
        self.seat.leave();
    }

    fn drain_when_idle(&self) -> Option<Duration> {
        self.drain_when_idle
    }
}

/// An id for this client process: 128 random bits, so different from any
/// other process's.
pub fn instance_id() -> String {
    format!("{:016x}{:016x}", crate::random_u64(), crate::random_u64())
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

/// The connections beyond the first, each on its own thread. Dropping the
/// pool stops them.
pub struct Pool {
    config: ClientConfig,
    instance: String,
    covered: Covered,
    /// Dropping a sender stops its connection's thread; a thread that ended
    /// (its connection drained) leaves its sender closed.
    members: Vec<oneshot::Sender<()>>,
    /// The connections to hold under load, counting the first.
    size: u32,
}

impl Pool {
    /// A pool without extra connections yet, whose connections record the
    /// server workers serving them in `covered` (shared with the first).
    pub fn new(config: ClientConfig, instance: String, covered: Covered) -> Self {
        Pool {
            config,
            instance,
            covered,
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

    /// Opens connections until the client holds `total` (forgetting those
    /// whose thread ended); returns how many it opened.
    fn open_until(&mut self, total: u32) -> usize {
        self.members.retain(|m| !m.is_closed());
        let before = self.members.len();
        while self.members.len() + 1 < total as usize {
            let (stop, stopped) = oneshot::channel::<()>();
            let config = self.config.clone();
            let instance = self.instance.clone();
            let covered = self.covered.clone();
            let n = self.members.len() + 2;
            let thread = std::thread::Builder::new()
                .name(format!("burrow-conn-{n}"))
                .spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let observer = Rc::new(Extra {
                            seat: Seat::new(covered),
                            attempts: Cell::new(0),
                            drain_when_idle: config.idle_connection,
                        });
                        let serve = crate::serve_until_refused(&config, &instance, observer, None);
                        match future::select(Box::pin(serve), stopped).await {
                            Either::Left((Err(e), _)) => {
                                log::warn!("connection {n} stopped: {e}")
                            }
                            Either::Left((Ok(()), _)) | Either::Right(_) => {}
                        }
                    })
                });
            match thread {
                Ok(_) => {
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
    fn extra_connections_take_uncovered_workers_then_settle() {
        let covered = Covered::default();
        assert!(covered.claim(0, Some(2), false), "the first connection");
        let extra = Extra {
            seat: Seat::new(covered.clone()),
            attempts: Cell::new(0),
            drain_when_idle: None,
        };
        let ack = |worker| HelloAck {
            version: burrow_common::PROTOCOL_VERSION,
            tunnels: Vec::new(),
            error: None,
            connections: Some(2),
            worker: Some(worker),
            drain: true,
        };
        for _ in 0..PLACEMENT_ATTEMPTS {
            assert!(!extra.registered(&ack(0)), "worker 0 is covered");
        }
        assert!(extra.registered(&ack(0)), "settles after its attempts");
        extra.ended();
        assert!(extra.registered(&ack(1)), "an uncovered worker at once");
        assert!(
            covered.claim(1, Some(2), false),
            "every worker covered: more connections than workers share them"
        );
        covered.release(1);
        extra.ended();
        assert!(!covered.claim(0, Some(2), false), "worker 1 is free again");
        assert!(covered.claim(1, Some(2), false));
    }

    #[test]
    fn instance_ids_differ() {
        let a = instance_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, instance_id());
    }
}
