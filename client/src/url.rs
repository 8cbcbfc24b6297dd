//! The client's URLs, parsed once when the configuration is read: the
//! server's control endpoint (`ws://` or `wss://`) and each local service (`http://`).

use awc::http::{
    uri::{Authority, Parts, PathAndQuery, Scheme},
    Uri,
};

/// The server's WebSocket control endpoint.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    uri: Uri,
    text: String,
}

impl ServerUrl {
    /// Parses a `ws://host[:port]/path` URL; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text.parse().map_err(|_| format!("`{text}` is not a URL"))?;
        match uri.scheme_str() {
            Some("ws" | "http" | "wss" | "https") => {}
            _ => {
                return Err(format!(
                    "`{text}` must be a ws://, wss://, http:// or https:// URL, like \
                     wss://tunnel.example.com/_burrow/connect"
                ))
            }
        }
        if uri.host().is_none() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(ServerUrl {
            uri,
            text: text.to_owned(),
        })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The server's host and port (80 or 443 when the URL names none).
    pub fn host_port(&self) -> (String, u16) {
        let host = self.uri.host().unwrap_or_default().to_owned();
        let default = if self.is_secure() { 443 } else { 80 };
        (host, self.uri.port_u16().unwrap_or(default))
    }

    /// The path of the control endpoint (`/_burrow/connect`).
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// `true` for `wss://` (and `https://`).
    pub fn is_secure(&self) -> bool {
        matches!(self.uri.scheme_str(), Some("wss") | Some("https"))
    }

    /// The public URL of `host`, assuming the server's public port is the
    /// one clients connect to.
    pub fn public_url(&self, host: &str) -> String {
        let secure = self.is_secure();
        let scheme = if secure { "https" } else { "http" };
        match self.uri.port_u16() {
            Some(p) if !(p == 80 && !secure || p == 443 && secure) => {
                format!("{scheme}://{host}:{p}/")
            }
            _ => format!("{scheme}://{host}/"),
        }
    }
}

/// A local service's base URL, parsed once when the configuration is read,
/// so that a forwarded request's URL is put together from parts instead of
/// formatted and parsed again.
#[derive(Debug, Clone)]
pub struct LocalUrl {
    /// Always `http`: an HTTPS service is given to the pooled client as a
    /// plain origin, and the connector adds TLS beneath it (see
    /// `crate::local_tls`).
    scheme: Scheme,
    /// With an explicit port for an HTTPS service (443 when none is named).
    authority: Authority,
    /// The service speaks HTTPS.
    tls: bool,
    /// Path prefix without a trailing slash; empty for most services.
    prefix: String,
    /// `scheme://authority/`: what connections are opened to.
    origin: Uri,
}

impl LocalUrl {
    /// Checks a local service URL: `http://host:port` (or `https://`) with
    /// an optional path prefix; returns it without a trailing slash, and
    /// parsed.
    pub fn parse(local: &str) -> Result<(String, LocalUrl), String> {
        let uri: Uri = local
            .parse()
            .map_err(|_| format!("`{local}` is not a URL like http://127.0.0.1:3000"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{local}` must start with http:// or https://")),
        };
        if uri.query().is_some() {
            return Err(format!("`{local}` must not have a query"));
        }
        let parts = uri.into_parts();
        let (Some(_), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(format!("`{local}` has no host"));
        };
        let scheme = Scheme::HTTP;
        let authority = match (tls, authority.port_u16()) {
            (true, None) => format!("{}:443", authority.host())
                .parse()
                .map_err(|_| format!("`{local}` has no usable host"))?,
            _ => authority,
        };
        let prefix = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("`{local}`: {e}"))?;
        let url = LocalUrl {
            scheme,
            authority,
            tls,
            prefix,
            origin,
        };
        Ok((local.trim_end_matches('/').to_owned(), url))
    }

    /// The host and port to connect to (port 80 when the URL names none).
    pub fn socket(&self) -> (&str, u16) {
        (self.host(), self.authority.port_u16().unwrap_or(80))
    }

    /// The host, without brackets for an IPv6 address.
    pub fn host(&self) -> &str {
        self.authority.host().trim_matches(['[', ']'])
    }

    /// `true` for an HTTPS service.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host:port`, as the service's own `Host` would be.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// `scheme://host:port/`, what connections are opened to.
    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    /// The path every request target is put under (`/api`), or empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL of `target`, a request target in origin form (`/path?query`),
    /// on this service; `None` if `target` is not a valid one.
    pub fn join(&self, target: String) -> Option<Uri> {
        let path = if self.prefix.is_empty() {
            PathAndQuery::try_from(target)
        } else {
            PathAndQuery::try_from(format!("{}{target}", self.prefix))
        };
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path.ok()?);
        Uri::from_parts(parts).ok()
    }
}
