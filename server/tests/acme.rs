//! Certificates over ACME against a real pebble on loopback: issued at
//! start (validated for real over HTTP-01 and TLS-ALPN-01), reused from
//! the cache across a restart, renewed while the server runs, and
//! obtained on demand.

mod support;

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use burrow_server::{acme::Requested, RunningServer, ServerConfig};
use support::pebble::{https, test_dir, Options, Pebble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "app.burrow.test";
/// Longest a certificate may take to appear (issuance takes about a second).
const ISSUED: Duration = Duration::from_secs(20);

/// A server's configuration: `[tls.acme]` on pebble's `port`, `hosts`, and
/// `http_listen` when `http`.
fn config(dir: &Path, port: u16, hosts: &[&str], http: bool) -> ServerConfig {
    let mut text = String::from("listen = \"127.0.0.1:0\"\nworkers = 1\n");
    if http {
        text += "http_listen = \"127.0.0.1:0\"\n";
    }
    for host in hosts {
        text += &format!("[[hosts]]\nhost = \"{host}\"\ntoken = \"t\"\n");
    }
    text += &format!(
        "[tls.acme]\ndirectory = \"{}\"\nemail = \"ops@burrow.test\"\ncache = \"cache\"\n\
         ca = \"pebble-ca.pem\"\n",
        Pebble::directory(port)
    );
    ServerConfig::from_str(&text, &dir.join("server.toml")).expect("config")
}

/// Binds `config`'s listeners, starts pebble validating against them, then
/// the server.
fn start(
    dir: &Path,
    ports: (u16, u16),
    config: ServerConfig,
    options: Options,
) -> (Pebble, RunningServer) {
    // RUST_LOG=burrow_server=debug shows what the server did.
    let _ = env_logger::builder().is_test(true).try_init();
    let listeners = burrow_server::listener::bind(&config).expect("bind");
    let port = |i: usize| {
        listeners
            .get(i)
            .map_or(0, |l| l.local_addr().expect("addr").port())
    };
    let options = Options {
        tls_port: port(0),
        http_port: port(1),
        ..options
    };
    let pebble = Pebble::start(dir, ports, options);
    let server = burrow_server::start(listeners, config).expect("start");
    (pebble, server)
}

fn get(host: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// The certificate served for `host`, once one that `tls` trusts and that
/// `accept` takes is served.
async fn served(
    addr: SocketAddr,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
    accept: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + ISSUED;
    loop {
        let last = match https(addr, host, tls.clone(), &get(host)).await {
            Ok((leaf, answer)) if accept(&leaf) => {
                // No tunnel serves it: the server's own answer, over HTTPS.
                assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
                return leaf;
            }
            Ok(_) => "the same certificate".to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "no certificate for {host}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn options(validity_secs: Option<u64>, validate: bool) -> Options {
    Options {
        http_port: 0,
        tls_port: 0,
        validity_secs,
        validate,
    }
}

#[actix_rt::test]
async fn issued_at_start_over_http01_then_reused_from_the_cache_after_a_restart() {
    let dir = test_dir("restart");
    let ports = Pebble::prepare(&dir);
    let (pebble, server) = start(
        &dir,
        ports,
        config(&dir, ports.0, &[HOST], true),
        options(None, true),
    );
    let root = pebble.issuing_root().await;
    let first = served(server.addr(), HOST, &root, |_| true).await;
    assert_eq!(pebble.orders(), 1);
    let cache = dir
        .join("cache")
        .join(format!("127.0.0.1_{}_dir", pebble.port));
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .expect("cache file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&cache.join(format!("{HOST}.pem"))), 0o600);
    assert_eq!(mode(&cache.join("account.json")), 0o600);
    assert_eq!(mode(&cache), 0o700);
    server.stop().await;

    let config = config(&dir, ports.0, &[HOST], true);
    let listeners = burrow_server::listener::bind(&config).expect("bind");
    let server = burrow_server::start(listeners, config).expect("restart");
    // Presented before start returned: the first caller already gets it.
    let (leaf, _) = https(server.addr(), HOST, root.clone(), &get(HOST))
        .await
        .expect("https after the restart");
    assert_eq!(leaf, first, "the cached certificate is served");
    assert_eq!(pebble.orders(), 1, "no new order after the restart");
    server.stop().await;
}

#[actix_rt::test]
async fn renewed_over_tls_alpn01_while_serving_without_dropping_a_connection() {
    let dir = test_dir("renewal");
    let ports = Pebble::prepare(&dir);
    // No http_listen: TLS-ALPN-01, validated for real. Nine-second
    // certificates are renewed with three seconds left, which leaves time
    // for the order on a busy machine.
    let config = config(&dir, ports.0, &[HOST], false);
    let (pebble, server) = start(&dir, ports, config, options(Some(9), true));
    let root = pebble.issuing_root().await;
    let first = served(server.addr(), HOST, &root, |_| true).await;
    let mut held = KeptConnection::open(server.addr(), HOST, &root).await;
    held.exchange().await;
    let deadline = Instant::now() + ISSUED;
    let renewed = loop {
        let (leaf, _) = https(server.addr(), HOST, root.clone(), &get(HOST))
            .await
            .expect("https while renewing");
        if leaf != first {
            break leaf;
        }
        assert!(Instant::now() < deadline, "not renewed in time");
        // Requests keep the held connection from idling out meanwhile.
        held.exchange().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(renewed, first);
    assert!(pebble.orders() >= 2);
    held.exchange().await;
    server.stop().await;
}

#[actix_rt::test]
async fn requested_on_demand_and_served_once_issued_never_for_a_strangers_name() {
    let dir = test_dir("on-demand");
    let ports = Pebble::prepare(&dir);
    let config = config(&dir, ports.0, &[], true);
    let (pebble, server) = start(&dir, ports, config, options(None, false));
    let root = pebble.issuing_root().await;
    let name = "late.burrow.test";
    // A name nobody asked for: the handshake fails and nothing is ordered.
    assert!(https(server.addr(), name, root.clone(), &get(name))
        .await
        .is_err());
    assert_eq!(pebble.orders(), 0);
    let acme = server.acme().expect("acme");
    assert_eq!(acme.request("Late.Burrow.Test"), Ok(Requested::Started));
    assert_eq!(acme.request(name), Ok(Requested::AlreadyKept));
    assert!(acme.request("not a host").is_err());
    served(server.addr(), name, &root, |_| true).await;
    assert_eq!(pebble.orders(), 1);

    // With no validation under way, the validation protocol gets no
    // certificate at all (never the real one), and no token is answered.
    let mut validator = (*root).clone();
    validator.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let refused = https(server.addr(), name, Arc::new(validator), &get(name)).await;
    assert!(refused.is_err(), "acme-tls/1 got a certificate");
    let mut plain = tokio::net::TcpStream::connect(server.addrs()[1])
        .await
        .expect("connect");
    let request = format!(
        "GET /.well-known/acme-challenge/unknown HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    );
    plain.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    plain.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    server.stop().await;
}

/// One keep-alive HTTPS connection, used for request after request.
struct KeptConnection {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    host: String,
}

impl KeptConnection {
    async fn open(addr: SocketAddr, host: &str, tls: &Arc<rustls::ClientConfig>) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from(host.to_owned()).expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .expect("handshake");
        KeptConnection {
            stream,
            host: host.to_owned(),
        }
    }

    /// One request and its whole answer (the server's own, with a length).
    async fn exchange(&mut self) {
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("the held connection takes another request");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .stream
                .read(&mut buf)
                .await
                .expect("read on the held connection");
            assert!(n > 0, "the held connection was closed");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("a content-length");
            if answer.len() >= end + 4 + length {
                assert!(text.starts_with("http/1.1 "), "{text}");
                return;
            }
        }
    }
}

/// Registers `host` with `token` over a plain control listener at `addr`
/// and returns the connection (the host is held while it is open).
async fn register(
    addr: SocketAddr,
    host: &str,
    token: &str,
) -> actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec> {
    use burrow_common::{protocol::TunnelRequest, Frame, Hello, PROTOCOL_VERSION};
    use futures_util::{SinkExt, StreamExt};
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://{addr}/_burrow/connect"))
        .connect()
        .await
        .expect("websocket");
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        tunnels: vec![TunnelRequest {
            host: host.into(),
            token: token.into(),
            access: Default::default(),
        }],
        instance: None,
    });
    ws.send(awc::ws::Message::Binary(hello.encode().expect("encode")))
        .await
        .expect("send");
    match ws.next().await {
        Some(Ok(awc::ws::Frame::Binary(bytes))) => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("\"accepted\":true"), "{text}");
        }
        other => panic!("expected the hello's answer, got {other:?}"),
    }
    ws
}

#[actix_rt::test]
async fn a_host_claimed_under_a_wildcard_gets_its_certificate_when_registered() {
    let dir = test_dir("wildcard");
    let ports = Pebble::prepare(&dir);
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\nhttp_listen = \"127.0.0.1:0\"\n\
         [[hosts]]\nhost = \"*.dev.burrow.test\"\ntoken = \"wild\"\n\
         [tls.acme]\ndirectory = \"{}\"\nemail = \"ops@burrow.test\"\ncache = \"cache\"\n\
         ca = \"pebble-ca.pem\"\n",
        Pebble::directory(ports.0)
    );
    let config = ServerConfig::from_str(&text, &dir.join("server.toml")).expect("config");
    let _ = env_logger::builder().is_test(true).try_init();
    let mut listeners = burrow_server::listener::bind(&config).expect("bind");
    let options = Options {
        tls_port: listeners[0].local_addr().expect("addr").port(),
        http_port: listeners[1].local_addr().expect("addr").port(),
        ..options(None, false)
    };
    // A plain listener beside them for the client's control connection.
    let control = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let control_addr = control.local_addr().expect("addr");
    listeners.push(burrow_server::PublicListener::plain(control));
    let pebble = Pebble::start(&dir, ports, options);
    let server = burrow_server::start(listeners, config).expect("start");
    let root = pebble.issuing_root().await;
    let name = "feature-7.dev.burrow.test";
    assert_eq!(
        pebble.orders(),
        0,
        "nothing is ordered for the wildcard itself"
    );
    // The order starts with the registration; the client may then leave
    // (so the server answers the check below itself).
    drop(register(control_addr, name, "wild").await);
    served(server.addr(), name, &root, |_| true).await;
    assert_eq!(pebble.orders(), 1);
    server.stop().await;
}

#[actix_rt::test]
async fn the_servers_own_name_gets_its_certificate_without_a_hosts_entry() {
    let dir = test_dir("server-name");
    let ports = Pebble::prepare(&dir);
    let own = "tunnel.burrow.test";
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\nhttp_listen = \"127.0.0.1:0\"\n\
         [[hosts]]\nhost = \"*.dev.burrow.test\"\ntoken = \"wild\"\n\
         [tls]\nserver_name = \"{own}\"\n\
         [tls.acme]\ndirectory = \"{}\"\nemail = \"ops@burrow.test\"\ncache = \"cache\"\n\
         ca = \"pebble-ca.pem\"\n",
        Pebble::directory(ports.0)
    );
    let config = ServerConfig::from_str(&text, &dir.join("server.toml")).expect("config");
    let (pebble, server) = start(&dir, ports, config, options(None, true));
    let root = pebble.issuing_root().await;
    served(server.addr(), own, &root, |_| true).await;
    assert_eq!(pebble.orders(), 1);
    server.stop().await;
    // Without [tls.acme] the setting would do nothing: refused, named.
    let text = format!("listen = \"127.0.0.1:0\"\n[tls]\nserver_name = \"{own}\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
    let e = ServerConfig::from_str(&text, &dir.join("server.toml")).expect_err("refused");
    assert!(e.to_string().contains("tls.server_name"), "{e}");
}

#[actix_rt::test]
async fn an_unreachable_authority_is_logged_with_its_reason_and_the_server_keeps_serving() {
    use std::process::{Command, Stdio};
    let dir = test_dir("unreachable");
    // A certificate of its own for one host, and ACME for another whose
    // authority listens nowhere.
    let mut params =
        rcgen::CertificateParams::new(vec!["static.burrow.test".to_owned()]).expect("params");
    params.is_ca = rcgen::IsCa::NoCa;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    let port = support::pebble::free_port();
    let nowhere = support::pebble::free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"t\"\n\
         [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [tls.acme]\ndirectory = \"https://127.0.0.1:{nowhere}/dir\"\nemail = \"ops@burrow.test\"\n\
         cache = \"cache\"\n"
    );
    std::fs::write(dir.join("server.toml"), text).expect("write");
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_burrow-server"))
        .arg("--config")
        .arg(dir.join("server.toml"))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("server");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let trusted = support::pebble::client_config(&[cert.der().clone()]);
    let deadline = Instant::now() + ISSUED;
    let answer = loop {
        match https(
            addr,
            "static.burrow.test",
            trusted.clone(),
            &get("static.burrow.test"),
        )
        .await
        {
            Ok((_, answer)) => break answer,
            Err(e) => assert!(Instant::now() < deadline, "never served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let logged = loop {
        let text = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if text.contains("not obtained") {
            break text;
        }
        assert!(Instant::now() < deadline, "no failure logged:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failures: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("not obtained"))
        .collect();
    assert_eq!(failures.len(), 1, "{logged}");
    assert!(
        failures[0].contains(HOST) && failures[0].contains("next try in"),
        "{}",
        failures[0]
    );
    // Still serving after the failure.
    let again = https(
        addr,
        "static.burrow.test",
        trusted,
        &get("static.burrow.test"),
    )
    .await;
    assert!(again.is_ok_and(|(_, a)| a.starts_with("HTTP/1.1 404")));
    let _ = server.kill();
    let _ = server.wait();
}
