//! What the server counts: per host ([`TunnelStats`], kept with the host in
//! the registry) and for the whole server ([`Metrics`]). Every count is a
//! relaxed atomic add on the request path, a few per request; the admin
//! listener reads them (see [`crate::admin`]).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::http::StatusCode;

/// One host's counts, kept while the registry keeps the host (across its
/// client's reconnects and configuration reloads).
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Answers by status class: 1xx to 5xx.
    classes: [AtomicU64; 5],
    /// Body bytes from callers to the local service.
    pub(crate) bytes_in: AtomicU64,
    /// Body bytes from the local service to callers.
    pub(crate) bytes_out: AtomicU64,
}

impl TunnelStats {
    /// Counts one answer.
    pub fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers of each class, `1xx` first.
    pub fn classes(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// Body bytes from callers to the local service so far.
    pub fn bytes_in(&self) -> u64 {
        load(&self.bytes_in)
    }

    /// Body bytes from the local service to callers so far.
    pub fn bytes_out(&self) -> u64 {
        load(&self.bytes_out)
    }

    /// Every answer.
    pub fn requests(&self) -> u64 {
        self.classes().iter().sum()
    }
}

/// Upper bounds of the request duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Why a public request was turned away by the server itself, as
/// `burrow_refusals_total` names it.
pub const REQUEST_REFUSALS: [&str; 12] = [
    "bad_head",
    "missing_host",
    "unknown_host",
    "bad_request",
    "unauthorized",
    "forbidden",
    "body_too_large",
    "head_too_large",
    "busy",
    "rate_limited",
    "reconnecting",
    "shutting_down",
];

/// Why a client's registration was refused.
pub const REGISTRATION_REFUSALS: [&str; 8] = [
    "invalid_host",
    "not_configured",
    "bad_token",
    "held_by_another_client",
    "no_random_names",
    "too_many_failures",
    "too_many_tunnels",
    "other",
];

/// The whole server's counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Time until the response head: one count per bucket (not cumulative),
    /// the last for longer ones.
    durations: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// Sum of the durations, in microseconds.
    duration_micros: AtomicU64,
    request_refusals: [AtomicU64; REQUEST_REFUSALS.len()],
    registration_refusals: [AtomicU64; REGISTRATION_REFUSALS.len()],
    /// Hosts taken back by their client within the reconnect grace.
    pub reconnects: AtomicU64,
    /// In a cluster: what went between the nodes and to Redis.
    pub cluster: ClusterCounts,
}

/// A cluster node's counts (all zero on a node that runs alone).
#[derive(Debug, Default)]
pub struct ClusterCounts {
    /// Requests this node forwarded to the node holding their tunnel.
    pub forwarded_out: AtomicU64,
    /// Requests other nodes forwarded to this one.
    pub forwarded_in: AtomicU64,
    /// Leases claimed, renewed and released in the host directory.
    pub lease_operations: AtomicU64,
    /// Calls to the host directory that failed (Redis unreachable).
    pub directory_errors: AtomicU64,
}

impl Metrics {
    /// A fresh set, shared by the whole server.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Counts a request's time until its response head.
    pub fn timed(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A host reclaimed within the reconnect grace: counted when its own
    /// client came back (`by_its_client`), not when a host kept after a
    /// start was claimed.
    pub fn reconnected(&self, by_its_client: bool, host: &str) {
        if by_its_client {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        log::debug!("{host} reclaimed by its client within the grace");
    }

    /// Counts a request refused for `reason` (one of [`REQUEST_REFUSALS`]).
    pub fn refused_request(&self, reason: &str) {
        count(&REQUEST_REFUSALS, &self.request_refusals, reason);
    }

    /// Counts a registration refused for `reason` (one of
    /// [`REGISTRATION_REFUSALS`]).
    pub fn refused_registration(&self, reason: &str) {
        count(&REGISTRATION_REFUSALS, &self.registration_refusals, reason);
    }

    /// The histogram: cumulative counts per bucket (the last is `+Inf`),
    /// and the sum in seconds.
    pub fn durations(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .durations
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (cumulative, sum)
    }

    /// Request refusals by reason, in [`REQUEST_REFUSALS`] order.
    pub fn request_refusals(&self) -> Vec<u64> {
        self.request_refusals.iter().map(load).collect()
    }

    /// Registration refusals by reason, in [`REGISTRATION_REFUSALS`] order.
    pub fn registration_refusals(&self) -> Vec<u64> {
        self.registration_refusals.iter().map(load).collect()
    }
}

fn count(names: &[&str], counts: &[AtomicU64], reason: &str) {
    if let Some(i) = names.iter().position(|n| *n == reason) {
        counts[i].fetch_add(1, Ordering::Relaxed);
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_cumulative_buckets() {
        let m = Metrics::default();
        m.timed(Duration::from_micros(500));
        m.timed(Duration::from_millis(30));
        m.timed(Duration::from_secs(60));
        let (buckets, sum) = m.durations();
        assert_eq!(buckets[0], 1);
        assert_eq!(buckets[5], 2, "50 ms");
        assert_eq!(buckets[DURATION_BUCKETS.len() - 1], 2);
        assert_eq!(buckets[DURATION_BUCKETS.len()], 3, "+Inf");
        assert!((sum - 60.0305).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn every_refusal_reason_has_its_count() {
        use crate::error::{ProxyError, RegisterError};
        let h = || "h".to_owned();
        let requests = [
            ProxyError::MissingHost,
            ProxyError::UnknownHost(h()),
            ProxyError::BadRequest(h()),
            ProxyError::UpgradeUnsupported(h()),
            ProxyError::Unauthorized(h()),
            ProxyError::Forbidden(h()),
            ProxyError::BodyTooLarge(1),
            ProxyError::HeadTooLarge,
            ProxyError::Busy { host: h(), max: 1 },
            ProxyError::RateLimited {
                host: h(),
                retry_after: 1,
            },
            ProxyError::Reconnecting(h()),
            ProxyError::ShuttingDown,
            ProxyError::BadHead(crate::caller_io::HeadProblem::TwoHosts),
        ];
        for e in requests {
            let reason = e.refusal().expect("a refusal");
            assert!(REQUEST_REFUSALS.contains(&reason), "{reason}");
        }
        assert_eq!(ProxyError::TunnelGone(h()).refusal(), None);
        let registrations = [
            RegisterError::InvalidHost(h()),
            RegisterError::NotConfigured(h()),
            RegisterError::BadToken(h()),
            RegisterError::HeldByAnotherClient(h()),
            RegisterError::NoRandomNames,
            RegisterError::TooManyFailures(1),
            RegisterError::TooManyTunnels(h(), 1),
            RegisterError::BadRules(h(), h()),
            RegisterError::Unavailable,
        ];
        for e in registrations {
            assert!(REGISTRATION_REFUSALS.contains(&e.refusal()), "{e}");
        }
    }

    #[test]
    fn answers_are_counted_by_class() {
        let s = TunnelStats::default();
        s.answered(StatusCode::OK);
        s.answered(StatusCode::NOT_FOUND);
        s.answered(StatusCode::BAD_GATEWAY);
        assert_eq!(s.classes(), [0, 1, 0, 1, 1]);
        assert_eq!(s.requests(), 3);
    }
}
