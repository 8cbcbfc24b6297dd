//! HTTPS on the public listener, the client over `wss://`, and the plain
//! listener that sends callers to HTTPS; certificates made in each test.

mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use burrow_server::{RunningServer, ServerConfig};
use support::{certs::*, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with `[tls]` made of `pairs` (and `http_listen` when asked),
/// bound as the binary binds it.
fn tls_server(pairs: &[(std::path::PathBuf, std::path::PathBuf)], http: bool) -> RunningServer {
    let mut tls = String::from("[tls]\n");
    for (cert, key) in pairs {
        tls += &format!(
            "[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    let http = if http {
        "http_listen = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let config = server_config(&format!("{http}{tls}"));
    let listeners = burrow_server::listener::bind(&config).expect("bind");
    burrow_server::start(listeners, config).expect("start")
}

fn wss_client_toml(server: SocketAddr, ca: Option<&Path>, local: &str) -> String {
    let ca = ca.map_or(String::new(), |p| format!("ca = \"{}\"\n", p.display()));
    format!(
        "server = \"wss://localhost:{}/_burrow/connect\"\n{ca}max_reconnect_delay_secs = 1\n\
         [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\nlocal = \"{local}\"\n",
        server.port()
    )
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[actix_rt::test]
async fn https_callers_and_a_wss_client_reach_the_local_service() {
    let ca = TestCa::new("reach");
    let other = ca.issue("other", &["other.localhost"]);
    let demo = ca.issue("demo", &[HOST, "localhost"]);
    let server = tls_server(&[other.clone(), demo.clone()], false);
    let upstream = upstream::Upstream::start();
    let cfg = client_config_text(&wss_client_toml(
        server.addr(),
        Some(&ca.ca_path()),
        &upstream.url(),
    ));
    assert_eq!(
        cfg.public_url(HOST),
        format!("https://{HOST}:{}/", server.addr().port())
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = actix_rt::spawn(run_client(cfg, tx));
    wait_registered(&mut events).await;

    let answer = https_exchange(
        server.addr(),
        HOST,
        ca.client_config(),
        &get(HOST, "/hello?x=1"),
    )
    .await
    .expect("https exchange");
    assert!(
        answer.response.starts_with("HTTP/1.1 200"),
        "{}",
        answer.response
    );
    let lower = answer.response.to_ascii_lowercase();
    assert!(
        lower.contains("x-echo-uri: /hello?x=1"),
        "{}",
        answer.response
    );
    assert!(lower.contains("x-echo-xfp: https"), "{}", answer.response);
    // SNI picked the certificate for the name asked, not the first one.
    assert_eq!(answer.certificate, der_of(&demo.0));
    let answer = https_exchange(
        server.addr(),
        "other.localhost",
        ca.client_config(),
        &get("other.localhost", "/"),
    )
    .await
    .expect("https exchange");
    assert_eq!(answer.certificate, der_of(&other.0));
    // No tunnel serves it: the server's own 404, over HTTPS.
    assert!(
        answer.response.starts_with("HTTP/1.1 404"),
        "{}",
        answer.response
    );
}

#[actix_rt::test]
async fn a_client_that_does_not_trust_the_certificate_stops_with_one_clear_error() {
    let ca = TestCa::new("untrusted");
    let stranger = TestCa::new("stranger");
    let pair = ca.issue("demo", &[HOST, "localhost"]);
    let server = tls_server(&[pair], false);
    for trusted in [None, Some(stranger.ca_path())] {
        let cfg = client_config_text(&wss_client_toml(
            server.addr(),
            trusted.as_deref(),
            "http://127.0.0.1:9",
        ));
        let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let ended = tokio::time::timeout(Duration::from_secs(20), run_client(cfg, tx))
            .await
            .expect("the client stops instead of retrying");
        let message = ended.expect_err("refused").to_string();
        assert!(
            message.contains("does not trust") && message.contains("ca = "),
            "{message}"
        );
    }
}

#[actix_rt::test]
async fn a_scheme_the_server_does_not_speak_is_named_and_the_client_stops() {
    let ca = TestCa::new("schemes");
    let tls = tls_server(&[ca.issue("demo", &[HOST, "localhost"])], false);
    let plain = start_server(server_config(""));
    // ws:// to the HTTPS port, wss:// to the plain one.
    let wrong = [
        (
            client_toml(tls.addr(), "http://127.0.0.1:9", TOKEN),
            "use wss://",
        ),
        (
            wss_client_toml(plain.addr(), Some(&ca.ca_path()), "http://127.0.0.1:9"),
            "use ws://",
        ),
    ];
    for (text, way_out) in wrong {
        let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let cfg = client_config_text(&text);
        let ended = tokio::time::timeout(Duration::from_secs(20), run_client(cfg, tx))
            .await
            .expect("the client stops instead of retrying");
        let message = ended.expect_err("refused").to_string();
        assert!(message.contains(way_out), "{message}");
    }
    // A caller that speaks plain HTTP to the HTTPS port is told in plain
    // text, not with a TLS alert.
    let mut tcp = tokio::net::TcpStream::connect(tls.addr())
        .await
        .expect("connect");
    tcp.write_all(get(HOST, "/").as_bytes())
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(
        answer.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{answer}"
    );
    assert!(body.contains("use https://"), "{body}");
}

#[actix_rt::test]
async fn plain_http_is_sent_to_https_with_path_and_query() {
    let ca = TestCa::new("redirect");
    let pair = ca.issue("demo", &[HOST]);
    let server = tls_server(&[pair], true);
    let https_port = server.addrs()[0].port();
    let plain = server.addrs()[1];
    let mut tcp = tokio::net::TcpStream::connect(plain)
        .await
        .expect("connect");
    let request = format!(
        "POST /a/b?c=d&e HTTP/1.1\r\nHost: Demo.Localhost:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        plain.port()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = format!("location: https://{HOST}:{https_port}/a/b?c=d&e\r\n");
    assert!(answer.to_ascii_lowercase().contains(&location), "{answer}");

    let mut tcp = tokio::net::TcpStream::connect(plain)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[test]
fn tls_configuration_errors_name_the_key_and_the_file() {
    let ca = TestCa::new("errors");
    let (cert, key) = ca.issue("a", &[HOST]);
    let (_, other_key) = ca.issue("b", &[HOST]);
    let parse = |tls: &str| {
        let text = format!("listen = \"127.0.0.1:0\"\n{tls}");
        ServerConfig::from_str(&text, Path::new("server.toml")).map(|_| ())
    };
    let pair =
        |c: &Path, k: &Path| format!("cert = \"{}\"\nkey = \"{}\"\n", c.display(), k.display());
    let missing = ca.dir.join("missing.pem");
    let cases = [
        (
            format!("[tls]\n{}", pair(&cert, &other_key)),
            vec!["tls", "do not make a usable pair"],
        ),
        (
            format!("[tls]\n{}", pair(&missing, &key)),
            vec!["tls", "missing.pem"],
        ),
        (
            format!("[tls]\ncert = \"{}\"\n", cert.display()),
            vec!["tls.key"],
        ),
        ("[tls]\n".to_owned(), vec!["names no certificate"]),
        (
            "http_listen = \"127.0.0.1:0\"\n".to_owned(),
            vec!["http_listen", "[tls]"],
        ),
    ];
    for (text, needles) in cases {
        let message = parse(&text).expect_err(&text).to_string();
        for n in needles {
            assert!(message.contains(n), "{message:?} should mention {n:?}");
        }
    }
    assert!(parse(&format!("[tls]\n{}", pair(&cert, &key))).is_ok());
}
