//! The `[[hosts]]` tables: which host names clients may claim, and the
//! secret that claims each. A secret is the token itself or, so that a
//! leaked file leaks no credential, its SHA-256 (`token_sha256`).

use std::{collections::HashSet, fmt, path::Path};

use burrow_common::config::{normalize_host, ConfigError, Token};
use serde::Deserialize;

/// `[[hosts]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    host: String,
    token: Option<Token>,
    token_sha256: Option<String>,
    #[serde(default)]
    random: bool,
}

/// What a client must present to claim a host.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The token, as configured.
    Token(Token),
    /// The SHA-256 of the token.
    Sha256([u8; 32]),
}

impl Secret {
    /// Whether `presented` is the secret, in time independent of where
    /// it differs.
    pub fn matches(&self, presented: &Token) -> bool {
        match self {
            Secret::Token(token) => token.matches(presented.expose()),
            Secret::Sha256(hash) => {
                let got = sha256(presented.expose());
                hash.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Token(_) => f.write_str("Token(***)"),
            Secret::Sha256(_) => f.write_str("Sha256(***)"),
        }
    }
}

/// The SHA-256 of `token`.
pub fn sha256(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `token_sha256`'s form of `token`: 64 lower-case hex digits.
pub fn sha256_hex(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// One host the server may serve, and the secret that claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Public host name, lower case, no port; `*.example.com` claims any
    /// one label under `example.com`.
    pub host: String,
    /// What a client must present to serve `host`.
    pub secret: Secret,
    /// A client that asks for no host gets a random name under this
    /// wildcard entry's domain.
    pub random: bool,
}

impl HostConfig {
    /// For `*.example.com`, `example.com`: the domain whose single-label
    /// subdomains it claims.
    pub fn wildcard_domain(&self) -> Option<&str> {
        self.host.strip_prefix("*.")
    }
}

/// The one secret `token` or `token_sha256` names (the keys are `key` and
/// `key_sha256`), checked; `None` when neither is set.
pub(super) fn secret(
    token: Option<Token>,
    token_sha256: Option<String>,
    key: &str,
    path: &Path,
) -> Result<Option<Secret>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
    match (token, token_sha256) {
        (Some(t), None) if !t.is_empty() => {
            warn_if_short(&t, key, path);
            Ok(Some(Secret::Token(t)))
        }
        (Some(_), None) => Err(invalid(key, "must not be empty".into())),
        (None, Some(hex)) => parse_hex(&hex)
            .map(|h| Some(Secret::Sha256(h)))
            .ok_or_else(|| {
                invalid(
                    &format!("{key}_sha256"),
                    "must be 64 hex digits, as `burrow-server hash-token` prints".into(),
                )
            }),
        (Some(_), Some(_)) => {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let message = format!("set `{leaf}` or `{leaf}_sha256`, not both");
            Err(invalid(
                key.rsplit_once('.').map_or(key, |(t, _)| t),
                message,
            ))
        }
        (None, None) => Ok(None),
    }
}

/// Shortest token that is not warned about: 16 characters, as from
/// `openssl rand -hex 8`; 32 random hex digits are better.
pub const SHORT_TOKEN: usize = 16;

/// Warns about a token short enough to guess: the server takes it (a demo
/// on one machine needs no more), but says what a good one is.
fn warn_if_short(token: &Token, key: &str, path: &Path) {
    let len = token.expose().chars().count();
    if len < SHORT_TOKEN {
        log::warn!(
            "{}: `{key}` is {len} character(s) long, short enough to guess; use at least \
             {SHORT_TOKEN} random ones (`openssl rand -hex 16` prints 32)",
            path.display()
        );
    }
}

/// Validates the `[[hosts]]` tables: valid, distinct hosts, each with one
/// non-empty secret.
pub(super) fn hosts(raw: Vec<RawHost>, path: &Path) -> Result<Vec<HostConfig>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
    let mut seen = HashSet::new();
    let mut hosts = Vec::with_capacity(raw.len());
    for (i, h) in raw.into_iter().enumerate() {
        let key = format!("hosts[{i}].host");
        let (star, name) = match h.host.trim().strip_prefix("*.") {
            Some(domain) => ("*.", domain),
            None => ("", h.host.as_str()),
        };
        let host = normalize_host(name)
            .map(|n| format!("{star}{n}"))
            .ok_or_else(|| {
                invalid(
                    &key,
                    format!("`{}` is not a host name (or `*.` and one)", h.host),
                )
            })?;
        if !seen.insert(host.clone()) {
            return Err(invalid(&key, format!("host `{host}` is listed twice")));
        }
        let key = format!("hosts[{i}].token");
        let secret = secret(h.token, h.token_sha256, &key, path)?
            .ok_or_else(|| invalid(&key, "missing: set `token` or `token_sha256`".into()))?;
        if h.random && star.is_empty() {
            return Err(invalid(
                &format!("hosts[{i}].random"),
                "needs a wildcard host (`*.example.com`) to make names under".into(),
            ));
        }
        hosts.push(HostConfig {
            host,
            secret,
            random: h.random,
        });
    }
    Ok(hosts)
}
