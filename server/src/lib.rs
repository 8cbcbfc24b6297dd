//! `burrow-server`: the public side of the burrow HTTP tunnel.
//!
//! Clients connect a WebSocket to the control path and register the hosts
//! they serve; every other request is routed by its Host to the client's
//! session and answered with what the client's local service returns.
//!
//! # Layout
//! The map of every module, with what it holds, is docs/ARCHITECTURE.md
//! (a test keeps it whole). In short:
//! - configuration and listeners: `config`, `listener`, `tls`, `acme`,
//!   `redirect`, `app` (one worker's service), `caller_io` (a caller's
//!   connection, its request heads checked before the HTTP service reads
//!   them);
//! - the registry: `handle` (how the rest of the server reaches it),
//!   `registry` (the actor), `policy` (who claims which host), `names`,
//!   `throttle`, `grace`, `tunnel` (what workers share per host);
//! - the sessions: `session` (the actor), `messages`, `gate`;
//! - the public side: `proxy` (the handler, in stages), `placement`,
//!   `callers` (who may call), `expect`, `error` (the caller-facing map);
//! - operations: `running`, `metrics`, `admin`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod admin;
mod app;
pub(crate) mod caller_io;
pub(crate) mod callers;
pub mod cluster;
pub mod config;
pub mod error;
pub(crate) mod expect;
pub(crate) mod gate;
pub(crate) mod grace;
pub mod handle;
pub mod listener;
pub(crate) mod messages;
pub mod metrics;
pub(crate) mod names;
pub(crate) mod placement;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod redirect;
pub(crate) mod registry;
mod running;
pub(crate) mod session;
pub mod throttle;
pub(crate) mod tls;
pub(crate) mod tunnel;

use std::{
    future::Future,
    io,
    sync::{atomic::AtomicBool, Arc},
};

use actix::Actor;

pub use config::ServerConfig;
pub use handle::RegistryHandle;
pub use listener::PublicListener;
pub use running::{Control, ReloadSummary, RunningServer};

use crate::{
    app::AppParts,
    listener::Transport,
    metrics::Metrics,
    placement::WorkerIds,
    proxy::ProxyShared,
    registry::Registry,
    session::{SessionLimits, SessionShared},
};

/// Serves `listeners` with `config` until `shutdown` resolves, then stops.
/// Must be called inside an actix system.
pub async fn run(
    listeners: Vec<PublicListener>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let server = start(listeners, config)?;
    shutdown.await;
    log::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// Starts the server on already bound listeners (at least one). Must be
/// called inside an actix system; the server runs until
/// [`RunningServer::stop`].
pub fn start(listeners: Vec<PublicListener>, config: ServerConfig) -> io::Result<RunningServer> {
    if listeners.is_empty() {
        let why = "the server needs at least one listener";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    let acme = start_acme(&listeners, &config)?;
    let on_demand = acme.as_ref().map(|(acme, _)| acme.on_demand());
    let metrics = Metrics::new();
    let (registry, cluster) = start_registry(&config, on_demand, &metrics)?;
    let head_timeout = config.limits.head_timeout;
    let workers = config.workers.unwrap_or_else(config::default_workers);
    let ids = Arc::new(WorkerIds::default());
    let (sessions, proxy) = shared(&config, &registry, &ids, workers, &metrics);
    let control = Arc::new(Control {
        registry: registry.clone(),
        metrics,
        sessions: sessions.clone(),
        proxy: proxy.clone(),
        cluster: cluster.clone(),
        config: std::sync::Mutex::new(config.clone()),
    });
    let mut builder = builder(&config, workers);
    let http01 = acme.as_ref().and_then(|(_, r)| r.http.clone());
    let template = AppParts {
        control_path: config.control_path.clone(),
        sessions,
        proxy,
        ids,
        proto: "http",
        tls: None,
        head_timeout,
        relay_to: cluster.clone(),
        internal: None,
    };
    let mut addrs = Vec::with_capacity(listeners.len());
    for listener in listeners {
        addrs.push(listener.local_addr()?);
        builder = listen(builder, listener, &template, http01.clone())?;
    }
    if let Some(cluster) = cluster {
        builder = listen_internal(builder, cluster, &template)?;
    }
    let server = builder.run();
    let http = server.handle();
    actix_web::rt::spawn(server);
    let admin = config
        .admin
        .as_ref()
        .map(|settings| admin::start(settings, control.clone()))
        .transpose()?;
    Ok(RunningServer {
        addrs,
        http,
        admin,
        acme: acme.map(|(acme, _)| acme),
        control,
        drain_timeout: config.drain_timeout,
    })
}

/// The registry actor and, with `[cluster]`, this node's membership in
/// the cluster, each knowing the other.
fn start_registry(
    config: &ServerConfig,
    on_demand: Option<acme::OnDemand>,
    metrics: &Arc<Metrics>,
) -> io::Result<(RegistryHandle, Option<Arc<cluster::Cluster>>)> {
    let cluster = config
        .cluster
        .clone()
        .map(|settings| cluster::Cluster::start(settings, metrics.clone()))
        .transpose()
        .map_err(io::Error::other)?;
    let registry = Registry::new(config, on_demand, metrics.clone(), cluster.clone());
    let added = registry.hosts_added();
    let registry = registry.start();
    if let Some(cluster) = &cluster {
        cluster.attach(registry.clone().recipient());
    }
    let handle = RegistryHandle::new(registry)
        .in_cluster(cluster.clone())
        .counting(added);
    Ok((handle, cluster))
}

/// The HTTP server's builder. The drain decides when sessions end; the
/// workers wait a little longer for the connections left.
fn builder(config: &ServerConfig, workers: usize) -> actix_server::ServerBuilder {
    let shutdown_timeout = config.drain_timeout + running::CLOSE_TIMEOUT;
    actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout.as_secs())
}

/// Adds `listener` to the server, its service built from `template` (a
/// redirecting listener answers ACME's HTTP-01 validation with `http01`).
fn listen(
    builder: actix_server::ServerBuilder,
    listener: PublicListener,
    template: &AppParts,
    http01: Option<Arc<redirect::Http01Answers>>,
) -> io::Result<actix_server::ServerBuilder> {
    let addr = listener.local_addr()?;
    listener::widen_backlog(&listener.tcp)?;
    let name = format!("burrow-{addr}");
    let proto = listener.transport.proto();
    let tls = match listener.transport {
        Transport::Redirect { https_port } => {
            let head_timeout = template.head_timeout;
            log::info!("listening on http://{addr} (sends callers to HTTPS on port {https_port})");
            return builder.listen(name, listener.tcp, move || {
                redirect::service(https_port, head_timeout, http01.clone())
            });
        }
        Transport::Tls { acceptor, .. } => Some(acceptor),
        Transport::Plain => None,
    };
    log::info!(
        "listening on {proto}://{addr} (control path {})",
        template.control_path
    );
    let app = AppParts {
        proto,
        tls,
        ..template.clone()
    };
    builder.listen(name, listener.tcp, move || app.service(addr))
}

/// Adds the internal listener, where the other nodes of the cluster send
/// requests for the tunnels this node holds.
fn listen_internal(
    builder: actix_server::ServerBuilder,
    cluster: Arc<cluster::Cluster>,
    template: &AppParts,
) -> io::Result<actix_server::ServerBuilder> {
    let addr = cluster.settings().internal_listen;
    let tcp = std::net::TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on cluster.internal_listen {addr}: {e}"),
        )
    })?;
    let addr = tcp.local_addr()?;
    log::info!(
        "cluster: node {} takes the other nodes' requests on http://{addr}",
        cluster.settings().node_id
    );
    let app = AppParts {
        relay_to: None,
        internal: Some(cluster),
        ..template.clone()
    };
    builder.listen("burrow-internal", tcp, move || app.service(addr))
}

/// Starts ACME for the configured exact hosts when `[tls.acme]` is set
/// (a wildcard entry's names get theirs on demand), answering its
/// challenges on `listeners`: HTTP-01 on the redirecting listener,
/// TLS-ALPN-01 on the HTTPS ones.
fn start_acme(
    listeners: &[PublicListener],
    config: &ServerConfig,
) -> io::Result<Option<(acme::Acme, acme::Responders)>> {
    let Some(settings) = config.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
        return Ok(None);
    };
    let mut responders = acme::Responders {
        http: None,
        tls: Vec::new(),
    };
    for listener in listeners {
        match &listener.transport {
            Transport::Tls { live, .. } => responders.tls.push(live.clone()),
            Transport::Redirect { .. } => responders.http = Some(Default::default()),
            Transport::Plain => {}
        }
    }
    // The exact hosts, and the name clients dial the server by.
    let own = config.tls.as_ref().and_then(|t| t.server_name.clone());
    let hosts = config
        .hosts
        .iter()
        .filter(|h| h.wildcard_domain().is_none())
        .map(|h| h.host.clone())
        .chain(own)
        .collect::<std::collections::BTreeSet<_>>();
    let acme = acme::Acme::start(settings, hosts, responders.clone())
        .map_err(|e| io::Error::other(format!("cannot start ACME: {e}")))?;
    Ok(Some((acme, responders)))
}

/// What every worker's sessions and proxy handlers share.
fn shared(
    config: &ServerConfig,
    registry: &RegistryHandle,
    ids: &WorkerIds,
    workers: usize,
    metrics: &Arc<Metrics>,
) -> (Arc<SessionShared>, Arc<ProxyShared>) {
    let sessions = Arc::new(SessionShared {
        registry: registry.clone(),
        limits: SessionLimits {
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            ping_interval: config.heartbeat,
        },
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        node: ids.node().into(),
        live: Default::default(),
    });
    let proxy = Arc::new(ProxyShared {
        registry: registry.clone(),
        request_timeout: config.request_timeout,
        trust_forwarded_headers: config.trust_forwarded_headers,
        draining: AtomicBool::new(false),
        metrics: metrics.clone(),
        failover_wait: config.reconnect_grace,
    });
    (sessions, proxy)
}
