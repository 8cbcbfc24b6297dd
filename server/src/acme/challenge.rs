//! Answers to ACME's challenges, put where the validator will look: an
//! HTTP-01 token on `http_listen`, a TLS-ALPN-01 certificate on the HTTPS
//! listeners. Each answer is withdrawn when its order is done, whichever
//! way it ends, by dropping the [`Answer`].

use std::sync::Arc;

use instant_acme::{ChallengeType, KeyAuthorization};
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::AcmeError;
use crate::{config::provider, redirect::Http01Answers, tls::LiveCertificates};

/// Where answers go.
#[derive(Debug, Clone)]
pub struct Responders {
    /// The plain listener's answers, when there is one.
    pub http: Option<Arc<Http01Answers>>,
    /// Every HTTPS listener's live certificates.
    pub tls: Vec<Arc<LiveCertificates>>,
}

impl Responders {
    /// The challenge types this server answers, the one it prefers first:
    /// HTTP-01 where a plain listener exists (it works behind anything
    /// that passes port 80 on), TLS-ALPN-01 otherwise.
    pub fn preference(&self) -> [ChallengeType; 2] {
        match self.http {
            Some(_) => [ChallengeType::Http01, ChallengeType::TlsAlpn01],
            None => [ChallengeType::TlsAlpn01, ChallengeType::Http01],
        }
    }

    /// Puts up the answer to a challenge of `kind` for `host`.
    pub fn answer(
        &self,
        kind: &ChallengeType,
        host: &str,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<Answer, AcmeError> {
        match kind {
            ChallengeType::Http01 => {
                let http = self.http.clone().ok_or(AcmeError::NoChallenge)?;
                http.insert(token, key_authorization.as_str());
                Ok(Answer::Http {
                    answers: http,
                    token: token.to_owned(),
                })
            }
            ChallengeType::TlsAlpn01 => {
                let cert = alpn_certificate(host, key_authorization)?;
                for live in &self.tls {
                    live.set_challenge(host, cert.clone());
                }
                Ok(Answer::Tls {
                    lives: self.tls.clone(),
                    host: host.to_owned(),
                })
            }
            _ => Err(AcmeError::NoChallenge),
        }
    }
}

/// An answer that is up until it is dropped.
#[derive(Debug)]
pub enum Answer {
    /// An HTTP-01 token.
    Http {
        /// Where it is answered.
        answers: Arc<Http01Answers>,
        /// The token.
        token: String,
    },
    /// A TLS-ALPN-01 certificate.
    Tls {
        /// Where it is presented.
        lives: Vec<Arc<LiveCertificates>>,
        /// The host it is presented for.
        host: String,
    },
}

impl Drop for Answer {
    fn drop(&mut self) {
        match self {
            Answer::Http { answers, token } => answers.remove(token),
            Answer::Tls { lives, host } => lives.iter().for_each(|l| l.remove_challenge(host)),
        }
    }
}

/// The self-signed certificate TLS-ALPN-01 asks for (RFC 8737, 3): the
/// host as its one name, and the digest of the key authorization in a
/// critical acmeIdentifier extension.
fn alpn_certificate(
    host: &str,
    key_authorization: &KeyAuthorization,
) -> Result<Arc<CertifiedKey>, AcmeError> {
    let mut params = CertificateParams::new(vec![host.to_owned()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(
        key_authorization.digest().as_ref(),
    )];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `from_der`: its check that key and certificate match parses the
    // certificate with webpki, which refuses the critical extension that
    // this certificate exists for.
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| AcmeError::Certificate(format!("challenge key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}
