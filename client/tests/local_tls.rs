//! Local services over HTTPS: a self-signed development certificate taken
//! when the tunnel opts out of verification, refused otherwise; plain
//! requests, a kept-alive connection and a WebSocket upgrade alike.

mod support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use support::{certs::TestCa, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS service with a certificate for 127.0.0.1: each request gets
/// `secure <path>` (kept alive), and `/ws` gets a 101 and then an echo of
/// the bytes. Returns its URL and the TLS connections it accepted.
async fn https_service(ca: &TestCa) -> (String, Arc<AtomicUsize>) {
    let (cert, key) = ca.issue("local", &["127.0.0.1"]);
    use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .expect("chain");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    actix_rt::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            actix_rt::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    serve(tls).await;
                }
            });
        }
    });
    (url, accepted)
}

async fn serve(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if path == "/ws" {
            let _ = tls
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                .await;
            let _ = tls.write_all(&buf).await;
            while let Ok(n) = tls.read(&mut chunk).await {
                if n == 0 || tls.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
            return;
        }
        let body = format!("secure {path}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn tunnel_to(local: &str, extra: &str) -> Tunnel {
    let server = start_server(server_config(""));
    let text = format!("{}{extra}\n", client_toml(server.addr(), local, TOKEN));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = actix_rt::spawn(run_client(client_config_text(&text), tx));
    wait_registered(&mut events).await;
    Tunnel {
        server,
        upstream: upstream::Upstream::start(),
        client,
        events,
    }
}

#[actix_rt::test]
async fn a_self_signed_local_service_is_reached_when_verification_is_off() {
    let ca = TestCa::new("local-tls");
    let (local, accepted) = https_service(&ca).await;
    let t = tunnel_to(&local, "local_tls_verify = false").await;
    // One caller connection, once the client's pool is complete: one server
    // worker, so one client connection and its pooled client serve both
    // requests.
    let pooled = eventually(std::time::Duration::from_secs(10), || async {
        t.server_sessions().await.len() == 2
    })
    .await;
    assert!(
        pooled,
        "the client did not open a connection per server worker"
    );
    let one = caller();
    for path in ["/one", "/two?x=1"] {
        let url = format!("{}{path}", t.public());
        let mut res = one
            .get(url)
            .insert_header(("host", HOST))
            .send()
            .await
            .expect("answer");
        assert_eq!(res.status().as_u16(), 200);
        let body = res.body().await.expect("body");
        assert_eq!(body, format!("secure {path}").as_bytes());
    }
    // The pooled client kept its TLS connection for the second request.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A WebSocket upgrade goes over TLS too (the RFC's sample key, whose
    // answer the service gives).
    let mut tcp = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .expect("connect");
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp.write_all(b"over tls").await.expect("write");
    let mut echo = [0u8; 8];
    tcp.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"over tls");
}

#[actix_rt::test]
async fn an_untrusted_local_certificate_is_a_502_that_says_so() {
    let ca = TestCa::new("local-tls-untrusted");
    let (local, _) = https_service(&ca).await;
    let t = tunnel_to(&local, "").await;
    let mut res = t.get("/").send().await.expect("answer");
    assert_eq!(res.status().as_u16(), 502);
    let body = String::from_utf8_lossy(&res.body().await.expect("body")).into_owned();
    assert!(body.to_ascii_lowercase().contains("certificate"), "{body}");
}
