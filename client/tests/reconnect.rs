//! No request lost across a reconnect: while a client's connection is down,
//! the server keeps its host for it (the reconnect grace), holds the
//! requests that arrive meanwhile and delivers them once the client is
//! back; only after the grace do they get 503. Nobody else may take the
//! host meanwhile.

mod support;

use std::time::Duration;

use burrow_client::ClientEvent;
use support::{link::FreezingLink, *};

/// A server with the given grace, a client that reaches it through a link
/// the test can cut, and the local service.
async fn through_link(grace_secs: u64) -> (Tunnel, FreezingLink) {
    let grace = format!("reconnect_grace_secs = {grace_secs}");
    let server = start_server(server_config(&grace));
    let link = FreezingLink::start(server.addr()).await;
    let via = link.addr;
    (Tunnel::around(server, via).await, link)
}

/// Cuts the client off (its connections dropped, new ones refused) and
/// waits until the server has seen every session go.
async fn cut_off(t: &Tunnel, link: &FreezingLink) {
    link.refuse(true);
    link.cut();
    let gone = eventually(Duration::from_secs(10), || async {
        t.server_sessions().await.is_empty()
    })
    .await;
    assert!(gone, "the server still has sessions for the host");
}

#[actix_rt::test]
async fn a_webhook_sent_while_the_client_reconnects_is_delivered() {
    let (mut t, link) = through_link(10).await;
    assert_eq!(t.get("/id/1").send().await.expect("up").status(), 200);
    cut_off(&t, &link).await;

    // Sent while no connection serves the host: it waits.
    let body = pattern(100_000);
    let webhook = actix_rt::spawn(
        t.request(awc::http::Method::POST, "/sum")
            .send_body(body.clone()),
    );
    let waiting = eventually(Duration::from_secs(10), || async {
        t.server
            .registry()
            .lookup(HOST)
            .await
            .is_some_and(|h| h.reserved.is_some() && h.sessions.is_empty())
    })
    .await;
    assert!(waiting, "the host is not kept for its client");
    let sums = || {
        t.upstream
            .control
            .sums
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(sums(), 0);

    link.refuse(false);
    let mut res = webhook.await.expect("task").expect("answered");
    assert_eq!(res.status(), 200);
    let answer = res.body().await.expect("body");
    let expected = format!("{} ", body.len());
    assert!(
        String::from_utf8_lossy(&answer).starts_with(&expected) && answer.ends_with(b" true"),
        "{answer:?}"
    );
    assert_eq!(sums(), 1, "delivered once");
    // The client saw the drop and came back on its own.
    let mut dropped = false;
    while let Ok(e) = t.events.try_recv() {
        dropped |= matches!(e, ClientEvent::Disconnected { .. });
    }
    assert!(dropped);
    t.server.stop().await;
}

#[actix_rt::test]
async fn after_the_grace_waiting_requests_get_503_and_the_host_is_freed() {
    let (t, link) = through_link(1).await;
    cut_off(&t, &link).await;
    let res = t.get("/id/1").send().await.expect("answered");
    assert_eq!(res.status(), 503);
    let retry = res.headers().get("retry-after").expect("Retry-After");
    assert!(retry.to_str().expect("text").parse::<u64>().is_ok());
    // The grace over, the host is nobody's: 404 at once.
    let freed = eventually(Duration::from_secs(10), || async {
        t.server.registry().lookup(HOST).await.is_none()
    })
    .await;
    assert!(freed, "the host is still kept");
    let res = t.get("/id/2").send().await.expect("answered");
    assert_eq!(res.status(), 404);
    t.server.stop().await;
}

#[actix_rt::test]
async fn another_client_cannot_take_a_host_in_its_grace() {
    let (t, link) = through_link(30).await;
    cut_off(&t, &link).await;

    // Same token, another client instance: told to wait.
    let other_upstream = upstream::Upstream::start();
    let text = client_toml(t.server.addr(), &other_upstream.url(), TOKEN);
    let (tx, mut other_events) = tokio::sync::mpsc::unbounded_channel();
    let other = actix_rt::spawn(run_client(client_config_text(&text), tx));
    expect_refusal(&mut other_events, "already served by another client").await;

    // The first client comes back and serves its host again.
    link.refuse(false);
    let back = eventually(Duration::from_secs(15), || async {
        match t.get("/id/3").send().await {
            Ok(mut r) => r.status() == 200 && r.body().await.is_ok_and(|b| b == "id-3"),
            Err(_) => false,
        }
    })
    .await;
    assert!(back, "the first client did not get its host back");
    let other_hits = other_upstream
        .control
        .hits
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(other_hits, 0, "the other client served a request");
    other.abort();
    t.server.stop().await;
}
