//! HTTPS on the public listener: which certificate a caller is shown, and
//! the TLS handshake before a caller's connection reaches the HTTP service.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

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
    config::{canonical_host, provider, TlsSettings},
};

/// The ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates that change while the server runs, by exact host name:
/// those ACME obtains (and replaces when it renews them), and the
/// TLS-ALPN-01 challenge certificates it shows its authority meanwhile.
/// A handshake reads them under a lock held for one map lookup, so a
/// replacement reaches the next handshake and leaves open connections be.
#[derive(Debug, Default)]
pub struct LiveCertificates {
    issued: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl LiveCertificates {
    /// Presents `cert` for `host` from the next handshake on.
    pub fn set_issued(&self, host: &str, cert: Arc<CertifiedKey>) {
        write(&self.issued).insert(host.to_owned(), cert);
    }

    /// The certificate presented for `host`, if one was set.
    pub fn issued(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.issued).get(host).cloned()
    }

    /// Answers TLS-ALPN-01 validation of `host` with `cert`.
    pub fn set_challenge(&self, host: &str, cert: Arc<CertifiedKey>) {
        write(&self.challenges).insert(host.to_owned(), cert);
    }

    /// Stops answering TLS-ALPN-01 validation of `host`.
    pub fn remove_challenge(&self, host: &str) {
        write(&self.challenges).remove(host);
    }

    fn challenge(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.challenges).get(host).cloned()
    }
}

// No code panics while holding these locks, and a map left by one would
// still be whole: a poisoned lock is used as it is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The certificates the listener presents, picked by the name the caller
/// asks for (SNI).
#[derive(Debug)]
pub struct Certificates {
    configured: Vec<Arc<CertifiedKey>>,
    live: Arc<LiveCertificates>,
}

impl Certificates {
    /// The certificates of `[tls]`, in their configured order, after those
    /// of `live`.
    pub fn new(settings: &TlsSettings, live: Arc<LiveCertificates>) -> Self {
        Certificates {
            configured: settings.certificates.clone(),
            live,
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
        let name = hello.server_name().and_then(canonical_host);
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // Under this protocol a certificate proves control of the name:
            // the challenge certificate or none, never a real one.
            return name.and_then(|n| self.live.challenge(&n));
        }
        if let Some(issued) = name.as_deref().and_then(|n| self.live.issued(n)) {
            return Some(issued);
        }
        // A caller that names no server (one that dials an address), or one
        // no certificate covers, gets the first: its client then says the
        // name does not match, which tells more than a failed handshake.
        let named = name.and_then(|n| self.for_name(&n));
        named.or_else(|| self.configured.first()).cloned()
    }
}

/// The TLS acceptor for `settings`, presenting `live` before the configured
/// certificates: HTTP/1.1 only, as the public service speaks it (a browser
/// that offers HTTP/2 settles on HTTP/1.1), and ACME's validation protocol
/// when `[tls.acme]` is set.
pub fn acceptor(settings: &TlsSettings, live: Arc<LiveCertificates>) -> io::Result<TlsAcceptor> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certificates::new(settings, live)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if settings.acme.is_some() {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The wire of an accepted connection: TLS over it when `acceptor` is
/// given, its handshake done.
pub async fn wire(
    acceptor: Option<&TlsAcceptor>,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<Wire> {
    // Answers (and a handshake's own flights) leave at once, not after the
    // caller's next ACK.
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        return Ok(Wire::Plain(tcp));
    };
    let started = tokio::time::Instant::now();
    let mut tcp = tcp;
    if let Ok(true) = tokio::time::timeout(limit, refuse_plain_http(&mut tcp)).await {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "plain HTTP on the HTTPS listener (answered 400)",
        ));
    }
    let limit = limit.saturating_sub(started.elapsed());
    // Boxed: the handshake's state is large, and held inline it would
    // grow every connection's task, plain ones too, for as long as the
    // connection lives (2.3 KiB per idle tunnel in the bench).
    let tls = Box::pin(accept(acceptor, tcp, limit))
        .await
        .inspect_err(|e| {
            log::debug!("TLS handshake failed: {e}");
        })?;
    Ok(Wire::Tls(Box::new(tls)))
}

/// What plain HTTP sent to the HTTPS listener is answered with, rather
/// than a TLS alert that curl or a client prints as garbage (nginx answers
/// the same way).
const PLAIN_ON_HTTPS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 69\r\nConnection: close\r\n\r\n\
    This port speaks HTTPS: use https:// (or wss:// for a burrow client)\n";

/// Answers a connection whose first byte starts a plain HTTP request
/// (a method's capital letter; a TLS hello starts with 0x16) with
/// [`PLAIN_ON_HTTPS`]; `true` when it did.
async fn refuse_plain_http(tcp: &mut TcpStream) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {}
        _ => return false,
    }
    let _ = tcp.write_all(PLAIN_ON_HTTPS).await;
    let _ = tcp.shutdown().await;
    true
}

/// Completes the TLS handshake of an accepted connection within `limit`
/// (the head timeout: a caller gets as long for it as for a request head).
/// A TLS-ALPN-01 validation ends with its handshake (RFC 8737 has the
/// validator close then), so it is an error here too.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    let tls = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(accepted) => accepted?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            ))
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "an ACME validation handshake, closed once done",
        ));
    }
    Ok(tls)
}
