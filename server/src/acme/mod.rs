//! Certificates from an ACME authority (`[tls.acme]`): one for each
//! configured host, obtained at start in the background while the server
//! already serves, cached on disk, renewed before they expire and swapped
//! into the live certificates without a restart.
//!
//! # Layout
//! - this file: [`Acme`], the running service and its on-demand entry
//!   point [`Acme::request`];
//! - `keeper`: one host's certificate over time (order, renew, back off);
//! - `order`: one order, from new order to issued chain;
//! - `challenge`: the answers to HTTP-01 and TLS-ALPN-01;
//! - `certificate`: an issued certificate and its validity;
//! - `cache`: the files kept between runs;
//! - `limit`: the rate of on-demand orders;
//! - `error`: [`AcmeError`].
//!
//! Nothing here reacts to what a caller sends: a TLS handshake for a name
//! without a certificate only fails, and an order starts only for a
//! configured host or through [`Acme::request`].

mod cache;
mod certificate;
mod challenge;
mod error;
mod keeper;
mod limit;
mod order;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use instant_acme::{Account, AccountCredentials, NewAccount};
use tokio::{
    runtime::Handle,
    sync::{OnceCell, Semaphore},
    task::AbortHandle,
};

pub use self::error::AcmeError;
use self::{cache::Cache, certificate::Issued, limit::RateLimit};
pub use challenge::Responders;

use crate::config::{normalize_host, AcmeSettings};

/// On-demand orders allowed per minute, over all hosts: enough for a
/// burst of registrations, few enough that a client registering name
/// after name cannot exhaust the account's order limits quickly.
pub const ON_DEMAND_PER_MINUTE: usize = 5;
/// Orders under way at once; the rest wait their turn (a long host list
/// at first start does not open an order for every host at once).
const CONCURRENT_ORDERS: usize = 4;

/// The running ACME service. Dropping it (or [`Acme::stop`]) ends every
/// host's renewal; certificates already presented stay.
pub struct Acme {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("directory", &self.shared.settings.directory)
            .finish_non_exhaustive()
    }
}

/// What [`Acme::request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// The host's certificate is now kept: loaded from the cache, or
    /// ordered in the background and presented once issued.
    Started,
    /// The host's certificate was already kept (configured, or requested
    /// before): nothing new was ordered.
    AlreadyKept,
}

/// Why [`Acme::request`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not something a certificate can name.
    #[error("`{0}` is not a host name")]
    NotAHost(String),
    /// Too many on-demand orders in the last minute.
    #[error("more than {0} certificate orders a minute: try again later")]
    RateLimited(usize),
    /// The service has stopped.
    #[error("the certificate service has stopped")]
    Stopped,
}

/// What every host's keeper shares.
struct Shared {
    settings: AcmeSettings,
    cache: Cache,
    responders: Responders,
    account: OnceCell<Account>,
    orders: Semaphore,
    on_demand: RateLimit,
    /// The hosts kept, each by one task; `None` once stopped.
    kept: Mutex<Option<HashMap<String, AbortHandle>>>,
    /// The runtime the tasks run on, whichever thread asks.
    runtime: Handle,
}

impl Acme {
    /// Starts keeping the certificates of `hosts`: those in the cache that
    /// are still valid are presented before this returns, the others are
    /// ordered in the background. Must be called inside a Tokio runtime,
    /// which then runs the orders and renewals.
    pub fn start(
        settings: &AcmeSettings,
        hosts: impl IntoIterator<Item = String>,
        responders: Responders,
    ) -> Result<Acme, AcmeError> {
        let runtime = Handle::try_current().map_err(|_| AcmeError::NoRuntime)?;
        let shared = Arc::new(Shared {
            cache: Cache::open(&settings.cache, &settings.directory)?,
            settings: settings.clone(),
            responders,
            account: OnceCell::new(),
            orders: Semaphore::new(CONCURRENT_ORDERS),
            on_demand: RateLimit::new(ON_DEMAND_PER_MINUTE, Duration::from_secs(60)),
            kept: Mutex::new(Some(HashMap::new())),
            runtime,
        });
        for host in hosts {
            shared.keep(host);
        }
        Ok(Acme { shared })
    }

    /// Keeps a certificate for `host` from now on, for a host registered
    /// under a wildcard entry. Never call it for a name a caller merely
    /// sent (SNI, Host): strangers could then order certificates at will.
    /// At most [`ON_DEMAND_PER_MINUTE`] new hosts a minute; a host already
    /// kept orders nothing new.
    pub fn request(&self, host: &str) -> Result<Requested, RequestError> {
        self.on_demand().request(host)
    }

    /// A handle that requests certificates on demand (for the registry)
    /// without keeping the service running.
    pub fn on_demand(&self) -> OnDemand {
        OnDemand {
            shared: self.shared.clone(),
        }
    }

    /// Ends every host's renewal (orders under way are abandoned).
    pub fn stop(&self) {
        let kept = lock(&self.shared.kept).take();
        for task in kept.into_iter().flat_map(HashMap::into_values) {
            task.abort();
        }
    }
}

/// Requests certificates on demand from a running [`Acme`]; once it has
/// stopped, every request says so.
#[derive(Clone)]
pub struct OnDemand {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDemand")
    }
}

impl OnDemand {
    /// See [`Acme::request`].
    pub fn request(&self, host: &str) -> Result<Requested, RequestError> {
        let host = normalize_host(host).ok_or_else(|| RequestError::NotAHost(host.to_owned()))?;
        match self.shared.is_kept(&host) {
            None => return Err(RequestError::Stopped),
            Some(true) => return Ok(Requested::AlreadyKept),
            Some(false) => {}
        }
        if !self.shared.on_demand.try_start(Instant::now()) {
            return Err(RequestError::RateLimited(self.shared.on_demand.max()));
        }
        match self.shared.keep(host) {
            None => Err(RequestError::Stopped),
            Some(true) => Ok(Requested::Started),
            Some(false) => Ok(Requested::AlreadyKept),
        }
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        // The tasks hold the shared state: aborting them frees it.
        self.stop();
    }
}

impl Shared {
    /// Whether `host` is kept; `None` once stopped.
    fn is_kept(&self, host: &str) -> Option<bool> {
        lock(&self.kept)
            .as_ref()
            .map(|kept| kept.contains_key(host))
    }

    /// Starts keeping `host` unless it already is: `Some(true)` if it
    /// starts now, `None` once stopped.
    fn keep(self: &Arc<Self>, host: String) -> Option<bool> {
        let mut kept = lock(&self.kept);
        let kept = kept.as_mut()?;
        if kept.contains_key(&host) {
            return Some(false);
        }
        // The cache is read here, so a cached certificate is presented
        // before the server takes its first caller.
        let current = keeper::cached(self, &host);
        if let Some(issued) = &current {
            self.present(&host, issued);
        }
        let task = self
            .runtime
            .spawn(keeper::keep(self.clone(), host.clone(), current));
        kept.insert(host, task.abort_handle());
        Some(true)
    }

    /// Presents `issued` for `host` on every HTTPS listener.
    fn present(&self, host: &str, issued: &Issued) {
        for live in &self.responders.tls {
            live.set_issued(host, issued.key.clone());
        }
    }

    /// The account, restored from the cache or created (and cached) on
    /// first use; a failure is tried again on the next use.
    async fn account(&self) -> Result<Account, AcmeError> {
        self.account
            .get_or_try_init(|| self.open_account())
            .await
            .cloned()
    }

    async fn open_account(&self) -> Result<Account, AcmeError> {
        let builder = || {
            match &self.settings.ca {
                Some(ca) => Account::builder_with_root(ca),
                None => Account::builder(),
            }
            .map_err(AcmeError::at("setting up the HTTPS client"))
        };
        if let Some(json) = self.cache.account()? {
            match serde_json::from_str::<AccountCredentials>(&json) {
                Ok(credentials) => {
                    return builder()?
                        .from_credentials(credentials)
                        .await
                        .map_err(AcmeError::at("restoring the account"))
                }
                Err(e) => log::warn!("cached ACME account unreadable ({e}): creating a new one"),
            }
        }
        let contact = format!("mailto:{}", self.settings.email);
        let new = NewAccount {
            contact: &[&contact],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder()?
            .create(&new, self.settings.directory.clone(), None)
            .await
            .map_err(AcmeError::at("creating the account"))?;
        let json = serde_json::to_string(&credentials).map_err(|e| {
            AcmeError::Certificate(format!("account credentials not serializable: {e}"))
        })?;
        self.cache.store_account(&json)?;
        log::info!("ACME account created at {}", self.settings.directory);
        Ok(account)
    }
}

// No code panics while holding it, and the map stays whole: a poisoned
// lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
