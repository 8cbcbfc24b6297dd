//! The `[limits]` table: what one caller or one client may ask of the
//! server, each with a default that suits a server on the open internet.

use std::{path::Path, time::Duration};

use serde::Deserialize;

use super::ConfigError;

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_request_body_mb: Option<u64>,
    max_header_bytes: Option<usize>,
    max_streams_per_tunnel: Option<usize>,
    requests_per_second: Option<u32>,
    max_tunnels_per_token: Option<usize>,
    head_timeout_secs: Option<u64>,
}

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body forwarded (413 beyond it).
    pub max_request_body: u64,
    /// Largest request head, the fields' names and values together (431);
    /// `None`: the HTTP service's own limits (128 KiB or 96 fields, also
    /// 431), and no count on each request.
    pub max_header_bytes: Option<usize>,
    /// Requests one tunnel may have in flight at once, its long-lived
    /// streams included (503 with `Retry-After` beyond it).
    pub max_streams_per_tunnel: usize,
    /// Requests per second one tunnel is given, with bursts of twice that
    /// (429 with `Retry-After` beyond it); `None`: no such limit.
    pub requests_per_second: Option<u32>,
    /// Hosts one `[[hosts]]` entry's token may hold at once (a wildcard
    /// entry's subdomains).
    pub max_tunnels_per_token: usize,
    /// Longest a caller may take over its TLS handshake and over each
    /// request head (408, or the connection closed).
    pub head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 1024 * 1024 * 1024,
            max_header_bytes: None,
            max_streams_per_tunnel: 1000,
            requests_per_second: None,
            max_tunnels_per_token: 100,
            head_timeout: Duration::from_secs(5),
        }
    }
}

impl RawLimits {
    pub(super) fn validate(self, path: &Path) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let at_least_1 = |key: &str, v: Option<u64>| match v {
            Some(0) => Err(ConfigError::invalid(
                path,
                &format!("limits.{key}"),
                "must be at least 1",
            )),
            _ => Ok(()),
        };
        at_least_1("max_request_body_mb", self.max_request_body_mb)?;
        at_least_1("max_header_bytes", self.max_header_bytes.map(|v| v as u64))?;
        at_least_1(
            "max_streams_per_tunnel",
            self.max_streams_per_tunnel.map(|v| v as u64),
        )?;
        at_least_1(
            "max_tunnels_per_token",
            self.max_tunnels_per_token.map(|v| v as u64),
        )?;
        at_least_1("head_timeout_secs", self.head_timeout_secs)?;
        Ok(Limits {
            max_request_body: self
                .max_request_body_mb
                .map_or(d.max_request_body, |mb| mb.saturating_mul(1024 * 1024)),
            max_header_bytes: self.max_header_bytes,
            max_streams_per_tunnel: self
                .max_streams_per_tunnel
                .unwrap_or(d.max_streams_per_tunnel),
            requests_per_second: self.requests_per_second.filter(|r| *r > 0),
            max_tunnels_per_token: self
                .max_tunnels_per_token
                .unwrap_or(d.max_tunnels_per_token),
            head_timeout: self
                .head_timeout_secs
                .map_or(d.head_timeout, Duration::from_secs),
        })
    }
}
