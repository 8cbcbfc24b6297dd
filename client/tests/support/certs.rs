//! Test certificates, made fresh for each test (no key is ever committed),
//! and a caller that speaks HTTPS to the server on loopback.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority and the files of certificates it signed.
pub struct TestCa {
    pub dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA whose files go in a fresh directory under the target dir.
    pub fn new(name: &str) -> TestCa {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("burrow test CA {name}"));
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write CA");
        TestCa { dir, cert, key }
    }

    /// The CA's certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Signs a certificate for `names`; returns its and its key's files.
    pub fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A TLS client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca_path()).expect("CA file") {
            roots.add(cert.expect("CA cert")).expect("CA root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// What an HTTPS exchange showed: the server's certificate and the raw
/// answer (the request asks for the connection to close).
pub struct TlsAnswer {
    pub certificate: Vec<u8>,
    pub response: String,
}

/// Connects to `addr`, names `server_name` in the TLS handshake, checks
/// the server's certificate against `tls`, sends `request` and reads the
/// answer to its end.
pub async fn https_exchange(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    request: &str,
) -> std::io::Result<TlsAnswer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // A close without TLS's close_notify still ends the answer here.
    let _ = stream.read_to_end(&mut response).await;
    Ok(TlsAnswer {
        certificate,
        response: String::from_utf8_lossy(&response).into_owned(),
    })
}

/// The DER of the first certificate in the PEM file at `path`.
pub fn der_of(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).expect("cert").to_vec()
}
