//! The inspector's HTTP server: the page, and the JSON API it uses.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /api/requests` | summaries, newest first |
//! | `GET /api/requests/{id}` | one capture, whole ([`super::capture`]) |
//! | `POST /api/requests/{id}/replay` | sends it again, edited by an optional `{method, path, headers, body}`; the new capture |
//! | `GET /api/requests/{id}/curl` | the request as a curl command |
//! | `GET /api/requests/{id}/diff?with=N` | how the answer of `N` differs ([`super::diff`]) |
//! | `GET /api/har` | HAR 1.2 of what is kept |
//! | `GET /api/events` | server-sent events, one `request` event per new capture |
//! | `DELETE /api/requests` | forgets everything |
//!
//! It answers only requests whose `Host` names this machine (so that a web
//! page cannot reach it under a name of its own, by DNS rebinding), and
//! refuses requests that change something when a browser says they come
//! from another origin.

use std::time::Duration;

use actix_web::{dev::ServiceRequest, http::header, web, App, HttpResponse, HttpServer};
use futures_util::stream;
use serde_json::{json, Value};

use super::{capture, diff, export, replay::replay, store::Shared};
use crate::{config::ClientConfig, local::LocalLeg, observe::Capture};

/// What every handler shares.
struct State {
    store: Shared,
    config: ClientConfig,
    /// Any `Host` is taken (the inspector was bound to a public address
    /// on purpose).
    any_host: bool,
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message.into()}))
}

/// The inspector's server on `listener`, not yet running.
pub fn server(
    listener: std::net::TcpListener,
    store: Shared,
    config: ClientConfig,
) -> std::io::Result<actix_web::dev::Server> {
    let any_host = listener.local_addr().is_ok_and(|a| !a.ip().is_loopback());
    let state = web::Data::new(State {
        store,
        config,
        any_host,
    });
    let server = HttpServer::new(move || {
        let leg = web::Data::new(LocalLeg::for_tunnels(&state.config.tunnels));
        App::new()
            .app_data(state.clone())
            .app_data(leg)
            .app_data(web::JsonConfig::default().limit(16 * 1024 * 1024))
            .wrap(Guard)
            .route("/", web::get().to(page))
            .route("/api/requests", web::get().to(list))
            .route("/api/requests", web::delete().to(clear))
            .route("/api/requests/{id}", web::get().to(detail))
            .route("/api/requests/{id}/replay", web::post().to(replay_one))
            .route("/api/requests/{id}/curl", web::get().to(curl))
            .route("/api/requests/{id}/diff", web::get().to(diff_of))
            .route("/api/har", web::get().to(har))
            .route("/api/events", web::get().to(events))
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The `Host` and `Origin` checks, as middleware.
#[derive(Clone, Copy)]
struct Guard;

/// Why `req` is refused, if it is.
fn refusal(req: &ServiceRequest) -> Option<&'static str> {
    let any_host = req
        .app_data::<web::Data<State>>()
        .is_some_and(|s| s.any_host);
    let host = req.connection_info().host().to_owned();
    if !any_host && !is_local_name(&host) {
        return Some("the inspector answers only to localhost, 127.0.0.1 or [::1]");
    }
    let changes = !matches!(*req.method(), actix_web::http::Method::GET);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let foreign =
        origin.is_some_and(|o| o.split_once("://").map(|(_, h)| h) != Some(host.as_str()));
    (changes && foreign).then_some("a request from another origin may not change anything here")
}

/// `true` for a `Host` that can only mean this machine.
fn is_local_name(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl<S, B> actix_web::dev::Transform<S, ServiceRequest> for Guard
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    type Response = actix_web::dev::ServiceResponse<actix_web::body::EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = Guarded<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Guarded<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(Guarded(std::rc::Rc::new(service))))
    }
}

/// A service behind the [`Guard`].
struct Guarded<S>(std::rc::Rc<S>);

impl<S, B> actix_web::dev::Service<ServiceRequest> for Guarded<S>
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    type Response = actix_web::dev::ServiceResponse<actix_web::body::EitherBody<B>>;
    type Error = actix_web::Error;
    type Future =
        futures_util::future::LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(why) = refusal(&req) {
            let answer = error(actix_web::http::StatusCode::FORBIDDEN, why);
            return Box::pin(async move { Ok(req.into_response(answer).map_into_right_body()) });
        }
        let service = self.0.clone();
        Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) })
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(include_str!("page.html"))
}

async fn list(state: web::Data<State>) -> HttpResponse {
    let store = state.store.lock();
    let all: Vec<Value> = store.newest_first().map(capture::summary).collect();
    HttpResponse::Ok().json(all)
}

async fn clear(state: web::Data<State>) -> HttpResponse {
    state.store.lock().clear();
    HttpResponse::NoContent().finish()
}

fn not_kept(id: u64) -> HttpResponse {
    error(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("request {id} is not kept (cleared, or pushed out by newer ones)"),
    )
}

async fn detail(state: web::Data<State>, id: web::Path<u64>) -> HttpResponse {
    match state.store.lock().get(*id) {
        Some(r) => HttpResponse::Ok().json(capture::detail(r)),
        None => not_kept(*id),
    }
}

/// The public URL of a record's request.
fn public_url(config: &ClientConfig, host: &str, uri: &str) -> String {
    let base = config.public_url(host);
    format!("{}{uri}", base.trim_end_matches('/'))
}

async fn curl(state: web::Data<State>, id: web::Path<u64>) -> HttpResponse {
    let store = state.store.lock();
    let Some(r) = store.get(*id) else {
        return not_kept(*id);
    };
    let url = public_url(&state.config, &r.exchange.host, &r.exchange.uri);
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(export::curl(r, &url) + "\n")
}

#[derive(serde::Deserialize)]
struct With {
    with: u64,
}

async fn diff_of(state: web::Data<State>, id: web::Path<u64>, q: web::Query<With>) -> HttpResponse {
    let store = state.store.lock();
    match (store.get(*id), store.get(q.with)) {
        (Some(a), Some(b)) => HttpResponse::Ok().json(diff::answers(&a.exchange, &b.exchange)),
        (None, _) => not_kept(*id),
        (_, None) => not_kept(q.with),
    }
}

async fn har(state: web::Data<State>) -> HttpResponse {
    let store = state.store.lock();
    let mut records: Vec<_> = store.newest_first().collect();
    records.reverse();
    let url =
        |r: &super::store::Record| public_url(&state.config, &r.exchange.host, &r.exchange.uri);
    let body = export::har(records.into_iter(), url);
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"burrow.har\"",
        ))
        .json(body)
}

async fn replay_one(
    state: web::Data<State>,
    leg: web::Data<LocalLeg>,
    id: web::Path<u64>,
    edits: Option<web::Json<Value>>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (saved, limits) = {
        let store = state.store.lock();
        let Some(r) = store.get(*id) else {
            return not_kept(*id);
        };
        if r.exchange.upgrade {
            let why = "a WebSocket upgrade is not replayed: its messages belong to the connection";
            return error(StatusCode::BAD_REQUEST, why);
        }
        (super::saved_of(r), store.limits())
    };
    let edits = edits.map(|e| e.into_inner()).unwrap_or(Value::Null);
    let saved = match super::edited(saved, &edits) {
        Ok(saved) => saved,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if saved.missing > 0 {
        let why = format!(
            "the request body was kept only in part ({} bytes missing): send a body with the replay, or raise inspect_body_kib",
            saved.missing
        );
        return error(StatusCode::CONFLICT, why);
    }
    let host = saved.host.clone().unwrap_or_default();
    let Some(tunnel) = state.config.tunnel_for(&host) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("this client no longer serves {host}"),
        );
    };
    let capture = Capture {
        headers: true,
        body_bytes: limits.body_bytes,
        live: false,
    };
    match replay(&leg, tunnel, &saved, capture).await {
        Ok(exchange) => {
            let mut store = state.store.lock();
            let new = store.add(std::sync::Arc::new(exchange), Some(*id));
            match store.get(new) {
                Some(r) => HttpResponse::Ok().json(capture::detail(r)),
                None => not_kept(new),
            }
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// How often an idle event stream gets a comment, so that proxies and
/// browsers keep it open.
const KEEP_OPEN: Duration = Duration::from_secs(15);

async fn events(state: web::Data<State>) -> HttpResponse {
    let news = state.store.subscribe();
    let store = state.store.clone();
    let stream = stream::unfold((news, store), |(mut news, store)| async move {
        let text = tokio::select! {
            got = news.recv() => match got {
                Ok(id) => {
                    let summary = store.lock().get(id).map(capture::summary);
                    match summary {
                        Some(s) => format!("event: request\ndata: {s}\n\n"),
                        None => String::new(),
                    }
                }
                // Fell behind: tell the page to read the list again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => "event: reload\ndata: {}\n\n".into(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(KEEP_OPEN) => ": open\n\n".into(),
        };
        Some((
            Ok::<_, actix_web::Error>(web::Bytes::from(text)),
            (news, store),
        ))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream)
}
