//! TLS to the server (`wss://`): which certificates the client trusts, and
//! how a certificate the client does not trust is told apart from a
//! connection that merely failed.

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{pem::PemObject, CertificateDer};

/// The TLS settings for the server's connections: the roots in the PEM
/// file `ca` when it is given (a private CA), else the platform's.
pub fn server_tls(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::debug!("platform certificates: {e}");
            }
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("this system has no trusted root certificates; \
                            name the server's CA with `ca = \"ca.pem\"`"
                    .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The control connection is a WebSocket: HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate problem behind a failed connection, if that is what
/// it was: retrying will not help, so it is said once and the client stops.
pub fn certificate_problem(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    use rustls::CertificateError as C;
    let why = match inner {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "it is signed by a certificate authority this client does not trust \
             (for a private CA, name it with `ca = \"ca.pem\"`)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "it is not valid for this host name".to_owned(),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "it has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(other) => format!("{other:?}"),
        rustls::Error::NoCertificatesPresented => "the server sent none".to_owned(),
        _ => return None,
    };
    Some(why)
}

/// Whether a failed TLS connection met a server that answered in plain
/// text: a `wss://` URL for a server that speaks plain HTTP on that port.
pub fn plain_server(e: &std::io::Error) -> bool {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    matches!(
        inner,
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}
