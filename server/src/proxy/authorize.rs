//! The one place a request is refused before it reaches a session: a
//! target this server does not forward, the server's and the tunnel's
//! rules for callers, and the limits on a request's size ([`admit`]), a
//! tunnel's request rate and its streams in flight ([`spend`]).

use actix_web::{http::header, HttpRequest};
use burrow_common::{flow::InFlightSlot, http1::parse_content_length};

use crate::{callers::Refusal, config::Limits, error::ProxyError, tunnel::TunnelState};

/// Whether the request for `host` may be forwarded to `tunnel`: checks
/// that cost the tunnel nothing, made again whenever a request that
/// waited finds the host's state changed.
pub(super) fn admit(
    req: &HttpRequest,
    host: &str,
    tunnel: &TunnelState,
    trust_forwarded: bool,
) -> Result<(), ProxyError> {
    if !req.uri().path().starts_with('/') {
        // `OPTIONS *` asks about this server, not about a local service.
        return Err(ProxyError::BadRequest(format!(
            "request target `{}` is not forwarded",
            req.uri()
        )));
    }
    if tunnel.server_rules.is_some() || tunnel.rules.is_some() {
        callers(req, host, tunnel, trust_forwarded)?;
    }
    sizes(req, &tunnel.limits)
}

/// Takes the request's token from the tunnel's rate and a slot among its
/// streams in flight: once per request and tunnel (see `proxy::open`).
pub(super) fn spend(host: &str, tunnel: &TunnelState) -> Result<InFlightSlot, ProxyError> {
    if let Some(rate) = &tunnel.rate {
        rate.take().map_err(|wait| ProxyError::RateLimited {
            host: host.to_owned(),
            retry_after: wait.as_secs().max(1),
        })?;
    }
    let max = tunnel.limits.max_streams_per_tunnel;
    tunnel
        .in_flight
        .try_acquire(max)
        .ok_or_else(|| ProxyError::Busy {
            host: host.to_owned(),
            max,
        })
}

/// The server's rules, then the tunnel's.
fn callers(
    req: &HttpRequest,
    host: &str,
    tunnel: &TunnelState,
    trust_forwarded: bool,
) -> Result<(), ProxyError> {
    let peer = caller_address(req, trust_forwarded);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    for rules in tunnel
        .server_rules
        .as_deref()
        .into_iter()
        .chain(&tunnel.rules)
    {
        rules
            .check(peer, authorization)
            .map_err(|refusal| match refusal {
                Refusal::Address => ProxyError::Forbidden(host.to_owned()),
                Refusal::Credentials => ProxyError::Unauthorized(host.to_owned()),
            })?;
    }
    Ok(())
}

/// The head's size and the body's declared length against the limits (a
/// body without a length is counted as it is sent).
fn sizes(req: &HttpRequest, limits: &Limits) -> Result<(), ProxyError> {
    if let Some(max) = limits.max_header_bytes {
        let fields: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if fields + req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > max {
            return Err(ProxyError::HeadTooLarge);
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_content_length(v.as_bytes()));
    if declared.is_some_and(|n| n > limits.max_request_body) {
        return Err(ProxyError::BodyTooLarge(limits.max_request_body));
    }
    Ok(())
}

/// The caller's address: the connection's peer or, behind a trusted
/// reverse proxy, the last address in `X-Forwarded-For` (the one that
/// proxy added; earlier ones are the caller's own say).
fn caller_address(req: &HttpRequest, trust_forwarded: bool) -> Option<std::net::IpAddr> {
    if trust_forwarded {
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last();
        if let Some(ip) = last.and_then(|ip| ip.trim().parse().ok()) {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}
