//! A caller that stops reading a 1 GiB download must not slow the tunnel's
//! other requests, and must not make either end buffer the body.
//! (Its own test binary, so the process's memory is this test's alone.)

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[actix_rt::test]
async fn stalled_download_does_not_stall_the_tunnel() {
    let t = Tunnel::start().await;
    // Warm up pools and buffers so the baseline is fair.
    for i in 0..50 {
        let mut r = t.get(&format!("/id/{i}")).send().await.unwrap();
        r.body().await.unwrap();
    }
    let baseline = rss_bytes();

    let gib: u64 = 1 << 30;
    let mut stalled = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    stalled
        .write_all(format!("GET /bytes/{gib} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stalled.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // From here on the caller reads nothing more.

    let mut latencies = Vec::new();
    let start = Instant::now();
    for i in 0..50 {
        let t0 = Instant::now();
        let mut r =
            tokio::time::timeout(Duration::from_secs(10), t.get(&format!("/id/{i}")).send())
                .await
                .expect("a small request must not wait behind the stalled download")
                .unwrap();
        let body = r.body().await.unwrap();
        assert_eq!(body, format!("id-{i}").as_bytes());
        latencies.push(t0.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    let grown = rss_bytes().saturating_sub(baseline);
    println!(
        "50 requests beside a stalled 1 GiB download: total {:?}, p50 {:?}, max {:?}; RSS grew {} KiB",
        total,
        latencies[25],
        latencies[49],
        grown / 1024
    );
    assert!(grown < 64 << 20, "memory grew by {} MiB", grown >> 20);
    assert_eq!(
        t.server_streams().await,
        1,
        "only the stalled stream is open"
    );

    drop(stalled);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await
    );
}
