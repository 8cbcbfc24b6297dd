//! A request for a host this node holds no connection of, forwarded to a
//! node that does (`[cluster]`, docs/CLUSTER.md): to its internal
//! listener, with the cluster's secret, the caller's address in
//! `X-Forwarded-For` and the caller's view in `X-Forwarded-Proto`/`-Host`.
//! Bodies stream both ways; the node holding the tunnel applies its rules
//! and limits, once, as it does to its own callers.

mod upgrade;

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    body::SizedStream,
    http::{header, Method, StatusCode},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use awc::error::SendRequestError;
use burrow_common::{
    headers::is_hop_by_hop,
    http1::{parse_content_length, status_has_no_body},
};

use super::{
    request::{forwarded_fields, Forwarding},
    response::bodiless,
    ProxyState, Routed,
};
use crate::{
    cluster::{Cluster, SECRET_HEADER},
    error::ProxyError,
    metrics::Metrics,
    tunnel::TunnelState,
};

/// How long an idle connection to another node is kept for the next
/// request.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// One worker's way to the other nodes.
pub struct Relay {
    client: awc::Client,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl Relay {
    /// A relay for this worker (an HTTP client lives on one thread).
    pub fn new(cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Rc<Self> {
        let connector = awc::Connector::new()
            .limit(0)
            .conn_keep_alive(KEEP_ALIVE)
            .max_http_version(awc::http::Version::HTTP_11);
        let client = awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .finish();
        Rc::new(Relay {
            client,
            cluster,
            metrics,
        })
    }

    /// Forwards the request to a node holding `how.host`; `UnknownHost`
    /// when no node does.
    /// Forwards the request; `payload` is `None` for one without a body.
    async fn forward(
        &self,
        req: &HttpRequest,
        payload: Option<web::Payload>,
        how: &Forwarding<'_>,
    ) -> Result<HttpResponse, ProxyError> {
        let urls = self.cluster.locate(how.host).await;
        let Some((first, rest)) = urls.split_first() else {
            return Err(ProxyError::UnknownHost(how.host.to_owned()));
        };
        let forwarded = &self.metrics.cluster.forwarded_out;
        forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payload = match (payload, how.upgrade) {
            (Some(payload), true) => return self.upgrade(req, payload, how, first).await,
            (payload, _) => payload,
        };
        // This node takes the caller's body at once: the node holding the
        // tunnel asks the local service, and a proxy may say go ahead.
        crate::expect::let_caller_send(&req.extensions());
        let length = body_length(req)?;
        let sent = match (length, payload) {
            (Some(len), Some(payload)) if len > 0 => self
                .request(req, how, first)
                .send_body(SizedStream::new(len, payload))
                .await
                .map_err(|e| (first.clone(), e)),
            (None, Some(payload)) => self
                .request(req, how, first)
                .send_stream(payload)
                .await
                .map_err(|e| (first.clone(), e)),
            // Without a body, a node that does not answer is passed over.
            _ => self.send_bodiless(req, how, (first, rest)).await,
        };
        let answer: awc::ClientResponse = sent.map_err(|(url, e)| {
            log::debug!(
                "cluster: {url} did not take a request for {}: {e}",
                how.host
            );
            if matches!(e, SendRequestError::Connect(_)) {
                self.cluster.forget(how.host);
            }
            ProxyError::NodeUnreachable(how.host.to_owned())
        })?;
        Ok(response(req, answer))
    }

    /// Sends a request without a body to `first`, or, when it takes no
    /// connection, to the next of `rest` that does.
    async fn send_bodiless(
        &self,
        req: &HttpRequest,
        how: &Forwarding<'_>,
        (first, rest): (&Arc<str>, &[Arc<str>]),
    ) -> Result<awc::ClientResponse, (Arc<str>, SendRequestError)> {
        let send = |url: &Arc<str>| {
            let (sent, url) = (self.request(req, how, url).send(), url.clone());
            async move { sent.await.map_err(|e| (url, e)) }
        };
        let mut sent = send(first).await;
        for url in rest {
            if !matches!(sent, Err((_, SendRequestError::Connect(_)))) {
                break;
            }
            sent = send(url).await;
        }
        sent
    }

    /// The request to the node at `url`: the caller's method and target,
    /// its end-to-end fields, the forwarding fields and the secret.
    fn request(&self, req: &HttpRequest, how: &Forwarding<'_>, url: &str) -> awc::ClientRequest {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut out = self
            .client
            .request(req.method().clone(), format!("{url}{target}"));
        each_field(req, how, |name, value| {
            out.headers_mut().append(name, value);
        });
        out.insert_header((SECRET_HEADER, self.cluster.secret().expose()))
    }
}

/// Calls `each` on every field the request carries to the other node (see
/// [`forwarded_fields`]), but `Expect`: this node lets the caller send its
/// body itself.
fn each_field(
    req: &HttpRequest,
    how: &Forwarding<'_>,
    mut each: impl FnMut(header::HeaderName, header::HeaderValue),
) {
    forwarded_fields(req, how, None, |fields| {
        for (name, value) in fields {
            if name.eq_ignore_ascii_case(b"expect") {
                continue;
            }
            let name = header::HeaderName::from_bytes(name);
            let value = header::HeaderValue::from_bytes(value);
            // Fields that are not valid were refused with the caller's head.
            if let (Ok(name), Ok(value)) = (name, value) {
                each(name, value);
            }
        }
    });
}

/// Forwards a request for a host this node holds no connection of to a
/// node that does. A request without a body whose node does not answer
/// (it died) waits, within the reconnect grace, for its client to
/// register again through some node (this one, or another), and goes
/// there.
pub(super) async fn relayed(
    req: &HttpRequest,
    payload: web::Payload,
    routed: &Routed<'_>,
    state: &ProxyState,
) -> (Result<HttpResponse, ProxyError>, Option<Arc<TunnelState>>) {
    let Some(relay) = &state.relay else {
        return (Err(ProxyError::UnknownHost(routed.host.to_string())), None);
    };
    let how = Forwarding {
        host: &routed.host,
        public_host: routed.public_host,
        proto: state.proto,
        trust: state.trusts_forwarded(),
        upgrade: routed.upgrade,
    };
    let bodiless = !routed.upgrade && matches!(body_length(req), Ok(Some(0)));
    if !bodiless {
        return (relay.forward(req, Some(payload), &how).await, None);
    }
    let until = Instant::now() + state.shared.failover_wait;
    loop {
        let changes = relay.cluster.changes();
        match relay.forward(req, None, &how).await {
            Err(ProxyError::NodeUnreachable(_)) if Instant::now() < until => {}
            answered => return (answered, None),
        }
        let mut changes = changes;
        let left = until.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, changes.changed()).await;
        // The client may have come back through this node.
        if let Ok(opened) = super::open(req, routed, state).await {
            let tunnel = opened.tunnel.clone();
            let answer = super::answer(req, payload, routed, opened, state).await;
            return (answer, Some(tunnel));
        }
    }
}

/// `true` when `req` carries the cluster's secret.
pub(super) fn from_cluster(req: &HttpRequest, cluster: &Cluster) -> bool {
    req.headers()
        .get(crate::cluster::SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| cluster.secret().matches(v))
}

/// The request body's length: `Some(0)` for none, `None` for chunked.
fn body_length(req: &HttpRequest) -> Result<Option<u64>, ProxyError> {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Ok(None);
    }
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(Some(0)),
        Some(v) => parse_content_length(v.as_bytes())
            .map(Some)
            .ok_or_else(|| ProxyError::BadRequest("invalid content-length".into())),
    }
}

/// The caller's response from the other node's.
fn response(req: &HttpRequest, answer: awc::ClientResponse) -> HttpResponse {
    let status = answer.status();
    let mut builder = HttpResponse::build(status);
    let mut length = None;
    for (name, value) in answer.headers() {
        if name == header::CONTENT_LENGTH {
            length = parse_content_length(value.as_bytes()).map(|l| (l, value.clone()));
        } else if !is_hop_by_hop(name.as_str().as_bytes()) {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let is_head = req.method() == Method::HEAD;
    if is_head || status_has_no_body(status.as_u16()) || status == StatusCode::NO_CONTENT {
        return bodiless(builder, status, length, is_head);
    }
    match length {
        Some((len, _)) => builder.body(SizedStream::new(len, answer)),
        None => builder.streaming(answer),
    }
}
