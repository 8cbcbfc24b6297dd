//! A WebSocket whose caller stops reading while the local service keeps
//! sending must not stall the tunnel's other streams, nor grow memory
//! beyond the stream's window. (Its own binary: the memory is this test's.)

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[actix_rt::test]
async fn stalled_websocket_reader_does_not_stall_the_tunnel() {
    let t = Tunnel::start().await;
    for i in 0..50 {
        let mut r = t.get(&format!("/id/{i}")).send().await.unwrap();
        r.body().await.unwrap();
    }
    let baseline = rss_bytes();

    // 16384 messages of 64 KiB: 1 GiB the caller will never read.
    let mut stalled = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    stalled
        .write_all(
            format!(
                "GET /ws-flood/16384 HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stalled.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));

    let start = Instant::now();
    let calls = (0..100).map(|i| {
        let req = t.get(&format!("/id/{i}"));
        async move {
            let t0 = Instant::now();
            let mut r = tokio::time::timeout(Duration::from_secs(10), req.send())
                .await
                .expect("a small request must not wait behind the stalled socket")
                .unwrap();
            assert_eq!(r.body().await.unwrap(), format!("id-{i}").as_bytes());
            t0.elapsed()
        }
    });
    let mut latencies = join_all(calls).await;
    let total = start.elapsed();
    latencies.sort();
    let grown = rss_bytes().saturating_sub(baseline);
    println!(
        "100 requests beside a stalled WebSocket flood: total {:?}, p50 {:?}, p99 {:?}; RSS grew {} KiB",
        total,
        latencies[50],
        latencies[99],
        grown / 1024
    );
    assert!(grown < 64 << 20, "memory grew by {} MiB", grown >> 20);
    drop(stalled);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await
    );
}
