//! A session's gate: whether it takes new streams, and the openers on
//! their way in when it stops taking them. Shared by the session and
//! every handle to it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::Notify;

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
    /// Woken when the gate opens, for requests that arrived while the
    /// session was finishing its handshake.
    opened: Notify,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            next_stream: AtomicU32::new(1),
            ready: AtomicBool::new(false),
            opening: AtomicU32::new(0),
            opened: Notify::new(),
        }
    }
}

impl Gate {
    /// Opens the session to new streams (its handshake answer is queued).
    pub fn open(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    /// A fresh stream id (odd, counting up).
    pub fn next_stream_id(&self) -> u32 {
        self.next_stream.fetch_add(2, Ordering::Relaxed)
    }

    /// `true` while the gate is open.
    pub fn is_open(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Resolves once the gate is open (at once if it is).
    pub async fn wait_open(&self) {
        let opened = self.opened.notified();
        let mut opened = std::pin::pin!(opened);
        // Registered before `ready` is read, so an opening in between is
        // not missed.
        opened.as_mut().enable();
        if self.is_open() {
            return;
        }
        opened.await;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
