//! The public HTTP handler: one request through its tunnel, in stages:
//! [`route`] (which host), [`authorize`] (the one place a request can be
//! refused before it reaches a session), [`open`] (a stream on the host's
//! session, the head queued), then the wait for the response head and
//! the [`response`](response::response) streamed back.

mod request;
mod response;
pub(crate) mod route;

use std::{borrow::Cow, sync::Arc, time::Duration};

use actix_web::{http::header, web, HttpMessage, HttpRequest, HttpResponse};
use burrow_common::{
    flow::{
        pump_body, Activity, BodyEvent, CancelOnDrop, PumpError, RecvBody, RecvCredit, SendCredit,
    },
    protocol::ResponseHead,
    queue::{queue, Receiver},
    ResetCode,
};
use futures_util::StreamExt;

use crate::{
    error::ProxyError,
    handle::{RegistryHandle, SessionHandle},
    messages::OpenStream,
    placement::Worker,
    policy::{CallerRules, Refusal},
};
use request::{request_frame, Forwarding};

/// What every worker's proxy handler shares.
pub struct ProxyShared {
    /// The registry.
    pub registry: RegistryHandle,
    /// Longest wait for a response head.
    pub request_timeout: Duration,
    /// Keep `X-Forwarded-Proto`/`-Host` from a trusted reverse proxy (and
    /// take the caller's address from its `X-Forwarded-For`).
    pub trust_forwarded_headers: bool,
    /// The server's own rules for every tunnel's callers (`[access]`).
    pub rules: Option<CallerRules>,
}

/// One worker's proxy state: what all share, and the worker's placement.
pub struct ProxyState {
    /// Shared by every worker.
    pub shared: Arc<ProxyShared>,
    /// This worker.
    pub worker: Worker,
    /// `http` or `https`: how callers reach this listener.
    pub proto: &'static str,
    /// The listener's port.
    pub port: u16,
}

/// A request routed to a host.
struct Routed<'r> {
    host: Cow<'r, str>,
    public_host: &'r str,
    upgrade: bool,
}

/// A stream open on a session for one request.
struct Opened {
    session: Arc<SessionHandle>,
    id: u32,
    has_body: bool,
    events: Receiver<BodyEvent>,
    recv_credit: Arc<RecvCredit>,
    send_credit: Arc<SendCredit>,
    activity: Arc<Activity>,
}

/// Forwards one public request through its tunnel.
pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, ProxyError> {
    let routed = route(&req)?;
    let opened = open(&req, &routed, &state).await?;
    // If this handler is dropped (caller gone) or gives up, the stream is cancelled.
    let mut guard = cancel_guard(&opened.session, opened.id);
    if opened.has_body {
        send_body(&opened, payload);
    }
    let Opened {
        session,
        id,
        events,
        recv_credit,
        ..
    } = opened;
    let (head, events) = await_head(&req, &routed.host, events, &mut guard, &state).await?;
    if head.end_stream {
        guard.disarm();
    }
    let body = RecvBody::new(id, events, session.outbox.clone(), recv_credit, guard);
    response::response(&req, &routed.host, head, body, routed.upgrade)
}

/// The host the request is for, and whether it is a WebSocket upgrade.
fn route(req: &HttpRequest) -> Result<Routed<'_>, ProxyError> {
    let (host, public_host) = route::routing_host(req)?;
    let upgrade = route::websocket_upgrade(req)?;
    Ok(Routed {
        host,
        public_host,
        upgrade,
    })
}

/// Whether the request may be forwarded at all: the one place where one is
/// refused before it reaches a session. `rules` are the tunnel's, checked
/// after the server's own.
fn authorize(
    req: &HttpRequest,
    host: &str,
    rules: Option<&CallerRules>,
    shared: &ProxyShared,
) -> Result<(), ProxyError> {
    if !req.uri().path().starts_with('/') {
        // `OPTIONS *` asks about this server, not about a local service.
        return Err(ProxyError::BadRequest(format!(
            "request target `{}` is not forwarded",
            req.uri()
        )));
    }
    if shared.rules.is_none() && rules.is_none() {
        return Ok(());
    }
    let peer = caller_address(req, shared.trust_forwarded_headers);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    for rules in shared.rules.iter().chain(rules) {
        rules
            .check(peer, authorization)
            .map_err(|refusal| match refusal {
                Refusal::Address => ProxyError::Forbidden(host.to_owned()),
                Refusal::Credentials => ProxyError::Unauthorized(host.to_owned()),
            })?;
    }
    Ok(())
}

/// The caller's address: the connection's peer or, behind a trusted
/// reverse proxy, the last address in `X-Forwarded-For` (the one that
/// proxy added; earlier ones are the caller's own say).
fn caller_address(req: &HttpRequest, trust_forwarded: bool) -> Option<std::net::IpAddr> {
    if trust_forwarded {
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last();
        if let Some(ip) = last.and_then(|ip| ip.trim().parse().ok()) {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// Opens a stream on the session serving the host and queues the request
/// head. A session that is draining turns the opener away at its gate, and
/// the next lookup no longer offers it: try again.
async fn open(
    req: &HttpRequest,
    routed: &Routed<'_>,
    state: &ProxyState,
) -> Result<Opened, ProxyError> {
    let how = Forwarding {
        host: &routed.host,
        public_host: routed.public_host,
        proto: state.proto,
        trust: state.shared.trust_forwarded_headers,
        upgrade: routed.upgrade,
    };
    loop {
        let (session, rules) = state
            .worker
            .session_for(&state.shared.registry, &routed.host)
            .await
            .ok_or_else(|| ProxyError::UnknownHost(routed.host.to_string()))?;
        authorize(req, &routed.host, rules.as_deref(), &state.shared)?;
        let Some(pass) = session.begin_open() else {
            continue;
        };
        let id = session.next_stream_id();
        let (frame, has_body) = request_frame(id, req, &how)?;
        let (events_tx, events) = queue();
        let stream = OpenStream {
            id,
            events: events_tx,
            recv_credit: RecvCredit::new(),
            send_credit: SendCredit::new(),
            activity: Activity::new(),
        };
        let opened = Opened {
            session: session.clone(),
            id,
            has_body,
            events,
            recv_credit: stream.recv_credit.clone(),
            send_credit: stream.send_credit.clone(),
            activity: stream.activity.clone(),
        };
        // The table entry first, then the head: the session actor handles
        // its mailbox before its streams on every turn, so the entry exists
        // before any answer can come back. A dead session drops the message
        // and with it the events' sender: the wait for the head then ends
        // with "tunnel gone".
        session.open(stream);
        // Queued by this task, the head precedes the body frames the pump
        // queues.
        session
            .outbox
            .send_encoded(frame)
            .map_err(|_| ProxyError::TunnelGone(routed.host.to_string()))?;
        drop(pass);
        return Ok(opened);
    }
}

/// Pumps the caller's body (for an upgrade, the caller's side of the
/// upgraded connection: raw bytes until the caller closes) onto the stream.
fn send_body(opened: &Opened, payload: web::Payload) {
    let (session, id) = (opened.session.clone(), opened.id);
    let credit = opened.send_credit.clone();
    let activity = opened.activity.clone();
    let payload = payload.inspect(move |_| activity.touch());
    actix_web::rt::spawn(async move {
        let pumped = pump_body(id, payload, &credit, &session.outbox).await;
        if let Err(PumpError::Source(e)) = pumped {
            log::debug!("stream {id}: request body from caller failed: {e}");
            session.cancel(id, ResetCode::Cancel);
        }
    });
}

/// Waits for the response head. The session enforces the request timeout
/// on its periodic sweep: a timer per request would cost more than the
/// rest of this wait.
async fn await_head(
    req: &HttpRequest,
    host: &str,
    mut events: Receiver<BodyEvent>,
    guard: &mut CancelOnDrop,
    state: &ProxyState,
) -> Result<(ResponseHead, Receiver<BodyEvent>), ProxyError> {
    let mut event = events.recv().await;
    while let Some(BodyEvent::Continue) = event {
        crate::expect::let_caller_send(&req.extensions());
        event = events.recv().await;
    }
    match event {
        Some(BodyEvent::Head(head)) => Ok((*head, events)),
        Some(BodyEvent::Reset(code, reason)) => {
            guard.disarm();
            Err(ProxyError::from_reset(host, code, reason))
        }
        Some(BodyEvent::Expired) => {
            guard.disarm();
            Err(ProxyError::Timeout {
                host: host.to_owned(),
                secs: state.shared.request_timeout.as_secs(),
            })
        }
        Some(BodyEvent::Data(_) | BodyEvent::End | BodyEvent::Continue) | None => {
            Err(ProxyError::TunnelGone(host.to_owned()))
        }
    }
}

fn cancel_guard(session: &Arc<SessionHandle>, id: u32) -> CancelOnDrop {
    let session = session.clone();
    CancelOnDrop::new(move || session.cancel(id, ResetCode::Cancel))
}
