//! `Expect: 100-continue` (RFC 9110, 10.1.1): the caller is told to send
//! its body only once the local service asked for it.
//!
//! The HTTP/1.1 service answers `100 Continue` itself as soon as its
//! expectation handler returns, before the request is handled. So the
//! expectation handler here starts the request itself, and returns only
//! when the proxy hears the local service's `100 Continue` through the
//! tunnel ([`let_caller_send`]). The request then goes on as it was; if the
//! final answer comes first (a service refusing the upload), it is given
//! as the handler's answer, and the caller never gets a `100`.

use std::{cell::Cell, future::Future, pin::Pin, rc::Rc};

use actix_http::{body::BoxBody, Extensions, HttpMessage, Request, Response};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use futures_util::future::{select, Either};
use tokio::sync::oneshot;

/// An answer to a caller: every outcome of a request, error or not.
pub type Answer = Response<BoxBody>;

/// A request being handled, started by the expectation handler.
type InFlight = Pin<Box<dyn Future<Output = Answer>>>;

/// The caller may be told to send its body.
struct Release(Cell<Option<oneshot::Sender<()>>>);

/// A request the expectation handler started, for the main service to
/// finish.
struct Started(InFlight);

/// Lets the caller send its body: `100 Continue` goes out (once; nothing
/// happens for a request without the expectation).
pub fn let_caller_send(extensions: &Extensions) {
    if let Some(tx) = extensions.get::<Release>().and_then(|r| r.0.take()) {
        let _ = tx.send(());
    }
}

/// The expectation handler over the service `app` makes.
pub fn expectation<F, S>(
    app: F,
) -> impl ServiceFactory<Request, Config = (), Response = Request, Error = Answer, InitError = ()>
where
    F: ServiceFactory<Request, Config = (), Service = S, InitError = ()>,
    S: Service<Request, Error = Answer> + 'static,
    S::Response: Into<Answer>,
{
    over_app(app, expect::<S>)
}

/// The main service over the service `app` makes: it finishes requests
/// the expectation handler started and handles all others.
pub fn main<F, S>(
    app: F,
) -> impl ServiceFactory<Request, Config = (), Response = Answer, Error = Answer, InitError = ()>
where
    F: ServiceFactory<Request, Config = (), Service = S, InitError = ()>,
    S: Service<Request, Error = Answer> + 'static,
    S::Response: Into<Answer>,
{
    over_app(app, finish::<S>)
}

/// A service that hands each request, with the service `app` makes for
/// its worker, to `handle`.
fn over_app<F, S, H, Fut, R>(
    app: F,
    handle: H,
) -> impl ServiceFactory<Request, Config = (), Response = R, Error = Answer, InitError = ()>
where
    F: ServiceFactory<Request, Config = (), Service = S, InitError = ()>,
    S: 'static,
    H: Fn(Rc<S>, Request) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<R, Answer>>,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        async move {
            let svc = Rc::new(app.new_service(()).await?);
            Ok(fn_service(move |req| handle(svc.clone(), req)))
        }
    })
}

/// Finishes a request the expectation handler started, or handles it.
async fn finish<S>(svc: Rc<S>, req: Request) -> Result<Answer, Answer>
where
    S: Service<Request, Error = Answer> + 'static,
    S::Response: Into<Answer>,
{
    let started = req.extensions_mut().remove::<Started>();
    match started {
        Some(Started(call)) => Ok(call.await),
        None => svc.call(req).await.map(Into::into),
    }
}

/// Starts `req` and waits for the local service's `100 Continue` or the
/// final answer, whichever comes first.
async fn expect<S>(svc: Rc<S>, req: Request) -> Result<Request, Answer>
where
    S: Service<Request, Error = Answer> + 'static,
    S::Response: Into<Answer>,
{
    let (tx, rx) = oneshot::channel();
    req.extensions_mut().insert(Release(Cell::new(Some(tx))));
    let call = svc.call(req);
    let mut call: InFlight = Box::pin(async move {
        match call.await {
            Ok(res) => res.into(),
            Err(answer) => answer,
        }
    });
    match select(rx, &mut call).await {
        Either::Left((Ok(()), _)) => {
            // The caller's request travels on inside `call`; this one only
            // carries it to the main service.
            let carrier = Request::new();
            carrier.extensions_mut().insert(Started(call));
            Ok(carrier)
        }
        Either::Left((Err(_), _)) => Err(call.await),
        Either::Right((answer, _)) => Err(answer),
    }
}
