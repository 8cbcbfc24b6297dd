//! Client configuration: read from a TOML file and validated.

pub mod inspect;
pub mod servers;
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use burrow_common::flow::WindowMemory;
pub use burrow_common::{
    access::AccessRules,
    config::{normalize_host, ConfigError, Token},
};
use serde::Deserialize;

pub use crate::url::{LocalUrl, ServerUrl};
use crate::{
    header_rules::{HeaderRules, RawFieldRules},
    local_tls::LocalTls,
};

/// Default wait for the local service's response head, in seconds. Longer
/// than the server's default `request_timeout`, so that the server decides.
pub const DEFAULT_LOCAL_TIMEOUT_SECS: u64 = 120;

/// Default time an extra connection may carry no request before the client
/// closes it, in seconds.
pub const DEFAULT_IDLE_CONNECTION_SECS: u64 = 60;

/// One public host and the local service behind it.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Public host name, lower case; empty for a tunnel that asks the
    /// server for a random name (see [`ClientConfig::host_of`]).
    pub host: String,
    /// Token the server expects for `host`.
    pub token: Token,
    /// Base URL of the local service, without a trailing slash
    /// (`http://127.0.0.1:3000`).
    pub local: String,
    /// The same URL, parsed: what each forwarded request's URL is built on.
    pub local_url: LocalUrl,
    /// Who may call the tunnel, enforced by the server.
    pub access: AccessRules,
    /// Fields changed on the way in and out; `None`: none.
    pub headers: Option<Box<HeaderRules>>,
    /// TLS to an `https://` local service.
    pub local_tls: Option<LocalTls>,
}

impl TunnelConfig {
    /// A tunnel to the service at `local` alone: no public host, no rules
    /// (for sending saved requests to it); an `https://` service's
    /// certificate is verified unless `verify_tls` is `false`.
    pub fn to_local(local: &str, verify_tls: bool) -> Result<TunnelConfig, String> {
        let (local, local_url) = LocalUrl::parse(local)?;
        let verify = local_url.is_tls().then_some(verify_tls);
        let local_tls = local_tls(&local_url, verify).map_err(|(_, msg)| msg)?;
        Ok(TunnelConfig {
            host: String::new(),
            token: Token::new(""),
            local,
            local_url,
            access: AccessRules::default(),
            headers: None,
            local_tls,
        })
    }
}

/// The names the server gave the tunnels that asked for none, by tunnel
/// index, shared by every connection of the client: each connection after
/// the first, and each reconnection, asks for the name given.
#[derive(Debug, Clone, Default)]
pub struct GivenNames(Arc<Mutex<Vec<Option<String>>>>);

impl GivenNames {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<String>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name given to tunnel `i`, if any.
    pub fn get(&self, i: usize) -> Option<String> {
        self.lock().get(i).cloned().flatten()
    }

    /// Remembers that tunnel `i` was given `name`.
    pub fn set(&self, i: usize, name: String) {
        let mut names = self.lock();
        if names.len() <= i {
            names.resize(i + 1, None);
        }
        names[i] = Some(name);
    }

    /// The index of the tunnel given `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.lock().iter().position(|n| n.as_deref() == Some(name))
    }
}

/// Validated client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's control endpoint (the first, when `server` lists
    /// several).
    pub server: ServerUrl,
    /// Every control endpoint `server` lists, in the order to try them.
    pub servers: servers::Servers,
    /// TLS for a `wss://` server: the roots of `ca`, or the platform's.
    pub server_tls: Option<Arc<rustls::ClientConfig>>,
    /// The tunnels to serve over the one connection.
    pub tunnels: Vec<TunnelConfig>,
    /// Longest wait for the local service's response head.
    pub local_timeout: Duration,
    /// Longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// Connections to open to the server, each served by its own thread;
    /// `None` follows the server's suggestion (its worker threads, up to
    /// this machine's cores).
    pub connections: Option<u32>,
    /// How long a connection beyond the first may carry no request before
    /// the client drains and closes it (it is opened again when requests
    /// overlap again); `None` keeps every connection open.
    pub idle_connection: Option<Duration>,
    /// Names the server gave tunnels that asked for none.
    pub given: GivenNames,
    /// The widest window request bodies reached over the connections
    /// (which cross one path): what each promises the bodies to come.
    pub body_windows: Arc<WindowMemory>,
    /// The request inspector: where it listens, what it keeps.
    pub inspect: inspect::Settings,
}

/// Most connections one client opens, whatever the server suggests.
pub const MAX_CONNECTIONS: u32 = 16;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: servers::RawServers,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) local_timeout_secs: Option<u64>,
    pub(crate) max_reconnect_delay_secs: Option<u64>,
    pub(crate) connections: Option<u32>,
    pub(crate) idle_connection_secs: Option<u64>,
    pub(crate) inspect: Option<inspect::RawInspect>,
    pub(crate) inspect_entries: Option<usize>,
    pub(crate) inspect_body_kib: Option<usize>,
    pub(crate) inspect_memory_mib: Option<usize>,
    pub(crate) tunnels: Vec<RawTunnel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub(crate) host: Option<String>,
    pub(crate) token: Token,
    pub(crate) local: String,
    basic_auth: Option<Token>,
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    deny_ips: Vec<String>,
    host_header: Option<String>,
    local_tls_verify: Option<bool>,
    #[serde(default)]
    request_headers: RawFieldRules,
    #[serde(default)]
    response_headers: RawFieldRules,
}

impl RawTunnel {
    /// A tunnel with every option at its default.
    pub(crate) fn new(host: Option<String>, token: Token, local: String) -> RawTunnel {
        RawTunnel {
            host,
            token,
            local,
            basic_auth: None,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            host_header: None,
            local_tls_verify: None,
            request_headers: RawFieldRules::default(),
            response_headers: RawFieldRules::default(),
        }
    }

    /// Takes an `https://` service's certificate without verifying it.
    pub(crate) fn trusting_local_tls(mut self) -> RawTunnel {
        self.local_tls_verify = Some(false);
        self
    }
}

impl ClientConfig {
    /// Reads and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_str(&burrow_common::config::read(path)?, path)
    }

    /// Parses and validates `text`; `path` only names the source in errors.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(burrow_common::config::parse(text, path)?, path)
    }

    /// Validates a configuration as read; `path` names its source in
    /// errors, and relative paths are taken from its directory.
    pub(crate) fn from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
        let servers = raw.server.parse().map_err(|m| invalid("server", m))?;
        let server = servers.first().clone();
        let inspect = inspect::Settings::of(&raw).map_err(|m| invalid("inspect", m))?;
        let server_tls = match (server.is_secure(), raw.ca) {
            (true, ca) => {
                let dir = path.parent().unwrap_or(Path::new(""));
                let ca = ca.map(|ca| dir.join(ca));
                Some(crate::tls::server_tls(ca.as_deref()).map_err(|m| invalid("ca", m))?)
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "ca",
                    "is for a wss:// server; `server` is ws://".into(),
                ))
            }
            (false, None) => None,
        };
        let tunnels = tunnels(raw.tunnels, path)?;
        let secs = raw.local_timeout_secs.unwrap_or(DEFAULT_LOCAL_TIMEOUT_SECS);
        if secs == 0 {
            return Err(invalid("local_timeout_secs", "must be at least 1".into()));
        }
        let backoff = raw.max_reconnect_delay_secs.unwrap_or(30);
        if backoff == 0 {
            return Err(invalid(
                "max_reconnect_delay_secs",
                "must be at least 1".into(),
            ));
        }
        if let Some(n) = raw.connections {
            if !(1..=MAX_CONNECTIONS).contains(&n) {
                return Err(invalid(
                    "connections",
                    format!("must be from 1 to {MAX_CONNECTIONS}"),
                ));
            }
        }
        Ok(ClientConfig {
            server,
            servers,
            server_tls,
            inspect,
            tunnels,
            local_timeout: Duration::from_secs(secs),
            max_backoff: Duration::from_secs(backoff),
            connections: raw.connections,
            given: GivenNames::default(),
            body_windows: Arc::default(),
            idle_connection: match raw.idle_connection_secs {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => Some(Duration::from_secs(DEFAULT_IDLE_CONNECTION_SECS)),
            },
        })
    }

    /// The host tunnel `i` serves: its configured one, or the name the
    /// server gave it (empty until then).
    pub fn host_of(&self, i: usize) -> String {
        match self.tunnels.get(i) {
            Some(t) if t.host.is_empty() => self.given.get(i).unwrap_or_default(),
            Some(t) => t.host.clone(),
            None => String::new(),
        }
    }

    /// The tunnel serving `host`: the one configured for it, else the one
    /// the server gave that name.
    pub fn tunnel_for(&self, host: &str) -> Option<&TunnelConfig> {
        find_tunnel(&self.tunnels, &self.given, host)
    }

    /// The public URL of `host`, assuming the server's public port is the one
    /// clients connect to.
    pub fn public_url(&self, host: &str) -> String {
        self.server.public_url(host)
    }
}

/// The tunnel of `tunnels` serving `host`: a tunnel with a given name is
/// looked up only when no other matches.
pub fn find_tunnel<'a>(
    tunnels: &'a [TunnelConfig],
    given: &GivenNames,
    host: &str,
) -> Option<&'a TunnelConfig> {
    let named = tunnels.iter().find(|t| t.host == host);
    named.or_else(|| given.find(host).and_then(|i| tunnels.get(i)))
}

/// Validates the `[[tunnels]]` tables: at least one, hosts valid and
/// distinct, tokens not empty, local URLs parsed.
fn tunnels(raw: Vec<RawTunnel>, path: &Path) -> Result<Vec<TunnelConfig>, ConfigError> {
    let invalid = |key: String, message: String| ConfigError::invalid(path, &key, message);
    if raw.is_empty() {
        let msg = "at least one [[tunnels]] entry is needed".to_owned();
        return Err(invalid("tunnels".into(), msg));
    }
    let mut seen = HashSet::new();
    let mut tunnels = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        // No host: the server gives a random one.
        let host = match &t.host {
            None => String::new(),
            Some(name) => normalize_host(name).ok_or_else(|| {
                let msg = format!("`{name}` is not a valid host name");
                invalid(format!("tunnels[{i}].host"), msg)
            })?,
        };
        if !host.is_empty() && !seen.insert(host.clone()) {
            let msg = format!("host `{host}` is listed twice");
            return Err(invalid(format!("tunnels[{i}].host"), msg));
        }
        if t.token.is_empty() {
            let msg = "must not be empty".to_owned();
            return Err(invalid(format!("tunnels[{i}].token"), msg));
        }
        let (local, local_url) =
            LocalUrl::parse(&t.local).map_err(|msg| invalid(format!("tunnels[{i}].local"), msg))?;
        let access = AccessRules {
            basic_auth: t.basic_auth,
            allow_ips: t.allow_ips,
            deny_ips: t.deny_ips,
        };
        access
            .validate()
            .map_err(|msg| invalid(format!("tunnels[{i}]"), msg))?;
        let headers = header_rules(
            t.host_header.as_deref(),
            t.request_headers,
            t.response_headers,
            &local_url,
        )
        .map_err(|(key, msg)| invalid(format!("tunnels[{i}].{key}"), msg))?;
        let local_tls = local_tls(&local_url, t.local_tls_verify)
            .map_err(|(key, msg)| invalid(format!("tunnels[{i}].{key}"), msg))?;
        tunnels.push(TunnelConfig {
            host,
            token: t.token,
            local,
            local_url,
            access,
            headers: headers.map(Box::new),
            local_tls,
        });
    }
    Ok(tunnels)
}

/// TLS for an `https://` local service, verified unless `verify` is
/// `false`; the error names the key at fault.
fn local_tls(
    local: &LocalUrl,
    verify: Option<bool>,
) -> Result<Option<LocalTls>, (&'static str, String)> {
    if !local.is_tls() {
        return match verify {
            Some(_) => Err((
                "local_tls_verify",
                "is for an https:// local service".into(),
            )),
            None => Ok(None),
        };
    }
    LocalTls::new(local.host(), verify.unwrap_or(true))
        .map(Some)
        .map_err(|m| ("local", m))
}

/// A tunnel's header rules; the error names the key at fault.
fn header_rules(
    host_header: Option<&str>,
    request: RawFieldRules,
    response: RawFieldRules,
    local: &LocalUrl,
) -> Result<Option<HeaderRules>, (&'static str, String)> {
    let rewrite = match host_header {
        None | Some("keep") => None,
        Some("rewrite") => Some(local.authority()),
        Some(other) => {
            let msg = format!("`{other}` is not `keep` or `rewrite`");
            return Err(("host_header", msg));
        }
    };
    let request = request.validate().map_err(|m| ("request_headers", m))?;
    let response = response.validate().map_err(|m| ("response_headers", m))?;
    Ok(HeaderRules::new(request, response, rewrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::from_str(text, Path::new("client.toml"))
    }

    const OK: &str = "server = \"ws://127.0.0.1:8080/_burrow/connect\"\n\
        [[tunnels]]\nhost = \"Demo.localhost\"\ntoken = \"t\"\nlocal = \"http://127.0.0.1:3000/\"\n";

    #[test]
    fn valid_config() {
        let c = parse(OK).unwrap();
        assert_eq!(c.tunnels[0].host, "demo.localhost");
        assert_eq!(c.tunnels[0].local, "http://127.0.0.1:3000");
        assert_eq!(c.tunnels[0].token.expose(), "t");
        assert_eq!(
            c.local_timeout,
            Duration::from_secs(DEFAULT_LOCAL_TIMEOUT_SECS)
        );
        assert_eq!(
            c.public_url("demo.localhost"),
            "http://demo.localhost:8080/"
        );
        assert!(!format!("{c:?}").contains("\"t\""));
        assert_eq!(
            c.idle_connection,
            Some(Duration::from_secs(DEFAULT_IDLE_CONNECTION_SECS))
        );
        let kept = parse(&format!("idle_connection_secs = 0\n{OK}")).unwrap();
        assert_eq!(kept.idle_connection, None, "0 keeps every connection");
        let short = parse(&format!("idle_connection_secs = 5\n{OK}")).unwrap();
        assert_eq!(short.idle_connection, Some(Duration::from_secs(5)));
    }

    #[test]
    fn local_url_joins_request_targets() {
        let c = parse(OK).unwrap();
        let url = &c.tunnels[0].local_url;
        assert_eq!(
            url.join("/a/b?x=1&y".into()).unwrap().to_string(),
            "http://127.0.0.1:3000/a/b?x=1&y"
        );
        assert!(url.join("/a b".into()).is_none());
        assert_eq!(url.socket(), ("127.0.0.1", 3000));
        assert_eq!(url.prefix(), "");
        let prefixed = parse(&OK.replace(":3000/", ":3000/api/v1/")).unwrap();
        assert_eq!(prefixed.tunnels[0].local, "http://127.0.0.1:3000/api/v1");
        assert_eq!(
            prefixed.tunnels[0]
                .local_url
                .join("/users?id=7".into())
                .unwrap()
                .to_string(),
            "http://127.0.0.1:3000/api/v1/users?id=7"
        );
        assert_eq!(prefixed.tunnels[0].local_url.prefix(), "/api/v1");
        let v6 = parse(&OK.replace("127.0.0.1:3000/", "[::1]/")).unwrap();
        assert_eq!(v6.tunnels[0].local_url.socket(), ("::1", 80));
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/client.toml");
        let c = ClientConfig::from_file(&path).unwrap();
        assert!(!c.tunnels.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                "server = 1\n".into(),
                vec!["client.toml", "line 1", "server"],
            ),
            (
                OK.replace("local = ", "locale = "),
                vec!["line 5", "locale"],
            ),
            (OK.replace("ws://", "ftp://"), vec!["`server`", "ws://"]),
            (
                OK.replace("local = ", "local_tls_verify = false\nlocal = "),
                vec!["tunnels[0].local_tls_verify", "https://"],
            ),
            (
                OK.replace("http://127.0.0.1:3000/", "nope"),
                vec!["tunnels[0].local"],
            ),
            (OK.replace("Demo.localhost", "a b"), vec!["tunnels[0].host"]),
            (
                OK.replace("token = \"t\"", "token = \"\""),
                vec!["tunnels[0].token"],
            ),
            (
                format!("{OK}local_timeout_secs = 0\n"),
                vec!["line 6", "local_timeout_secs"],
            ),
            (
                format!("connections = 0\n{OK}"),
                vec!["connections", "from 1 to 16"],
            ),
            (
                "server = \"ws://h/\"\ntunnels = []\n".into(),
                vec!["tunnels"],
            ),
            ("server = \"ws://h/\n".into(), vec!["line 1"]),
        ];
        for (text, needles) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }
}
