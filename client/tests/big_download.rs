//! A 256 MiB download arrives byte-exact while neither end holds the body.
//! (Its own test binary, so the process's memory is this test's alone.)

mod support;

use futures_util::StreamExt;
use support::*;

#[actix_rt::test]
async fn large_download_streams_in_bounded_memory() {
    let t = Tunnel::start().await;
    let mut warm = t.get("/bytes/4194304").send().await.unwrap();
    warm.body().limit(8 << 20).await.unwrap();
    let baseline = rss_bytes();

    let n: u64 = 256 << 20;
    let mut resp = t.get(&format!("/bytes/{n}")).send().await.unwrap();
    assert_eq!(
        resp.headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        n.to_string()
    );
    let mut offset = 0u64;
    let mut peak = baseline;
    let mut next_sample = 0u64;
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.expect("body chunk");
        for (i, b) in chunk.iter().enumerate() {
            if *b != pattern_byte(offset + i as u64) {
                panic!("byte {} differs", offset + i as u64);
            }
        }
        offset += chunk.len() as u64;
        if offset >= next_sample {
            peak = peak.max(rss_bytes());
            next_sample += 4 << 20;
        }
    }
    assert_eq!(offset, n);
    let grown = peak.saturating_sub(baseline);
    println!(
        "256 MiB through the tunnel: peak RSS growth {} KiB",
        grown / 1024
    );
    assert!(grown < 64 << 20, "memory grew by {} MiB", grown >> 20);
    // The stream's `End` may still be on its way when the last byte is read.
    let freed = eventually(std::time::Duration::from_secs(5), || async {
        t.server_streams().await == 0
    })
    .await;
    assert!(freed, "the server still holds the stream");
}
