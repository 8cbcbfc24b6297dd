//! The real `burrow-server` stopped with SIGTERM: it stops accepting,
//! tells its clients, lets the requests in flight finish (up to its drain
//! timeout) and exits 0. Started again, it holds requests for its hosts
//! until their clients are back.

mod support;

use std::{net::TcpStream, time::Duration};

use burrow_client::ClientEvent;
use support::{link::FreezingLink, procs::*, *};

/// Waits for `child` to exit, off the test's thread.
async fn exit_of(mut server: Reaper, limit: Duration) -> std::process::ExitStatus {
    actix_rt::task::spawn_blocking(move || wait_exit(&mut server.0, limit))
        .await
        .expect("exit")
}

/// A client for the server behind `link`, its events, and the
/// local service.
async fn client_through(link: &FreezingLink) -> (RunningClient, upstream::Upstream) {
    let upstream = upstream::Upstream::start();
    let text = client_toml(link.addr, &upstream.url(), TOKEN);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = actix_rt::spawn(run_client(client_config_text(&text), tx));
    wait_registered(&mut events).await;
    (RunningClient { client, events }, upstream)
}

struct RunningClient {
    client: tokio::task::JoinHandle<Result<(), burrow_client::ClientError>>,
    events: tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
}

fn public(port: u16, path: &str) -> awc::ClientRequest {
    caller()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .insert_header(("host", HOST))
}

#[actix_rt::test]
async fn sigterm_finishes_requests_in_flight_exits_0_and_a_restart_loses_nothing() {
    let port = free_port();
    let server = spawn_server("drain", port, "drain_timeout_secs = 20");
    let link = FreezingLink::start(([127, 0, 0, 1], port).into()).await;
    let (mut c, upstream) = client_through(&link).await;

    // An answer under way: its first chunk is out, the rest is held.
    let mut slow = public(port, "/slow").send().await.expect("head");
    assert_eq!(slow.status(), 200);
    signal(&server.0, "TERM");
    // New connections are refused while the old ones finish.
    let closed = eventually(Duration::from_secs(10), || async {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
    assert!(closed, "the server still accepts connections");
    upstream.control.release.notify_one();
    let body = slow.body().await.expect("the whole answer");
    assert_eq!(body, "first;last");
    assert!(exit_of(server, Duration::from_secs(15)).await.success());
    let reason = loop {
        match c.events.recv().await {
            Some(ClientEvent::Disconnected { reason }) => break reason,
            Some(_) => continue,
            None => panic!("the client stopped"),
        }
    };
    assert!(reason.contains("server shut down"), "{reason}");

    // Started again while the client cannot reach it yet: a request for
    // its host waits for the client instead of failing.
    link.refuse(true);
    let server = spawn_server("drain-again", port, "reconnect_grace_secs = 20");
    let waiting = actix_rt::spawn(public(port, "/id/7").send());
    link.refuse(false);
    let mut res = waiting.await.expect("task").expect("answered");
    assert_eq!(res.status(), 200);
    assert_eq!(res.body().await.expect("body"), "id-7");
    c.client.abort();
    drop(server);
}

#[actix_rt::test]
async fn a_request_longer_than_the_drain_timeout_is_cut_and_the_server_exits_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let server = spawn_server("drain-deadline", port, "drain_timeout_secs = 1");
    let link = FreezingLink::start(([127, 0, 0, 1], port).into()).await;
    let (c, _upstream) = client_through(&link).await;
    // Read raw, to see how the answer ends on the wire.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first;") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the first chunk");
        seen.extend_from_slice(&buf[..n]);
    }
    signal(&server.0, "TERM");
    assert!(exit_of(server, Duration::from_secs(10)).await.success());
    // The connection ends without the last chunk: the caller can tell the
    // answer was cut.
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut answer looks whole: {text}"
    );
    c.client.abort();
}
