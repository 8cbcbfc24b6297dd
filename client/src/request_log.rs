//! One line per exchange in the client's log, as ngrok's console shows
//! them, and one warning per outage of a local service rather than one per
//! request.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use burrow_common::ResetCode;

use crate::observe::{Exchange, ExchangeObserver};

/// Where the lines go: `RUST_LOG=burrow::requests=off` silences them.
pub const TARGET: &str = "burrow::requests";

/// Logs each exchange at info; a local service that cannot be reached is
/// reported once when it goes down and once when it is back.
#[derive(Debug, Default)]
pub struct RequestLog {
    /// Hosts whose local service is down right now.
    down: Mutex<HashSet<String>>,
    /// Whether `down` holds any: answered requests look only at this.
    any_down: AtomicBool,
}

impl RequestLog {
    /// A request log, or `None` when its lines would not be shown (so that
    /// the client records nothing per request).
    pub fn if_enabled() -> Option<RequestLog> {
        log::log_enabled!(target: TARGET, log::Level::Info).then(RequestLog::default)
    }

    /// Records whether `host`'s local service answered; `true` when that
    /// changes what was known.
    fn set_down(&self, host: &str, down: bool) -> bool {
        if !down && !self.any_down.load(Ordering::Acquire) {
            return false;
        }
        let mut hosts = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if down {
            hosts.insert(host.to_owned())
        } else {
            hosts.remove(host)
        };
        self.any_down.store(!hosts.is_empty(), Ordering::Release);
        changed
    }
}

impl ExchangeObserver for RequestLog {
    fn exchange(&self, e: &Exchange) {
        let ms = e.elapsed.as_secs_f64() * 1000.0;
        let (method, uri) = (&e.method, &e.uri);
        match &e.failure {
            Some(f) if f.code == ResetCode::LocalUnreachable => {
                if self.set_down(&e.host, true) {
                    log::warn!(
                        target: TARGET,
                        "the local service for {} is unreachable ({}); callers get 502 until it is back",
                        e.host,
                        f.reason
                    );
                }
                log::debug!(target: TARGET, "{method} {uri} 502 local service unreachable");
            }
            Some(f) => {
                log::info!(target: TARGET, "{method} {uri} failed after {ms:.1} ms: {}", f.reason);
            }
            None => {
                if self.set_down(&e.host, false) {
                    log::info!(target: TARGET, "the local service for {} answers again", e.host);
                }
                let status = e.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
                let size = size(e.response_body.total);
                log::info!(target: TARGET, "{method} {uri} {status} {ms:.1} ms {size}");
            }
        }
    }
}

/// A byte count as people read it.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}
