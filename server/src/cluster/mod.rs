//! Several nodes behind one address (docs/CLUSTER.md). The registry actor
//! still decides everything about the sessions of its own node; this
//! module adds what the nodes share through Redis: which client instance
//! holds each host (a lease, claimed when a client registers and renewed
//! while any node has a connection of it), which nodes have such a
//! connection, and, for a request that reaches a node holding no
//! connection of its host's client, the node to forward it to (the proxy's
//! `relay` does the forwarding).

mod directory;
mod routes;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use burrow_common::Token;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{config::ClusterSettings, metrics::Metrics};
pub use directory::Claim;
use directory::Directory;
pub use directory::Quota;
use routes::Routes;

/// The header node-to-node requests carry the cluster's secret in.
pub const SECRET_HEADER: &str = "x-burrow-cluster";

/// Tells the registry that another node now serves `host`: if this node
/// only keeps it for a client that went away (the reconnect grace), the
/// client came back elsewhere, so it lets the host go (requests waiting
/// for it are forwarded there).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Handover {
    /// The host.
    pub host: String,
}

/// Why a host could not be claimed in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Another client instance holds it, through some node.
    HeldElsewhere,
    /// Its entry's token holds this many hosts already, across the nodes.
    TooMany(usize),
    /// Redis cannot be reached.
    DirectoryDown,
}

/// A host this node holds: for which instance, counted against which entry.
#[derive(Clone)]
struct Held {
    instance: Arc<str>,
    quota: Quota,
}

/// This node's membership in a cluster.
pub struct Cluster {
    settings: ClusterSettings,
    directory: Directory,
    /// The hosts this node holds for a client instance, renewed every
    /// third of the lease.
    held: Mutex<HashMap<String, Held>>,
    routes: Routes,
    /// Set while Redis cannot be reached (logged once each way).
    down: AtomicBool,
    /// The registry, told of hosts served elsewhere now.
    registry: std::sync::OnceLock<actix::Recipient<Handover>>,
    /// The node's counts: lease operations and directory errors here.
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// Joins the cluster: the directory on `settings.redis` (connected
    /// lazily: a node starts while Redis is down, and registers hosts once
    /// it is back), with the renewal and the change listener running.
    /// Must be called inside an actix system.
    pub fn start(settings: ClusterSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(settings.redis.as_str())
            .map_err(|e| format!("cluster.redis `{}`: {e}", settings.redis))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cluster.redis `{}`: {e}", settings.redis))?;
        let directory = Directory::new(
            conn,
            &settings.node_id,
            &settings.internal_url,
            settings.lease,
        );
        let cluster = Arc::new(Cluster {
            settings,
            directory,
            held: Mutex::default(),
            routes: Routes::default(),
            down: AtomicBool::new(false),
            registry: std::sync::OnceLock::new(),
            metrics,
        });
        actix_web::rt::spawn(renew(cluster.clone()));
        actix_web::rt::spawn(routes::listen(client, cluster.clone()));
        Ok(cluster)
    }

    /// Gives the cluster the registry to tell of hosts served elsewhere.
    pub fn attach(&self, registry: actix::Recipient<Handover>) {
        let _ = self.registry.set(registry);
    }

    /// A change of `host` was published: the route to it is forgotten,
    /// and if this node holds it, the registry hears whether another node
    /// serves it now.
    fn changed(self: &Arc<Self>, host: &str) {
        self.routes.changed(host);
        if !self.lock_held().contains_key(host) {
            return;
        }
        let (cluster, host) = (self.clone(), host.to_owned());
        actix_web::rt::spawn(async move {
            let elsewhere = cluster.reached(cluster.directory.locate(&host).await);
            if let (Some(urls), Some(registry)) = (elsewhere, cluster.registry.get()) {
                if !urls.is_empty() {
                    registry.do_send(Handover { host });
                }
            }
        });
    }

    /// This node's settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The secret node-to-node requests carry.
    pub fn secret(&self) -> &Token {
        &self.settings.secret
    }

    /// Takes `host`, just granted, for client `instance` in the directory
    /// (or renews it there when the instance holds it already, through
    /// any node), counted against its entry's `quota`.
    pub async fn claim(&self, host: &str, instance: &str, quota: &Quota) -> Result<(), ClaimError> {
        self.leased();
        let claimed = self.directory.claim(host, instance, quota).await;
        match self.reached(claimed) {
            Some(Claim::Refused) => Err(ClaimError::HeldElsewhere),
            Some(Claim::TooMany) => Err(ClaimError::TooMany(quota.1)),
            Some(Claim::Renewed | Claim::Taken) => {
                let held = Held {
                    instance: instance.into(),
                    quota: quota.clone(),
                };
                self.lock_held().insert(host.to_owned(), held);
                Ok(())
            }
            None => Err(ClaimError::DirectoryDown),
        }
    }

    /// This node no longer holds `host`: its last connection of the host's
    /// client left (after the reconnect grace). Other nodes' connections
    /// of the client keep the lease; with none, it ends.
    pub fn release(self: &Arc<Self>, host: &str) {
        let Some(held) = self.lock_held().remove(host) else {
            return;
        };
        let (cluster, host) = (self.clone(), host.to_owned());
        self.leased();
        actix_web::rt::spawn(async move {
            let released = cluster
                .directory
                .release(&host, &held.instance, &held.quota)
                .await;
            // Missed, the lease ends by itself once no node renews it.
            cluster.reached(released);
        });
    }

    /// The internal URLs of the nodes that hold `host`, this one aside:
    /// from the cache while it is fresh (or while Redis is down), else
    /// from the directory.
    pub async fn locate(&self, host: &str) -> Vec<Arc<str>> {
        if let Some(urls) = self.routes.fresh(host) {
            return urls;
        }
        let seen = self.routes.seen();
        match self.reached(self.directory.locate(host).await) {
            Some(urls) => self.routes.put(host, urls, seen),
            None => self.routes.stale(host),
        }
    }

    /// Wakes on the next change of any host published after this call
    /// (a client registering through some node, or leaving).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.routes.changes()
    }

    /// Every host held through some node, with those nodes' ids; `None`
    /// while Redis cannot be reached.
    pub async fn listing(&self) -> Option<Vec<(String, Vec<String>)>> {
        self.reached(self.directory.listing().await)
    }

    /// Forgets where `host` lives (a node there did not answer).
    pub fn forget(&self, host: &str) {
        self.routes.forget(host);
    }

    /// `Some` with the answer when Redis answered; notes (once) when it
    /// stops or starts answering.
    fn reached<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        match result {
            Ok(answer) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    log::info!("cluster: the host directory answers again");
                }
                Some(answer)
            }
            Err(e) => {
                let errors = &self.metrics.cluster.directory_errors;
                errors.fetch_add(1, Ordering::Relaxed);
                if !self.down.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "cluster: the host directory ({}) cannot be reached: {e}; \
                         serving the tunnels held, registering none until it is back",
                        self.settings.redis
                    );
                }
                None
            }
        }
    }

    fn leased(&self) {
        let ops = &self.metrics.cluster.lease_operations;
        ops.fetch_add(1, Ordering::Relaxed);
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Renews this node's hosts every third of the lease. The same step takes
/// them again after Redis lost them (restarted empty): nothing to do by
/// hand once it is back.
async fn renew(cluster: Arc<Cluster>) {
    let every = cluster.settings.lease / 3;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let held: Vec<_> = cluster
            .lock_held()
            .iter()
            .map(|(h, i)| (h.clone(), i.clone()))
            .collect();
        for (host, held) in held {
            if !cluster.lock_held().contains_key(&host) {
                continue;
            }
            cluster.leased();
            let renewed = cluster
                .directory
                .claim(&host, &held.instance, &held.quota)
                .await;
            match cluster.reached(renewed) {
                Some(Claim::Refused | Claim::TooMany) => log::warn!(
                    "cluster: {host} is leased to another client now \
                     (this node lost the directory longer than the lease)"
                ),
                Some(_) => {}
                // Down: the next tick tries again.
                None => break,
            }
        }
    }
}
