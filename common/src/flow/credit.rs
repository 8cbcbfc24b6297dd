//! Credit on each side of a stream: what the sender may still send
//! ([`SendCredit`]) and what the receiver has let the peer send
//! ([`RecvCredit`]), and when the stream last moved bytes ([`Activity`]).

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc, Mutex,
};

use thiserror::Error;
use tokio::sync::Notify;

use crate::protocol::INITIAL_WINDOW;

/// Credit a sender may spend on one stream; shared between the task that
/// sends the body and the dispatcher that receives `Window` frames.
#[derive(Debug)]
pub struct SendCredit {
    state: Mutex<CreditState>,
    notify: Notify,
}

#[derive(Debug)]
struct CreditState {
    available: u64,
    closed: bool,
}

/// The stream was closed while the sender waited for credit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("stream closed")]
pub struct StreamClosed;

impl SendCredit {
    /// Credit starting at [`INITIAL_WINDOW`].
    pub fn new() -> Arc<SendCredit> {
        Arc::new(SendCredit {
            state: Mutex::new(CreditState {
                available: u64::from(INITIAL_WINDOW),
                closed: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        // The state is two plain fields; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds credit granted by the peer.
    pub fn grant(&self, increment: u32) {
        let mut s = self.lock();
        s.available = s.available.saturating_add(u64::from(increment));
        drop(s);
        self.notify.notify_one();
    }

    /// Ends the stream for the sender: waiting and future `acquire` calls fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Waits for credit and takes up to `want` bytes of it (at least one).
    pub async fn acquire(&self, want: usize) -> Result<usize, StreamClosed> {
        loop {
            {
                let mut s = self.lock();
                if s.closed {
                    return Err(StreamClosed);
                }
                if s.available > 0 {
                    let n = (want as u64).min(s.available);
                    s.available -= n;
                    return Ok(n as usize);
                }
            }
            // `notify_one` stores a permit if nobody waits yet, so a grant
            // between the check above and this await is not lost.
            self.notify.notified().await;
        }
    }
}

/// When a stream last moved bytes in either direction, for idle timeouts.
/// Shared between the tasks that move a stream's bytes and the owner of its
/// table entry.
#[derive(Debug)]
pub struct Activity {
    epoch: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Records that the stream moved bytes now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the stream last moved bytes.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Receive-side accounting of one stream: how much the peer may still send.
#[derive(Debug)]
pub struct RecvCredit {
    remaining: AtomicI64,
}

impl RecvCredit {
    /// Accounting starting at [`INITIAL_WINDOW`].
    pub fn new() -> Arc<RecvCredit> {
        Arc::new(RecvCredit {
            remaining: AtomicI64::new(i64::from(INITIAL_WINDOW)),
        })
    }

    /// Records `n` received bytes; `false` if the peer overran its credit.
    pub fn take(&self, n: usize) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.remaining.fetch_sub(n, Ordering::AcqRel) >= n
    }

    /// Records credit handed back to the peer.
    pub fn give(&self, n: u32) {
        self.remaining.fetch_add(i64::from(n), Ordering::AcqRel);
    }
}
