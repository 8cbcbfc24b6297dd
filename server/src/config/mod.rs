//! Server configuration: read from a TOML file, validated into types that
//! need no further checks at run time.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use burrow_common::access::AccessRules;

use crate::callers::CallerRules;
pub use burrow_common::config::{canonical_host, normalize_host, ConfigError, Token};
use serde::Deserialize;

mod acme;
mod admin;
mod cluster;
mod hosts;
mod limits;
mod tls;
pub use acme::AcmeSettings;
pub use admin::AdminSettings;
pub use cluster::{ClusterSettings, DEFAULT_LEASE_SECS};
pub use hosts::{sha256_hex, HostConfig, Secret};
pub use limits::Limits;
pub use tls::{provider, TlsSettings};

pub use burrow_common::protocol::DEFAULT_CONTROL_PATH;
/// Default wait for a response head, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default interval of the heartbeat pings, in seconds.
pub const DEFAULT_HEARTBEAT_SECS: u64 = burrow_common::protocol::DEFAULT_PING_SECS as u64;
/// Default time a stream may move no bytes at all before it is closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;
/// Default time a host whose client dropped is kept for it, in seconds.
pub const DEFAULT_RECONNECT_GRACE_SECS: u64 = 10;
/// Default time a stopping server gives requests in flight, in seconds.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the public HTTP listener binds.
    pub listen: SocketAddr,
    /// Path of the WebSocket endpoint clients connect to; never proxied.
    pub control_path: String,
    /// Longest wait for the local service's response head (then 504),
    /// enforced by each session's sweep to within a quarter of it.
    pub request_timeout: Duration,
    /// Longest time an answered stream (a download, SSE, a WebSocket) may
    /// move no bytes in either direction before it is closed.
    pub idle_timeout: Duration,
    /// How often each client is pinged; three intervals without a word
    /// from it and its session is closed (and the client, hearing nothing
    /// for three, reconnects).
    pub heartbeat: Duration,
    /// How long a host whose client's connection was lost stays reserved
    /// for that client; requests for it meanwhile wait. Zero: none.
    pub reconnect_grace: Duration,
    /// How long a stopping server lets requests in flight finish.
    pub drain_timeout: Duration,
    /// HTTP worker threads; `None` means [`default_workers`].
    pub workers: Option<usize>,
    /// Keep `X-Forwarded-Proto` and `X-Forwarded-Host` set by a reverse proxy
    /// in front instead of replacing them.
    pub trust_forwarded_headers: bool,
    /// Hosts clients may register.
    pub hosts: Vec<HostConfig>,
    /// HTTPS on `listen`, when `[tls]` is set.
    pub tls: Option<TlsSettings>,
    /// A plain HTTP listener that sends callers to HTTPS (with `[tls]` only).
    pub http_listen: Option<SocketAddr>,
    /// Who may call any tunnel (`[access]`), checked before each
    /// tunnel's own rules; `None`: anyone.
    pub access: Option<Arc<CallerRules>>,
    /// What callers and clients may ask of the server.
    pub limits: Limits,
    /// The admin listener, with `admin_listen`.
    pub admin: Option<AdminSettings>,
    /// `[cluster]`: this node's place among several sharing one host
    /// directory; `None`: the node runs alone.
    pub cluster: Option<ClusterSettings>,
    /// The file the configuration was read from (reloads read it again).
    pub source: std::path::PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    control_path: Option<String>,
    request_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    reconnect_grace_secs: Option<u64>,
    drain_timeout_secs: Option<u64>,
    workers: Option<usize>,
    trust_forwarded_headers: Option<bool>,
    #[serde(default)]
    hosts: Vec<hosts::RawHost>,
    tls: Option<tls::RawTls>,
    http_listen: Option<String>,
    access: Option<RawAccess>,
    limits: Option<limits::RawLimits>,
    admin_listen: Option<String>,
    admin_token: Option<Token>,
    admin_token_sha256: Option<String>,
    cluster: Option<cluster::RawCluster>,
}

/// `[access]` as written: the server-wide address rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    deny_ips: Vec<String>,
}

impl RawAccess {
    /// The rules, parsed once, here: what the registry and every request
    /// use.
    fn validate(raw: Option<Self>, path: &Path) -> Result<Option<Arc<CallerRules>>, ConfigError> {
        let access = raw.map_or_else(AccessRules::default, |a| AccessRules {
            basic_auth: None,
            allow_ips: a.allow_ips,
            deny_ips: a.deny_ips,
        });
        let invalid = |m| ConfigError::invalid(path, "access", m);
        access.validate().map_err(invalid)?;
        Ok(CallerRules::new(&access).map_err(invalid)?.map(Arc::new))
    }
}

impl ServerConfig {
    /// Reads and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_str(&burrow_common::config::read(path)?, path)
    }

    /// Parses and validates `text`; `path` only names the source in errors.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = burrow_common::config::parse(text, path)?;
        let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
        let listen = address(&raw.listen, "listen", path)?;
        let times = Timings::from_raw(&raw, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let tls = raw.tls.map(|t| t.load(path, dir)).transpose()?;
        let http_listen = match (raw.http_listen, &tls) {
            (Some(a), Some(_)) => Some(address(&a, "http_listen", path)?),
            (Some(_), None) => {
                return Err(invalid(
                    "http_listen",
                    "redirects to HTTPS, so it needs a [tls] table".into(),
                ))
            }
            (None, _) => None,
        };
        let control_path = raw
            .control_path
            .unwrap_or_else(|| DEFAULT_CONTROL_PATH.to_owned());
        if !control_path.starts_with('/') || control_path.len() < 2 {
            return Err(invalid(
                "control_path",
                "must be a path starting with `/`, like /_burrow/connect".into(),
            ));
        }
        if raw.workers == Some(0) {
            return Err(invalid("workers", "must be at least 1".into()));
        }
        let hosts = hosts::hosts(raw.hosts, path)?;
        let access = RawAccess::validate(raw.access, path)?;
        Ok(ServerConfig {
            listen,
            control_path,
            request_timeout: times.request,
            idle_timeout: times.idle,
            heartbeat: times.heartbeat,
            reconnect_grace: times.grace,
            drain_timeout: times.drain,
            workers: raw.workers,
            trust_forwarded_headers: raw.trust_forwarded_headers.unwrap_or(false),
            hosts,
            tls,
            http_listen,
            access,
            limits: raw.limits.unwrap_or_default().validate(path)?,
            admin: admin::admin(
                raw.admin_listen,
                raw.admin_token,
                raw.admin_token_sha256,
                path,
            )?,
            cluster: raw.cluster.map(|c| c.validate(path)).transpose()?,
            source: path.to_path_buf(),
        })
    }

    /// Applies a `PORT` environment value (as platforms that assign ports set
    /// it) to the listen address.
    pub fn apply_port_env(&mut self, port: Option<&str>) -> Result<(), String> {
        if let Some(port) = port {
            let port: u16 = port
                .trim()
                .parse()
                .map_err(|_| format!("PORT=`{port}` is not a port number"))?;
            self.listen.set_port(port);
        }
        Ok(())
    }
}

/// The configured times, checked.
struct Timings {
    request: Duration,
    idle: Duration,
    heartbeat: Duration,
    grace: Duration,
    drain: Duration,
}

impl Timings {
    fn from_raw(raw: &RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let at_least_1 = |key: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err(ConfigError::invalid(path, key, "must be at least 1")),
            v => Ok(Duration::from_secs(v.unwrap_or(default))),
        };
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
        Ok(Timings {
            request: at_least_1(
                "request_timeout_secs",
                raw.request_timeout_secs,
                DEFAULT_REQUEST_TIMEOUT_SECS,
            )?,
            idle: at_least_1(
                "idle_timeout_secs",
                raw.idle_timeout_secs,
                DEFAULT_IDLE_TIMEOUT_SECS,
            )?,
            heartbeat: at_least_1("heartbeat_secs", raw.heartbeat_secs, DEFAULT_HEARTBEAT_SECS)?,
            grace: secs(raw.reconnect_grace_secs, DEFAULT_RECONNECT_GRACE_SECS),
            drain: secs(raw.drain_timeout_secs, DEFAULT_DRAIN_TIMEOUT_SECS),
        })
    }
}

/// A socket address from the value of `key`.
fn address(text: &str, key: &str, path: &Path) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            key,
            format!("`{text}` is not an address like 127.0.0.1:8080"),
        )
    })
}

/// Worker threads when the configuration names none: one per core. A
/// session lives on one worker; clients open one connection per worker (the
/// handshake answer says how many), and each worker hands its requests to
/// the session it holds, so no request crosses threads.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_str(text, Path::new("server.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(
            "listen = \"127.0.0.1:8080\"\n[[hosts]]\nhost = \"Demo.Localhost\"\ntoken = \"t\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.control_path, DEFAULT_CONTROL_PATH);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.hosts[0].host, "demo.localhost");
        assert!(c.hosts[0].secret.matches(&Token::new("t")));
        assert!(!c.hosts[0].secret.matches(&Token::new("u")));
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/server.toml");
        let c = ServerConfig::from_file(&path).unwrap();
        assert!(!c.hosts.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("listen = 8080\n", vec!["server.toml", "line 1", "listen"]),
            (
                "listen = \"127.0.0.1:8080\"\nbogus = 1\n",
                vec!["line 2", "bogus"],
            ),
            ("listen = \"nope\"\n", vec!["`listen`", "nope"]),
            ("[[hosts]]\nhost = \"a\"\ntoken = \"t\"\n", vec!["listen"]),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a b\"\ntoken = \"t\"\n",
                vec!["hosts[0].host"],
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a\"\n",
                vec!["hosts[0].token", "token_sha256"],
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a\"\ntoken = \"\"\n",
                vec!["hosts[0].token"],
            ),
            (
                "listen = \"127.0.0.1:1\"\nrequest_timeout_secs = \"x\"\n",
                vec!["line 2", "request_timeout_secs"],
            ),
            (
                "listen = \"127.0.0.1:1\"\ncontrol_path = \"x\"\n",
                vec!["control_path"],
            ),
            ("listen = \"127.0.0.1:1\n", vec!["line 1"]),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a\"\ntoken_sha256 = \"ab\"\n",
                vec!["hosts[0].token_sha256", "64 hex digits"],
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a\"\ntoken = \"t\"\ntoken_sha256 = \"ab\"\n",
                vec!["hosts[0]", "not both"],
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"*.*.a\"\ntoken = \"t\"\n",
                vec!["hosts[0].host"],
            ),
        ];
        for (text, needles) in cases {
            let msg = parse(text).unwrap_err().to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
        }
    }

    #[test]
    fn port_env_overrides_listen_port() {
        let mut c = parse("listen = \"127.0.0.1:8080\"\n").unwrap();
        c.apply_port_env(Some("9000")).unwrap();
        assert_eq!(c.listen.port(), 9000);
        c.apply_port_env(None).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(c.apply_port_env(Some("http")).is_err());
    }
}
