//! Header rules applied at both ends of the tunnel.
//!
//! Hop-by-hop headers describe one connection, not the message, so they are
//! never forwarded as they are: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`.

use bytes::Bytes;

use crate::protocol::HeaderList;

/// `true` when `name` (any case) is hop-by-hop by itself: `Connection`,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and every
/// `Proxy-*` header. Runs for every header of every message, so it looks at
/// the length before comparing any bytes.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |h: &[u8]| name.eq_ignore_ascii_case(h);
    let listed = match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        17 => is(b"transfer-encoding"),
        _ => false,
    };
    listed || (name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
}

/// Decides which headers of one message travel on: not the hop-by-hop ones,
/// and not those its `Connection` headers name. Built once per message from
/// the values of its `Connection` headers.
#[derive(Debug, Default, Clone)]
pub struct HopByHop {
    /// Lower-case names listed by `Connection` (usually none).
    named: Vec<Vec<u8>>,
    keep_upgrade: bool,
}

impl HopByHop {
    /// The rule for a message whose `Connection` headers hold `values`.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let named = values
            .into_iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
            // Naming `keep-alive` or `close` changes nothing: the first is
            // hop-by-hop anyway and the second is not a header.
            .filter(|t| !is_hop_by_hop(t) && !t.eq_ignore_ascii_case(b"close"))
            .map(|t| t.to_ascii_lowercase())
            .collect();
        HopByHop {
            named,
            keep_upgrade: false,
        }
    }

    /// Keeps `Upgrade` (for the two heads of a WebSocket upgrade).
    pub fn keeping_upgrade(mut self) -> Self {
        self.keep_upgrade = true;
        self
    }

    /// `true` when the header called `name` (any case) is forwarded.
    pub fn forwards(&self, name: &[u8]) -> bool {
        if self.keep_upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            return true;
        }
        !is_hop_by_hop(name) && !self.named.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Removes hop-by-hop headers from `headers`, including every header named
/// by a `Connection` header, keeping the order of the rest.
pub fn strip_hop_by_hop(headers: &mut HeaderList) {
    strip(headers, false);
}

/// Like [`strip_hop_by_hop`], for the two heads of a WebSocket upgrade: the
/// `Upgrade` header is kept and `Connection: upgrade` is set, since the
/// upgrade is what the next hop must act on.
pub fn strip_hop_by_hop_for_upgrade(headers: &mut HeaderList) {
    strip(headers, true);
    headers.push((
        Bytes::from_static(b"connection"),
        Bytes::from_static(b"upgrade"),
    ));
}

fn strip(headers: &mut HeaderList, keep_upgrade: bool) {
    let mut rule = HopByHop::new(
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .map(|(_, v)| &v[..]),
    );
    if keep_upgrade {
        rule = rule.keeping_upgrade();
    }
    headers.retain(|(name, _)| rule.forwards(name));
}

/// What the public side knows about the caller, added as `X-Forwarded-*`.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The caller's IP address, as seen by the server.
    pub client_ip: Option<&'a str>,
    /// `http` or `https`.
    pub proto: &'a str,
    /// The public host the caller asked for (with port if it gave one).
    pub host: &'a str,
    /// Keep `X-Forwarded-Proto`/`-Host` that a trusted proxy in front set.
    pub trust_incoming: bool,
}

/// A header field borrowed from wherever the head is held.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// The header fields of a caller's request as they travel to the local
/// service, borrowed from `fields` (the caller's, in order):
///
/// - the routed host first, as `host`, when `host_override` is set (an
///   absolute-form request target overrides `Host`, RFC 9112 3.2.2);
/// - the caller's fields, less those `rule` drops (hop-by-hop), `Host`
///   when overridden, and the `X-Forwarded-*` ones set below (`Expect`
///   travels on: the local service's own `100 Continue` is relayed);
/// - `connection: upgrade` when `upgrade`;
/// - `X-Forwarded-For`: the caller's list with the caller's address
///   appended (written into `chain`), then `X-Forwarded-Proto` and
///   `X-Forwarded-Host`, unless `fwd` trusts the ones present.
pub fn forward_request_fields<'a>(
    fields: &[Field<'a>],
    rule: &HopByHop,
    upgrade: bool,
    host_override: Option<&'a [u8]>,
    fwd: &Forwarded<'a>,
    chain: &'a mut Vec<u8>,
) -> Vec<Field<'a>> {
    let is = |n: &[u8], name: &[u8]| n.eq_ignore_ascii_case(name);
    let ips = fields
        .iter()
        .filter(|(n, _)| is(n, b"x-forwarded-for"))
        .map(|(_, v)| v.trim_ascii())
        .chain(fwd.client_ip.map(str::as_bytes));
    for ip in ips {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(ip);
    }
    let trusted = |name: &[u8]| fwd.trust_incoming && fields.iter().any(|(n, _)| is(n, name));
    let keep_proto = trusted(b"x-forwarded-proto");
    let keep_host = trusted(b"x-forwarded-host");
    let mut out = Vec::with_capacity(fields.len() + 4);
    if let Some(host) = host_override {
        out.push((&b"host"[..], host));
    }
    let dropped = |n: &[u8]| {
        !rule.forwards(n)
            || is(n, b"x-forwarded-for")
            || (host_override.is_some() && is(n, b"host"))
            || (!keep_proto && is(n, b"x-forwarded-proto"))
            || (!keep_host && is(n, b"x-forwarded-host"))
    };
    out.extend(fields.iter().copied().filter(|(n, _)| !dropped(n)));
    if upgrade {
        out.push((b"connection", b"upgrade"));
    }
    let chain: &'a [u8] = chain;
    if !chain.is_empty() {
        out.push((b"x-forwarded-for", chain));
    }
    if !keep_proto {
        out.push((b"x-forwarded-proto", fwd.proto.as_bytes()));
    }
    if !keep_host {
        out.push((b"x-forwarded-host", fwd.host.as_bytes()));
    }
    out
}

/// One header field from the wire as typed values (the value is not
/// copied), or a message saying what is invalid about it.
pub fn to_http(
    name: &Bytes,
    value: Bytes,
) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let name = match known_name(name) {
        Some(known) => known,
        None => http::HeaderName::from_bytes(name)
            .map_err(|_| format!("invalid header name {:?}", String::from_utf8_lossy(name)))?,
    };
    let value = http::HeaderValue::from_maybe_shared(value)
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

/// The names the server adds to every forwarded request, as shared
/// constants: building them from bytes would allocate a copy of each name
/// for every request (`http` keeps only standard names without one).
fn known_name(name: &[u8]) -> Option<http::HeaderName> {
    use http::HeaderName;
    const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    match name {
        b"x-forwarded-for" => Some(FOR),
        b"x-forwarded-proto" => Some(PROTO),
        b"x-forwarded-host" => Some(HOST),
        _ => None,
    }
}

/// The value of the first header called `name` (any case).
pub fn find<'a>(headers: &'a HeaderList, name: &[u8]) -> Option<&'a Bytes> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect()
    }

    fn names(h: &HeaderList) -> Vec<String> {
        h.iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn strips_fixed_list_and_connection_named_headers() {
        let mut h = list(&[
            ("Host", "a"),
            ("Connection", "keep-alive, X-Secret , close"),
            ("connection", "x-other"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("x-other", "2"),
            ("TE", "trailers"),
            ("Trailer", "x"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Whatever", "y"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(
            names(&h),
            ["Host", "Set-Cookie", "Set-Cookie", "Content-Length"]
        );
    }

    #[test]
    fn connection_naming_only_standard_tokens_costs_nothing() {
        let rule = HopByHop::new([&b"keep-alive"[..], b"Close", b"upgrade"]);
        assert!(rule.named.is_empty());
        assert!(rule.forwards(b"content-type"));
        assert!(!rule.forwards(b"Keep-Alive"));
        assert!(!rule.forwards(b"upgrade"));
        let rule = HopByHop::new([&b"X-Secret"[..]]).keeping_upgrade();
        assert!(!rule.forwards(b"x-secret"));
        assert!(rule.forwards(b"Upgrade"));
        assert!(!rule.forwards(b"proxy-connection"));
    }

    #[test]
    fn typed_headers_convert_from_the_wire() {
        let (n, v) = to_http(&Bytes::from_static(b"X-Trace"), Bytes::from_static(b"a b")).unwrap();
        assert_eq!(n.as_str(), "x-trace");
        assert_eq!(v.as_bytes(), b"a b");
        assert!(to_http(&Bytes::from_static(b"bad name"), Bytes::new()).is_err());
        let err = to_http(&Bytes::from_static(b"x"), Bytes::from_static(b"a\nb")).unwrap_err();
        assert_eq!(err, "invalid value for header x");
        for name in ["x-forwarded-proto", "X-Forwarded-Proto"] {
            let (n, _) = to_http(&Bytes::from(name), Bytes::from_static(b"https")).unwrap();
            assert_eq!(
                n,
                http::header::HeaderName::from_static("x-forwarded-proto")
            );
        }
    }

    #[test]
    fn upgrade_heads_keep_upgrade_and_connection_upgrade() {
        let mut h = list(&[
            ("Connection", "Upgrade, keep-alive"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "k"),
            ("Keep-Alive", "5"),
        ]);
        strip_hop_by_hop_for_upgrade(&mut h);
        assert_eq!(names(&h), ["Upgrade", "Sec-WebSocket-Key", "connection"]);
        assert_eq!(
            find(&h, b"connection").map(|v| &v[..]),
            Some(&b"upgrade"[..])
        );
    }

    /// Runs `forward_request_fields` over `pairs` as text.
    fn forward(
        pairs: &[(&str, &str)],
        upgrade: bool,
        host_override: Option<&str>,
        fwd: Forwarded<'_>,
    ) -> Vec<(String, String)> {
        let fields: Vec<Field<'_>> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let connection = fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .map(|(_, v)| *v);
        let mut rule = HopByHop::new(connection);
        if upgrade {
            rule = rule.keeping_upgrade();
        }
        let mut chain = Vec::new();
        let out = forward_request_fields(
            &fields,
            &rule,
            upgrade,
            host_override.map(str::as_bytes),
            &fwd,
            &mut chain,
        );
        out.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forwarded_headers_append_and_set() {
        let fwd = Forwarded {
            client_ip: Some("127.0.0.1"),
            proto: "http",
            host: "demo.localhost:8080",
            trust_incoming: false,
        };
        let out = forward(
            &[
                ("Host", "demo.localhost:8080"),
                ("x-forwarded-for", "10.0.0.1"),
                ("Expect", "100-continue"),
                ("X-Forwarded-For", " 10.0.0.2 "),
                ("x-forwarded-proto", "https"),
                ("Connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("x-forwarded-host", "evil"),
                ("accept", "*/*"),
            ],
            false,
            None,
            fwd,
        );
        assert_eq!(
            out,
            pairs(&[
                ("Host", "demo.localhost:8080"),
                ("Expect", "100-continue"),
                ("accept", "*/*"),
                ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 127.0.0.1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "demo.localhost:8080"),
            ])
        );
    }

    #[test]
    fn trusted_proxy_headers_are_kept_and_targets_override_host() {
        let fwd = Forwarded {
            client_ip: None,
            proto: "http",
            host: "h",
            trust_incoming: true,
        };
        let out = forward(
            &[("host", "other"), ("x-forwarded-proto", "https")],
            false,
            Some("h"),
            fwd,
        );
        assert_eq!(
            out,
            pairs(&[
                ("host", "h"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "h"),
            ])
        );
    }

    #[test]
    fn upgrades_keep_upgrade_and_say_connection_upgrade() {
        let fwd = Forwarded {
            client_ip: Some("::1"),
            proto: "http",
            host: "h",
            trust_incoming: false,
        };
        let out = forward(
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "k"),
            ],
            true,
            None,
            fwd,
        );
        assert_eq!(
            out,
            pairs(&[
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "k"),
                ("connection", "upgrade"),
                ("x-forwarded-for", "::1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "h"),
            ])
        );
    }
}
