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
    /// Stream ids, and whether the session takes new streams.
    pub gate: Arc<Gate>,
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

/// What a session shares with every handle to it: where its stream ids
/// come from and whether it takes new streams.
#[derive(Debug)]
pub struct Gate {
    /// Source of the session's stream ids (odd, counting up).
    next_stream: AtomicU32,
    /// Set once the handshake answer is queued (frames queued before it
    /// would reach the client ahead of the answer); cleared when the client
    /// asks the session to drain.
    ready: AtomicBool,
    /// Openers between their check of `ready` and their stream's head
    /// being queued (see [`SessionHandle::begin_open`]).
    opening: AtomicU32,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            next_stream: AtomicU32::new(1),
            ready: AtomicBool::new(false),
            opening: AtomicU32::new(0),
        }
    }
}

impl Gate {
    /// Opens the session to new streams (its handshake answer is queued).
    pub fn open(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Closes the session to new streams. Once [`Gate::settled`] is also
    /// true, every stream opened through the gate has reached the session's
    /// mailbox, and no other ever will.
    pub fn close(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// `true` when no opener is between its check and its send. Only
    /// meaningful after [`Gate::close`].
    pub fn settled(&self) -> bool {
        self.opening.load(Ordering::SeqCst) == 0
    }

    /// Passes the gate for one new stream, or `None` if it is closed. The
    /// count goes up before `ready` is read, and the session reads the count
    /// only after clearing `ready` (both sequentially consistent): so either
    /// the session sees this opener and waits for it, or this opener sees
    /// the gate closed.
    pub fn enter(&self) -> Option<Opening<'_>> {
        self.opening.fetch_add(1, Ordering::SeqCst);
        let pass = Opening(self);
        self.ready.load(Ordering::SeqCst).then_some(pass)
    }
}

/// An opener's pass through a session's [`Gate`]: while it is held, the
/// session does not consider its drain done. Drop it once the stream's
/// `OpenStream` message and head are sent.
pub struct Opening<'a>(&'a Gate);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SessionHandle {
    /// A fresh stream id on this session.
    pub fn next_stream_id(&self) -> u32 {
        self.gate.next_stream.fetch_add(2, Ordering::Relaxed)
    }

    /// `true` while the session actor is running.
    pub fn is_alive(&self) -> bool {
        self.addr.connected()
    }

    /// `true` once the session takes streams: alive, past its handshake and
    /// not draining.
    pub fn is_ready(&self) -> bool {
        self.gate.ready.load(Ordering::Acquire) && self.is_alive()
    }

    /// Passes the session's gate for one new stream (see [`Gate::enter`]),
    /// or `None` if the session no longer takes any (draining, or gone).
    pub fn begin_open(&self) -> Option<Opening<'_>> {
        self.gate.enter().filter(|_| self.is_alive())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_opener_passes_a_closed_gate_once_it_has_settled() {
        for _ in 0..200 {
            let gate = Arc::new(Gate::default());
            gate.open();
            let sent = Arc::new(AtomicU32::new(0));
            let opener = {
                let (gate, sent) = (gate.clone(), sent.clone());
                std::thread::spawn(move || {
                    while let Some(pass) = gate.enter() {
                        sent.fetch_add(1, Ordering::SeqCst);
                        drop(pass);
                    }
                })
            };
            while sent.load(Ordering::SeqCst) == 0 {
                std::hint::spin_loop();
            }
            gate.close();
            while !gate.settled() {
                std::hint::spin_loop();
            }
            let at_settle = sent.load(Ordering::SeqCst);
            opener.join().expect("opener thread");
            assert_eq!(sent.load(Ordering::SeqCst), at_settle);
            assert!(gate.enter().is_none());
        }
    }
}
