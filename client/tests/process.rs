//! The real `burrow` binary against an in-process server: refusals, bad
//! configuration, a client killed mid-response, reconnects, host takeover.

mod support;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use burrow_client::ClientEvent;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_burrow");

/// A config file under target/ with a unique name.
fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits for a child to exit, killing it after `limit`.
fn wait_exit(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (status, err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct KillOnDrop(Child);

/// Starts the `burrow` binary for `upstream` and waits (polling with a
/// deadline) until a request goes through it.
async fn spawn_client_process(
    name: &str,
    server: &burrow_server::RunningServer,
    upstream: &upstream::Upstream,
) -> KillOnDrop {
    let path = write_config(name, &client_toml(server.addr(), &upstream.url(), TOKEN));
    let child = KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn burrow"),
    );
    let public = format!("http://{}/id/0", server.addr());
    let up = eventually(Duration::from_secs(20), || {
        let public = public.clone();
        async move {
            match caller()
                .get(public)
                .insert_header(("host", HOST))
                .send()
                .await
            {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(up, "tunnel did not come up");
    child
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_rt::test]
async fn wrong_token_is_refused_and_the_client_exits_non_zero() {
    let server = start_server(server_config(""));
    let path = write_config(
        "wrong-token",
        &client_toml(server.addr(), "http://127.0.0.1:9", "nope"),
    );
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow");
    let (status, stderr) =
        actix_rt::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("invalid token for host demo.localhost"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nope"),
        "the token must not be printed: {stderr}"
    );
}

#[test]
fn invalid_config_files_are_reported_with_file_line_and_key() {
    let cases = [
        ("missing-file", None, vec!["cannot read config file"]),
        ("bad-toml", Some("server = \"ws://x/\n"), vec!["line 1"]),
        ("wrong-type", Some("server = 5\n[[tunnels]]\n"), vec!["line 1", "server"]),
        (
            "unknown-key",
            Some("server = \"ws://127.0.0.1:1/\"\nretries = 3\n"),
            vec!["line 2", "retries"],
        ),
        (
            "bad-local",
            Some("server = \"ws://127.0.0.1:1/\"\n[[tunnels]]\nhost = \"a\"\ntoken = \"t\"\nlocal = \"ftp://x\"\n"),
            vec!["tunnels[0].local"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = match text {
            Some(text) => write_config(name, text),
            None => PathBuf::from("/nonexistent/burrow.toml"),
        };
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run burrow");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name}: {stderr}");
        for n in needles {
            assert!(
                stderr.contains(n),
                "{name}: {stderr:?} should mention {n:?}"
            );
        }
        assert_eq!(
            stderr.trim().lines().count(),
            stderr.trim().lines().filter(|l| !l.is_empty()).count()
        );
    }
}

#[actix_rt::test]
async fn killed_client_ends_the_callers_read_promptly() {
    let upstream = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let mut child = spawn_client_process("killed", &server, &upstream).await;
    let public = format!("http://{}/id/1", server.addr());

    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(format!("GET /slow HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first;") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    child.0.kill().expect("kill client");
    let killed = Instant::now();
    // The rest of the read must end (EOF or error) instead of hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "caller's read still open 5 s after the client was killed"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("last"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut body must not look complete: {text:?}"
    );
    println!(
        "caller's read ended {:?} after the client was killed",
        killed.elapsed()
    );

    // The host is free again: requests now get 404 (no tunnel) quickly.
    let gone = eventually(Duration::from_secs(5), || {
        let public = public.clone();
        async move {
            matches!(caller().get(public).insert_header(("host", HOST)).send().await,
                Ok(r) if r.status() == awc::http::StatusCode::NOT_FOUND)
        }
    })
    .await;
    assert!(gone);
}

#[actix_rt::test]
async fn client_reconnects_after_the_server_restarts() {
    let upstream = upstream::Upstream::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start_server_on(listener, server_config(""));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = actix_rt::spawn(run_client(client_config(addr, &upstream.url(), TOKEN), tx));
    wait_registered(&mut events).await;

    let stopped = Instant::now();
    server.stop().await;
    println!("server stopped in {:?}", stopped.elapsed());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "shutdown waited for the session"
    );
    let lost = tokio::time::timeout(Duration::from_secs(10), next_event(&mut events)).await;
    assert!(
        matches!(lost, Ok(Some(ClientEvent::Disconnected { .. }))),
        "{lost:?}"
    );

    let listener = std::net::TcpListener::bind(addr).expect("rebind the same port");
    let server = start_server_on(listener, server_config(""));
    wait_registered(&mut events).await;
    let mut resp = caller()
        .get(format!("http://{addr}/id/7"))
        .insert_header(("host", HOST))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.body().await.unwrap(), "id-7".as_bytes());
    server.stop().await;
}

#[actix_rt::test]
async fn a_held_host_is_refused_until_its_client_leaves() {
    let upstream = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let (tx_a, mut events_a) = tokio::sync::mpsc::unbounded_channel();
    let first = actix_rt::spawn(run_client(
        client_config(server.addr(), &upstream.url(), TOKEN),
        tx_a,
    ));
    wait_registered(&mut events_a).await;

    let (tx_b, mut events_b) = tokio::sync::mpsc::unbounded_channel();
    let _second = actix_rt::spawn(run_client(
        client_config(server.addr(), &upstream.url(), TOKEN),
        tx_b,
    ));
    expect_refusal(&mut events_b, "already served by another client").await;
    // The first client goes away; the second, still retrying, takes over.
    first.abort();
    wait_registered(&mut events_b).await;
    let mut resp = caller()
        .get(format!("http://{}/id/3", server.addr()))
        .insert_header(("host", HOST))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.body().await.unwrap(), "id-3".as_bytes());
}

#[actix_rt::test]
async fn killed_client_closes_the_callers_websocket() {
    let upstream = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let mut child = spawn_client_process("killed-ws", &server, &upstream).await;
    let (_, mut socket) = caller()
        .ws(format!("ws://{}/ws", server.addr()))
        .set_header("host", HOST)
        .connect()
        .await
        .expect("websocket through the tunnel");
    use futures_util::{SinkExt, StreamExt};
    socket
        .send(awc::ws::Message::Text("hi".into()))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(
        echoed,
        awc::ws::Frame::Text(bytes::Bytes::from_static(b"hi"))
    );

    child.0.kill().expect("kill client");
    let killed = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(awc::ws::Frame::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "caller's socket still open 5 s after the client was killed"
    );
    println!(
        "caller's WebSocket closed {:?} after the client was killed",
        killed.elapsed()
    );
}
