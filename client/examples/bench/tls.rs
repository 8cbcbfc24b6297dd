//! The HTTPS column: a certificate authority and a certificate for the
//! bench host made for the run (no key is kept in the repository), and
//! callers that speak TLS to the public listener.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::ServerName;

use crate::{procs::write, Res, HOST};

/// The files the server and client are given.
#[derive(Clone)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

static CALLERS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
static FILES: OnceLock<Files> = OnceLock::new();

/// The CA and the bench host's certificate in `work`, made on the first
/// call of the run (the callers trust that CA).
pub fn files(work: &Path) -> Res<Files> {
    if let Some(files) = FILES.get() {
        return Ok(files.clone());
    }
    let files = make(work)?;
    let _ = FILES.set(files.clone());
    Ok(files)
}

fn make(work: &Path) -> Res<Files> {
    let fail = |e: rcgen::Error| format!("test certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let names = vec![HOST.to_owned(), "127.0.0.1".to_owned()];
    let key = KeyPair::generate().map_err(fail)?;
    let cert = CertificateParams::new(names)
        .map_err(fail)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(fail)?;
    let files = Files {
        ca: work.join("bench-ca.pem"),
        cert: work.join("bench-cert.pem"),
        key: work.join("bench-key.pem"),
    };
    write(&files.ca, &ca.pem())?;
    write(&files.cert, &cert.pem())?;
    write(&files.key, &key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let _ = CALLERS.set(Arc::new(config));
    Ok(files)
}

/// The callers' TLS settings (after [`files`]).
pub fn callers() -> Res<Arc<rustls::ClientConfig>> {
    CALLERS
        .get()
        .cloned()
        .ok_or_else(|| "no bench certificate yet".into())
}

/// A byte stream to a column: TCP, or TLS over it.
pub trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A connection to `addr`, over TLS when `tls`.
pub fn connect(addr: SocketAddr, tls: bool) -> Res<Box<dyn Conn>> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    if !tls {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(HOST).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(callers()?, name).map_err(|e| e.to_string())?;
    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
}
