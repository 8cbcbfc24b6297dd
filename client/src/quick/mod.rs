//! Quick mode, `burrow http TARGET`: one local service on a public host
//! with no configuration file. The server and token come from the first
//! place that has them: the command line, the environment
//! (`BURROW_SERVER`, `BURROW_TOKEN`), the login saved by `burrow login`
//! ([`crate::login`]), then the configuration file.

use std::path::{Path, PathBuf};

use burrow_common::{config::ConfigError, protocol::DEFAULT_CONTROL_PATH, Token};
use thiserror::Error;

use crate::config::{ClientConfig, RawConfig, RawTunnel};

/// A server, a token and the CA to trust the server by, each if known:
/// what one place (flags, environment, login, file) says; and a file's
/// inspector settings.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The server's URL, as given.
    pub server: Option<String>,
    /// The token.
    pub token: Option<Token>,
    /// A CA file for a `wss://` server, kept with the server it came with.
    pub ca: Option<PathBuf>,
    /// The inspector's settings (a configuration file's).
    pub inspect: Option<crate::config::inspect::Settings>,
}

impl Known {
    /// What the environment says: `BURROW_SERVER`, `BURROW_TOKEN`.
    pub fn from_env() -> Known {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Known {
            server: var("BURROW_SERVER"),
            token: var("BURROW_TOKEN").map(Token::new),
            ..Known::default()
        }
    }

    /// What a client configuration file says: its server, its CA and its
    /// first tunnel's token.
    pub fn from_file(path: &Path) -> Result<Known, ConfigError> {
        let text = burrow_common::config::read(path)?;
        let raw: RawConfig = burrow_common::config::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let inspect = crate::config::inspect::Settings::of(&raw)
            .map_err(|m| ConfigError::invalid(path, "inspect", m))?;
        Ok(Known {
            inspect: Some(inspect),
            server: Some(raw.server.first()),
            token: raw.tunnels.into_iter().next().map(|t| t.token),
            ca: raw.ca.map(|ca| dir.join(ca)),
        })
    }
}

/// Why quick mode cannot start.
#[derive(Debug, Error)]
pub enum QuickError {
    /// No place named a server.
    #[error(
        "no server given: pass --server URL, set BURROW_SERVER, or save one with \
         `burrow login --server URL --token TOKEN`"
    )]
    NoServer,
    /// No place named a token.
    #[error(
        "no token given for {0}: pass --token TOKEN, set BURROW_TOKEN, or save one with \
         `burrow login --server URL --token TOKEN`"
    )]
    NoToken(String),
    /// The target is not a port, `host:port` or URL.
    #[error("`{0}` is not a local service: give a port (3000), host:port (192.168.1.5:8080) or a URL (https://localhost:8443)")]
    Target(String),
    /// The server is not a URL.
    #[error("--server: {0}")]
    Server(String),
    /// The configuration built does not hold (a host name, say).
    #[error("{0}")]
    Config(String),
}

/// The local service's URL: `3000` is `http://localhost:3000`,
/// `host:port` is `http://host:port`, a URL is taken as it is.
pub fn target_url(target: &str) -> Result<String, QuickError> {
    let bad = || QuickError::Target(target.to_owned());
    if target.contains("://") {
        return Ok(target.to_owned());
    }
    if let Ok(port) = target.parse::<u16>() {
        return match port {
            0 => Err(bad()),
            port => Ok(format!("http://localhost:{port}")),
        };
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(format!("http://{target}"))
        }
        _ => Err(bad()),
    }
}

/// The server's control URL: a scheme is added when missing (`ws://` for
/// a loopback address, `wss://` otherwise) and the default control path
/// when the URL has no path.
pub fn server_url(server: &str) -> Result<String, QuickError> {
    let with_scheme = match server.split_once("://") {
        Some(_) => server.to_owned(),
        None if is_loopback(host_part(server)) => {
            format!("ws://{server}")
        }
        None => format!("wss://{server}"),
    };
    let (scheme, rest) = with_scheme.split_once("://").unwrap_or(("", &with_scheme));
    if !matches!(scheme, "ws" | "wss" | "http" | "https") {
        return Err(QuickError::Server(format!(
            "`{server}` must be a ws://, wss://, http:// or https:// URL, or a host name"
        )));
    }
    Ok(match rest.find('/') {
        Some(i) if rest[i..] != *"/" => with_scheme,
        Some(_) => format!(
            "{}{}",
            with_scheme.trim_end_matches('/'),
            DEFAULT_CONTROL_PATH
        ),
        None => format!("{with_scheme}{DEFAULT_CONTROL_PATH}"),
    })
}

/// The host of `host[:port][/path]`, an IPv6 address with its brackets.
fn host_part(text: &str) -> &str {
    match text.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(text, |end| &text[..end + 2]),
        None => text.split(['/', ':']).next().unwrap_or_default(),
    }
}

/// `localhost`, a name under it, or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The configuration of `burrow http TARGET`: one tunnel per host asked
/// for (a random name when none is), each to `target`, with the server,
/// token and CA from the first of `places` that has them.
pub fn config(
    target: &str,
    hosts: &[String],
    places: &[Known],
) -> Result<ClientConfig, QuickError> {
    let local = target_url(target)?;
    let place = places
        .iter()
        .find(|k| k.server.is_some())
        .ok_or(QuickError::NoServer)?;
    let server = server_url(place.server.as_deref().unwrap_or_default())?;
    let token = places
        .iter()
        .find_map(|k| k.token.clone())
        .ok_or_else(|| QuickError::NoToken(server.clone()))?;
    // A self-signed certificate is what a service on this machine has.
    let trusting = local.starts_with("https://") && local_is_loopback(&local);
    let tunnel = |host: Option<String>| {
        let t = RawTunnel::new(host, token.clone(), local.clone());
        match trusting {
            true => t.trusting_local_tls(),
            false => t,
        }
    };
    let tunnels = match hosts {
        [] => vec![tunnel(None)],
        hosts => hosts.iter().map(|h| tunnel(Some(h.clone()))).collect(),
    };
    let raw = RawConfig {
        server: crate::config::servers::RawServers::One(server),
        ca: place.ca.clone(),
        tunnels,
        ..RawConfig::default()
    };
    let mut config = ClientConfig::from_raw(raw, Path::new("the command line")).map_err(|e| {
        QuickError::Config(match e {
            ConfigError::Invalid { key, message, .. } => format!("{}: {message}", flag_of(&key)),
            e => e.to_string(),
        })
    })?;
    if let Some(inspect) = places.iter().find_map(|k| k.inspect) {
        config.inspect = inspect;
    }
    Ok(config)
}

/// The command-line flag behind a configuration key quick mode sets.
fn flag_of(key: &str) -> &'static str {
    match key {
        k if k.ends_with(".host") => "--host",
        k if k.ends_with(".token") => "--token",
        k if k.ends_with(".local") => "the local service",
        "ca" => "the CA file",
        _ => "--server",
    }
}

fn local_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    is_loopback(host_part(rest))
}

#[cfg(test)]
mod tests;
