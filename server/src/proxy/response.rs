//! The caller's response: the wait for the local service's head, then
//! the response built from it and the stream's body.

use actix_web::HttpMessage;
use actix_web::{
    body::{self, SizedStream},
    http::{
        header::{self, HeaderValue},
        Method, StatusCode,
    },
    HttpRequest, HttpResponse, HttpResponseBuilder,
};
use burrow_common::{
    flow::{BodyError, BodyEvent, CancelOnDrop},
    headers::to_http,
    http1::{parse_content_length, status_has_no_body},
    protocol::ResponseHead,
    queue::Receiver,
};
use bytes::Bytes;

use super::{Counted, ProxyState};
use crate::error::ProxyError;

/// The response for `req` from the local service's `head`, its body coming
/// from `body`.
pub(super) fn response(
    req: &HttpRequest,
    host: &str,
    head: ResponseHead,
    mut body: Counted,
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
            let len = parse_content_length(value.as_bytes())
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
    let is_head = req.method() == Method::HEAD;
    let bodiless_status = status_has_no_body(status.as_u16());
    if let Some(inline) = head.body.filter(|_| !bodiless_status && !is_head) {
        // The whole body came with the head; actix sets Content-Length from it.
        body.inline(inline.len());
        return Ok(builder.body(inline));
    }
    if head.end_stream || bodiless_status || is_head {
        return Ok(bodiless(builder, status, content_length, is_head));
    }
    Ok(match content_length {
        Some((len, _)) => builder.body(SizedStream::new(len, body)),
        None => builder.streaming(body),
    })
}

/// A response without body bytes, keeping the length the local service
/// gave where HTTP lets it stand.
pub(super) fn bodiless(
    mut builder: HttpResponseBuilder,
    status: StatusCode,
    content_length: Option<(u64, HeaderValue)>,
    is_head: bool,
) -> HttpResponse {
    let bodiless_status = status_has_no_body(status.as_u16());
    match content_length {
        // actix writes Content-Length from the body's size: an empty body
        // that claims the local service's length keeps it for HEAD (the
        // codec sends no body bytes for HEAD).
        Some((len, _)) if is_head && !bodiless_status => builder.body(SizedStream::new(
            len,
            futures_util::stream::empty::<Result<Bytes, BodyError>>(),
        )),
        // For 304, actix keeps a Content-Length header set by hand.
        Some((_, value)) if status == StatusCode::NOT_MODIFIED => builder
            .insert_header((header::CONTENT_LENGTH, value))
            .body(body::None::new()),
        _ if bodiless_status => builder.body(body::None::new()),
        _ => builder.body(()),
    }
}

/// Waits for the response head. The session enforces the request timeout
/// on its periodic sweep: a timer per request would cost more than the
/// rest of this wait.
pub(super) async fn await_head(
    req: &HttpRequest,
    host: &str,
    mut events: Receiver<BodyEvent>,
    guard: &mut CancelOnDrop,
    state: &ProxyState,
) -> Result<(ResponseHead, Receiver<BodyEvent>), ProxyError> {
    let mut event = events.recv().await;
    while let Some(BodyEvent::Continue) = event {
        crate::expect::let_caller_send(&req.extensions());
        event = events.recv().await;
    }
    match event {
        Some(BodyEvent::Head(head)) => Ok((*head, events)),
        Some(BodyEvent::Reset(code, reason)) => {
            guard.disarm();
            Err(ProxyError::from_reset(host, code, reason))
        }
        Some(BodyEvent::Expired) => {
            guard.disarm();
            Err(ProxyError::Timeout {
                host: host.to_owned(),
                secs: state.shared.request_timeout.as_secs(),
            })
        }
        Some(BodyEvent::Data(_) | BodyEvent::End | BodyEvent::Continue) | None => {
            Err(ProxyError::TunnelGone(host.to_owned()))
        }
    }
}
