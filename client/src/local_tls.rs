//! Local services over HTTPS (`local = "https://..."`): the byte stream to
//! a local service, plain TCP or TLS over it, and the TLS settings for
//! them: the platform's roots, or no verification at all for a tunnel that
//! opts out (`local_tls_verify = false`, for a development server's
//! self-signed certificate).
//!
//! The pooled HTTP client is given such services as plain `http://`
//! origins, and the connector adds TLS beneath it: the layer in
//! `local_io` then sees the request and the answer in clear, as it must
//! (the date cut, early answers and `Expect` read HTTP bytes).

use std::{io, sync::Arc};

use actix_rt::net::TcpStream;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio_rustls::client::TlsStream;

/// A connection to a local service: TCP, or TLS over it.
pub type LocalStream = burrow_common::wire::Wire<TcpStream, TlsStream<TcpStream>>;

/// The TCP connection beneath `stream`.
pub fn tcp_of(stream: &LocalStream) -> &TcpStream {
    match stream {
        LocalStream::Plain(tcp) => tcp,
        LocalStream::Tls(tls) => tls.get_ref().0,
    }
}

/// How one local service is reached over TLS.
#[derive(Clone)]
pub struct LocalTls {
    /// The TLS settings.
    pub config: Arc<ClientConfig>,
    /// The name its certificate is checked against (and sent as SNI).
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for LocalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LocalTls").field(&self.name).finish()
    }
}

impl LocalTls {
    /// TLS to the service at `host`; verified against the platform's roots
    /// unless `verify` is off.
    pub fn new(host: &str, verify: bool) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("`{host}` is not a name TLS can check"))?;
        let config = if verify {
            crate::tls::server_tls(None)?
        } else {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        };
        Ok(LocalTls { config, name })
    }

    /// The TLS handshake over `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<LocalStream> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector.connect(self.name.clone(), tcp).await?;
        Ok(LocalStream::Tls(Box::new(tls)))
    }
}

/// Takes any certificate, for a tunnel that opted out of verification;
/// signatures are still checked, so the handshake is still one with the
/// holder of the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
