//! Which session serves a request: worker placement.
//!
//! Each of the server's workers has an id of its own, handed out by the
//! server it belongs to (not by the process, so two servers in one process
//! each count from 0), and the server has a node id that tells it from
//! other servers behind the same address. Sessions remember the worker
//! they run on; clients open one connection per worker. A request is
//! handed to the session on the worker that accepted it when the host has
//! one there, so it never crosses threads; otherwise to the first ready
//! one. Each worker caches its choice per host until the registry says the
//! host's sessions changed.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    thread::ThreadId,
};

pub use crate::handle::WorkerId;
use crate::{
    grace::Reserved,
    handle::{HostSessions, RegistryHandle, SessionHandle},
    tunnel::TunnelState,
};

/// Hands out the worker ids of one server: one per worker thread, the
/// same for every listener the worker serves.
#[derive(Debug)]
pub struct WorkerIds {
    next: AtomicU32,
    by_thread: Mutex<HashMap<ThreadId, WorkerId>>,
    node: Arc<str>,
}

impl Default for WorkerIds {
    fn default() -> Self {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        WorkerIds {
            next: AtomicU32::new(0),
            by_thread: Mutex::default(),
            node: format!("{random:016x}").into(),
        }
    }
}

impl WorkerIds {
    /// The placement state of the worker running the caller (each worker
    /// takes its own as its services start).
    pub fn this_worker(&self) -> Worker {
        let mut ids = self.by_thread.lock().unwrap_or_else(|e| e.into_inner());
        let id = *ids
            .entry(std::thread::current().id())
            .or_insert_with(|| WorkerId(self.next.fetch_add(1, Ordering::Relaxed)));
        Worker {
            id,
            chosen: RefCell::default(),
            unknown: RefCell::default(),
        }
    }

    /// This server's node id, as clients learn it in the handshake answer.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// What one worker knows about placement: who it is, and which session it
/// hands each host's requests to.
pub struct Worker {
    /// The worker's id.
    pub id: WorkerId,
    /// The worker's choice of session per host it has looked up, with the
    /// registry's answer it was chosen from. An entry is used while that
    /// answer is current (no session joined or left the host since) and
    /// its session is ready; otherwise the registry is asked again.
    chosen: RefCell<HashMap<String, Cached, BuildHasherDefault<HostHasher>>>,
    /// Hosts the registry did not know, with the count of hosts it had
    /// taken in by then: while no host was taken in since, they are still
    /// unknown, and a request for one (a stranger's, or in a cluster one
    /// for a host held through another node) does not ask again. Keyed by
    /// a hash a stranger cannot aim at, and bounded.
    unknown: RefCell<HashMap<String, u64>>,
}

/// Most unknown hosts a worker remembers; beyond, it starts over.
const MOST_UNKNOWN: usize = 4096;

/// Where a request for a host goes.
pub enum Placement {
    /// To this session; the host's shared state with it.
    Ready(Arc<SessionHandle>, Arc<TunnelState>),
    /// Nowhere yet: wait, then look again.
    Wait(Wait),
    /// Nowhere: no client serves the host.
    Unknown,
}

/// What a request for a host without a ready session waits for.
pub enum Wait {
    /// The host's client to come back (the reconnect grace).
    Reconnecting(Reserved),
    /// The session that just registered it to finish its handshake.
    Opening(Arc<SessionHandle>),
}

/// A worker's cache entry: the host's sessions and the one this worker uses.
struct Cached {
    sessions: HostSessions,
    session: Arc<SessionHandle>,
}

impl Worker {
    /// Where a request for `host` goes for this worker: its cached
    /// session, else what the registry says.
    pub async fn session_for(&self, registry: &RegistryHandle, host: &str) -> Placement {
        let cached = self.chosen.borrow().get(host).and_then(|c| {
            (c.sessions.is_current() && c.session.is_ready())
                .then(|| Placement::Ready(c.session.clone(), c.sessions.tunnel.clone()))
        });
        if let Some(cached) = cached {
            return cached;
        }
        // Read before the lookup: a host taken in meanwhile counts as news.
        let added = registry.hosts_added();
        if self.unknown.borrow().get(host) == Some(&added) {
            return Placement::Unknown;
        }
        let found = registry.lookup(host).await;
        let session = found.as_ref().and_then(|f| pick(f, self.id)).cloned();
        let mut chosen = self.chosen.borrow_mut();
        match (found, session) {
            (Some(sessions), Some(session)) => {
                let tunnel = sessions.tunnel.clone();
                let cached = Cached {
                    sessions,
                    session: session.clone(),
                };
                chosen.insert(host.to_owned(), cached);
                Placement::Ready(session, tunnel)
            }
            (Some(sessions), None) => {
                chosen.remove(host);
                waiting(sessions)
            }
            (None, _) => {
                chosen.remove(host);
                let mut unknown = self.unknown.borrow_mut();
                if unknown.len() >= MOST_UNKNOWN {
                    unknown.clear();
                }
                unknown.insert(host.to_owned(), added);
                Placement::Unknown
            }
        }
    }
}

/// What a request for a host with no ready session waits for, if anything:
/// its client's return, or a session still finishing its handshake (it has
/// no tunnel to offer yet, and will in a moment).
fn waiting(host: HostSessions) -> Placement {
    if let Some(reserved) = host.reserved {
        return Placement::Wait(Wait::Reconnecting(reserved));
    }
    let opening = host.sessions.into_iter().find(|s| s.is_alive());
    opening.map_or(Placement::Unknown, |s| Placement::Wait(Wait::Opening(s)))
}

/// The ready session for a request accepted on `worker`: the one on the
/// same worker if there is one (no hop between threads), else the first
/// ready one.
fn pick(host: &HostSessions, worker: WorkerId) -> Option<&Arc<SessionHandle>> {
    let mut ready = host.sessions.iter().filter(|s| s.is_ready());
    let first = ready.clone().next();
    ready.find(|s| s.worker == worker).or(first)
}

/// FNV-1a over a host name. Only hosts the registry knows are ever inserted
/// into a worker's cache, so a keyed hash would buy nothing there; this one
/// costs a few instructions per byte.
struct HostHasher(u64);

impl Default for HostHasher {
    fn default() -> Self {
        HostHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for HostHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
