//! A running server: its addresses, its drain and stop, and [`Control`],
//! what the signal handlers and the admin listener act on (reloads, the
//! counts, the health).

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use crate::{
    acme::Acme,
    handle::{RegistryHandle, Reload},
    metrics::Metrics,
    proxy::ProxyShared,
    session::SessionShared,
    ServerConfig,
};

/// How long, after the drain, the HTTP server gives the connections left
/// (callers' idle keep-alive ones, answers still being written) to close.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server.
pub struct RunningServer {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) http: actix_server::ServerHandle,
    pub(crate) admin: Option<crate::admin::Admin>,
    pub(crate) acme: Option<Acme>,
    pub(crate) control: Arc<Control>,
    pub(crate) drain_timeout: Duration,
}

/// What the signal handlers and the admin listener act on.
pub struct Control {
    /// The registry.
    pub registry: RegistryHandle,
    /// The server's counts.
    pub metrics: Arc<Metrics>,
    pub(crate) sessions: Arc<SessionShared>,
    pub(crate) proxy: Arc<ProxyShared>,
    /// In a cluster: this node's membership.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The configuration in force.
    pub(crate) config: Mutex<ServerConfig>,
}

/// What a reload did, as the log and the admin API tell it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Hosts whose client connections were closed: no longer configured,
    /// or no longer granted to the token their client holds them with.
    pub disconnected: Vec<String>,
    /// Hosts clients hold under the new configuration (not the entries
    /// configured: see `configured`).
    pub hosts: usize,
    /// `[[hosts]]` entries in the new configuration.
    pub configured: usize,
    /// Settings that changed in the file but take a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Control {
    /// Client connections (sessions) open.
    pub fn sessions(&self) -> usize {
        self.sessions.live.count()
    }

    /// `true` once the server has begun to drain.
    pub fn draining(&self) -> bool {
        self.proxy.draining.load(Ordering::Relaxed)
    }

    /// Reads the configuration file again and puts its hosts, limits,
    /// `[access]` and reconnect grace in force. A file that does not read
    /// or validate is refused with its reason, and the configuration in
    /// force stays.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        let old = self.lock().clone();
        let new = ServerConfig::from_file(&old.source).map_err(|e| e.to_string())?;
        let reload = Reload {
            hosts: new.hosts.clone(),
            limits: new.limits.clone(),
            access: new.access.clone(),
            grace: new.reconnect_grace,
        };
        let done = self.registry.reload(reload).await;
        let done = done.ok_or_else(|| "the server is stopping".to_owned())?;
        let summary = ReloadSummary {
            disconnected: done.disconnected,
            hosts: done.kept,
            configured: new.hosts.len(),
            needs_restart: needs_restart(&old, &new),
        };
        let mut kept = self.lock();
        kept.hosts = new.hosts;
        kept.limits = new.limits;
        kept.access = new.access;
        kept.reconnect_grace = new.reconnect_grace;
        Ok(summary)
    }

    /// Reloads, and logs what came of it.
    pub async fn reload_and_log(&self) -> Result<ReloadSummary, String> {
        let source = self.lock().source.display().to_string();
        let result = self.reload().await;
        match &result {
            Ok(s) => {
                log::info!(
                    "configuration reloaded from {source}: {} [[hosts]] entries, {} host(s) held by clients, {} disconnected{}",
                    s.configured,
                    s.hosts,
                    s.disconnected.len(),
                    if s.disconnected.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.disconnected.join(", "))
                    }
                );
                if !s.needs_restart.is_empty() {
                    let keys = s.needs_restart.join(", ");
                    log::warn!("changed settings that take a restart to apply: {keys}");
                }
            }
            Err(e) => log::error!("configuration not reloaded (the one in force stays): {e}"),
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerConfig> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The settings a reload does not apply that differ between `old` and
/// `new`.
fn needs_restart(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    // Every field is named: a new one does not build until it is put with
    // those a reload applies or with those that take a restart.
    let ServerConfig {
        listen,
        control_path,
        request_timeout,
        idle_timeout,
        heartbeat,
        drain_timeout,
        workers,
        trust_forwarded_headers,
        tls,
        http_listen,
        admin,
        cluster,
        // What a reload puts in force.
        hosts: _,
        limits: _,
        access: _,
        reconnect_grace: _,
        // Where the file is.
        source: _,
    } = old;
    let changed: [(&'static str, bool); 12] = [
        ("listen", *listen != new.listen),
        ("control_path", *control_path != new.control_path),
        (
            "request_timeout_secs",
            *request_timeout != new.request_timeout,
        ),
        ("idle_timeout_secs", *idle_timeout != new.idle_timeout),
        ("heartbeat_secs", *heartbeat != new.heartbeat),
        ("drain_timeout_secs", *drain_timeout != new.drain_timeout),
        ("workers", *workers != new.workers),
        (
            "trust_forwarded_headers",
            *trust_forwarded_headers != new.trust_forwarded_headers,
        ),
        ("tls", *tls != new.tls),
        ("http_listen", *http_listen != new.http_listen),
        ("admin_listen", *admin != new.admin),
        ("cluster", *cluster != new.cluster),
    ];
    changed
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}

impl RunningServer {
    /// The ACME service, with `[tls.acme]`.
    pub fn acme(&self) -> Option<&Acme> {
        self.acme.as_ref()
    }

    /// The address of the first public listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The addresses of every public listener, in the order given.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address, with `admin_listen`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The registry (for lookups in tests and tooling).
    pub fn registry(&self) -> &RegistryHandle {
        &self.control.registry
    }

    /// Reloads and signals act on this.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Drains, then stops: no new connection is accepted and new requests
    /// are answered 503; every client is told, and its sessions close as
    /// their requests and streams in flight finish, within the drain
    /// timeout; then whatever is left is closed.
    pub async fn stop(&self) {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let control = &self.control;
        control.proxy.draining.store(true, Ordering::Relaxed);
        // Stops accepting at once; the workers go on serving the
        // connections they have until they close.
        let stopped = self.http.stop(true);
        let told = control.registry.drain().await;
        if told > 0 {
            log::info!(
                "draining: {told} client connection(s) finishing their requests (at most {} s)",
                self.drain_timeout.as_secs()
            );
        }
        let live = &control.sessions.live;
        if tokio::time::timeout_at(deadline, live.none_left())
            .await
            .is_err()
        {
            log::warn!(
                "{} client connection(s) still busy after {} s; closing them",
                live.count(),
                self.drain_timeout.as_secs()
            );
            control.registry.close_all().await;
        }
        if let Some(acme) = &self.acme {
            acme.stop();
        }
        if tokio::time::timeout(CLOSE_TIMEOUT, stopped).await.is_err() {
            self.http.stop(false).await;
        }
        if let Some(admin) = &self.admin {
            admin.handle.stop(true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> ServerConfig {
        let text = format!(
            "listen = \"127.0.0.1:8080\"\n{extra}\n\
             [[hosts]]\nhost = \"a.localhost\"\ntoken = \"t\"\n"
        );
        ServerConfig::from_str(&text, std::path::Path::new("server.toml")).expect("config")
    }

    #[test]
    fn each_setting_a_reload_cannot_apply_is_named_and_no_other() {
        let base = config("");
        let restart = [
            ("listen = \"127.0.0.1:8081\"", "listen"),
            ("control_path = \"/other\"", "control_path"),
            ("request_timeout_secs = 7", "request_timeout_secs"),
            ("idle_timeout_secs = 7", "idle_timeout_secs"),
            ("heartbeat_secs = 7", "heartbeat_secs"),
            ("drain_timeout_secs = 7", "drain_timeout_secs"),
            ("workers = 7", "workers"),
            ("trust_forwarded_headers = true", "trust_forwarded_headers"),
            ("admin_listen = \"127.0.0.1:9000\"", "admin_listen"),
        ];
        for (line, key) in restart {
            // A second `listen` would be a duplicate key: replace it.
            let changed = match key {
                "listen" => ServerConfig {
                    listen: "127.0.0.1:8081".parse().unwrap(),
                    ..config("")
                },
                _ => config(line),
            };
            assert_eq!(needs_restart(&base, &changed), [key], "{line}");
        }
        let applied = [
            "reconnect_grace_secs = 3",
            "[access]\nallow_ips = [\"10.0.0.0/8\"]",
            "[limits]\nrequests_per_second = 3",
        ];
        for line in applied {
            assert!(needs_restart(&base, &config(line)).is_empty(), "{line}");
        }
    }

    #[test]
    fn access_is_parsed_once_into_the_rules_requests_are_checked_against() {
        let config = config("[access]\nallow_ips = [\"10.0.0.0/8\"]");
        let rules = config.access.expect("rules");
        assert!(rules.check(Some("10.1.2.3".parse().unwrap()), None).is_ok());
        assert!(rules
            .check(Some("192.0.2.1".parse().unwrap()), None)
            .is_err());
        assert!(self::tests::config("").access.is_none());
    }
}
