//! The reconnect grace: a host whose client dropped stays reserved for it
//! a while, and requests that arrive meanwhile wait for it to come back
//! instead of failing. The registry keeps a [`Reservation`] per such host;
//! each waiting request holds a [`Reserved`] taken from it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

/// A host held for its client while it reconnects. Dropping it (the
/// client is back, or the grace is over) wakes every request waiting on
/// it, which then looks the host up again.
pub struct Reservation {
    /// Tells this reservation's expiry from a later one's.
    pub id: u64,
    /// The client instance that may reclaim the host; `None`: any client
    /// with the host's token (the hosts of a server that just started).
    pub instance: Option<Box<str>>,
    until: Instant,
    released: watch::Sender<()>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl Reservation {
    /// A reservation for `grace` from now, for which at most `max_waiting`
    /// requests wait.
    pub fn new(id: u64, instance: Option<Box<str>>, grace: Duration, max_waiting: usize) -> Self {
        Reservation {
            id,
            instance,
            until: Instant::now() + grace,
            released: watch::channel(()).0,
            waiting: Arc::default(),
            max_waiting,
        }
    }

    /// What a request needs to wait on it.
    pub fn ticket(&self) -> Reserved {
        Reserved {
            until: self.until,
            released: self.released.subscribe(),
            waiting: self.waiting.clone(),
            max: self.max_waiting,
        }
    }

    /// How many requests wait on it.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A request's hold on a [`Reservation`].
#[derive(Clone)]
pub struct Reserved {
    until: Instant,
    released: watch::Receiver<()>,
    waiting: Arc<AtomicUsize>,
    max: usize,
}

/// Why a request stopped waiting without the host coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// As many requests as the host may have wait already.
    Full,
    /// The grace ran out.
    Expired,
}

impl Reserved {
    /// Waits, as one of the few requests the reservation lets wait, until
    /// it is released (`Ok`: look the host up again) or its grace runs out.
    pub async fn wait(mut self) -> Result<(), WaitError> {
        let count = WaitCount::enter(&self.waiting);
        if count.0 > self.max {
            return Err(WaitError::Full);
        }
        // The sender is only ever dropped, never used: `changed` returns
        // once it is.
        match tokio::time::timeout_at(self.until, self.released.changed()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(WaitError::Expired),
        }
    }
}

/// One waiting request, counted while it waits.
struct WaitCount<'a>(usize, &'a AtomicUsize);

impl<'a> WaitCount<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        WaitCount(waiting.fetch_add(1, Ordering::Relaxed) + 1, waiting)
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn waiters_wake_when_released_and_give_up_at_the_end() {
        let r = Reservation::new(1, None, Duration::from_secs(30), 2);
        let a = tokio::spawn(r.ticket().wait());
        let b = tokio::spawn(r.ticket().wait());
        while r.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(r.ticket().wait().await, Err(WaitError::Full));
        drop(r);
        assert_eq!(a.await.ok(), Some(Ok(())));
        assert_eq!(b.await.ok(), Some(Ok(())));

        let short = Reservation::new(2, None, Duration::from_millis(20), 1);
        assert_eq!(short.ticket().wait().await, Err(WaitError::Expired));
    }
}
