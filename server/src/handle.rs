//! How the rest of the server reaches the registry and the sessions
//! without naming their actor types: [`RegistryHandle`], a struct of
//! recipients with typed operations over the registry's messages, behind
//! which another registry (one shared by several nodes) can stand; and
//! [`SessionHandle`], what the registry stores and the proxy opens streams
//! on.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    Arc,
};

use actix::{Actor, Addr, Handler, Message, Recipient};
use burrow_common::{protocol::TunnelRequest, Outbox, ResetCode};
use tokio::sync::oneshot;

use crate::{
    error::RegisterError,
    messages::{CancelStream, OpenStream, ToSession},
};

/// A host granted to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The host, in canonical form.
    pub host: String,
    /// `true` when the session joined other connections of its client
    /// that already serve the host; `false` when it is the first.
    pub joined: bool,
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

/// The registry, as the sessions, the proxy and the server see it.
#[derive(Clone)]
pub struct RegistryHandle {
    register: Recipient<Register>,
    unregister: Recipient<Unregister>,
    lookup: Recipient<Lookup>,
    close_all: Recipient<CloseAll>,
}

impl RegistryHandle {
    /// A handle on any registry actor that takes the four messages.
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = actix::Context<A>>
            + Handler<Register>
            + Handler<Unregister>
            + Handler<Lookup>
            + Handler<CloseAll>,
    {
        RegistryHandle {
            register: addr.clone().recipient(),
            unregister: addr.clone().recipient(),
            lookup: addr.clone().recipient(),
            close_all: addr.recipient(),
        }
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
        let msg = Register {
            session,
            tunnels,
            instance,
        };
        match self.register.send(msg).await {
            Ok(answers) => answers,
            Err(_) => (0..count)
                .map(|_| Err(RegisterError::Unavailable))
                .collect(),
        }
    }

    /// Removes the hosts `session_id` holds (hosts since taken by another
    /// session stay).
    pub fn unregister(&self, session_id: u64) {
        self.unregister.do_send(Unregister { session_id });
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
    /// The server worker the session actor runs on.
    pub worker: WorkerId,
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
}

impl SessionHandle {
    /// A fresh stream id on this session.
    pub fn next_stream_id(&self) -> u32 {
        self.gate.next_stream.fetch_add(2, Ordering::Relaxed)
    }

    /// `true` while the session actor is running.
    pub fn is_alive(&self) -> bool {
        self.to_session.connected()
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

    /// Puts a stream in the session's table.
    pub fn open(&self, stream: OpenStream) {
        self.to_session.do_send(ToSession::Open(stream));
    }

    /// Cancels a stream (resetting it on the client's side).
    pub fn cancel(&self, id: u32, code: ResetCode) {
        self.to_session
            .do_send(ToSession::Cancel(CancelStream { id, code }));
    }

    /// Closes the session.
    pub fn close(&self) {
        self.to_session.do_send(ToSession::Close);
    }

    /// How many streams the session has open (0 once it is gone).
    pub async fn stream_count(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        self.to_session.do_send(ToSession::CountStreams(tx));
        rx.await.unwrap_or(0)
    }
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

/// The sessions serving one host (one per connection of the client that
/// holds it), as the registry had them when asked.
#[derive(Clone)]
pub struct HostSessions {
    /// The sessions, in the order they joined.
    pub sessions: Vec<Arc<SessionHandle>>,
    /// What the workers share about the host (caller rules, streams in
    /// flight, request rate).
    pub tunnel: Arc<crate::tunnel::TunnelState>,
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
}

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
