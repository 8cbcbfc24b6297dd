//! One stream: the request the server sent, fetched from the local service,
//! and the answer streamed back, in stages: route (which tunnel), check
//! (the head, once, whichever way it is sent), send (through the local leg,
//! [`crate::local`]), answer (head and body back to the server). An
//! [`ExchangeObserver`](crate::observe::ExchangeObserver), when one is
//! set, sees each exchange once it ends.

use std::{rc::Rc, sync::Arc, time::Duration};

use burrow_common::{
    flow::{RecvBody, SendCredit},
    http1::request_head_problem,
    protocol::RequestHead,
    Outbox, ResetCode,
};

use crate::{
    config::{ClientConfig, TunnelConfig},
    local::{Call, LocalLeg},
    observe::{ExchangeObserver, Trace},
    reply::{Answered, Reply, StreamFailure},
};

/// Everything a forwarded stream needs besides its own request.
pub struct ForwardContext {
    /// How this thread reaches local services.
    pub local: LocalLeg,
    /// The tunnels this client serves.
    pub tunnels: Vec<TunnelConfig>,
    /// The names the server gave tunnels that asked for none.
    pub given: crate::config::GivenNames,
    /// How wide request bodies' windows grew, over every connection.
    pub body_windows: Arc<burrow_common::flow::WindowMemory>,
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
        ForwardContext {
            local: LocalLeg::new(config),
            tunnels: config.tunnels.clone(),
            given: config.given.clone(),
            body_windows: config.body_windows.clone(),
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
    let call = Call::new(&head);
    // The scope wraps the whole stream, so that the future is moved once,
    // into the task that runs it.
    let scope = call.clone();
    let stream = async move {
        let reply = Reply {
            id,
            outbox: &outbox,
            credit: &credit,
            answered: &answered,
        };
        let mut trace = Trace::start(ctx.observer.as_ref(), id, &head);
        let result = run(head, body, &ctx, reply, &mut trace, &call).await;
        if let Err(failure) = &result {
            log::debug!("stream {id}: {}: {}", failure.code, failure.reason);
            reply.reset(failure.clone());
        }
        trace.finish(result.err());
    };
    scope.scope(stream)
}

async fn run(
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: &ForwardContext,
    reply: Reply<'_>,
    trace: &mut Trace,
    call: &Call,
) -> Result<(), StreamFailure> {
    let tunnel = route(ctx, &head.host)?;
    let fields = head.headers.iter().map(|(n, v)| (&n[..], &v[..]));
    if let Some(problem) = request_head_problem(&head.method, &head.uri, fields) {
        return Err(StreamFailure::new(ResetCode::BadRequest, problem));
    }
    trace.request_headers(&head.headers);
    if head.upgrade {
        return upgrade(head, body, tunnel, ctx, reply, trace).await;
    }
    let on_continue = call.expects().then(|| reply.on_continue());
    if body.is_none() {
        trace.request_sent();
    }
    let body = body.map(|b| trace.tap_request(b));
    let answer = ctx
        .local
        .send(tunnel, call, &head, body, on_continue)
        .await?;
    // Its values share the buffer of the message the head came in.
    drop(head);
    reply.answer(answer, &tunnel.local, trace).await
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
        ctx.local.connector(),
        reply,
        trace,
    ))
    .await
}

/// The tunnel serving `host`.
fn route<'a>(ctx: &'a ForwardContext, host: &str) -> Result<&'a TunnelConfig, StreamFailure> {
    crate::config::find_tunnel(&ctx.tunnels, &ctx.given, host).ok_or_else(|| {
        StreamFailure::new(
            ResetCode::UnknownTunnel,
            format!("this client does not serve {host}"),
        )
    })
}
