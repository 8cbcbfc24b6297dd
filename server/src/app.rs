//! One worker's service for a public listener: the caller's connection
//! (TLS first, on an HTTPS listener), the HTTP/1.1 service, and the app
//! that routes the control path to a new session and everything else to
//! the proxy.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use actix::Actor;
use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::{dev::AppConfig, web, App, HttpRequest, HttpResponse};
use burrow_common::protocol::MAX_MESSAGE_SIZE;
use tokio_rustls::TlsAcceptor;

use crate::{
    caller_io::{self, CallerIo, HeadProblem},
    cluster::Cluster,
    error::ProxyError,
    expect,
    placement::WorkerIds,
    proxy::{self, ProxyShared, ProxyState},
    session::{PublicOrigin, SessionShared, TunnelSession},
    tls,
};

/// How long a closing connection may take to flush its last bytes (as
/// actix-web's `HttpServer` sets it).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What each worker's service for one listener is built from.
#[derive(Clone)]
pub(crate) struct AppParts {
    pub control_path: String,
    pub sessions: Arc<SessionShared>,
    pub proxy: Arc<ProxyShared>,
    pub ids: Arc<WorkerIds>,
    pub proto: &'static str,
    pub tls: Option<TlsAcceptor>,
    /// Longest a caller may take over its TLS handshake and each head.
    pub head_timeout: Duration,
    /// In a cluster: the other nodes, to which requests for hosts held
    /// there are forwarded (public listeners only).
    pub relay_to: Option<Arc<Cluster>>,
    /// In a cluster, for the internal listener: the cluster whose secret
    /// each request must carry (and no control path).
    pub internal: Option<Arc<Cluster>>,
}

impl AppParts {
    /// One worker's HTTP/1.1 service for a listener on `addr`. HTTP/1.1
    /// only: the tunnel's callers speak it, and a service that could also
    /// speak HTTP/2 holds a larger state for every connection.
    pub(crate) fn service(
        &self,
        addr: SocketAddr,
    ) -> impl actix_service::ServiceFactory<
        actix_rt::net::TcpStream,
        Config = (),
        Response = (),
        Error = actix_http::error::DispatchError,
        InitError = (),
    > {
        let state = web::Data::new(self.proxy_state(addr));
        // Clients connect to public listeners only.
        let control_path = self.internal.is_none().then(|| self.control_path.clone());
        let control = web::Data::new(ControlState {
            sessions: self.sessions.clone(),
        });
        // Twice: the expectation handler starts requests with its own.
        let app = || {
            let mut app = App::new()
                .app_data(state.clone())
                .app_data(control.clone())
                .service(
                    web::resource(caller_io::REFUSED_PATH)
                        .guard(actix_web::guard::fn_guard(is_stand_in))
                        .to(refused),
                );
            if let Some(path) = &control_path {
                app = app.route(path, web::get().to(connect));
            }
            let app = app.default_service(web::to(proxy::proxy));
            map_config(
                app.into_factory().map_err(|err: actix_web::Error| {
                    expect::Answer::from(err.as_response_error().error_response())
                }),
                |_| AppConfig::default(),
            )
        };
        let http = HttpService::build()
            .on_connect_ext(|io: &CallerIo, data: &mut actix_http::Extensions| {
                io.remember_ip(data);
            })
            .keep_alive(actix_http::KeepAlive::default())
            .client_request_timeout(self.head_timeout)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            // A caller that closes its connection has gone away: stop its
            // stream (and free the tunnel's resources) now, not at the next
            // body chunk.
            .h1_allow_half_closed(false)
            .local_addr(addr)
            .expect(expect::expectation(app()))
            .h1(expect::main(app()));
        accept(self.tls.clone(), self.head_timeout).and_then(http)
    }
}

impl AppParts {
    /// One worker's proxy state for a listener on `addr`.
    fn proxy_state(&self, addr: SocketAddr) -> ProxyState {
        let metrics = &self.proxy.metrics;
        ProxyState {
            shared: self.proxy.clone(),
            worker: self.ids.this_worker(),
            proto: self.proto,
            port: addr.port(),
            relay: (self.relay_to.clone()).map(|c| proxy::Relay::new(c, metrics.clone())),
            internal: self.internal.clone(),
        }
    }
}

/// A caller's connection as the HTTP service takes it: TLS first, on an
/// HTTPS listener, then [`CallerIo`].
fn accept(
    acceptor: Option<TlsAcceptor>,
    head_timeout: Duration,
) -> impl actix_service::ServiceFactory<
    actix_rt::net::TcpStream,
    Config = (),
    Response = (CallerIo, Option<SocketAddr>),
    Error = actix_http::error::DispatchError,
    InitError = (),
> {
    actix_service::fn_service(move |tcp: actix_rt::net::TcpStream| {
        let acceptor = acceptor.clone();
        async move {
            let wire = tls::wire(acceptor.as_ref(), tcp, head_timeout)
                .await
                .map_err(actix_http::error::DispatchError::Io)?;
            let io = CallerIo::new(wire);
            let peer = io.peer_addr();
            Ok((io, peer))
        }
    })
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

/// The app's guard for the stand-in of a refused head.
fn is_stand_in(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    ctx.head().method.as_str() == caller_io::REFUSED_METHOD
}

/// The answer to the stand-in of a refused head: what was wrong with it.
async fn refused(
    req: HttpRequest,
    state: web::Data<ProxyState>,
) -> Result<actix_web::HttpResponse, ProxyError> {
    let code = req.headers().get(caller_io::REFUSED_FIELD);
    let code = code.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let problem = HeadProblem::from_code(code).unwrap_or(HeadProblem::RequestLine);
    log::debug!(
        "refused a request head from {:?}: {problem}",
        req.peer_addr()
    );
    let refused = ProxyError::BadHead(problem);
    if let Some(reason) = refused.refusal() {
        state.shared.metrics.refused_request(reason);
    }
    Err(refused)
}
