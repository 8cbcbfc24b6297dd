//! The local leg: one request sent to a local service and its answer read
//! back, as a head and a body stream. Forwarding and the inspector's replay
//! both send requests this way, so a replayed request reaches the service
//! exactly as a forwarded one did: the tunnel's field rules, TLS to the
//! service, `Expect: 100-continue` and the `date` field handled by
//! [`crate::local_io`], a request lost on a stale kept-alive connection sent
//! again ([`crate::retry`]), an answer given before the request was written
//! read from the connection itself, and the one answer the pooled HTTP
//! client cannot read fetched again over a raw connection ([`crate::plain`]).
//!
//! It knows nothing of the tunnel: what it is given is a request head, a
//! body stream and what to do when the service asks for the body; what it
//! gives back is an [`Answer`] or the [`StreamFailure`] that says why none
//! came.

mod answer;

use std::{future::Future, rc::Rc};

use awc::{
    error::SendRequestError,
    http::{
        header::{CONTENT_LENGTH, EXPECT},
        Method,
    },
    ClientRequest, ClientResponse,
};
use burrow_common::{
    flow::BodyError,
    headers::{find, to_http},
    http1::parse_content_length,
    protocol::RequestHead,
    ResetCode,
};
use bytes::Bytes;
use futures_util::Stream;

pub use answer::Answer;

use crate::{
    config::{ClientConfig, TunnelConfig},
    failure::{local_failure, StreamFailure},
    http1::read_response_head,
    local_io::Exchange,
    retry,
    transport::Connector,
    upload::{OnContinue, Upload},
};

/// How one thread reaches local services: its pooled HTTP client, the
/// client for requests sent again, and the connector for raw connections.
/// Not `Send`: each thread that sends requests has its own.
pub struct LocalLeg {
    /// Pooled keep-alive client for local services.
    http: awc::Client,
    /// The client requests are sent again on ([`crate::retry`]): none of
    /// its connections is kept, so each is new.
    fresh: awc::Client,
    /// How connections to local services are opened (for upgrades and raw
    /// requests, which bypass the pooled client).
    connector: Connector,
}

/// One request's dealings with the local connection it goes out on (see
/// [`Exchange`]): made before the request is sent, and around the whole of
/// it, answer body included ([`Call::scope`]).
#[derive(Clone)]
pub struct Call(Rc<Exchange>);

impl Call {
    /// The call for `head`: its `date` left out when the caller sent none,
    /// its `100-continue` honoured when it has a body.
    pub fn new(head: &RequestHead) -> Self {
        let expects = !head.end_stream
            && find(&head.headers, b"expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        Call(Exchange::new(head, expects))
    }

    /// Whether the request waits for the service's `100 Continue`.
    pub fn expects(&self) -> bool {
        self.0.expects()
    }

    /// Runs `fut`, the whole exchange, with this call as the one its local
    /// connection serves.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        Exchange::scope(self.0.clone(), fut)
    }
}

impl LocalLeg {
    /// The local leg of one thread of a client with `config`.
    pub fn new(config: &ClientConfig) -> Self {
        Self::for_tunnels(&config.tunnels)
    }

    /// The local leg of one thread that sends to the services of `tunnels`
    /// (their TLS settings).
    pub fn for_tunnels(tunnels: &[TunnelConfig]) -> Self {
        let tls = tunnels.iter().filter_map(|t| {
            let tls = t.local_tls.clone()?;
            Some((t.local_url.authority().to_string(), tls))
        });
        let connector = Connector::with_tls(tls.collect());
        LocalLeg {
            http: connector.http_client(),
            fresh: connector.http_client(),
            connector,
        }
    }

    /// How raw connections to local services are opened.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Sends `head`, with `body` if it has one, to the local service of
    /// `tunnel`, within `call`'s scope, and reads the answer's head.
    /// `on_continue` runs when the service asks for the body of a request
    /// that expects `100-continue`. The method, target and fields must have
    /// passed [`burrow_common::http1::request_head_problem`].
    pub async fn send<B>(
        &self,
        tunnel: &TunnelConfig,
        call: &Call,
        head: &RequestHead,
        body: Option<B>,
        on_continue: Option<OnContinue>,
    ) -> Result<Answer, StreamFailure>
    where
        B: Stream<Item = Result<Bytes, BodyError>> + Unpin + 'static,
    {
        let exchange = &call.0;
        let (req, content_length, is_head) = request(&self.http, tunnel, head, call.expects())?;
        let body = body.map(|b| Upload::new(b, exchange.clone(), on_continue));
        let mut own = Some(exchange.clone());
        let resp = match send(req, body, content_length).await {
            Ok(resp) => resp,
            Err(e) => match exchange.early_answer() {
                // The answer came while the request was still being sent.
                Some(mut io) => {
                    let mut start = read_response_head(&mut io).await.map_err(|e| {
                        StreamFailure::new(ResetCode::LocalError, format!("{}: {e}", tunnel.local))
                    })?;
                    if let Some(rules) = &tunnel.headers {
                        rules.response.apply_list(&mut start.headers);
                    }
                    log::debug!("{} answered {} early", tunnel.local, start.status);
                    return Ok(Answer::raw(start, Box::new(io), is_head));
                }
                None if retry::lost_on_stale(exchange, &e) => {
                    let again = || request(&self.fresh, tunnel, head, false).map(|r| r.0);
                    // The retried request's connection is not the call's own.
                    own = None;
                    retry::send_again(head, &tunnel.local, again).await?
                }
                None => return Err(local_failure(&tunnel.local, e)),
            },
        };
        if crate::plain::body_withheld(&resp) {
            drop(resp);
            let (start, rd) = crate::plain::exchange(head, tunnel, &self.connector).await?;
            return Ok(Answer::raw(start, Box::new(rd), is_head));
        }
        Ok(Answer::pooled(resp, tunnel, is_head, own))
    }
}

/// The local request for `head` on `http`, its `Content-Length` if it
/// gave one, and whether it is a HEAD request; `Expect` is kept only when
/// `expects` (a `100-continue` with a body).
fn request(
    http: &awc::Client,
    tunnel: &TunnelConfig,
    head: &RequestHead,
    expects: bool,
) -> Result<(ClientRequest, Option<u64>, bool), StreamFailure> {
    let bad = |what: String| StreamFailure::new(ResetCode::BadRequest, what);
    let method = Method::from_bytes(head.method.as_bytes())
        .map_err(|_| bad(format!("invalid method {:?}", head.method)))?;
    let is_head = method == Method::HEAD;
    let url = tunnel
        .local_url
        .join(head.uri.clone())
        .ok_or_else(|| bad("invalid request target".into()))?;
    let mut req = http.request(method, url).no_decompress();
    let mut content_length = None;
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
    B: Stream<Item = Result<Bytes, crate::upload::UploadError>> + 'static,
{
    match (body, content_length) {
        // No body: no Content-Length either (awc would add `content-length: 0`).
        (None, _) => req.send_body(awc::body::None::new()).await,
        (Some(body), Some(len)) => req.send_body(awc::body::SizedStream::new(len, body)).await,
        (Some(body), None) => req.send_stream(body).await,
    }
}
