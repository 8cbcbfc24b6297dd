//! One host's certificate, kept for as long as the server runs: obtained
//! when there is none, renewed once a third of its lifetime is left, each
//! failure logged once with its reason and tried again after a capped,
//! doubling wait. The certificate in use stays in use until its
//! replacement is issued.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{certificate::Issued, order, AcmeError, Shared};

/// The wait after a first failure. Let's Encrypt allows five failed
/// validations per host and hour: doubling from two minutes stays under.
const FIRST_RETRY: Duration = Duration::from_secs(120);
/// The longest wait between tries.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// The longest single sleep before renewal: the timer sleeps on a clock
/// that stops while the machine is suspended, so it looks at the wall
/// clock at least this often.
const RECHECK: Duration = Duration::from_secs(3600);

/// Keeps `host`'s certificate, starting from `current` (already presented).
pub async fn keep(shared: Arc<Shared>, host: String, mut current: Option<Issued>) {
    let mut failures = 0u32;
    loop {
        if let Some(issued) = &current {
            until(issued.renew_at()).await;
        }
        match obtain(&shared, &host).await {
            Ok(issued) => {
                log::info!(
                    "certificate for {host} obtained: valid for {}, renewed in {}",
                    span(left(issued.not_after)),
                    span(left(issued.renew_at())),
                );
                failures = 0;
                current = Some(issued);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_after(failures);
                let serving = match &current {
                    Some(c) if c.is_current(SystemTime::now()) => "the current one stays in use",
                    _ => "HTTPS for it has no certificate meanwhile",
                };
                log::warn!(
                    "certificate for {host} not obtained: {e}; {serving}; next try in {}",
                    span(wait)
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The cached certificate for `host`, when it is still valid.
pub fn cached(shared: &Shared, host: &str) -> Option<Issued> {
    let loaded = shared
        .cache
        .certificate(host)
        .and_then(|pem| pem.map(|pem| Issued::from_pem(pem, host)).transpose());
    match loaded {
        Ok(Some(issued)) if issued.is_current(SystemTime::now()) => Some(issued),
        Ok(Some(_)) => {
            log::info!("cached certificate for {host} has expired: ordering a new one");
            None
        }
        Ok(None) => None,
        Err(e) => {
            let path = shared.cache.cert_path(host);
            log::warn!("{} not used ({e}): ordering a new one", path.display());
            None
        }
    }
}

/// One order for `host`: issued, cached and presented.
async fn obtain(shared: &Shared, host: &str) -> Result<Issued, AcmeError> {
    // Never closed, so a permit always comes.
    let _permit = shared.orders.acquire().await;
    let account = shared.account().await?;
    let pem = order::issue(&account, host, &shared.responders).await?;
    let issued = Issued::from_pem(pem, host)?;
    if let Err(e) = shared.cache.store_certificate(host, &issued.pem) {
        log::warn!("certificate for {host} not cached ({e}): a restart orders it again");
    }
    shared.present(host, &issued);
    Ok(issued)
}

/// Returns at `when` by the wall clock.
async fn until(when: SystemTime) {
    while let Ok(wait) = when.duration_since(SystemTime::now()) {
        if wait.is_zero() {
            return;
        }
        tokio::time::sleep(wait.min(RECHECK)).await;
    }
}

/// The wait after `failures` failures in a row.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

fn left(when: SystemTime) -> Duration {
    when.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// A duration as a person reads it in a log line.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_two_minutes_up_to_an_hour() {
        let minutes: Vec<u64> = (1..=8).map(|n| retry_after(n).as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(Duration::from_secs(5)), "5 s");
        assert_eq!(span(Duration::from_secs(600)), "10 min");
        assert_eq!(span(Duration::from_secs(30 * 86_400)), "30 days");
    }
}
