//! The client's stop signal, shared by all its connections (each on its
//! own thread): once requested, connections take no new streams, finish
//! the ones in flight and close.

use tokio::sync::watch;

/// Requests a stop of every connection holding a [`Shutdown`] from it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A connection's view of the stop signal. Cheap to clone, and may cross
/// threads.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new stop signal, not requested yet.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Requests the stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// `true` once the stop has been requested (or its trigger dropped).
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the stop has been requested, or the trigger dropped.
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        // `wait_for` errs when the trigger is dropped: a stop as well.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
