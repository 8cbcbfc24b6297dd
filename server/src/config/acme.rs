//! The `[tls.acme]` table: certificates obtained from an ACME certificate
//! authority for the configured hosts. Setting it agrees to that
//! authority's terms of service, as a client must when it opens an account.

use std::path::{Path, PathBuf};

use rustls_pki_types::{pem::PemObject, CertificateDer};
use serde::Deserialize;

use super::ConfigError;

/// `[tls.acme]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    directory: String,
    email: String,
    cache: PathBuf,
    ca: Option<PathBuf>,
}

/// Where certificates come from, and where they are kept between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The ACME directory URL (`https://...`).
    pub directory: String,
    /// The account's contact address, without `mailto:`.
    pub email: String,
    /// The directory that keeps the account key and the certificates.
    pub cache: PathBuf,
    /// A PEM file whose first certificate is the root the ACME server's
    /// own HTTPS is checked against, instead of the platform's roots (for
    /// a private or test authority).
    pub ca: Option<PathBuf>,
}

impl RawAcme {
    /// Checks every value; relative paths are taken against `dir`.
    pub(super) fn load(self, path: &Path, dir: &Path) -> Result<AcmeSettings, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
        let rest = self.directory.strip_prefix("https://").unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || self.directory.contains(char::is_whitespace)
        {
            return Err(invalid(
                "tls.acme.directory",
                format!(
                    "`{}` is not an https:// URL like \
                     https://acme-v02.api.letsencrypt.org/directory",
                    self.directory
                ),
            ));
        }
        let email = self.email.trim();
        let plausible = email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && !domain.is_empty() && !email.contains([' ', ',', '<', '>'])
        });
        if !plausible {
            return Err(invalid(
                "tls.acme.email",
                format!("`{}` is not an address like ops@example.com", self.email),
            ));
        }
        if self.cache.as_os_str().is_empty() {
            return Err(invalid("tls.acme.cache", "must name a directory".into()));
        }
        let ca = self.ca.map(|ca| dir.join(ca));
        if let Some(ca) = &ca {
            // instant-acme reads this file again when it connects: reading
            // it here names a wrong path at start, not at the first order.
            CertificateDer::from_pem_file(ca).map_err(|e| {
                invalid(
                    "tls.acme.ca",
                    format!("cannot read a certificate from {}: {e}", ca.display()),
                )
            })?;
        }
        Ok(AcmeSettings {
            directory: self.directory,
            email: email.to_owned(),
            cache: dir.join(self.cache),
            ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::ServerConfig;

    fn parse(acme: &str) -> Result<ServerConfig, String> {
        let text = format!("listen = \"127.0.0.1:0\"\n[tls.acme]\n{acme}");
        ServerConfig::from_str(&text, Path::new("/etc/burrow/server.toml"))
            .map_err(|e| e.to_string())
    }

    const GOOD: &str = "directory = \"https://ca.test/dir\"\nemail = \"ops@burrow.test\"\n";

    #[test]
    fn acme_alone_makes_tls_and_paths_follow_the_file() {
        let c = parse(&format!("{GOOD}cache = \"acme\"\n")).unwrap();
        let tls = c.tls.expect("[tls]");
        assert!(tls.certificates.is_empty());
        let acme = tls.acme.expect("[tls.acme]");
        assert_eq!(acme.directory, "https://ca.test/dir");
        assert_eq!(acme.email, "ops@burrow.test");
        assert_eq!(acme.cache, Path::new("/etc/burrow/acme"));
        assert_eq!(acme.ca, None);
    }

    #[test]
    fn acme_errors_name_the_key() {
        let cases = [
            (
                "directory = \"http://ca.test/dir\"\nemail = \"a@b\"\ncache = \"c\"\n",
                "tls.acme.directory",
            ),
            (
                "directory = \"https://ca.test/dir\"\nemail = \"ops\"\ncache = \"c\"\n",
                "tls.acme.email",
            ),
            (&format!("{GOOD}cache = \"\"\n"), "tls.acme.cache"),
            (
                &format!("{GOOD}cache = \"c\"\nca = \"/nonexistent/ca.pem\"\n"),
                "tls.acme.ca",
            ),
            (GOOD, "cache"),
            (&format!("{GOOD}cache = \"c\"\nbogus = 1\n"), "bogus"),
        ];
        for (text, key) in cases {
            let message = parse(text).expect_err(text);
            assert!(message.contains(key), "{message:?} should name {key:?}");
        }
    }
}
