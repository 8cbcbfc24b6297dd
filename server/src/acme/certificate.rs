//! An issued certificate as the server keeps it: the chain and key in one
//! PEM text (the cache's file format), ready for rustls, with the validity
//! period that decides when it is renewed.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::{client::verify_server_name, server::ParsedCertificate, sign::CertifiedKey};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use yasna::{tags, ASN1Error, ASN1ErrorKind, BERReader};

use super::AcmeError;
use crate::config::provider;

/// Renewal starts when less than this part of the lifetime is left (a
/// third: 30 days of Let's Encrypt's 90, as its own clients do).
const RENEW_WHEN_LEFT: u32 = 3;

/// A certificate chain and its key, checked to belong together and to
/// cover their host.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chain and key, as rustls presents them.
    pub key: Arc<CertifiedKey>,
    /// The PEM text it was read from (chain, then key).
    pub pem: String,
    /// The start of the leaf's validity.
    pub not_before: SystemTime,
    /// The end of the leaf's validity.
    pub not_after: SystemTime,
}

impl Issued {
    /// Reads the chain and the key from `pem` and checks that they are a
    /// certificate for `host`.
    pub fn from_pem(pem: String, host: &str) -> Result<Issued, AcmeError> {
        let bad = |what: String| AcmeError::Certificate(what);
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("cannot read the certificates: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad("no certificate in the PEM text".into()))?;
        let (not_before, not_after) =
            validity(leaf).map_err(|e| bad(format!("cannot read the validity period: {e}")))?;
        let name = ServerName::try_from(host).map_err(|e| bad(e.to_string()))?;
        let parsed = ParsedCertificate::try_from(leaf).map_err(|e| bad(e.to_string()))?;
        verify_server_name(&parsed, &name).map_err(|_| bad(format!("not valid for {host}")))?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| bad(format!("cannot read the private key: {e}")))?;
        let key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| bad(format!("the key does not belong to it: {e}")))?;
        Ok(Issued {
            key: Arc::new(key),
            pem,
            not_before,
            not_after,
        })
    }

    /// When it is due for renewal: once less than a third of its lifetime
    /// is left.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_after - lifetime / RENEW_WHEN_LEFT
    }

    /// Whether a caller would still accept it at `now`.
    pub fn is_current(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The validity period (RFC 5280, 4.1.2.5) of the DER certificate `der`.
fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), ASN1Error> {
    yasna::parse_der(der, |cert| {
        cert.read_sequence(|cert| {
            let validity = cert.next().read_sequence(|tbs| {
                // version [0] EXPLICIT, absent in version 1 certificates.
                tbs.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_der()))?;
                for _serial_signature_issuer in 0..3 {
                    tbs.next().read_der()?;
                }
                let validity = tbs
                    .next()
                    .read_sequence(|v| Ok((time(v.next())?, time(v.next())?)))?;
                // subject, key, and the optional identifiers and extensions.
                while tbs.read_optional(|r| r.read_der())?.is_some() {}
                Ok(validity)
            })?;
            cert.next().read_der()?;
            cert.next().read_der()?;
            Ok(validity)
        })
    })
}

/// A `Time`: UTCTime until 2049, GeneralizedTime after.
fn time(reader: BERReader<'_, '_>) -> Result<SystemTime, ASN1Error> {
    let tag = reader.lookahead_tag()?;
    let datetime = if tag == tags::TAG_UTCTIME {
        *reader.read_utctime()?.datetime()
    } else if tag == tags::TAG_GENERALIZEDTIME {
        *reader.read_generalized_time()?.datetime()
    } else {
        return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
    };
    let secs = u64::try_from(datetime.unix_timestamp())
        .map_err(|_| ASN1Error::new(ASN1ErrorKind::Invalid))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_for(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_utc_and_generalized_times_and_renews_with_a_third_left() {
        // 2040 is written as UTCTime, 2060 as GeneralizedTime.
        let pem = pem_for(&["a.test"], (2040, 1, 1), (2060, 1, 1));
        let issued = Issued::from_pem(pem, "a.test").unwrap();
        assert_eq!(issued.not_before, at(2_208_988_800));
        assert_eq!(issued.not_after, at(2_840_140_800));
        let lifetime = 2_840_140_800 - 2_208_988_800;
        assert_eq!(issued.renew_at(), at(2_840_140_800 - lifetime / 3));
        assert!(!issued.is_current(at(2_208_988_799)));
        assert!(issued.is_current(at(2_208_988_800)));
        assert!(!issued.is_current(at(2_840_140_800)));
    }

    #[test]
    fn refuses_a_certificate_for_another_host_or_without_its_key() {
        let pem = pem_for(&["a.test"], (2020, 1, 1), (2060, 1, 1));
        let message = Issued::from_pem(pem.clone(), "b.test")
            .unwrap_err()
            .to_string();
        assert!(message.contains("not valid for b.test"), "{message}");
        let cert_only = pem.split("-----BEGIN PRIVATE KEY").next().unwrap();
        let message = Issued::from_pem(cert_only.to_owned(), "a.test")
            .unwrap_err()
            .to_string();
        assert!(message.contains("private key"), "{message}");
        let message = Issued::from_pem("junk".into(), "a.test")
            .unwrap_err()
            .to_string();
        assert!(message.contains("no certificate"), "{message}");
    }
}
