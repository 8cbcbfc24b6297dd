//! Messages between the proxy handler, the registry actor and the tunnel
//! session actors, and the [`SessionHandle`] through which the rest of the
//! server reaches a session. The registry stores handles; it never looks
//! inside a session.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    Arc,
};

use actix::{Addr, Message};
use burrow_common::{
    flow::{Activity, BodyEvent, RecvCredit, SendCredit},
    protocol::{TunnelRequest, TunnelVerdict},
    queue::Sender,
    Outbox, ResetCode,
};

use crate::session::TunnelSession;

/// How the rest of the server reaches one tunnel session.
#[derive(Clone)]
pub struct SessionHandle {
    /// Unique id of the session (one per WebSocket connection).
    pub id: u64,
    /// The session actor: takes [`OpenStream`], [`CancelStream`],
    /// [`CloseSession`] and [`StreamCount`]. One address per handle (each
    /// address clone costs the actor's mailbox three small allocations, and
    /// 10,000 idle tunnels keep one handle each).
    pub addr: Addr<TunnelSession>,
    /// The session's frame queue, for request bodies.
    pub outbox: Outbox,
    /// Source of the session's stream ids (odd, counting up).
    pub next_stream: Arc<AtomicU32>,
    /// Set once the handshake answer is queued: frames queued before it
    /// would reach the client ahead of the answer.
    pub ready: Arc<AtomicBool>,
    /// The worker thread the session actor runs on (see [`current_worker`]).
    pub worker: u32,
}

thread_local! {
    /// This thread's worker index, handed out on first use.
    static WORKER_INDEX: u32 = NEXT_WORKER_INDEX.fetch_add(1, Ordering::Relaxed);
}

static NEXT_WORKER_INDEX: AtomicU32 = AtomicU32::new(0);

/// The index of the worker thread running the caller: distinct for each
/// worker, stable for its life. Clients learn it as `HelloAck::worker`.
pub fn current_worker() -> u32 {
    WORKER_INDEX.with(|i| *i)
}

impl SessionHandle {
    /// A fresh stream id on this session.
    pub fn next_stream_id(&self) -> u32 {
        self.next_stream.fetch_add(2, Ordering::Relaxed)
    }

    /// `true` while the session actor is running.
    pub fn is_alive(&self) -> bool {
        self.addr.connected()
    }

    /// `true` once the session takes streams: alive and past its handshake.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.is_alive()
    }
}

/// Ask the registry for the hosts in a client's handshake.
#[derive(Message)]
#[rtype(result = "Vec<TunnelVerdict>")]
pub struct Register {
    /// The session asking.
    pub session: SessionHandle,
    /// Hosts and tokens from the client's hello.
    pub tunnels: Vec<TunnelRequest>,
    /// The client process, from its hello: sessions of one instance share
    /// their hosts.
    pub instance: Option<String>,
}

/// The sessions serving one host (one per connection of the client that
/// holds it), as the registry had them when asked.
#[derive(Clone)]
pub struct HostSessions {
    /// The sessions, in the order they joined.
    pub sessions: Vec<Arc<SessionHandle>>,
    /// Bumped by the registry whenever a pool of sessions changes (for any
    /// host), so that a copy can tell it may be out of date.
    pub generation: Arc<AtomicU64>,
    /// The value of `generation` this copy was taken at.
    pub seen: u64,
}

impl HostSessions {
    /// `true` while no session has joined or left since this copy was taken.
    pub fn is_current(&self) -> bool {
        self.generation.load(Ordering::Acquire) == self.seen
    }

    /// The ready session for a request accepted on `worker`: the one on the
    /// same thread if there is one (no hop between threads), else the first
    /// ready one.
    pub fn pick(&self, worker: u32) -> Option<&Arc<SessionHandle>> {
        let mut ready = self.sessions.iter().filter(|s| s.is_ready());
        let first = ready.clone().next();
        ready.find(|s| s.worker == worker).or(first)
    }
}

/// Remove every host a session holds (when it stops). Hosts since taken by
/// another session are left alone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    /// The session going away.
    pub session_id: u64,
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

/// Put a stream in a session's table for one public request; the sender
/// queues the `RequestHead` frame itself right after. One way: the answer
/// arrives on `events` (the response head, then the body, or a reset); if
/// the session is gone, `events` is dropped unanswered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OpenStream {
    /// The stream's id, from [`SessionHandle::next_stream_id`].
    pub id: u32,
    /// Receives the response head, then the body (or a reset).
    pub events: Sender<BodyEvent>,
    /// Accounting of what the client may send on this stream.
    pub recv_credit: Arc<RecvCredit>,
    /// Credit for sending the request body, fed by `Window` frames.
    pub send_credit: Arc<SendCredit>,
    /// When the stream last moved bytes (for the idle timeout).
    pub activity: Arc<Activity>,
}

/// The opener no longer wants a stream (caller gone, timeout, bad upload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelStream {
    /// The stream.
    pub id: u32,
    /// Reset code sent to the client if the stream is still open.
    pub code: ResetCode,
}

/// Close a session's WebSocket and stop it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession;

/// Count of a session's open streams (introspection for tests and metrics).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StreamCount;
