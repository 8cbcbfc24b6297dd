//! One connection kept up: reconnected with capped, jittered exponential
//! backoff until the server refuses the tunnels for good, the connection is
//! drained on request, or the client shuts down.

use std::{
    hash::{BuildHasher, Hasher},
    rc::Rc,
    time::Duration,
};

use tokio::sync::mpsc::UnboundedSender;

use crate::{
    config::ClientConfig,
    connection::{self, ConnError, Role},
    events::{ClientError, ClientEvent},
    forward::ForwardContext,
    shutdown::Shutdown,
};

/// First pause before reconnecting.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Exponential backoff with jitter, capped.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: INITIAL_BACKOFF,
            max,
        }
    }

    fn reset(&mut self) {
        self.next = INITIAL_BACKOFF;
    }

    /// The next pause: between half and all of the current step, so clients
    /// cut off together do not come back together.
    fn pause(&mut self) -> Duration {
        let step = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        let random = random_u64();
        let half = step / 2;
        half + half.mul_f64((random % 1000) as f64 / 1000.0)
    }
}

/// A random number: the standard library seeds each `RandomState` from the
/// operating system's randomness (and steps it for every new one).
pub(crate) fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What one kept-up connection needs.
pub(crate) struct Keep<'a> {
    pub config: &'a ClientConfig,
    pub ctx: Rc<ForwardContext>,
    pub instance: &'a str,
    pub role: Rc<dyn Role>,
    pub events: Option<&'a UnboundedSender<ClientEvent>>,
    pub shutdown: &'a Shutdown,
}

/// Serves one connection, reconnecting with backoff, until the server
/// refuses the tunnels for good (an error), or the connection was drained
/// (idle, or the client shutting down) (`Ok`).
pub(crate) async fn serve_until_refused(keep: Keep<'_>) -> Result<(), ClientError> {
    let mut backoff = Backoff::new(keep.config.max_backoff);
    loop {
        let served = connection::serve(
            keep.config,
            keep.ctx.clone(),
            keep.instance,
            keep.role.clone(),
            keep.shutdown,
        )
        .await;
        let err = match served {
            Ok(()) => ConnError::Lost("connection ended".into()),
            Err(e) => e,
        };
        match &err {
            ConnError::Refused {
                reason,
                retry: false,
            } => return Err(ClientError::Refused(reason.clone())),
            ConnError::Lost(_) | ConnError::Protocol(_) => {
                backoff.reset();
                log::warn!("{err}");
            }
            ConnError::Drained => {
                log::debug!("{err}");
                return Ok(());
            }
            ConnError::WorkerTaken(_) => {
                // Not a failure: try again at once for another worker.
                log::debug!("{err}");
                continue;
            }
            ConnError::Connect { .. } | ConnError::Refused { .. } => log::warn!("{err}"),
        }
        if keep.shutdown.is_requested() {
            return Ok(());
        }
        if let Some(events) = keep.events {
            let _ = events.send(ClientEvent::Disconnected {
                reason: err.to_string(),
            });
        }
        let pause = backoff.pause();
        log::info!("reconnecting in {:.1} s", pause.as_secs_f64());
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = keep.shutdown.requested() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let mut steps = Vec::new();
        for _ in 0..6 {
            steps.push(b.pause());
        }
        let expected = [250u64, 500, 1000, 2000, 2000, 2000];
        for (got, full) in steps.iter().zip(expected) {
            let full = Duration::from_millis(full);
            assert!(*got >= full / 2 && *got <= full, "{got:?} vs {full:?}");
        }
        b.reset();
        assert!(b.pause() <= INITIAL_BACKOFF);
    }
}
