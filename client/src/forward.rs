//! One stream: the request the server sent, fetched from the local service,
//! and the answer streamed back, in four stages: route (which tunnel),
//! request (the local request built from the head), send (to the local
//! service), head and body (the answer back to the server). An
//! [`ExchangeObserver`](crate::observe::ExchangeObserver), when one is
//! set, sees each exchange once it ends.

use std::{rc::Rc, sync::Arc, time::Duration};

use awc::{
    error::SendRequestError,
    http::{
        header::{CONNECTION, CONTENT_LENGTH, EXPECT},
        Method,
    },
    ClientRequest, ClientResponse,
};
use burrow_common::{
    flow::{RecvBody, SendCredit},
    frame::encode_response_head_from,
    headers::{find, to_http, HopByHop},
    http1::{parse_content_length, request_head_problem, status_has_no_body},
    protocol::{RequestHead, MAX_INLINE_BODY},
    Outbox, ResetCode,
};

use crate::{
    config::{ClientConfig, TunnelConfig},
    header_rules::FieldRules,
    http1::read_response_head,
    local_io::{Exchange, LocalIo},
    observe::{ExchangeObserver, Trace},
    reply::{head_failure, local_failure, Answered, Reply, StreamFailure},
    retry,
    transport::Connector,
    upload::{Upload, UploadError},
    whole::{Framing, Whole},
};

/// Everything a forwarded stream needs besides its own request.
pub struct ForwardContext {
    /// Pooled keep-alive client for local services.
    pub http: awc::Client,
    /// The client requests are sent again on ([`crate::retry`]): none of
    /// its connections is kept, so each is new.
    pub fresh: awc::Client,
    /// How connections to local services are opened (for upgrades, which
    /// bypass the pooled client).
    pub connector: Connector,
    /// The tunnels this client serves.
    pub tunnels: Vec<TunnelConfig>,
    /// The names the server gave tunnels that asked for none.
    pub given: crate::config::GivenNames,
    /// Longest wait for a local response head (enforced by the
    /// connection's sweep, see [`Answered`]).
    pub local_timeout: Duration,
    /// Sees every exchange; `None` costs nothing per request.
    pub observer: Option<Arc<dyn ExchangeObserver>>,
}

impl ForwardContext {
    /// The context for one connection thread of a client with `config`
    /// (each thread has its own pooled HTTP client).
    pub fn new(config: &ClientConfig, observer: Option<Arc<dyn ExchangeObserver>>) -> Self {
        let tls = config.tunnels.iter().filter_map(|t| {
            let tls = t.local_tls.clone()?;
            Some((t.local_url.authority().to_string(), tls))
        });
        let connector = Connector::with_tls(tls.collect());
        ForwardContext {
            http: connector.http_client(),
            fresh: connector.http_client(),
            connector,
            tunnels: config.tunnels.clone(),
            given: config.given.clone(),
            local_timeout: config.local_timeout,
            observer,
        }
    }
}

/// Forwards one request and streams the response back. Never panics on bad
/// input: every failure becomes a `Reset` the server turns into a status.
pub fn forward(
    id: u32,
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: Rc<ForwardContext>,
    outbox: Outbox,
    credit: Arc<SendCredit>,
    answered: Answered,
) -> impl std::future::Future<Output = ()> {
    let exchange = Exchange::new(
        find(&head.headers, b"date").is_none(),
        !head.end_stream
            && find(&head.headers, b"expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue")),
    );
    // The scope wraps the whole stream, so that the future is moved once,
    // into the task that runs it.
    let scope = exchange.clone();
    let stream = async move {
        let reply = Reply {
            id,
            outbox: &outbox,
            credit: &credit,
            answered: &answered,
        };
        let mut trace = Trace::start(ctx.observer.as_ref(), id, &head);
        let result = run(head, body, &ctx, reply, &mut trace, &exchange).await;
        if let Err(failure) = &result {
            log::debug!("stream {id}: {}: {}", failure.code, failure.reason);
            reply.reset(failure.clone());
        }
        trace.finish(result.err());
    };
    Exchange::scope(scope, stream)
}

async fn run(
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: &ForwardContext,
    reply: Reply<'_>,
    trace: &mut Trace,
    exchange: &Rc<Exchange>,
) -> Result<(), StreamFailure> {
    let tunnel = route(ctx, &head.host)?;
    let fields = head.headers.iter().map(|(n, v)| (&n[..], &v[..]));
    if let Some(problem) = request_head_problem(&head.method, &head.uri, fields) {
        return Err(StreamFailure::new(ResetCode::BadRequest, problem));
    }
    if head.upgrade {
        return upgrade(head, body, tunnel, ctx, reply, trace).await;
    }
    let (req, content_length, is_head) =
        request(&ctx.http, tunnel, &head, exchange.expects(), trace)?;
    let expect = exchange.expects().then(|| (reply.id, reply.outbox.clone()));
    let body = body.map(|b| trace.tap_request(Upload::new(b, exchange.clone(), expect)));
    let mut retried = false;
    let mut resp = match send(req, body, content_length).await {
        Ok(resp) => resp,
        Err(e) => match exchange.early_answer() {
            // The answer came while the request was still being sent.
            Some(io) => return early_answer(io, tunnel, reply, trace).await,
            None if retry::lost_on_stale(exchange, &e) => {
                let again = || request(&ctx.fresh, tunnel, &head, false, trace).map(|r| r.0);
                retried = true;
                retry::send_again(&head, &tunnel.local, again).await?
            }
            None => return Err(local_failure(&tunnel.local, e)),
        },
    };
    if crate::plain::body_withheld(&resp) {
        drop(resp);
        let sent = crate::plain::exchange(&head, tunnel, &ctx.connector, reply, trace).await?;
        trace.response_bytes(sent);
        return Ok(());
    }
    // Its values share the buffer of the message the head came in.
    drop(head);
    let rules = tunnel.headers.as_deref().map(|h| &h.response);
    let Some(framing) =
        respond_head(reply, &mut resp, is_head, rules, &tunnel.local, trace).await?
    else {
        return Ok(());
    };
    // The retried request's connection is not the exchange's own.
    let own = (!retried).then(|| exchange.clone());
    let whole = Whole::new(trace.tap_response(resp), framing, own);
    let sent = reply.pump_local(whole, &tunnel.local).await?;
    trace.response_bytes(sent);
    Ok(())
}

/// A WebSocket upgrade, relayed over a connection of its own.
async fn upgrade(
    head: RequestHead,
    body: Option<RecvBody>,
    tunnel: &TunnelConfig,
    ctx: &ForwardContext,
    reply: Reply<'_>,
    trace: &mut Trace,
) -> Result<(), StreamFailure> {
    let caller = body
        .ok_or_else(|| StreamFailure::new(ResetCode::ProtocolError, "upgrade without a stream"))?;
    // Boxed: upgrades are rare, and their state would otherwise widen
    // every plain request's future.
    Box::pin(crate::upgrade::relay(
        head,
        caller,
        tunnel,
        &ctx.connector,
        reply,
        trace,
    ))
    .await
}

/// Relays the answer the local service gave before it had the whole
/// request; the rest of the caller's body is not wanted.
async fn early_answer(
    mut io: LocalIo,
    tunnel: &TunnelConfig,
    reply: Reply<'_>,
    trace: &mut Trace,
) -> Result<(), StreamFailure> {
    let local = tunnel.local.as_str();
    let mut start = read_response_head(&mut io)
        .await
        .map_err(|e| StreamFailure::new(ResetCode::LocalError, format!("{local}: {e}")))?;
    if let Some(rules) = &tunnel.headers {
        rules.response.apply_list(&mut start.headers);
    }
    log::debug!(
        "stream {}: {local} answered {} early",
        reply.id,
        start.status
    );
    trace.response_head(start.status, start.fields(), None);
    let sent = crate::upgrade::refusal(start, io, local, reply).await?;
    trace.response_bytes(sent);
    Ok(())
}

/// The tunnel serving `host`.
fn route<'a>(ctx: &'a ForwardContext, host: &str) -> Result<&'a TunnelConfig, StreamFailure> {
    let named = ctx.tunnels.iter().find(|t| t.host == host);
    // A tunnel with a given name is looked up only when no other matches.
    let given = || ctx.given.find(host).and_then(|i| ctx.tunnels.get(i));
    named.or_else(given).ok_or_else(|| {
        StreamFailure::new(
            ResetCode::UnknownTunnel,
            format!("this client does not serve {host}"),
        )
    })
}

/// The local request for `head` on `http`, its `Content-Length` if it
/// gave one, and whether it is a HEAD request; `Expect` is kept only when `expects` (a
/// `100-continue` with a body).
fn request(
    http: &awc::Client,
    tunnel: &TunnelConfig,
    head: &RequestHead,
    expects: bool,
    trace: &mut Trace,
) -> Result<(ClientRequest, Option<u64>, bool), StreamFailure> {
    let bad = |what: String| StreamFailure::new(ResetCode::BadRequest, what);
    // `run` checked the method, the target and the fields.
    let method = Method::from_bytes(head.method.as_bytes())
        .map_err(|_| bad(format!("invalid method {:?}", head.method)))?;
    let is_head = method == Method::HEAD;
    let url = tunnel
        .local_url
        .join(head.uri.clone())
        .ok_or_else(|| bad("invalid request target".into()))?;
    let mut req = http.request(method, url).no_decompress();
    let mut content_length = None;
    trace.request_headers(&head.headers);
    let map = req.headers_mut();
    // The head stays whole (its values are shared, not copied) in case the
    // request has to be sent again (see `crate::plain`).
    for (name, value) in &head.headers {
        let (name, value) = to_http(name, value.clone()).map_err(bad)?;
        if name == CONTENT_LENGTH {
            content_length = parse_content_length(value.as_bytes());
            continue;
        }
        if name == EXPECT && !expects {
            // Nothing to wait for (the client library refuses to try
            // without a body), or an expectation the client library would
            // wait on without the bounded wait `local_io` gives.
            continue;
        }
        map.append(name, value);
    }
    if let Some(rules) = &tunnel.headers {
        rules.apply_request(map);
    }
    Ok((req, content_length, is_head))
}

/// Sends the request with its body, if any, framed as the caller framed it.
async fn send<B>(
    req: ClientRequest,
    body: Option<B>,
    content_length: Option<u64>,
) -> Result<ClientResponse, SendRequestError>
where
    B: futures_util::Stream<Item = Result<bytes::Bytes, UploadError>> + 'static,
{
    match (body, content_length) {
        // No body: no Content-Length either (awc would add `content-length: 0`).
        (None, _) => req.send_body(awc::body::None::new()).await,
        (Some(body), Some(len)) => req.send_body(awc::body::SizedStream::new(len, body)).await,
        (Some(body), None) => req.send_stream(body).await,
    }
}

/// Queues the response head; the body's framing, or `None` when no body
/// follows. A small
/// body of known length travels inside the head: one frame for the whole
/// answer (waiting for it holds at most [`MAX_INLINE_BODY`] bytes).
async fn respond_head(
    reply: Reply<'_>,
    resp: &mut ClientResponse,
    is_head: bool,
    rules: Option<&FieldRules>,
    local: &str,
    trace: &mut Trace,
) -> Result<Option<Framing>, StreamFailure> {
    let status = resp.status();
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| parse_content_length(v.as_bytes()));
    let mut end_stream = is_head || length == Some(0) || status_has_no_body(status.as_u16());
    let mut inline = None;
    if let Some(len) = length.filter(|n| !end_stream && *n <= MAX_INLINE_BODY as u64) {
        inline = Some(inline_body(resp, len as usize, local).await?);
        end_stream = true;
    }
    // Encoded straight from awc's header map: no intermediate header list
    // (a copy only for a tunnel whose rules change it).
    let changed;
    let map = match rules {
        None => resp.headers(),
        Some(rules) => {
            let mut copy = resp.headers().clone();
            rules.apply(&mut copy);
            changed = copy;
            &changed
        }
    };
    let rule = HopByHop::new(map.get_all(CONNECTION).map(|v| v.as_bytes()));
    let fields = || {
        map.iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .filter(|(n, _)| rule.forwards(n))
    };
    trace.response_head(status.as_u16(), fields(), inline.as_deref());
    let frame = encode_response_head_from(
        reply.id,
        status.as_u16(),
        fields(),
        end_stream,
        inline.as_deref(),
    )
    .map_err(head_failure)?;
    reply.send_encoded_head(frame)?;
    Ok((!end_stream).then(|| Framing::of(resp.headers(), length)))
}

/// The whole body of `len` bytes, read before the head goes out.
async fn inline_body(
    resp: &mut ClientResponse,
    len: usize,
    local: &str,
) -> Result<bytes::Bytes, StreamFailure> {
    let failed = |what: String| StreamFailure::new(ResetCode::LocalError, what);
    let body = resp
        .body()
        .limit(len)
        .await
        .map_err(|e| failed(format!("response body from {local} failed: {e}")))?;
    if body.len() != len {
        let got = body.len();
        return Err(failed(format!("{local} sent {got} of {len} body bytes")));
    }
    Ok(body)
}
