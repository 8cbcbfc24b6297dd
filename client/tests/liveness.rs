//! Heartbeats, proved through a link that freezes without closing (a
//! laptop that sleeps, a NAT that forgets): the server ends a frozen
//! client's session and its requests at once, and the client, hearing
//! nothing, reconnects.

mod support;

use std::time::{Duration, Instant};

use burrow_client::ClientEvent;
use support::link::FreezingLink;
use support::*;

/// A server pinging every second, a client that reaches it through a
/// freezing link, and the local service.
async fn through_link() -> (Tunnel, FreezingLink) {
    let server = start_server(server_config("heartbeat_secs = 1"));
    let link = FreezingLink::start(server.addr()).await;
    let via = link.addr;
    (Tunnel::around(server, via).await, link)
}

#[actix_rt::test]
async fn a_frozen_client_is_dropped_within_three_pings_and_its_requests_end_at_once() {
    let (t, link) = through_link().await;
    // A request the local service holds for a minute, well past the
    // heartbeat and inside the 30 s request timeout.
    let pending = actix_rt::spawn(t.get("/sleep/60000").send());
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.server_streams().await == 1
        })
        .await,
        "the request never reached the tunnel"
    );
    let frozen_at = Instant::now();
    link.freeze(true);
    let res = tokio::time::timeout(Duration::from_secs(15), pending)
        .await
        .expect("the request ended before its timeout")
        .expect("task")
        .expect("an answer");
    assert_eq!(res.status().as_u16(), 502);
    let took = frozen_at.elapsed();
    // Three one-second pings, checked on the session's sweep.
    assert!(
        took >= Duration::from_secs(2),
        "ended after {took:?}, before the heartbeat could"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_sessions().await.is_empty()
        })
        .await,
        "the frozen client still holds the host"
    );
}

#[actix_rt::test]
async fn a_client_that_hears_nothing_reconnects() {
    let (mut t, link) = through_link().await;
    link.freeze(true);
    let reason = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = t.events.recv().await {
            if let ClientEvent::Disconnected { reason } = event {
                return reason;
            }
        }
        panic!("client stopped");
    })
    .await
    .expect("the client noticed the silence");
    assert!(
        reason.contains("no word from the server") || reason.contains("heartbeat"),
        "{reason}"
    );
    link.freeze(false);
    wait_registered(&mut t.events).await;
    assert_eq!(
        t.get("/").send().await.expect("answer").status().as_u16(),
        200
    );
}
