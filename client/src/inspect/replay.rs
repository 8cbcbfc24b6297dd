//! A saved request sent again to a local service, through the same local
//! leg forwarding uses ([`crate::local`]), and recorded as an exchange of
//! its own.

use std::sync::{Arc, Mutex};

use burrow_common::{
    flow::BodyError, http1::request_head_problem, protocol::RequestHead, ResetCode,
};
use bytes::Bytes;
use futures_util::{stream, StreamExt};

use super::capture::SavedRequest;
use crate::{
    config::TunnelConfig,
    failure::StreamFailure,
    local::{Call, LocalLeg},
    observe::{Capture, Exchange, ExchangeObserver, Fields, Trace},
};

/// Keeps the one exchange it is given.
struct Collector {
    capture: Capture,
    exchange: Mutex<Option<Exchange>>,
}

impl ExchangeObserver for Collector {
    fn capture(&self) -> Capture {
        self.capture
    }

    fn exchange(&self, exchange: Exchange) {
        *self.exchange.lock().unwrap_or_else(|e| e.into_inner()) = Some(exchange);
    }
}

/// The head `saved` is sent with: its fields, with the framing fields
/// made to fit its body as it is now (an edit may have changed it).
pub fn head_of(saved: &SavedRequest, host: &str) -> RequestHead {
    let mut headers: Vec<(Bytes, Bytes)> = saved
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case(b"content-length")
                && !n.eq_ignore_ascii_case(b"transfer-encoding")
        })
        .cloned()
        .collect();
    let had_length = saved
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
    if !saved.body.is_empty() || had_length {
        let length = saved.body.len().to_string();
        headers.push((Bytes::from_static(b"content-length"), Bytes::from(length)));
    }
    RequestHead {
        host: host.to_owned(),
        method: saved.method.clone(),
        uri: saved.path.clone(),
        headers,
        end_stream: saved.body.is_empty(),
        upgrade: false,
        credit: 0,
    }
}

/// Sends `saved` to the service of `tunnel` and records what happens,
/// capturing as `capture` says; a request that cannot be sent as it is
/// gets the reason.
pub async fn replay(
    leg: &LocalLeg,
    tunnel: &TunnelConfig,
    saved: &SavedRequest,
    capture: Capture,
) -> Result<Exchange, String> {
    let head = head_of(saved, &tunnel.host);
    let fields = head.headers.iter().map(|(n, v)| (&n[..], &v[..]));
    if let Some(problem) = request_head_problem(&head.method, &head.uri, fields) {
        return Err(problem);
    }
    if !head.uri.starts_with('/') {
        return Err(format!("the path `{}` must start with /", head.uri));
    }
    let collector = Arc::new(Collector {
        capture,
        exchange: Mutex::new(None),
    });
    let observer: Arc<dyn ExchangeObserver> = collector.clone();
    let mut trace = Trace::start(Some(&observer), 0, &head);
    trace.request(&head);
    let call = Call::new(&head);
    let body =
        (!saved.body.is_empty()).then(|| stream::iter([Ok::<_, BodyError>(saved.body.clone())]));
    if body.is_none() {
        trace.request_sent();
    }
    let exchange = call.scope(async {
        let body = body.map(|b| trace.tap_request(b));
        let answer = leg.send(tunnel, &call, &head, body, None).await?;
        let fields = trace
            .keeps_headers()
            .then(|| Fields::copied(answer.fields()));
        trace.response_head(answer.status(), fields, None);
        let mut body = std::pin::pin!(trace.tap_response(answer.body()));
        let mut read = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StreamFailure::new(ResetCode::LocalError, e))?;
            read += chunk.len() as u64;
        }
        Ok::<_, StreamFailure>(read)
    });
    let result = exchange.await;
    if let Ok(read) = result {
        trace.response_bytes(read);
    }
    trace.finish(result.err());
    let kept = collector
        .exchange
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    kept.ok_or_else(|| "the replay was not recorded".to_owned())
}
