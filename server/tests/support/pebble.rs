//! A real ACME server for tests: Debian's pebble on loopback, with a TLS
//! certificate made here (the package ships none), and, for validation
//! that really connects back, pebble-challtestsrv as its DNS server,
//! answering every name with 127.0.0.1.

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a process may take to listen.
const READY: Duration = Duration::from_secs(15);

/// A fresh directory for one test's files.
pub fn test_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("acme-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A port that is free now, for a process that takes its ports only from
/// its configuration. It lies below the kernel's ephemeral range (32768
/// and up), so a listener bound to port 0 meanwhile never takes it, and is
/// drawn at random, so tests running side by side do not pick the same.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// How pebble is run.
pub struct Options {
    /// Where validation connects for HTTP-01 (the server's http_listen).
    pub http_port: u16,
    /// Where validation connects for TLS-ALPN-01 (the server's HTTPS).
    pub tls_port: u16,
    /// Lifetime of the certificates it issues, in seconds.
    pub validity_secs: Option<u64>,
    /// Validate for real (through challtestsrv's DNS) instead of taking
    /// every challenge as passed.
    pub validate: bool,
}

/// A process in its own group, killed with it.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// A running pebble (and its DNS server when it validates).
pub struct Pebble {
    pub port: u16,
    management: u16,
    log: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    _processes: Vec<Group>,
}

impl Pebble {
    /// Writes pebble's TLS files in `dir` (its CA as `pebble-ca.pem`)
    /// and picks the ports it will listen on, for [`Pebble::start`].
    pub fn prepare(dir: &Path) -> (u16, u16) {
        write_tls_files(dir);
        (free_port(), free_port())
    }

    /// The directory URL on `port`.
    pub fn directory(port: u16) -> String {
        format!("https://127.0.0.1:{port}/dir")
    }

    /// Starts pebble on `ports` with files in `dir`, and waits until it listens.
    pub fn start(dir: &Path, (port, management): (u16, u16), options: Options) -> Pebble {
        let ca = dir.join("pebble-ca.pem");
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(secs) = options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        let config_path = dir.join("pebble.json");
        fs::write(&config_path, config.to_string()).expect("pebble config");
        let mut processes = Vec::new();
        let mut pebble = Command::new("/usr/bin/pebble");
        pebble.arg("-config").arg(&config_path);
        pebble.env("PEBBLE_VA_NOSLEEP", "1");
        pebble.env("PEBBLE_WFE_NONCEREJECT", "0");
        if options.validate {
            let dns = free_port();
            let mut cts = Command::new("/usr/bin/pebble-challtestsrv");
            cts.args(["-dns01", &format!("127.0.0.1:{dns}")]);
            cts.args(["-management", &format!("127.0.0.1:{}", free_port())]);
            cts.args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ]);
            let log = dir.join("challtestsrv.log");
            let mut cts = spawn(cts, &log);
            wait_listening(dns, &mut cts, &log);
            processes.push(cts);
            pebble.args(["-dnsserver", &format!("127.0.0.1:{dns}")]);
        } else {
            pebble.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
        let log = dir.join("pebble.log");
        let mut pebble = spawn(pebble, &log);
        wait_listening(port, &mut pebble, &log);
        wait_listening(management, &mut pebble, &log);
        processes.push(pebble);
        Pebble {
            port,
            management,
            log,
            tls: client_config(&[CertificateDer::from_pem_file(&ca).expect("pebble CA")]),
            _processes: processes,
        }
    }

    /// Orders created so far, as pebble's log shows them.
    pub fn orders(&self) -> usize {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }

    /// A TLS client configuration trusting the root that issues this
    /// pebble's certificates (new on every start).
    pub async fn issuing_root(&self) -> Arc<rustls::ClientConfig> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.management).into();
        let request = "GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let (_, answer) = https(addr, "127.0.0.1", self.tls.clone(), request)
            .await
            .expect("fetch /roots/0");
        let pem = &answer[answer.find("-----BEGIN").expect("a PEM root")..];
        let root = CertificateDer::from_pem_slice(pem.as_bytes()).expect("root");
        client_config(&[root])
    }
}

fn spawn(mut command: Command, log: &Path) -> Group {
    let out = fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    Group(command.spawn().expect("start process"))
}

fn wait_listening(port: u16, process: &mut Group, log: &Path) {
    let deadline = Instant::now() + READY;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = process.0.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let log = fs::read_to_string(log).unwrap_or_default();
            panic!("not listening on {port} ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a CA and, signed by it, pebble's certificate for 127.0.0.1 and
/// localhost; returns the CA's file.
fn write_tls_files(dir: &Path) -> PathBuf {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "pebble test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("CA");
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("sign");
    let ca_path = dir.join("pebble-ca.pem");
    fs::write(&ca_path, ca.pem()).expect("write CA");
    fs::write(dir.join("pebble.pem"), leaf.pem()).expect("write cert");
    fs::write(dir.join("pebble.key"), key.serialize_pem()).expect("write key");
    ca_path
}

/// A TLS client configuration trusting `roots` only.
pub fn client_config(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    // A resumed session shows the certificate of the session it resumes:
    // each connection must see the one served now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Connects to `addr` naming `server_name`, verifies the chain against
/// `tls`, sends `request` and reads to the end; returns the leaf and the
/// answer.
pub async fn https(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    request: &str,
) -> std::io::Result<(Vec<u8>, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .to_vec();
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // A close without TLS's close_notify still ends the answer here.
    let _ = stream.read_to_end(&mut answer).await;
    Ok((leaf, String::from_utf8_lossy(&answer).into_owned()))
}
