//! How the rest of the server reaches the registry and the sessions
//! without naming their actor types: [`RegistryHandle`], a struct of
//! recipients with typed operations over the registry's messages, behind
//! which another registry (one shared by several nodes) can stand; and
//! [`SessionHandle`], what the registry stores and the proxy opens streams
//! on.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use actix::{Actor, Addr, Handler, Message, Recipient};
use burrow_common::{protocol::TunnelRequest, Outbox, ResetCode};
use tokio::sync::oneshot;

use serde::Serialize;

use crate::{
    callers::CallerRules,
    cluster::{ClaimError, Cluster},
    config::{HostConfig, Limits},
    error::RegisterError,
    gate::{Gate, Opening},
    messages::{CancelStream, OpenStream, ToSession},
    metrics::TunnelStats,
};

/// A host granted to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The host, in canonical form.
    pub host: String,
    /// `true` when the session joined other connections of its client
    /// that already serve the host; `false` when it is the first.
    pub joined: bool,
    /// The `[[hosts]]` entry it counts against (its `host` as written),
    /// and how many hosts that entry's token may hold: what a cluster
    /// counts across its nodes.
    pub quota: (Arc<str>, usize),
}

/// Ask the registry for the hosts in a client's handshake. The answer has
/// one entry per requested tunnel, in order: the host as registered, or
/// why it was refused.
#[derive(Message)]
#[rtype(result = "Vec<Result<Granted, RegisterError>>")]
pub struct Register {
    /// The session asking.
    pub session: SessionHandle,
    /// Hosts and tokens from the client's hello.
    pub tunnels: Vec<TunnelRequest>,
    /// The client process, from its hello: sessions of one instance share
    /// their hosts.
    pub instance: Option<String>,
}

/// Remove every host a session holds (when it stops or drains). Hosts
/// since taken by another session are left alone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    /// The session going away.
    pub session_id: u64,
    /// `true` when its connection was lost (rather than closed on
    /// purpose): the hosts it was the last to serve are kept for its
    /// client for the reconnect grace.
    pub lost: bool,
}

/// Take one host back from one session: the cluster's directory refused
/// it after the registry granted it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdraw {
    /// The session it was granted to.
    pub session_id: u64,
    /// The host.
    pub host: String,
}

/// Find the sessions serving a host.
#[derive(Message)]
#[rtype(result = "Option<HostSessions>")]
pub struct Lookup {
    /// Lower-case host without port.
    pub host: String,
}

/// Close every session (server shutdown). Answers how many were asked to close.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

/// The server is draining: register nothing more, answer the requests
/// waiting for a reconnecting client, and tell every session to finish its
/// streams and close. Answers how many sessions were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// Close the sessions serving a host (an operator's disconnect). Answers
/// how many were closed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Disconnect {
    /// Lower-case host without port.
    pub host: String,
}

/// Put a new configuration's hosts, limits, `[access]` and grace in force.
#[derive(Message)]
#[rtype(result = "Reloaded")]
pub struct Reload {
    /// The `[[hosts]]` entries.
    pub hosts: Vec<HostConfig>,
    /// `[limits]`.
    pub limits: Limits,
    /// `[access]`.
    pub access: Option<Arc<CallerRules>>,
    /// `reconnect_grace_secs`.
    pub grace: Duration,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Reloaded {
    /// Hosts whose sessions were closed: no longer configured, or no
    /// longer granted to the token their client holds them with.
    pub disconnected: Vec<String>,
    /// Hosts held under the new configuration.
    pub kept: usize,
}

/// List every host the registry holds.
#[derive(Message)]
#[rtype(result = "Vec<TunnelReport>")]
pub struct Report;

/// One held host.
pub struct TunnelReport {
    /// The host.
    pub host: String,
    /// The address of its client's first connection, while one is up.
    pub client: Option<SocketAddr>,
    /// Since when its client holds it.
    pub since: SystemTime,
    /// Connections of its client serving it.
    pub sessions: usize,
    /// Its requests and streams in flight.
    pub in_flight: usize,
    /// Its counts.
    pub stats: Arc<TunnelStats>,
    /// `true` while it is kept for a client that is reconnecting.
    pub reconnecting: bool,
}

/// The registry, as the sessions, the proxy and the server see it.
#[derive(Clone)]
pub struct RegistryHandle {
    register: Recipient<Register>,
    unregister: Recipient<Unregister>,
    lookup: Recipient<Lookup>,
    close_all: Recipient<CloseAll>,
    drain: Recipient<Drain>,
    reload: Recipient<Reload>,
    report: Recipient<Report>,
    disconnect: Recipient<Disconnect>,
    withdraw: Recipient<Withdraw>,
    /// In a cluster: the directory each granted host is claimed in.
    cluster: Option<Arc<Cluster>>,
    /// How many hosts the registry has taken in (see [`Self::hosts_added`]).
    added: Arc<AtomicU64>,
}

impl RegistryHandle {
    /// A handle on any registry actor that takes its nine messages
    /// (`Register`, `Unregister`, `Lookup`, `CloseAll`, `Drain`, `Reload`,
    /// `Report`, `Disconnect`, `Withdraw`).
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = actix::Context<A>>
            + Handler<Register>
            + Handler<Unregister>
            + Handler<Lookup>
            + Handler<CloseAll>
            + Handler<Drain>
            + Handler<Reload>
            + Handler<Report>
            + Handler<Disconnect>
            + Handler<Withdraw>,
    {
        RegistryHandle {
            register: addr.clone().recipient(),
            unregister: addr.clone().recipient(),
            lookup: addr.clone().recipient(),
            close_all: addr.clone().recipient(),
            drain: addr.clone().recipient(),
            reload: addr.clone().recipient(),
            report: addr.clone().recipient(),
            disconnect: addr.clone().recipient(),
            withdraw: addr.recipient(),
            cluster: None,
            added: Arc::default(),
        }
    }

    /// The same handle, reading the registry's count of hosts taken in
    /// from `added` (which the registry bumps whenever it takes in a host
    /// it did not hold).
    pub fn counting(self, added: Arc<AtomicU64>) -> Self {
        RegistryHandle { added, ..self }
    }

    /// How many hosts the registry has taken in so far: a host it did not
    /// know is still unknown while this has not moved.
    pub fn hosts_added(&self) -> u64 {
        self.added.load(Ordering::Acquire)
    }

    /// The same handle, claiming each host it grants in `cluster`'s
    /// directory too.
    pub fn in_cluster(self, cluster: Option<Arc<Cluster>>) -> Self {
        RegistryHandle { cluster, ..self }
    }

    /// Registers the hosts of a client's hello for `session`: one answer
    /// per tunnel, in order.
    pub async fn register(
        &self,
        session: SessionHandle,
        tunnels: Vec<TunnelRequest>,
        instance: Option<String>,
    ) -> Vec<Result<Granted, RegisterError>> {
        let count = tunnels.len();
        let session_id = session.id;
        let msg = Register {
            session,
            tunnels,
            instance: instance.clone(),
        };
        let mut answers = match self.register.send(msg).await {
            Ok(answers) => answers,
            Err(_) => (0..count)
                .map(|_| Err(RegisterError::Unavailable))
                .collect(),
        };
        if let Some(cluster) = &self.cluster {
            // A client without an instance id shares its hosts with no
            // other connection: its session stands for it.
            let instance = instance
                .unwrap_or_else(|| format!("{}/session-{session_id}", cluster.settings().node_id));
            for answer in &mut answers {
                let Ok(granted) = answer else { continue };
                let claimed = cluster.claim(&granted.host, &instance, &granted.quota);
                let Err(refused) = claimed.await else {
                    continue;
                };
                let host = granted.host.clone();
                self.withdraw.do_send(Withdraw {
                    session_id,
                    host: host.clone(),
                });
                *answer = Err(match refused {
                    ClaimError::HeldElsewhere => RegisterError::HeldByAnotherClient(host),
                    ClaimError::DirectoryDown => RegisterError::DirectoryDown(host),
                    ClaimError::TooMany(most) => RegisterError::TooManyTunnels(host, most),
                });
            }
        }
        answers
    }

    /// Removes the hosts `session_id` holds (hosts since taken by another
    /// session stay); when it was `lost`, they are kept for its client for
    /// the reconnect grace.
    pub fn unregister(&self, session_id: u64, lost: bool) {
        self.unregister.do_send(Unregister { session_id, lost });
    }

    /// The sessions serving `host` (lower case, no port), if any.
    pub async fn lookup(&self, host: &str) -> Option<HostSessions> {
        let host = host.to_owned();
        self.lookup.send(Lookup { host }).await.ok().flatten()
    }

    /// Asks every session to close; answers how many were asked.
    pub async fn close_all(&self) -> usize {
        self.close_all.send(CloseAll).await.unwrap_or(0)
    }

    /// Starts the server's drain (see [`Drain`]); answers how many
    /// sessions were told.
    pub async fn drain(&self) -> usize {
        self.drain.send(Drain).await.unwrap_or(0)
    }

    /// Puts a new configuration in force (see [`Reload`]); `None` when the
    /// registry is not running.
    pub async fn reload(&self, reload: Reload) -> Option<Reloaded> {
        self.reload.send(reload).await.ok()
    }

    /// Every host held, with its counts.
    pub async fn report(&self) -> Vec<TunnelReport> {
        self.report.send(Report).await.unwrap_or_default()
    }

    /// Closes the sessions serving `host`; answers how many there were.
    pub async fn disconnect(&self, host: &str) -> usize {
        let host = host.to_owned();
        self.disconnect.send(Disconnect { host }).await.unwrap_or(0)
    }
}

/// One worker of one server: its index there, from 0 (see
/// [`crate::placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerId(pub u32);

/// How the rest of the server reaches one tunnel session.
#[derive(Clone)]
pub struct SessionHandle {
    /// Unique id of the session (one per WebSocket connection).
    pub id: u64,
    /// The session actor. One recipient per handle (each costs the actor's
    /// mailbox three small allocations, and 10,000 idle tunnels keep one
    /// handle each).
    pub to_session: Recipient<ToSession>,
    /// The session's frame queue, for request bodies.
    pub outbox: Outbox,
    /// Stream ids, and whether the session takes new streams.
    pub gate: Arc<Gate>,
    /// The round trip to the client, for the windows of request bodies'
    /// answers.
    pub path: Arc<burrow_common::flow::PathState>,
    /// The credit the client promised request bodies.
    pub opening: Arc<burrow_common::flow::OpeningAllowance>,
    /// The server worker the session actor runs on.
    pub worker: WorkerId,
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
}

impl SessionHandle {
    /// A fresh stream id on this session.
    pub fn next_stream_id(&self) -> u32 {
        self.gate.next_stream_id()
    }

    /// `true` while the session actor is running.
    pub fn is_alive(&self) -> bool {
        self.to_session.connected()
    }

    /// `true` once the session takes streams: alive, past its handshake and
    /// not draining.
    pub fn is_ready(&self) -> bool {
        self.gate.is_open() && self.is_alive()
    }

    /// Passes the session's gate for one new stream (see [`Gate::enter`]),
    /// or `None` if the session no longer takes any (draining, or gone).
    pub fn begin_open(&self) -> Option<Opening<'_>> {
        self.gate.enter().filter(|_| self.is_alive())
    }

    /// Puts a stream in the session's table.
    pub fn open(&self, stream: OpenStream) {
        self.to_session.do_send(ToSession::Open(stream));
    }

    /// Cancels a stream (resetting it on the client's side).
    pub fn cancel(&self, id: u32, code: ResetCode) {
        self.to_session
            .do_send(ToSession::Cancel(CancelStream { id, code }));
    }

    /// Closes the session, telling its client `why`.
    pub fn close(&self, why: &'static str) {
        self.to_session.do_send(ToSession::Close(why));
    }

    /// Tells the session the server is shutting down: it takes no new
    /// stream and closes once its open ones are done.
    pub fn go_away(&self) {
        self.to_session.do_send(ToSession::GoAway);
    }

    /// How many streams the session has open (0 once it is gone).
    pub async fn stream_count(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        self.to_session.do_send(ToSession::CountStreams(tx));
        rx.await.unwrap_or(0)
    }
}

/// The sessions serving one host (one per connection of the client that
/// holds it), as the registry had them when asked.
#[derive(Clone)]
pub struct HostSessions {
    /// The sessions, in the order they joined.
    pub sessions: Vec<Arc<SessionHandle>>,
    /// What the workers share about the host (caller rules, streams in
    /// flight, request rate).
    pub tunnel: Arc<crate::tunnel::TunnelState>,
    /// Bumped by the registry whenever this host's sessions or state
    /// change (a session joins or leaves, a reload), so that a copy can
    /// tell it may be out of date; other hosts' changes leave it alone.
    pub generation: Arc<AtomicU64>,
    /// The value of `generation` this copy was taken at.
    pub seen: u64,
    /// Set while the host's client is away and the host is kept for it.
    pub reserved: Option<crate::grace::Reserved>,
}

impl HostSessions {
    /// `true` while no session has joined or left since this copy was taken.
    pub fn is_current(&self) -> bool {
        self.generation.load(Ordering::Acquire) == self.seen
    }
}
