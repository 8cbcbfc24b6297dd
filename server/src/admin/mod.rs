//! The admin listener (`admin_listen`): Prometheus text at `/metrics`,
//! `/healthz` for load balancers, and a JSON API under `/api/` for an
//! operator holding the admin token: the tunnels, a disconnect, a reload.
//! It is its own small HTTP server, apart from the public listeners, so
//! that nothing a caller sends to a tunnel can reach it.

mod prometheus;

use std::{
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::UNIX_EPOCH,
};

use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use burrow_common::Token;
use serde::Serialize;

use crate::{config::AdminSettings, Control};

/// The running admin listener.
pub struct Admin {
    /// Where it listens.
    pub addr: SocketAddr,
    pub(crate) handle: actix_web::dev::ServerHandle,
}

/// What the handlers share.
struct State {
    control: Arc<Control>,
    token: Option<crate::config::Secret>,
}

/// Binds `settings.listen` and serves the admin routes on one worker.
pub fn start(settings: &AdminSettings, control: Arc<Control>) -> std::io::Result<Admin> {
    let listener = TcpListener::bind(settings.listen)?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(State {
        control,
        token: settings.token.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics))
            .route("/api/tunnels", web::get().to(tunnels))
            .route("/api/tunnels/{host}", web::delete().to(disconnect))
            .route("/api/reload", web::post().to(reload))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().body("no such admin route\n")
            }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    log::info!("admin listener on http://{addr} (/metrics, /healthz, /api/)");
    Ok(Admin { addr, handle })
}

/// 200 while the server takes requests, 503 once it drains.
async fn healthz(state: web::Data<State>) -> HttpResponse {
    match state.control.draining() {
        false => HttpResponse::Ok().body("ok\n"),
        true => HttpResponse::ServiceUnavailable().body("draining\n"),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let text = prometheus::render(&state.control).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// One tunnel, as `GET /api/tunnels` lists it.
#[derive(Serialize)]
struct TunnelJson {
    host: String,
    client: Option<String>,
    since_unix: u64,
    connections: usize,
    reconnecting: bool,
    in_flight: usize,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// In a cluster: the nodes its client is connected through.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<String>>,
    /// In a cluster: whether this node holds a connection of it (the
    /// counts are this node's).
    #[serde(skip_serializing_if = "Option::is_none")]
    here: Option<bool>,
}

async fn tunnels(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &state) {
        return refused;
    }
    let list: Vec<TunnelJson> = state
        .control
        .registry
        .report()
        .await
        .into_iter()
        .map(|t| TunnelJson {
            client: t.client.map(|a| a.to_string()),
            since_unix: t
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            connections: t.sessions,
            reconnecting: t.reconnecting,
            in_flight: t.in_flight,
            requests: t.stats.requests(),
            bytes_in: t.stats.bytes_in(),
            bytes_out: t.stats.bytes_out(),
            host: t.host,
            nodes: None,
            here: None,
        })
        .collect();
    let list = match &state.control.cluster {
        Some(cluster) => with_cluster(list, cluster.listing().await.unwrap_or_default()),
        None => list,
    };
    HttpResponse::Ok().json(list)
}

/// This node's tunnels and the cluster's: each with the nodes serving it,
/// those held through other nodes only added without counts.
fn with_cluster(mine: Vec<TunnelJson>, all: Vec<(String, Vec<String>)>) -> Vec<TunnelJson> {
    let mut all: std::collections::BTreeMap<_, _> = all.into_iter().collect();
    let mut list: Vec<TunnelJson> = mine
        .into_iter()
        .map(|t| TunnelJson {
            nodes: Some(all.remove(&t.host).unwrap_or_default()),
            here: Some(true),
            ..t
        })
        .collect();
    list.extend(all.into_iter().map(|(host, nodes)| TunnelJson {
        host,
        client: None,
        since_unix: 0,
        connections: 0,
        reconnecting: false,
        in_flight: 0,
        requests: 0,
        bytes_in: 0,
        bytes_out: 0,
        nodes: Some(nodes),
        here: Some(false),
    }));
    list
}

async fn disconnect(
    req: HttpRequest,
    host: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    if let Some(refused) = refusal(&req, &state) {
        return refused;
    }
    let host = host.into_inner().to_ascii_lowercase();
    let registry = &state.control.registry;
    if registry.lookup(&host).await.is_none() {
        return error(HttpResponse::NotFound(), format!("no tunnel for {host}"));
    }
    let closed = registry.disconnect(&host).await;
    log::info!("{host} disconnected by the admin API ({closed} connection(s) closed)");
    HttpResponse::Ok().json(serde_json::json!({ "host": host, "closed": closed }))
}

async fn reload(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &state) {
        return refused;
    }
    match state.control.reload_and_log().await {
        Ok(summary) => HttpResponse::Ok().json(summary),
        Err(e) => error(HttpResponse::BadRequest(), e),
    }
}

/// The answer for a request that does not carry the admin token as a
/// bearer token; `None` when it does.
fn refusal(req: &HttpRequest, state: &State) -> Option<HttpResponse> {
    let Some(secret) = &state.token else {
        let why = "the admin API is off: set admin_token (or admin_token_sha256) in server.toml";
        return Some(error(HttpResponse::Forbidden(), why.into()));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(Token::new);
    match presented {
        Some(token) if secret.matches(&token) => None,
        _ => {
            let mut refused = HttpResponse::Unauthorized();
            refused.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"burrow admin\""));
            Some(error(refused, "the admin token is missing or wrong".into()))
        }
    }
}

fn error(mut builder: actix_web::HttpResponseBuilder, message: String) -> HttpResponse {
    builder.json(serde_json::json!({ "error": message }))
}
