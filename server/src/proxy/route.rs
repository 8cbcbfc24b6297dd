//! Where a public request goes: the tunnel host it is routed by, and
//! whether it asks for a WebSocket upgrade.

use std::borrow::Cow;

use actix_web::{http::header, HttpRequest};

use crate::{config::canonical_host, error::ProxyError};

/// The tunnel host (lower case, no port) and the public host as the caller
/// wrote it. Only the request target's authority or the `Host` header count:
/// `X-Forwarded-Host` and `Forwarded` are caller-controlled and would let a
/// caller reach another tunnel.
pub(super) fn routing_host(req: &HttpRequest) -> Result<(Cow<'_, str>, &str), ProxyError> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or(ProxyError::MissingHost)?,
    };
    let host = host_of_authority(raw).ok_or(ProxyError::MissingHost)?;
    let host = canonical_host(host).ok_or_else(|| ProxyError::UnknownHost(host.to_owned()))?;
    Ok((host, raw))
}

/// The host part of `[userinfo@]host[:port]`; IPv6 literals keep their brackets.
/// Byte searches (each byte sought is ASCII, so every cut falls between
/// characters): `str`'s splitters cost most of a request's routing.
pub(crate) fn host_of_authority(authority: &str) -> Option<&str> {
    let hostport = match memchr::memrchr(b'@', authority.as_bytes()) {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = if hostport.starts_with('[') {
        &hostport[..=memchr::memchr(b']', hostport.as_bytes())?]
    } else {
        match memchr::memrchr(b':', hostport.as_bytes()) {
            Some(at) if hostport.as_bytes()[at + 1..].iter().all(u8::is_ascii_digit) => {
                &hostport[..at]
            }
            Some(_) => return None,
            None => hostport,
        }
    };
    (!host.is_empty()).then_some(host)
}

/// `Ok(true)` for a WebSocket upgrade request, `Ok(false)` for a plain
/// request, and 501 for upgrades to protocols that cannot be relayed. An
/// `h2c` offer is optional by design, so it is dropped and the request is
/// forwarded as plain HTTP/1.1.
pub(super) fn websocket_upgrade(req: &HttpRequest) -> Result<bool, ProxyError> {
    if !req.head().upgrade() {
        return Ok(false);
    }
    let protocol = req
        .headers()
        .get(header::UPGRADE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .unwrap_or_default();
    if protocol.eq_ignore_ascii_case("websocket") {
        Ok(true)
    } else if protocol.eq_ignore_ascii_case("h2c") {
        Ok(false)
    } else {
        Err(ProxyError::UpgradeUnsupported(protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::host_of_authority;

    #[test]
    fn host_is_taken_from_the_authority() {
        assert_eq!(host_of_authority("demo.localhost"), Some("demo.localhost"));
        assert_eq!(
            host_of_authority("Demo.localhost:8080"),
            Some("Demo.localhost")
        );
        assert_eq!(
            host_of_authority("user:pw@demo.localhost:80"),
            Some("demo.localhost")
        );
        assert_eq!(host_of_authority("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_of_authority("[::1"), None);
        assert_eq!(host_of_authority("a:b"), None);
        assert_eq!(host_of_authority(":80"), None);
        assert_eq!(host_of_authority("a@b@c.localhost:1"), Some("c.localhost"));
        assert_eq!(host_of_authority("é.localhost:80"), Some("é.localhost"));
        assert_eq!(host_of_authority("demo.localhost:"), Some("demo.localhost"));
        assert_eq!(host_of_authority("demo.localhost:8é"), None);
        assert_eq!(host_of_authority("[::1]x"), Some("[::1]"));
        assert_eq!(host_of_authority(""), None);
    }
}
