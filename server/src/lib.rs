//! `burrow-server`: the public side of the burrow HTTP tunnel.
//!
//! Clients connect a WebSocket to the control path and register the hosts
//! they serve; every other request is routed by its Host to the client's
//! session and answered with what the client's local service returns.
//!
//! # Layout
//! - [`config`]: the TOML configuration, loaded and validated.
//! - [`registry`]: the actor mapping hosts to sessions.
//! - [`session`]: the actor owning one client's WebSocket and its streams.
//! - [`messages`]: what those actors and the handlers say to each other.
//! - [`proxy`]: the public HTTP handler.
//! - [`listener`]: the public listener's accept queue.
//! - [`error`]: proxy failures and the statuses they become.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod listener;
pub mod messages;
pub mod proxy;
pub mod registry;
pub mod session;

use std::net::{SocketAddr, TcpListener};

use actix::{Actor, Addr};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use burrow_common::protocol::MAX_MESSAGE_SIZE;

pub use config::ServerConfig;

use crate::{
    messages::CloseAll,
    proxy::ProxyState,
    registry::Registry,
    session::{SessionLimits, TunnelSession},
};

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    http: actix_web::dev::ServerHandle,
    registry: Addr<Registry>,
}

impl RunningServer {
    /// The address the public listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry actor (for lookups in tests and tooling).
    pub fn registry(&self) -> &Addr<Registry> {
        &self.registry
    }

    /// Closes every client session, then stops the HTTP server.
    pub async fn stop(&self) {
        // Sessions are long-lived connections: without closing them, the
        // HTTP server would wait its whole shutdown timeout for them.
        let _ = self.registry.send(CloseAll).await;
        self.http.stop(true).await;
    }
}

/// Starts the server on an already bound listener. Must be called inside an
/// actix system; the server runs until [`RunningServer::stop`].
pub fn start(listener: TcpListener, config: ServerConfig) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    listener::widen_backlog(&listener)?;
    let registry = Registry::new(&config.hosts).start();
    let workers = config.workers.unwrap_or_else(config::default_workers);
    let state = web::Data::new(ProxyState {
        registry: std::sync::Arc::new(registry.clone()),
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        request_timeout: config.request_timeout,
        idle_timeout: config.idle_timeout,
        trust_forwarded_headers: config.trust_forwarded_headers,
    });
    let control_path = config.control_path.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(&control_path, web::get().to(connect))
            .default_service(web::to(proxy::proxy))
    })
    .tcp_nodelay(true)
    // A caller that closes its connection has gone away: stop its stream
    // (and free the tunnel's resources) now, not at the next body chunk.
    .h1_allow_half_closed(false)
    .disable_signals()
    .shutdown_timeout(5);
    server = server.workers(workers);
    let server = server.listen(listener)?.run();
    let http = server.handle();
    actix_web::rt::spawn(server);
    log::info!(
        "listening on http://{addr} (control path {})",
        config.control_path
    );
    Ok(RunningServer {
        addr,
        http,
        registry,
    })
}

/// The control endpoint: upgrades to a WebSocket and starts a session.
async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_MESSAGE_SIZE);
    let registry = state.registry.clone();
    let limits = SessionLimits {
        request_timeout: state.request_timeout,
        idle_timeout: state.idle_timeout,
    };
    let workers = state.workers;
    TunnelSession::create(move |ctx| {
        use actix::AsyncContext;
        ctx.add_stream(stream);
        TunnelSession::new(ws, registry, limits, workers)
    });
    Ok(response)
}
