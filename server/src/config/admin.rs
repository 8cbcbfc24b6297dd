//! `admin_listen` and its token: where the admin listener (metrics, health,
//! the admin API) answers, and what the API asks of its callers.

use std::{net::SocketAddr, path::Path};

use burrow_common::config::{ConfigError, Token};

use super::{address, hosts::secret, Secret};

/// The admin listener's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Where it listens (a loopback or private address: `/metrics` and
    /// `/healthz` ask for no credentials).
    pub listen: SocketAddr,
    /// The token `/api/` callers present as `Authorization: Bearer`; `None`
    /// turns the API off (metrics and health still answer).
    pub token: Option<Secret>,
}

/// The settings from the keys as written; `None` without `admin_listen`.
pub(super) fn admin(
    listen: Option<String>,
    token: Option<Token>,
    token_sha256: Option<String>,
    path: &Path,
) -> Result<Option<AdminSettings>, ConfigError> {
    let token = secret(token, token_sha256, "admin_token", path)?;
    let Some(listen) = listen else {
        if token.is_some() {
            return Err(ConfigError::invalid(
                path,
                "admin_token",
                "is for the admin API, which needs `admin_listen`",
            ));
        }
        return Ok(None);
    };
    let listen = address(&listen, "admin_listen", path)?;
    Ok(Some(AdminSettings { listen, token }))
}
