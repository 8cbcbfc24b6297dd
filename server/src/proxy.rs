//! The public HTTP handler: routes a request by Host to its tunnel session,
//! streams the request body out and the response back.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
    time::Duration,
};

use actix::Addr;
use actix_web::{
    body::{self, SizedStream},
    http::{
        header::{self, HeaderValue},
        Method, StatusCode,
    },
    web, HttpRequest, HttpResponse,
};
use burrow_common::{
    flow::{
        pump_body, Activity, BodyError, BodyEvent, CancelOnDrop, PumpError, RecvBody, RecvCredit,
        SendCredit,
    },
    frame::{encode_request_head_from, RequestTarget},
    headers::{forward_request_fields, to_http, Field, Forwarded, HopByHop},
    protocol::ResponseHead,
    queue::queue,
    ResetCode,
};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{
    config::canonical_host,
    error::ProxyError,
    messages::{current_worker, CancelStream, HostSessions, Lookup, OpenStream, SessionHandle},
    registry::Registry,
};

/// What every proxy handler needs, shared by all workers.
pub struct ProxyState {
    /// The registry actor, shared (not cloned) by every session: each clone
    /// of an actor address costs three small allocations.
    pub registry: Arc<Addr<Registry>>,
    /// Worker threads of the HTTP server.
    pub workers: u32,
    /// Longest wait for a response head.
    pub request_timeout: Duration,
    /// Longest time an answered stream may move no bytes.
    pub idle_timeout: Duration,
    /// Keep `X-Forwarded-Proto`/`-Host` from a trusted reverse proxy.
    pub trust_forwarded_headers: bool,
}

/// Forwards one public request through its tunnel.
pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyState>,
) -> Result<HttpResponse, ProxyError> {
    let (host, public_host) = routing_host(&req)?;
    let upgrade = websocket_upgrade(&req)?;
    if !req.uri().path().starts_with('/') {
        // `OPTIONS *` asks about this server, not about a local service.
        return Err(ProxyError::BadRequest(format!(
            "request target `{}` is not forwarded",
            req.uri()
        )));
    }
    let recv_credit = RecvCredit::new();
    let send_credit = SendCredit::new();
    let activity = Activity::new();
    // A session that is draining turns the opener away at its gate, and the
    // next lookup no longer offers it: try again.
    let (session, id, request_has_body, mut events) = loop {
        let session = lookup(&state.registry, &host)
            .await
            .ok_or_else(|| ProxyError::UnknownHost(host.to_string()))?;
        let Some(pass) = session.begin_open() else {
            continue;
        };
        let id = session.next_stream_id();
        let (frame, request_has_body) = request_frame(
            id,
            &req,
            &host,
            public_host,
            state.trust_forwarded_headers,
            upgrade,
        )?;
        let (events_tx, events) = queue();
        // The table entry first, then the head: the session actor handles
        // its mailbox before its streams on every turn, so the entry exists
        // before any answer can come back. A dead session drops the message
        // and with it `events_tx`: the wait below then ends with "tunnel
        // gone".
        session.addr.do_send(OpenStream {
            id,
            events: events_tx,
            recv_credit: recv_credit.clone(),
            send_credit: send_credit.clone(),
            activity: activity.clone(),
        });
        // Queued by this task, the head precedes the body frames the pump
        // queues.
        session
            .outbox
            .send_encoded(frame)
            .map_err(|_| ProxyError::TunnelGone(host.to_string()))?;
        drop(pass);
        break (session, id, request_has_body, events);
    };
    // If this handler is dropped (caller gone) or gives up, the stream is cancelled.
    let mut guard = cancel_guard(&session, id);

    if request_has_body {
        let session = session.clone();
        // For an upgrade, the payload is the caller's side of the upgraded
        // connection: raw bytes until the caller closes.
        let payload = payload.inspect(move |_| activity.touch());
        actix_web::rt::spawn(async move {
            let pumped = pump_body(id, payload, &send_credit, &session.outbox).await;
            if let Err(PumpError::Source(e)) = pumped {
                log::debug!("stream {id}: request body from caller failed: {e}");
                session.addr.do_send(CancelStream {
                    id,
                    code: ResetCode::Cancel,
                });
            }
        });
    }

    // The session enforces the request timeout on its periodic sweep: a
    // timer per request would cost more than the rest of this wait.
    let head = match events.recv().await {
        Some(BodyEvent::Head(head)) => *head,
        Some(BodyEvent::Reset(code, reason)) => {
            guard.disarm();
            return Err(ProxyError::from_reset(&host, code, reason));
        }
        Some(BodyEvent::Expired) => {
            guard.disarm();
            return Err(ProxyError::Timeout {
                host: host.into_owned(),
                secs: state.request_timeout.as_secs(),
            });
        }
        Some(BodyEvent::Data(_) | BodyEvent::End) | None => {
            return Err(ProxyError::TunnelGone(host.into_owned()))
        }
    };
    if head.end_stream {
        guard.disarm();
    }
    let body = RecvBody::new(id, events, session.outbox.clone(), recv_credit, guard);
    response(&req, &host, head, body, upgrade)
}

/// `Ok(true)` for a WebSocket upgrade request, `Ok(false)` for a plain
/// request, and 501 for upgrades to protocols that cannot be relayed. An
/// `h2c` offer is optional by design, so it is dropped and the request is
/// forwarded as plain HTTP/1.1.
fn websocket_upgrade(req: &HttpRequest) -> Result<bool, ProxyError> {
    if !req.head().upgrade() {
        return Ok(false);
    }
    let protocol = req
        .headers()
        .get(header::UPGRADE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .unwrap_or_default();
    if protocol.eq_ignore_ascii_case("websocket") {
        Ok(true)
    } else if protocol.eq_ignore_ascii_case("h2c") {
        Ok(false)
    } else {
        Err(ProxyError::UpgradeUnsupported(protocol))
    }
}

thread_local! {
    /// Each worker's choice of session per host it has looked up, with the
    /// registry's answer it was chosen from. An entry is used while that
    /// answer is current (no session joined or left the host since) and
    /// its session is ready; otherwise the registry is asked again.
    static SESSIONS: RefCell<HashMap<String, Cached, BuildHasherDefault<HostHasher>>> =
        RefCell::new(HashMap::default());
}

/// A worker's cache entry: the host's sessions and the one this worker uses.
struct Cached {
    sessions: HostSessions,
    chosen: Arc<SessionHandle>,
}

/// FNV-1a over a host name. Only hosts the registry knows are ever inserted
/// into a worker's cache, so a keyed hash would buy nothing there; this one
/// costs a few instructions per byte.
struct HostHasher(u64);

impl Default for HostHasher {
    fn default() -> Self {
        HostHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for HostHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The session serving `host` for this worker: from its cache, else the
/// registry. Of a host's sessions (a client's pool of connections), the one
/// on this worker thread is preferred.
async fn lookup(registry: &Addr<Registry>, host: &str) -> Option<Arc<SessionHandle>> {
    let cached = SESSIONS.with_borrow(|m| {
        m.get(host)
            .filter(|c| c.sessions.is_current() && c.chosen.is_ready())
            .map(|c| c.chosen.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let found = registry
        .send(Lookup {
            host: host.to_owned(),
        })
        .await
        .ok()
        .flatten();
    // A session still finishing its handshake has no tunnel to offer yet.
    let chosen = found
        .as_ref()
        .and_then(|f| f.pick(current_worker()))
        .cloned();
    SESSIONS.with_borrow_mut(|m| match (found, &chosen) {
        (Some(sessions), Some(chosen)) => {
            let chosen = chosen.clone();
            m.insert(host.to_owned(), Cached { sessions, chosen });
        }
        _ => {
            m.remove(host);
        }
    });
    chosen
}

fn cancel_guard(session: &Arc<SessionHandle>, id: u32) -> CancelOnDrop {
    let session = session.clone();
    CancelOnDrop::new(move || {
        session.addr.do_send(CancelStream {
            id,
            code: ResetCode::Cancel,
        })
    })
}

/// The tunnel host (lower case, no port) and the public host as the caller
/// wrote it. Only the request target's authority or the `Host` header count:
/// `X-Forwarded-Host` and `Forwarded` are caller-controlled and would let a
/// caller reach another tunnel.
fn routing_host(req: &HttpRequest) -> Result<(Cow<'_, str>, &str), ProxyError> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or(ProxyError::MissingHost)?,
    };
    let host = host_of_authority(raw).ok_or(ProxyError::MissingHost)?;
    let host = canonical_host(host).ok_or_else(|| ProxyError::UnknownHost(host.to_owned()))?;
    Ok((host, raw))
}

/// The host part of `[userinfo@]host[:port]`; IPv6 literals keep their brackets.
fn host_of_authority(authority: &str) -> Option<&str> {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if hostport.starts_with('[') {
        &hostport[..=hostport.find(']')?]
    } else {
        match hostport.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => hostport,
        }
    };
    (!host.is_empty()).then_some(host)
}

/// An IP address as text; IPv4 (the common case, once per request) without
/// the formatting machinery, which showed up in profiles.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The `RequestHead` frame of stream `id` for `req`, encoded straight from
/// actix's header map (see [`forward_request_fields`] for what is changed),
/// and whether a body follows.
fn request_frame(
    id: u32,
    req: &HttpRequest,
    host: &str,
    public_host: &str,
    trust: bool,
    upgrade: bool,
) -> Result<(Bytes, bool), ProxyError> {
    let map = req.headers();
    let fields: Vec<Field<'_>> = map
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    let mut rule = HopByHop::new(map.get_all(header::CONNECTION).map(|v| v.as_bytes()));
    if upgrade {
        rule = rule.keeping_upgrade();
    }
    let peer = req.peer_addr().map(|a| ip_text(a.ip()));
    let fwd = Forwarded {
        client_ip: peer.as_deref(),
        proto: if req.app_config().secure() {
            "https"
        } else {
            "http"
        },
        host: public_host,
        trust_incoming: trust,
    };
    // An absolute-form target overrides Host (RFC 9112, 3.2.2): the local
    // service sees the host the request was routed by.
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    let mut chain = Vec::new();
    let forwarded = forward_request_fields(&fields, &rule, upgrade, authority, &fwd, &mut chain);
    let chunked = map.contains_key(header::TRANSFER_ENCODING);
    let sized = map
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    let end_stream = !upgrade && !chunked && !sized;
    let target = RequestTarget {
        host,
        method: req.method().as_str(),
        uri: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        end_stream,
        upgrade,
    };
    let frame =
        encode_request_head_from(id, &target, forwarded).map_err(|_| ProxyError::HeadTooLarge)?;
    Ok((frame, !end_stream))
}

fn response(
    req: &HttpRequest,
    host: &str,
    head: ResponseHead,
    body: RecvBody,
    upgrade: bool,
) -> Result<HttpResponse, ProxyError> {
    let bad = |detail: String| ProxyError::BadResponse {
        host: host.to_owned(),
        detail,
    };
    let status = StatusCode::from_u16(head.status)
        .map_err(|_| bad(format!("status {} is out of range", head.status)))?;
    let mut builder = HttpResponse::build(status);
    let mut content_length: Option<(u64, HeaderValue)> = None;
    let mut upgrade_to = None;
    for (name, value) in head.headers {
        let (name, value) = to_http(&name, value).map_err(bad)?;
        if name == header::CONTENT_LENGTH {
            let len = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("invalid content-length".into()))?;
            content_length = Some((len, value));
            continue;
        }
        if name == header::UPGRADE {
            upgrade_to = Some(value.clone());
        }
        builder.append_header((name, value));
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade || head.end_stream {
            return Err(bad("101 Switching Protocols without an upgrade".into()));
        }
        // Marking the response as an upgrade makes actix answer with
        // `Connection: upgrade` and then write the raw upgraded bytes.
        let protocol = upgrade_to.unwrap_or_else(|| HeaderValue::from_static("websocket"));
        return Ok(builder.upgrade(protocol).streaming(body));
    }
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if let Some(inline) = head
        .body
        .filter(|_| !bodiless_status && req.method() != Method::HEAD)
    {
        // The whole body came with the head; actix sets Content-Length from it.
        return Ok(builder.body(inline));
    }
    if head.end_stream || bodiless_status || req.method() == Method::HEAD {
        return Ok(match content_length {
            // actix writes Content-Length from the body's size: an empty body
            // that claims the local service's length keeps it for HEAD (the
            // codec sends no body bytes for HEAD).
            Some((len, _)) if req.method() == Method::HEAD && !bodiless_status => {
                builder.body(SizedStream::new(
                    len,
                    futures_util::stream::empty::<Result<Bytes, BodyError>>(),
                ))
            }
            // For 304, actix keeps a Content-Length header set by hand.
            Some((_, value)) if status == StatusCode::NOT_MODIFIED => builder
                .insert_header((header::CONTENT_LENGTH, value))
                .body(body::None::new()),
            _ if bodiless_status => builder.body(body::None::new()),
            _ => builder.body(()),
        });
    }
    Ok(match content_length {
        Some((len, _)) => builder.body(SizedStream::new(len, body)),
        None => builder.streaming(body),
    })
}

#[cfg(test)]
mod tests {
    use super::host_of_authority;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "1.2.3.4",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn host_is_taken_from_the_authority() {
        assert_eq!(host_of_authority("demo.localhost"), Some("demo.localhost"));
        assert_eq!(
            host_of_authority("Demo.localhost:8080"),
            Some("Demo.localhost")
        );
        assert_eq!(
            host_of_authority("user:pw@demo.localhost:80"),
            Some("demo.localhost")
        );
        assert_eq!(host_of_authority("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_of_authority("[::1"), None);
        assert_eq!(host_of_authority("a:b"), None);
        assert_eq!(host_of_authority(":80"), None);
        assert_eq!(host_of_authority(""), None);
    }
}
