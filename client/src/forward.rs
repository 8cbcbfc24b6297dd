//! One stream: the request the server sent, fetched from the local service,
//! and the answer streamed back.

use std::{cell::Cell, rc::Rc, sync::Arc};

use awc::{
    error::SendRequestError,
    http::{
        header::{CONNECTION, CONTENT_LENGTH},
        Method, StatusCode,
    },
};
use burrow_common::{
    flow::{pump_body, PumpError, RecvBody, SendCredit},
    frame::encode_response_head_from,
    headers::{to_http, HopByHop},
    protocol::{RequestHead, ResponseHead, MAX_INLINE_BODY},
    Frame, Outbox, ResetCode,
};

use crate::config::TunnelConfig;

/// Everything a forwarded stream needs besides its own request.
pub struct ForwardContext {
    /// Pooled keep-alive client for local services.
    pub http: awc::Client,
    /// The tunnels this client serves.
    pub tunnels: Vec<TunnelConfig>,
    /// Longest wait for a local response head (enforced by the
    /// connection's sweep, see [`Answered`]).
    pub local_timeout: std::time::Duration,
    /// Longest wait for a connection to a local service.
    pub connect_timeout: std::time::Duration,
}

/// Whether a stream's response head has been queued. The connection resets
/// streams still unanswered after the local timeout on a periodic sweep, so
/// a request costs no timer of its own.
#[derive(Clone, Debug, Default)]
pub struct Answered(Rc<Cell<bool>>);

impl Answered {
    /// Records that the head is queued (or about to be).
    pub fn set(&self) {
        self.0.set(true);
    }

    /// `true` once the head is queued.
    pub fn get(&self) -> bool {
        self.0.get()
    }
}

/// The way back to the server for one stream's answer.
#[derive(Clone, Copy)]
pub struct Back<'a> {
    /// The stream.
    pub id: u32,
    /// The connection's frame queue.
    pub outbox: &'a Outbox,
    /// The stream's credit for body bytes.
    pub credit: &'a SendCredit,
    /// Set once the response head is queued.
    pub answered: &'a Answered,
}

/// A stream ending early, as sent to the server in a `Reset`.
pub struct Failure(pub ResetCode, pub String);

/// Forwards one request and streams the response back. Never panics on bad
/// input: every failure becomes a `Reset` the server turns into a status.
pub async fn forward(
    id: u32,
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: Rc<ForwardContext>,
    outbox: Outbox,
    credit: Arc<SendCredit>,
    answered: Answered,
) {
    let back = Back {
        id,
        outbox: &outbox,
        credit: &credit,
        answered: &answered,
    };
    if let Err(Failure(code, reason)) = run(head, body, &ctx, back).await {
        log::debug!("stream {id}: {code}: {reason}");
        let _ = outbox.send(&Frame::Reset {
            stream: id,
            code,
            reason,
        });
    }
}

async fn run(
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: &ForwardContext,
    back: Back<'_>,
) -> Result<(), Failure> {
    let tunnel = ctx
        .tunnels
        .iter()
        .find(|t| t.host == head.host)
        .ok_or_else(|| {
            Failure(
                ResetCode::UnknownTunnel,
                format!("this client does not serve {}", head.host),
            )
        })?;
    if head.upgrade {
        let caller = body
            .ok_or_else(|| Failure(ResetCode::ProtocolError, "upgrade without a stream".into()))?;
        // Boxed: upgrades are rare, and their state would otherwise widen
        // every plain request's future.
        return Box::pin(crate::upgrade::relay(
            head,
            caller,
            tunnel,
            ctx.connect_timeout,
            back,
        ))
        .await;
    }
    let bad = |what: String| Failure(ResetCode::BadRequest, what);
    let method = Method::from_bytes(head.method.as_bytes())
        .map_err(|_| bad(format!("invalid method {:?}", head.method)))?;
    if !head.uri.starts_with('/') {
        return Err(bad(format!("request target `{}` is not a path", head.uri)));
    }
    let is_head = method == Method::HEAD;
    let url = tunnel
        .local_url
        .join(head.uri)
        .ok_or_else(|| bad("invalid request target".into()))?;
    let mut req = ctx.http.request(method, url).no_decompress();
    let mut content_length = None;
    let map = req.headers_mut();
    for (name, value) in head.headers {
        let (name, value) = to_http(&name, value).map_err(bad)?;
        if name == CONTENT_LENGTH {
            content_length = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            continue;
        }
        map.append(name, value);
    }
    let sent = match (body, content_length) {
        // No body: no Content-Length either (awc would add `content-length: 0`).
        (None, _) => req.send_body(awc::body::None::new()).await,
        (Some(body), Some(len)) => req.send_body(awc::body::SizedStream::new(len, body)).await,
        (Some(body), None) => req.send_stream(body).await,
    };
    let mut resp = sent.map_err(|e| local_failure(&tunnel.local, e))?;

    let status = resp.status();
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut end_stream = is_head
        || length == Some(0)
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // A small body of known length travels inside the head: one frame for
    // the whole answer. Waiting for it holds at most MAX_INLINE_BODY bytes.
    let mut inline = None;
    if let Some(len) = length.filter(|n| !end_stream && *n <= MAX_INLINE_BODY) {
        let body = resp.body().limit(len).await.map_err(|e| {
            Failure(
                ResetCode::LocalError,
                format!("response body from {} failed: {e}", tunnel.local),
            )
        })?;
        if body.len() != len {
            return Err(Failure(
                ResetCode::LocalError,
                format!("{} sent {} of {len} body bytes", tunnel.local, body.len()),
            ));
        }
        inline = Some(body);
        end_stream = true;
    }
    // Encoded straight from awc's header map: no intermediate header list.
    let map = resp.headers();
    let rule = HopByHop::new(map.get_all(CONNECTION).map(|v| v.as_bytes()));
    let fields = map
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .filter(|(n, _)| rule.forwards(n));
    let frame = encode_response_head_from(
        back.id,
        status.as_u16(),
        fields,
        end_stream,
        inline.as_deref(),
    )
    .map_err(head_failure)?;
    back.answered.set();
    back.outbox.send_encoded(frame).map_err(head_failure)?;
    if end_stream {
        return Ok(());
    }
    pump_local(back, &mut resp, &tunnel.local).await
}

/// Queues the response head of the stream `back` leads to.
pub(crate) fn send_head(back: Back<'_>, head: ResponseHead) -> Result<(), Failure> {
    back.answered.set();
    back.outbox
        .send(&Frame::ResponseHead {
            stream: back.id,
            head,
        })
        .map_err(head_failure)
}

fn head_failure(e: impl std::fmt::Display) -> Failure {
    Failure(
        ResetCode::LocalError,
        format!("cannot send the response head: {e}"),
    )
}

/// Sends what the local service at `local` produces on the stream `back`
/// leads to. The server going away ends it quietly; the local side failing
/// is a `Failure`.
pub(crate) async fn pump_local<E: std::fmt::Display>(
    back: Back<'_>,
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    local: &str,
) -> Result<(), Failure> {
    match pump_body(back.id, body, back.credit, back.outbox).await {
        Ok(_) | Err(PumpError::StreamClosed) | Err(PumpError::TunnelClosed) => Ok(()),
        Err(PumpError::Source(e)) => Err(Failure(
            ResetCode::LocalError,
            format!("reading from {local} failed: {e}"),
        )),
    }
}

fn local_failure(local: &str, e: SendRequestError) -> Failure {
    match e {
        SendRequestError::Connect(e) => Failure(
            ResetCode::LocalUnreachable,
            format!("cannot connect to {local}: {e}"),
        ),
        SendRequestError::Url(e) => Failure(ResetCode::BadRequest, format!("invalid URL: {e}")),
        SendRequestError::Body(e) => {
            Failure(ResetCode::Cancel, format!("request body ended early: {e}"))
        }
        other => Failure(
            ResetCode::LocalError,
            format!("request to {local} failed: {other}"),
        ),
    }
}
