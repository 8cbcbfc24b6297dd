//! One stream: the request the server sent, fetched from the local service,
//! and the answer streamed back, in stages: route (which tunnel), check
//! (the head, once, whichever way it is sent), send (through the local leg,
//! [`crate::local`]), answer (head and body back to the server). An
//! [`ExchangeObserver`](crate::observe::ExchangeObserver), when one is
//! set, sees each exchange once it ends.

use std::{future::Future, pin::Pin, rc::Rc, sync::Arc, time::Duration};

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
) -> impl Future<Output = ()> {
    let call = Call::new(&head);
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
    // The stream's state is large (the local leg's and the answer's, over
    // 5 KiB): boxed where it is made, so that it is copied once, and the
    // scope around it and the task that runs it move a pointer.
    scope.scope(Box::pin(stream))
}

async fn run(
    head: RequestHead,
    body: Option<RecvBody>,
    ctx: &ForwardContext,
    reply: Reply<'_>,
    trace: &mut Trace,
    call: &Call,
) -> Result<(), StreamFailure> {
    let tunnel = match route(ctx, &head.host).and_then(|t| check(&head).map(|()| t)) {
        Ok(tunnel) => tunnel,
        Err(refused) => {
            trace.request(&head);
            return Err(refused);
        }
    };
    if head.upgrade {
        trace.request(&head);
        return upgrade(head, body, tunnel, ctx, reply, trace).await;
    }
    let on_continue = call.expects().then(|| reply.on_continue());
    if body.is_none() {
        trace.request_sent();
    }
    let body = body.map(|b| trace.tap_request(b));
    // The request's fields are copied while the local service works on it,
    // not before it is written; its texts are moved in once it is sent.
    let answer = {
        let send = std::pin::pin!(ctx.local.send(tunnel, call, &head, body, on_continue));
        meanwhile(send, || trace.request_fields(&head)).await
    };
    // Its values share the buffer of the message the head came in: not
    // kept past here.
    trace.request_done(head);
    reply.answer(answer?, &tunnel.local, trace).await
}

/// Whether `head` can be written to a local service.
fn check(head: &RequestHead) -> Result<(), StreamFailure> {
    let fields = head.headers.iter().map(|(n, v)| (&n[..], &v[..]));
    match request_head_problem(&head.method, &head.uri, fields) {
        Some(problem) => Err(StreamFailure::new(ResetCode::BadRequest, problem)),
        None => Ok(()),
    }
}

/// Runs `fut`, and `then` once its first step is taken (a request's first
/// step writes it): work that the answer need not wait for.
///
/// The future is pinned where it was made: moving it here would copy the
/// local leg's whole state.
async fn meanwhile<F: Future>(mut fut: Pin<&mut F>, then: impl FnOnce()) -> F::Output {
    let mut then = Some(then);
    std::future::poll_fn(|cx| {
        let step = fut.as_mut().poll(cx);
        if let Some(then) = then.take() {
            then();
        }
        step
    })
    .await
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

#[cfg(test)]
mod tests {
    use std::{cell::Cell, pin::pin, task::Poll};

    use super::meanwhile;

    #[tokio::test]
    async fn work_meanwhile_runs_once_after_the_first_step_whenever_that_ends() {
        let (steps, done) = (Cell::new(0), Cell::new(None));
        // Two steps: the work runs between them, once.
        let fut = pin!(std::future::poll_fn(|cx| {
            steps.set(steps.get() + 1);
            if steps.get() == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        }));
        meanwhile(fut, || done.set(Some(steps.get()))).await;
        assert_eq!((steps.get(), done.get()), (2, Some(1)));
        // Ready at once: the work runs all the same.
        let ran = Cell::new(false);
        let answer = meanwhile(pin!(async { 7 }), || ran.set(true)).await;
        assert!(ran.get() && answer == 7);
    }
}
