//! HTTPS on the public listener: which certificate a caller is shown, and
//! the TLS handshake before a caller's connection reaches the HTTP service.

use std::{io, sync::Arc, time::Duration};

use actix_rt::net::TcpStream;
use rustls::{
    server::{ClientHello, ParsedCertificate, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use rustls_pki_types::ServerName;
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use crate::{
    caller_io::Wire,
    config::{provider, TlsSettings},
};

/// The certificates the listener presents, picked by the name the caller
/// asks for (SNI).
#[derive(Debug)]
pub struct Certificates {
    configured: Vec<Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificates of `[tls]`, in their configured order.
    pub fn new(settings: &TlsSettings) -> Self {
        Certificates {
            configured: settings.certificates.clone(),
        }
    }

    /// The first certificate valid for `name`.
    fn for_name(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.configured.iter().find(|c| {
            c.end_entity_cert()
                .ok()
                .and_then(|der| ParsedCertificate::try_from(der).ok())
                .is_some_and(|parsed| rustls::client::verify_server_name(&parsed, &name).is_ok())
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A caller that names no server (one that dials an address), or one
        // no certificate covers, gets the first: its client then says the
        // name does not match, which tells more than a failed handshake.
        let named = hello.server_name().and_then(|n| self.for_name(n));
        named.or_else(|| self.configured.first()).cloned()
    }
}

/// The TLS acceptor for `settings`: HTTP/1.1 only, as the public service
/// speaks it (a browser that offers HTTP/2 settles on HTTP/1.1).
pub fn acceptor(settings: &TlsSettings) -> io::Result<TlsAcceptor> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certificates::new(settings)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The wire of an accepted connection: TLS over it when `acceptor` is
/// given, its handshake done.
pub async fn wire(
    acceptor: Option<&TlsAcceptor>,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<Wire> {
    let Some(acceptor) = acceptor else {
        return Ok(Wire::Plain(tcp));
    };
    // The handshake's own flights leave at once too.
    let _ = tcp.set_nodelay(true);
    let tls = accept(acceptor, tcp, limit).await.inspect_err(|e| {
        log::debug!("TLS handshake failed: {e}");
    })?;
    Ok(Wire::Tls(Box::new(tls)))
}

/// Completes the TLS handshake of an accepted connection within `limit`
/// (the head timeout: a caller gets as long for it as for a request head).
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(accepted) => accepted,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not finished in time",
        )),
    }
}
