//! The public HTTP handler: one request through its tunnel, in stages:
//! [`route`] (which host), [`authorize`] (the one place a request can be
//! refused before it reaches a session), [`open`] (a stream on the host's
//! session, the head queued), then the wait for the response head and
//! the [`response`](response::response) streamed back.

mod authorize;
mod counted;
mod placed;
mod relay;
mod request;
mod response;
pub(crate) mod route;

pub(crate) use relay::Relay;

use std::{
    borrow::Cow,
    cell::Cell,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{web, HttpRequest, HttpResponse};
use burrow_common::{
    flow::{
        pump_body, Activity, BodyEvent, CancelOnDrop, InFlightSlot, OpenedWindow, PumpError,
        RecvBody, RecvCredit, SendCredit,
    },
    frame::Frame,
    queue::{queue, Receiver},
    ResetCode,
};
use futures_util::StreamExt;

use crate::{
    error::ProxyError,
    handle::{RegistryHandle, SessionHandle},
    messages::OpenStream,
    metrics::Metrics,
    placement::Worker,
    tunnel::TunnelState,
};
use counted::Counted;
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
    /// Set once the server drains: new requests are turned away.
    pub draining: AtomicBool,
    /// The server's counts.
    pub metrics: Arc<Metrics>,
    /// In a cluster, how long a request for a host whose node stopped
    /// answering waits for its client to come back through another node
    /// (the reconnect grace).
    pub failover_wait: Duration,
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
    /// In a cluster, on a public listener: the way to the other nodes, for
    /// hosts this node holds no connection of.
    pub relay: Option<Rc<Relay>>,
    /// In a cluster, on the internal listener: the cluster, whose secret
    /// every request must carry.
    pub internal: Option<Arc<crate::cluster::Cluster>>,
}

impl ProxyState {
    /// Whether the forwarding fields of requests here are kept: behind a
    /// trusted reverse proxy, and on the internal listener (where they
    /// come from the node the caller reached).
    fn trusts_forwarded(&self) -> bool {
        self.shared.trust_forwarded_headers || self.internal.is_some()
    }
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
    /// The stream's place among its tunnel's streams in flight.
    slot: InFlightSlot,
    /// The host's state the request was authorized against.
    tunnel: Arc<TunnelState>,
    /// The answer's receive window, and the credit to grant with the head
    /// (on a long path whose streams have widened).
    window: OpenedWindow,
    ahead: u32,
}

/// Forwards one public request through its tunnel, and counts it.
pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, ProxyError> {
    let started = Instant::now();
    let (result, tunnel) = forward(&req, payload, &state).await;
    counted::answered(&state.shared.metrics, tunnel.as_deref(), &result, started);
    result
}

/// Forwards one request; with the outcome, its host's state when the host
/// was found (its counts take the outcome).
async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
) -> (Result<HttpResponse, ProxyError>, Option<Arc<TunnelState>>) {
    if state.shared.draining.load(Ordering::Relaxed) {
        return (Err(ProxyError::ShuttingDown), None);
    }
    if let Some(cluster) = &state.internal {
        if !relay::from_cluster(req, cluster) {
            return (Err(ProxyError::NotFromCluster), None);
        }
        let forwarded = &state.shared.metrics.cluster.forwarded_in;
        forwarded.fetch_add(1, Ordering::Relaxed);
    }
    let routed = match route(req) {
        Ok(routed) => routed,
        Err(e) => return (Err(e), None),
    };
    match open(req, &routed, state).await {
        Ok(opened) => {
            let tunnel = opened.tunnel.clone();
            (
                answer(req, payload, &routed, opened, state).await,
                Some(tunnel),
            )
        }
        // Unknown here, or no longer here: the host may be served through
        // another node.
        Err(Refused {
            error: error @ (ProxyError::UnknownHost(_) | ProxyError::Reconnecting(_)),
            tunnel: None,
        }) if state.relay.is_some() => match relay::relayed(req, payload, &routed, state).await {
            (Err(ProxyError::UnknownHost(_)), None) => (Err(error), None),
            relayed => relayed,
        },
        Err(Refused { error, tunnel }) => (Err(error), tunnel),
    }
}

/// Sends the body of a request whose stream is open, and answers with the
/// response the tunnel brings back.
async fn answer(
    req: &HttpRequest,
    payload: web::Payload,
    routed: &Routed<'_>,
    opened: Opened,
    state: &ProxyState,
) -> Result<HttpResponse, ProxyError> {
    let max_body = opened.tunnel.limits.max_request_body;
    // If this handler is dropped (caller gone) or gives up, the stream is cancelled.
    let mut guard = cancel_guard(&opened.session, opened.id);
    // Only a request with a body can outgrow the limit.
    let too_large = opened.has_body.then(|| Rc::new(Cell::new(false)));
    if let Some(flag) = &too_large {
        // An upgraded connection's bytes are not a request body.
        let limit = if routed.upgrade { u64::MAX } else { max_body };
        send_body(&opened, payload, limit, flag.clone(), opened.tunnel.clone());
    }
    let Opened {
        session,
        id,
        events,
        recv_credit,
        slot,
        tunnel,
        window,
        ..
    } = opened;
    let waited = response::await_head(req, &routed.host, events, &mut guard, state).await;
    let (head, events) = waited.map_err(|e| match too_large.is_some_and(|f| f.get()) {
        true => ProxyError::BodyTooLarge(max_body),
        false => e,
    })?;
    if head.end_stream {
        guard.disarm();
    }
    let body =
        RecvBody::new(id, events, session.outbox.clone(), recv_credit, guard).with_window(window);
    let body = Counted::new(body.holding(Some(slot)), tunnel);
    response::response(req, &routed.host, head, body, routed.upgrade)
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

/// A request turned away before its stream opened, with its host's state
/// if the host was found.
struct Refused {
    error: ProxyError,
    tunnel: Option<Arc<TunnelState>>,
}

impl From<ProxyError> for Refused {
    fn from(error: ProxyError) -> Self {
        Refused {
            error,
            tunnel: None,
        }
    }
}

/// Opens a stream on the session serving the host and queues the request
/// head. A session that is draining turns the opener away at its gate,
/// and the next lookup no longer offers it: try again. The request pays
/// its rate token and takes its slot once, not on every try; only a new
/// holder of the host (a state with its own count of streams in flight)
/// is paid again.
async fn open(
    req: &HttpRequest,
    routed: &Routed<'_>,
    state: &ProxyState,
) -> Result<Opened, Refused> {
    let how = Forwarding {
        host: &routed.host,
        public_host: routed.public_host,
        proto: state.proto,
        trust: state.trusts_forwarded(),
        upgrade: routed.upgrade,
    };
    let mut paid: Option<InFlightSlot> = None;
    loop {
        let (session, tunnel) = placed::placed(routed, state).await?;
        let refused = |error| Refused {
            error,
            tunnel: Some(tunnel.clone()),
        };
        authorize::admit(req, &routed.host, &tunnel, how.trust).map_err(refused)?;
        let slot = pay(paid.take(), &routed.host, &tunnel).map_err(refused)?;
        let Some(pass) = session.begin_open() else {
            paid = Some(slot);
            continue;
        };
        let id = session.next_stream_id();
        let head = request_frame(id, req, &how, &session.opening).map_err(refused)?;
        let (stream, opened) = new_stream(&session, id, head.has_body, slot, tunnel.clone());
        // Before the pump can run: the body may start with what it took.
        if head.credit > 0 {
            opened.send_credit.grant(head.credit);
        }
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
            .send_encoded(head.frame)
            .map_err(|_| refused(ProxyError::TunnelGone(routed.host.to_string())))?;
        if opened.ahead > 0 {
            // Right behind the head: the answer may start at the path's rate.
            opened.recv_credit.give(opened.ahead);
            let increment = opened.ahead;
            let _ = session.outbox.send(&Frame::Window {
                stream: id,
                increment,
            });
        }
        drop(pass);
        return Ok(opened);
    }
}

/// The request's slot among `tunnel`'s streams in flight: the one it
/// `paid` for on an earlier try, when that is `tunnel`'s, else a new one,
/// paid with its rate token.
fn pay(
    paid: Option<InFlightSlot>,
    host: &str,
    tunnel: &TunnelState,
) -> Result<InFlightSlot, ProxyError> {
    match paid {
        Some(slot) if slot.is_of(&tunnel.in_flight) => Ok(slot),
        _ => authorize::spend(host, tunnel),
    }
}

/// A stream's entry for the session's table, and the opener's side of it.
fn new_stream(
    session: &Arc<SessionHandle>,
    id: u32,
    has_body: bool,
    slot: InFlightSlot,
    tunnel: Arc<TunnelState>,
) -> (OpenStream, Opened) {
    let (events_tx, events) = queue();
    let stream = OpenStream {
        id,
        events: events_tx,
        recv_credit: RecvCredit::new(),
        send_credit: SendCredit::new(),
        activity: Activity::new(),
    };
    let memory = tunnel.window_memory.clone();
    let (window, ahead) = OpenedWindow::on(session.path.clone(), memory);
    let opened = Opened {
        session: session.clone(),
        id,
        has_body,
        events,
        recv_credit: stream.recv_credit.clone(),
        send_credit: stream.send_credit.clone(),
        activity: stream.activity.clone(),
        slot,
        tunnel,
        window,
        ahead,
    };
    (stream, opened)
}

/// Pumps the caller's body (for an upgrade, the caller's side of the
/// upgraded connection: raw bytes until the caller closes) onto the stream.
/// A body that grows past `limit` (one sent without a length; a declared
/// one was refused already) ends the stream and sets `too_large`.
fn send_body(
    opened: &Opened,
    payload: web::Payload,
    limit: u64,
    too_large: Rc<Cell<bool>>,
    tunnel: Arc<TunnelState>,
) {
    let (session, id) = (opened.session.clone(), opened.id);
    let mut count = counted::BytesIn::new(tunnel);
    let credit = opened.send_credit.clone();
    let activity = opened.activity.clone();
    let mut sent = 0u64;
    let payload = payload.map(move |chunk| {
        activity.touch();
        let chunk = chunk?;
        sent += chunk.len() as u64;
        count.add(chunk.len());
        if sent > limit {
            too_large.set(true);
            return Err(actix_web::error::PayloadError::Overflow);
        }
        Ok(chunk)
    });
    actix_web::rt::spawn(async move {
        let pumped = pump_body(id, payload, &credit, &session.outbox).await;
        if let Err(PumpError::Source(e)) = pumped {
            log::debug!("stream {id}: request body from caller failed: {e}");
            session.cancel(id, ResetCode::Cancel);
        }
    });
}

fn cancel_guard(session: &Arc<SessionHandle>, id: u32) -> CancelOnDrop {
    let session = session.clone();
    CancelOnDrop::new(move || session.cancel(id, ResetCode::Cancel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    fn tunnel(per_second: u32) -> TunnelState {
        let limits = Limits {
            requests_per_second: Some(per_second),
            ..Limits::default()
        };
        TunnelState::new(None, None, Arc::new(limits), Arc::default(), None)
    }

    #[test]
    fn a_request_that_tries_again_pays_once_per_tunnel() {
        // A burst of two requests a second.
        let t = tunnel(1);
        let slot = pay(None, "h", &t).expect("first token");
        // A second try on the same tunnel keeps its slot and its token.
        let slot = pay(Some(slot), "h", &t).expect("no new token");
        let slot = pay(Some(slot), "h", &t).expect("nor here");
        assert_eq!(t.in_flight.get(), 1);
        let other = pay(None, "h", &t).expect("second token");
        assert!(pay(None, "h", &t).is_err(), "the burst is spent");
        drop(other);
        // A new holder of the host has its own count: paid there anew.
        let fresh = tunnel(1);
        let moved = pay(Some(slot), "h", &fresh).expect("a token of its own");
        assert!(moved.is_of(&fresh.in_flight));
        assert_eq!((t.in_flight.get(), fresh.in_flight.get()), (0, 1));
    }
}
