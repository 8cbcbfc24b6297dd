//! The `RequestHead` frame for a caller's request, encoded straight from
//! actix's header map.

use actix_web::{http::header, HttpRequest};
use burrow_common::{
    flow::OpeningAllowance,
    frame::{encode_request_head_from, RequestTarget},
    headers::{forward_request_fields, Field, Forwarded, HopByHop},
    http1::parse_content_length,
    protocol::INITIAL_WINDOW,
};
use bytes::Bytes;

use crate::{caller_io::CallerIp, error::ProxyError};

/// How the head of one request is forwarded.
pub(super) struct Forwarding<'a> {
    /// The tunnel host the request was routed by.
    pub host: &'a str,
    /// The public host as the caller wrote it.
    pub public_host: &'a str,
    /// `http` or `https`: how the caller reached the server.
    pub proto: &'a str,
    /// Keep `X-Forwarded-Proto`/`-Host` from a trusted proxy in front.
    pub trust: bool,
    /// A WebSocket upgrade.
    pub upgrade: bool,
}

/// A request's `RequestHead` frame, and what follows it.
pub(super) struct HeadFrame {
    pub frame: Bytes,
    /// A body follows the head.
    pub has_body: bool,
    /// Credit beyond the initial window the body took from what the
    /// client promised (see `RequestHead::credit`).
    pub credit: u32,
}

/// The `RequestHead` frame of stream `id` for `req` (see
/// [`forward_request_fields`] for what is changed), its body taking from
/// `opening` what its length needs beyond the initial window.
pub(super) fn request_frame(
    id: u32,
    req: &HttpRequest,
    how: &Forwarding<'_>,
    opening: &OpeningAllowance,
) -> Result<HeadFrame, ProxyError> {
    let map = req.headers();
    let chunked = map.contains_key(header::TRANSFER_ENCODING);
    // Actix has read the length already (a bad one never gets here), and
    // "00" is as empty as "0": such a head ends its stream.
    let length = map
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_content_length(v.as_bytes()))
        .unwrap_or_default();
    let sized = length > 0;
    let end_stream = !how.upgrade && !chunked && !sized;
    // An upgraded connection's bytes may flow for hours: its window
    // widens as any does, and a promise meant for uploads stays for them.
    let wanted = match (end_stream || how.upgrade, chunked) {
        (true, _) => 0,
        (false, true) => u64::MAX,
        (false, false) => length.saturating_sub(u64::from(INITIAL_WINDOW)),
    };
    let credit = opening.draw(wanted);
    let target = RequestTarget {
        host: how.host,
        method: req.method().as_str(),
        uri: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        end_stream,
        upgrade: how.upgrade,
        credit,
    };
    // An absolute-form target overrides Host (RFC 9112, 3.2.2): the local
    // service sees the host the request was routed by.
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    let frame = forwarded_fields(req, how, authority, |fields| {
        encode_request_head_from(id, &target, fields)
    });
    let frame = frame.map_err(|_| {
        opening.add(credit);
        ProxyError::HeadTooLarge
    })?;
    Ok(HeadFrame {
        frame,
        has_body: !end_stream,
        credit,
    })
}

/// Calls `f` with `req`'s fields as they travel on from this node: its
/// end-to-end ones (and `Upgrade`, for an upgrade), `Host` replaced by
/// `authority` when given, and the forwarding fields `how` asks for; a
/// node's secret never goes past the node.
pub(super) fn forwarded_fields<R>(
    req: &HttpRequest,
    how: &Forwarding<'_>,
    authority: Option<&[u8]>,
    f: impl FnOnce(Vec<Field<'_>>) -> R,
) -> R {
    let map = req.headers();
    let fields: Vec<Field<'_>> = map
        .iter()
        .filter(|(n, _)| n.as_str() != crate::cluster::SECRET_HEADER)
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    let mut rule = HopByHop::new(map.get_all(header::CONNECTION).map(|v| v.as_bytes()));
    if how.upgrade {
        rule = rule.keeping_upgrade();
    }
    let peer = CallerIp::of(req);
    let fwd = Forwarded {
        client_ip: peer.as_deref(),
        proto: how.proto,
        host: how.public_host,
        trust_incoming: how.trust,
    };
    let mut chain = Vec::new();
    f(forward_request_fields(
        &fields,
        &rule,
        how.upgrade,
        authority,
        &fwd,
        &mut chain,
    ))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const HOW: Forwarding<'static> = Forwarding {
        host: "h.test",
        public_host: "h.test",
        proto: "http",
        trust: false,
        upgrade: false,
    };

    fn head_for(length: &str, opening: &OpeningAllowance) -> HeadFrame {
        let req = TestRequest::post()
            .uri("/up")
            .insert_header((header::CONTENT_LENGTH, length))
            .to_http_request();
        request_frame(1, &req, &HOW, opening).expect("a head")
    }

    #[test]
    fn a_zero_length_however_written_ends_the_stream_and_draws_nothing() {
        let opening = OpeningAllowance::default();
        opening.add(8 << 20);
        for zero in ["0", "00", "000"] {
            let head = head_for(zero, &opening);
            assert!(!head.has_body, "Content-Length: {zero}");
            assert_eq!(head.credit, 0, "Content-Length: {zero}");
        }
        let wide = u64::from(INITIAL_WINDOW) + 1000;
        let head = head_for(&format!("0{wide}"), &opening);
        assert!(head.has_body);
        assert_eq!(head.credit, 1000, "what the body needs beyond the window");
        assert_eq!(opening.draw(u64::MAX), (8 << 20) - 1000, "the rest is left");
    }
}
