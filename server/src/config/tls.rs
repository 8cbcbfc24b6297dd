//! The `[tls]` table: the certificates the public listener presents.
//! Certificate and key files are read and checked when the configuration
//! is, so a wrong path or a key that does not belong to its certificate
//! stops the server at start (or a reload) with the file named.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::{
    acme::{AcmeSettings, RawAcme},
    ConfigError,
};

/// `[tls]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    certificates: Vec<RawPair>,
    server_name: Option<String>,
    acme: Option<RawAcme>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    cert: PathBuf,
    key: PathBuf,
}

/// HTTPS on the public listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificates, in the order configured: a caller's server name
    /// (SNI) picks the first that is valid for it, and a caller that names
    /// none (or one that no certificate covers) gets the first. Empty
    /// only with `acme`.
    pub certificates: Vec<Arc<CertifiedKey>>,
    /// Certificates obtained over ACME for the configured hosts, which
    /// take precedence over `certificates` for their hosts.
    pub acme: Option<AcmeSettings>,
    /// The server's own name, the one clients dial (`wss://NAME/...`):
    /// ACME keeps a certificate for it as for an exact `[[hosts]]` entry.
    pub server_name: Option<String>,
}

/// Two settings are the same when they serve the same certificate chains
/// in the same order and ask ACME for the same: what a restart would
/// change.
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        let chains = |t: &TlsSettings| {
            t.certificates
                .iter()
                .map(|c| c.cert.clone())
                .collect::<Vec<_>>()
        };
        self.acme == other.acme
            && self.server_name == other.server_name
            && chains(self) == chains(other)
    }
}

/// The one crypto provider both ends use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl RawTls {
    /// Reads every certificate and key; `dir` is the configuration file's
    /// directory, against which relative paths are taken.
    pub(super) fn load(self, path: &Path, dir: &Path) -> Result<TlsSettings, ConfigError> {
        let mut pairs = Vec::new();
        match (self.cert, self.key) {
            (Some(cert), Some(key)) => pairs.push(("tls".to_owned(), RawPair { cert, key })),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    path,
                    "tls.key",
                    "missing: `cert` needs its `key`",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    path,
                    "tls.cert",
                    "missing: `key` needs its `cert`",
                ))
            }
        }
        for (i, pair) in self.certificates.into_iter().enumerate() {
            pairs.push((format!("tls.certificates[{i}]"), pair));
        }
        let acme = self.acme.map(|a| a.load(path, dir)).transpose()?;
        let server_name = self
            .server_name
            .map(|name| server_name(&name, acme.is_some()))
            .transpose()
            .map_err(|e| ConfigError::invalid(path, "tls.server_name", e))?;
        if pairs.is_empty() && acme.is_none() {
            return Err(ConfigError::invalid(
                path,
                "tls",
                "names no certificate: set `cert` and `key` (PEM files), or [tls.acme]",
            ));
        }
        let provider = provider();
        let certificates = pairs
            .into_iter()
            .map(|(key, pair)| {
                load_pair(&pair, dir, &provider).map_err(|e| ConfigError::invalid(path, &key, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(TlsSettings {
            certificates,
            acme,
            server_name,
        })
    }
}

/// `tls.server_name`, checked: a host name (not a wildcard), for ACME.
fn server_name(name: &str, acme: bool) -> Result<String, String> {
    if !acme {
        return Err(
            "asks ACME for the server's own certificate: set [tls.acme] too \
             (with `cert` and `key`, name it in that certificate instead)"
                .into(),
        );
    }
    burrow_common::config::normalize_host(name)
        .filter(|n| !n.starts_with('*'))
        .ok_or_else(|| format!("`{name}` is not a host name like tunnel.example.com"))
}

/// One certificate chain and its private key, checked to belong together.
fn load_pair(
    pair: &RawPair,
    dir: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let cert_path = dir.join(&pair.cert);
    let key_path = dir.join(&pair.key);
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key_path.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "{} and {} do not make a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(certified))
}
