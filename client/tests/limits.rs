//! The server's limits, each with its status: request body (413), head
//! (431), streams in flight per tunnel (503), request rate (429), hosts
//! per token, and a deadline for a caller's request head that keeps a
//! thousand slow connections from starving a tunnel.

mod support;

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use burrow_server::{config::sha256_hex, ServerConfig};
use futures_util::StreamExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn limited(limits: &str) -> Tunnel {
    Tunnel::start_with(server_config(&format!("[limits]\n{limits}"))).await
}

#[actix_rt::test]
async fn an_oversized_body_gets_413_whether_declared_or_streamed() {
    let t = limited("max_request_body_mb = 1").await;
    let body = pattern(2 * 1024 * 1024);
    let res = t
        .request(awc::http::Method::POST, "/sum")
        .send_body(body.clone())
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 413);
    assert_eq!(t.upstream.control.hits.load(Ordering::SeqCst), 0);
    let chunks = futures_util::stream::iter(
        body.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let res = t
        .request(awc::http::Method::POST, "/sum")
        .send_stream(chunks)
        .await;
    // The server answers 413 and closes; a caller still sending may see
    // the close before the answer.
    if let Ok(res) = res {
        assert_eq!(res.status().as_u16(), 413);
    }
    let small = t
        .request(awc::http::Method::POST, "/sum")
        .send_body(pattern(1000))
        .await
        .expect("answer");
    assert_eq!(small.status().as_u16(), 200);
}

#[actix_rt::test]
async fn an_oversized_head_gets_431() {
    let t = limited("max_header_bytes = 2048").await;
    let res = t
        .get("/")
        .insert_header(("x-big", "a".repeat(3000)))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 431);
    let res = t
        .get("/")
        .insert_header(("x-small", "a"))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 200);
}

#[actix_rt::test]
async fn a_tunnel_with_all_its_streams_busy_answers_503_with_retry_after() {
    let t = limited("max_streams_per_tunnel = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut res = t.get("/slow").send().await.expect("answer");
        assert_eq!(res.status().as_u16(), 200);
        // The first chunk is in: the stream is open until released.
        let first = res.next().await.expect("chunk").expect("bytes");
        assert_eq!(&first[..], b"first;");
        held.push(res);
    }
    let res = t.get("/").send().await.expect("answer");
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    // The slots come back when the long answers end.
    drop(held);
    let freed = eventually(Duration::from_secs(10), || async {
        t.get("/")
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    assert!(freed, "the streams' slots were not given back");
}

#[actix_rt::test]
async fn a_tunnel_over_its_request_rate_gets_429_with_retry_after() {
    let t = limited("requests_per_second = 2").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = t.get("/").send().await.expect("answer");
        statuses.push((
            res.status().as_u16(),
            res.headers().get("retry-after").cloned(),
        ));
    }
    // A burst of twice the rate, then refusals that say when to come back.
    assert!(statuses[..4].iter().all(|(s, _)| *s == 200), "{statuses:?}");
    let (status, retry) = &statuses[5];
    assert_eq!(*status, 429, "{statuses:?}");
    assert_eq!(retry.as_ref().expect("retry-after"), "1");
}

#[actix_rt::test]
async fn a_token_holds_at_most_its_share_of_hosts() {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n[limits]\nmax_tunnels_per_token = 2\n\
         [[hosts]]\nhost = \"*.dev.localhost\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex("wild")
    );
    let server = start_server(ServerConfig::from_str(&text, Path::new("s.toml")).expect("config"));
    let mut clients = Vec::new();
    for name in ["one", "two", "three"] {
        let toml = client_toml(server.addr(), "http://127.0.0.1:9", "wild")
            .replace(HOST, &format!("{name}.dev.localhost"));
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let task = actix_rt::spawn(run_client(client_config_text(&toml), tx));
        if name == "three" {
            let ended = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the third stops")
                .expect("task");
            let message = ended.expect_err("refused").to_string();
            assert!(message.contains("already holds 2 hosts"), "{message}");
        } else {
            wait_registered(&mut events).await;
            clients.push(task);
        }
    }
}

/// A connection that sends the start of a head and then nothing.
async fn slow_caller(addr: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Slow: ")
        .await
        .ok()?;
    Some(tcp)
}

#[actix_rt::test]
async fn a_thousand_slow_callers_do_not_starve_a_tunnel_and_are_cut_at_the_deadline() {
    let t = limited("head_timeout_secs = 2").await;
    let addr = t.server.addr();
    let slow = futures_util::future::join_all((0..1000).map(|_| slow_caller(addr))).await;
    let mut slow: Vec<_> = slow.into_iter().flatten().collect();
    assert_eq!(slow.len(), 1000, "every slow connection was accepted");
    for _ in 0..20 {
        let res = t.get("/").send().await.expect("answer");
        assert_eq!(res.status().as_u16(), 200);
    }
    // Each slow connection is answered (408) or closed at the deadline.
    let cut = futures_util::future::join_all(slow.iter_mut().map(|tcp| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest))
            .await
            .is_ok()
    }))
    .await;
    assert!(
        cut.iter().all(|c| *c),
        "a slow caller was kept past the deadline"
    );
}
