//! `burrow-server`: the public side of the burrow HTTP tunnel.
//!
//! Clients connect a WebSocket to the control path and register the hosts
//! they serve; every other request is routed by its Host to the client's
//! session and answered with what the client's local service returns.
//!
//! # Layout
//! - [`config`]: the TOML configuration, loaded and validated.
//! - [`listener`]: the public listeners; [`tls`]: HTTPS on them;
//!   [`redirect`]: plain HTTP sent to HTTPS; [`caller_io`]: a caller's
//!   connection, which explains the HTTP service's empty 400.
//! - [`acme`]: certificates obtained and renewed over ACME.
//! - [`handle`]: how the rest of the server reaches the registry and the
//!   sessions; [`messages`]: what sessions are told.
//! - [`registry`]: the actor mapping hosts to sessions; [`policy`]: who may
//!   claim which host.
//! - [`session`]: the actor owning one client connection and its streams.
//! - [`proxy`]: the public HTTP handler, in stages.
//! - [`placement`]: which session serves a request (worker placement).
//! - [`error`]: proxy and registration failures, and what each becomes.
//! - [`expect`]: `Expect: 100-continue` answered when the local service
//!   asks for the body.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod caller_io;
pub mod config;
pub mod error;
pub mod expect;
pub mod handle;
pub mod listener;
pub mod messages;
pub mod placement;
pub mod policy;
pub mod proxy;
pub mod redirect;
pub mod registry;
pub mod session;
pub mod tls;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use actix::Actor;
use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::{dev::AppConfig, web, App, HttpRequest, HttpResponse};
use burrow_common::protocol::MAX_MESSAGE_SIZE;

pub use config::ServerConfig;
pub use handle::RegistryHandle;
pub use listener::PublicListener;

use tokio_rustls::TlsAcceptor;

use crate::{
    caller_io::{CallerIo, Wire},
    listener::Transport,
    placement::WorkerIds,
    proxy::{ProxyShared, ProxyState},
    registry::Registry,
    session::{PublicOrigin, SessionLimits, SessionShared, TunnelSession},
};

/// How long the HTTP server waits for connections to finish when it stops.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;
/// How long a caller may take to send its request head once connected
/// (as actix-web's `HttpServer` sets it).
pub(crate) const REQUEST_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a closing connection may take to flush its last bytes (as
/// actix-web's `HttpServer` sets it).
const DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A running server.
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    http: actix_server::ServerHandle,
    registry: RegistryHandle,
    acme: Option<acme::Acme>,
}

impl RunningServer {
    /// The address of the first public listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The addresses of every public listener, in the order given.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The registry (for lookups in tests and tooling).
    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// The ACME service, with `[tls.acme]`.
    pub fn acme(&self) -> Option<&acme::Acme> {
        self.acme.as_ref()
    }

    /// Closes every client session, then stops the HTTP server.
    pub async fn stop(&self) {
        if let Some(acme) = &self.acme {
            acme.stop();
        }
        // Sessions are long-lived connections: without closing them, the
        // HTTP server would wait its whole shutdown timeout for them.
        self.registry.close_all().await;
        self.http.stop(true).await;
    }
}

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
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the server needs at least one listener",
        ));
    }
    let registry = RegistryHandle::new(Registry::new(&config.hosts).start());
    let workers = config.workers.unwrap_or_else(config::default_workers);
    let ids = Arc::new(WorkerIds::default());
    let sessions = Arc::new(SessionShared {
        registry: registry.clone(),
        limits: SessionLimits {
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
        },
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        node: ids.node().into(),
    });
    let proxy = Arc::new(ProxyShared {
        registry: registry.clone(),
        request_timeout: config.request_timeout,
        trust_forwarded_headers: config.trust_forwarded_headers,
    });
    let acme = start_acme(&listeners, &config)?;
    let http01 = acme.as_ref().and_then(|(_, r)| r.http.clone());
    let mut builder = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    let mut addrs = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let addr = listener.local_addr()?;
        listener::widen_backlog(&listener.tcp)?;
        let proto = listener.transport.proto();
        let name = format!("burrow-{addr}");
        let tls = match listener.transport {
            Transport::Redirect { https_port } => {
                let answers = http01.clone();
                builder = builder.listen(name, listener.tcp, move || {
                    redirect::service(https_port, answers.clone())
                })?;
                log::info!(
                    "listening on http://{addr} (sends callers to HTTPS on port {https_port})"
                );
                addrs.push(addr);
                continue;
            }
            Transport::Tls { acceptor, .. } => Some(acceptor),
            Transport::Plain => None,
        };
        let app = AppParts {
            control_path: config.control_path.clone(),
            sessions: sessions.clone(),
            proxy: proxy.clone(),
            ids: ids.clone(),
            proto,
            tls,
        };
        builder = builder.listen(name, listener.tcp, move || app.service(addr))?;
        log::info!(
            "listening on {proto}://{addr} (control path {})",
            config.control_path
        );
        addrs.push(addr);
    }
    let server = builder.run();
    let http = server.handle();
    actix_web::rt::spawn(server);
    Ok(RunningServer {
        addrs,
        http,
        registry,
        acme: acme.map(|(acme, _)| acme),
    })
}

/// Starts ACME for the configured hosts when `[tls.acme]` is set, answering
/// its challenges on `listeners`: HTTP-01 on the redirecting listener,
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
    let hosts = config.hosts.iter().map(|h| h.host.clone());
    let acme = acme::Acme::start(settings, hosts, responders.clone())
        .map_err(|e| io::Error::other(format!("cannot start ACME: {e}")))?;
    Ok(Some((acme, responders)))
}

/// What each worker's service for one listener is built from.
#[derive(Clone)]
struct AppParts {
    control_path: String,
    sessions: Arc<SessionShared>,
    proxy: Arc<ProxyShared>,
    ids: Arc<WorkerIds>,
    proto: &'static str,
    tls: Option<TlsAcceptor>,
}

impl AppParts {
    /// One worker's HTTP/1.1 service for a listener on `addr`. HTTP/1.1
    /// only: the tunnel's callers speak it, and a service that could also
    /// speak HTTP/2 holds a larger state for every connection.
    fn service(
        &self,
        addr: SocketAddr,
    ) -> impl actix_service::ServiceFactory<
        actix_rt::net::TcpStream,
        Config = (),
        Response = (),
        Error = actix_http::error::DispatchError,
        InitError = (),
    > {
        let state = web::Data::new(ProxyState {
            shared: self.proxy.clone(),
            worker: self.ids.this_worker(),
            proto: self.proto,
            port: addr.port(),
        });
        let control = web::Data::new(ControlState {
            sessions: self.sessions.clone(),
        });
        // Twice: the expectation handler starts requests with its own.
        let app = || {
            let app = App::new()
                .app_data(state.clone())
                .app_data(control.clone())
                .route(&self.control_path, web::get().to(connect))
                .default_service(web::to(proxy::proxy));
            map_config(
                app.into_factory().map_err(|err: actix_web::Error| {
                    expect::Answer::from(err.as_response_error().error_response())
                }),
                |_| AppConfig::default(),
            )
        };
        let http = HttpService::build()
            .keep_alive(actix_http::KeepAlive::default())
            .client_request_timeout(REQUEST_HEAD_TIMEOUT)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            // A caller that closes its connection has gone away: stop its
            // stream (and free the tunnel's resources) now, not at the next
            // body chunk.
            .h1_allow_half_closed(false)
            .local_addr(addr)
            .expect(expect::expectation(app()))
            .h1(expect::main(app()));
        let tls = self.tls.clone();
        actix_service::fn_service(move |tcp: actix_rt::net::TcpStream| {
            let tls = tls.clone();
            async move {
                let wire = match tls {
                    None => Wire::Plain(tcp),
                    Some(acceptor) => {
                        let _ = tcp.set_nodelay(true);
                        let tls = tls::accept(&acceptor, tcp).await.map_err(|e| {
                            log::debug!("TLS handshake failed: {e}");
                            actix_http::error::DispatchError::Io(e)
                        })?;
                        Wire::Tls(Box::new(tls))
                    }
                };
                let io = CallerIo::new(wire);
                let peer = io.peer_addr();
                Ok((io, peer))
            }
        })
        .and_then(http)
    }
}

/// What the control endpoint needs.
struct ControlState {
    sessions: Arc<SessionShared>,
}

/// The control endpoint: upgrades to a WebSocket and starts a session on
/// this worker.
async fn connect(
    req: HttpRequest,
    body: web::Payload,
    control: web::Data<ControlState>,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_MESSAGE_SIZE);
    let shared = control.sessions.clone();
    let worker = state.worker.id;
    let peer = req.peer_addr();
    let origin = PublicOrigin {
        proto: state.proto,
        port: state.port,
    };
    TunnelSession::create(move |ctx| {
        use actix::AsyncContext;
        ctx.add_stream(stream);
        TunnelSession::new(ws, shared, worker, peer, origin)
    });
    Ok(response)
}
