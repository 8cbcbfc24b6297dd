//! `[cluster]`: several nodes behind one address, sharing one host
//! directory in Redis (docs/CLUSTER.md). Without the table a node runs
//! alone and no Redis code is on its path.

use std::{net::SocketAddr, path::Path, time::Duration};

use burrow_common::config::{ConfigError, Token};
use serde::Deserialize;

use super::address;

/// Default lease of a host in the directory, renewed a third of it apart.
pub const DEFAULT_LEASE_SECS: u64 = 10;

/// `[cluster]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    redis: String,
    node_id: Option<String>,
    internal_listen: String,
    internal_url: Option<String>,
    secret: Option<Token>,
    secret_sha256: Option<String>,
    lease_secs: Option<u64>,
}

/// A node's place in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis holding the host directory (`redis://host:port/db`).
    pub redis: String,
    /// This node's name in the directory (default: `internal_url`).
    pub node_id: String,
    /// Where this node takes requests forwarded by the others.
    pub internal_listen: SocketAddr,
    /// How the other nodes reach `internal_listen` (default: its address).
    pub internal_url: String,
    /// What node-to-node requests carry and are checked against.
    pub secret: Token,
    /// How long a host stays leased to its client once no node renews it.
    pub lease: Duration,
}

impl RawCluster {
    /// The checked settings.
    pub(super) fn validate(self, path: &Path) -> Result<ClusterSettings, ConfigError> {
        let invalid = |key: &str, m: &str| ConfigError::invalid(path, key, m.to_owned());
        if !self.redis.starts_with("redis://") && !self.redis.starts_with("unix://") {
            return Err(invalid(
                "cluster.redis",
                "must be a Redis URL such as redis://127.0.0.1:6379",
            ));
        }
        let internal_listen = address(&self.internal_listen, "cluster.internal_listen", path)?;
        let internal_url =
            match self.internal_url {
                Some(url) if url.starts_with("http://") => url.trim_end_matches('/').to_owned(),
                Some(_) => return Err(invalid(
                    "cluster.internal_url",
                    "must be an http:// URL the other nodes reach this node's internal_listen by",
                )),
                None if internal_listen.ip().is_unspecified() => {
                    return Err(invalid(
                        "cluster.internal_url",
                        "is needed when internal_listen is a wildcard address: \
                     say how the other nodes reach this one",
                    ))
                }
                None => format!("http://{internal_listen}"),
            };
        let secret = secret(self.secret, self.secret_sha256, path)?;
        let lease = Duration::from_secs(self.lease_secs.unwrap_or(DEFAULT_LEASE_SECS));
        if lease < Duration::from_secs(3) {
            return Err(invalid("cluster.lease_secs", "must be at least 3"));
        }
        let node_id = self.node_id.unwrap_or_else(|| internal_url.clone());
        if node_id.is_empty() || node_id.contains(char::is_whitespace) {
            return Err(invalid("cluster.node_id", "must be a name without spaces"));
        }
        Ok(ClusterSettings {
            redis: self.redis,
            node_id,
            internal_listen,
            internal_url,
            secret,
            lease,
        })
    }
}

/// The cluster's secret, checked. Every node both sends it and checks it,
/// so each must know the secret itself: a hash alone could check but not
/// send.
fn secret(
    secret: Option<Token>,
    sha256: Option<String>,
    path: &Path,
) -> Result<Token, ConfigError> {
    let invalid = |key: &str, m: &str| ConfigError::invalid(path, key, m.to_owned());
    match (secret, sha256) {
        (_, Some(_)) => Err(invalid(
            "cluster.secret_sha256",
            "cannot be used: every node sends the secret to the others, \
             so each needs `secret` itself",
        )),
        (None, None) => Err(invalid("cluster.secret", "is required")),
        (Some(secret), None) if secret.expose().len() < 16 => Err(invalid(
            "cluster.secret",
            "must be at least 16 characters (try `openssl rand -hex 32`)",
        )),
        (Some(secret), None) => Ok(secret),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ServerConfig;

    fn parse(cluster: &str) -> Result<ServerConfig, String> {
        let text = format!("listen = \"127.0.0.1:0\"\n[cluster]\n{cluster}");
        ServerConfig::from_str(&text, std::path::Path::new("s.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = "redis = \"redis://127.0.0.1:6379\"\n\
                        internal_listen = \"127.0.0.1:7000\"\n\
                        secret = \"0123456789abcdef0123\"\n";

    #[test]
    fn a_cluster_table_is_read_with_its_defaults() {
        let config = parse(GOOD).expect("valid");
        let cluster = config.cluster.expect("a cluster");
        assert_eq!(cluster.internal_url, "http://127.0.0.1:7000");
        assert_eq!(cluster.node_id, "http://127.0.0.1:7000");
        assert_eq!(cluster.lease.as_secs(), super::DEFAULT_LEASE_SECS);
        assert!(parse("").is_err(), "redis is required");
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            (GOOD.replace("redis://", "http://"), "Redis URL"),
            (
                GOOD.replace("secret = \"0123456789abcdef0123\"", ""),
                "is required",
            ),
            (GOOD.replace("0123456789abcdef0123", "short"), "at least 16"),
            (
                GOOD.replace("secret = ", "secret_sha256 = "),
                "every node sends the secret",
            ),
            (GOOD.replace("127.0.0.1:7000", "0.0.0.0:7000"), "wildcard"),
            (format!("{GOOD}internal_url = \"ftp://x\"\n"), "http://"),
            (format!("{GOOD}lease_secs = 1\n"), "at least 3"),
            (format!("{GOOD}node_id = \"a b\"\n"), "without spaces"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(needle), "{e} lacks {needle:?}");
        }
    }
}
