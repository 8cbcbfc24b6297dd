//! A client holds one connection per server worker; each worker's requests
//! go to the connection it holds, and the host stays served as connections
//! come and go.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::*;

/// Ready sessions the server holds for the test host.
async fn ready_sessions(t: &Tunnel) -> usize {
    let sessions = t.server_sessions().await;
    sessions.iter().filter(|s| s.is_ready()).count()
}

/// `n` requests at once, each on its own caller connection (the server's
/// workers take turns accepting them): request `i` asks for `path(i)` and
/// must be answered 200 with `body(i)`.
fn requests(
    t: &Tunnel,
    n: usize,
    path: impl Fn(usize) -> String,
    body: impl Fn(usize) -> String,
) -> Vec<actix_rt::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let req = caller()
                .get(format!("{}{}", t.public(), path(i)))
                .insert_header(("host", HOST));
            let expected = body(i);
            actix_rt::spawn(async move {
                let mut resp = req.send().await.expect("response");
                assert_eq!(resp.status().as_u16(), 200);
                assert_eq!(resp.body().await.expect("body"), expected.as_bytes());
            })
        })
        .collect()
}

/// `n` slow requests at once, each on its own caller connection.
fn slow_requests(t: &Tunnel, n: usize) -> Vec<actix_rt::task::JoinHandle<()>> {
    requests(t, n, |_| "/sleep/1500".into(), |_| "slept".into())
}

/// Waits for the client's second connection.
async fn full_pool(t: &Tunnel) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            ready_sessions(t).await == 2
        })
        .await,
        "the client opens a second connection"
    );
}

#[actix_rt::test]
async fn the_client_opens_a_connection_per_server_worker_and_each_serves_its_worker() {
    // The test server has two workers and says so in its handshake answer.
    let t = Tunnel::start().await;
    full_pool(&t).await;

    // Sixteen slow requests at once: each worker hands its share to the
    // session it holds.
    let calls = slow_requests(&t, 16);
    let seen = std::cell::RefCell::new(Vec::new());
    let spread = eventually(Duration::from_secs(10), || async {
        let counts = t.streams_per_session().await;
        let all_open = counts.iter().sum::<usize>() == 16;
        *seen.borrow_mut() = counts;
        all_open
    })
    .await;
    let seen = seen.into_inner();
    assert!(spread, "all sixteen requests open at once: {seen:?}");
    assert!(
        seen.iter().all(|&n| n > 0),
        "both connections carry requests: {seen:?}"
    );
    for call in join_all(calls).await {
        call.expect("caller task");
    }
}

#[actix_rt::test]
async fn a_lost_connection_is_replaced_and_requests_keep_their_answers() {
    let t = Tunnel::start().await;
    full_pool(&t).await;
    let sessions = t.server_sessions().await;
    let lost = sessions[1].id;
    sessions[1].close("closed by the test");
    // The other connection answers while the lost one comes back.
    for i in 0..20 {
        let mut resp = t.get(&format!("/id/{i}")).send().await.expect("response");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.body().await.unwrap(), format!("id-{i}").as_bytes());
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            let now = t.server_sessions().await;
            now.len() == 2 && now.iter().all(|s| s.is_ready() && s.id != lost)
        })
        .await,
        "the client reconnects the lost connection"
    );
}

/// A tunnel whose client has `connections = n` in its configuration.
async fn start_with_connections(n: u32) -> Tunnel {
    Tunnel::start_with_client(server_config(""), &format!("connections = {n}\n")).await
}

#[actix_rt::test]
async fn a_configured_connection_count_overrides_the_server() {
    let three = start_with_connections(3).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ready_sessions(&three).await == 3
        })
        .await,
        "three connections"
    );
    // Never more than configured, however many requests are open.
    let one = start_with_connections(1).await;
    let calls = slow_requests(&one, 12);
    assert!(
        eventually(Duration::from_secs(10), || async {
            one.streams_per_session().await.iter().sum::<usize>() == 12
        })
        .await
    );
    assert_eq!(one.server_sessions().await.len(), 1);
    for call in join_all(calls).await {
        call.expect("caller task");
    }
}

#[actix_rt::test]
async fn idle_extra_connections_close_and_come_back_with_requests() {
    let t = Tunnel::start_with_client(server_config(""), "idle_connection_secs = 1\n").await;
    for round in 0..2 {
        full_pool(&t).await;
        // Nothing to do for a second: the extra connection is drained and
        // closed, the first one stays.
        assert!(
            eventually(Duration::from_secs(10), || async {
                t.server_sessions().await.len() == 1
            })
            .await,
            "round {round}: the idle extra connection closes"
        );
        // One request at a time is no load: the one connection serves it.
        for i in 0..5 {
            let mut resp = t.get(&format!("/id/{i}")).send().await.expect("response");
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(resp.body().await.unwrap(), format!("id-{i}").as_bytes());
        }
        let regrown = eventually(Duration::from_millis(500), || async {
            t.server_sessions().await.len() != 1
        })
        .await;
        assert!(!regrown, "round {round}: no connection for lone requests");
        // Requests come back together, on both workers: every one is
        // answered, and the client opens its extra connection again.
        let calls = requests(&t, 24, |i| format!("/id/{i}"), |i| format!("id-{i}"));
        for call in join_all(calls).await {
            call.expect("caller task");
        }
    }
    full_pool(&t).await;
}

#[actix_rt::test]
async fn idle_connection_secs_0_keeps_every_connection() {
    let t = Tunnel::start_with_client(server_config(""), "idle_connection_secs = 0\n").await;
    full_pool(&t).await;
    // Idle for three of the periods the test above drains after.
    let still = eventually(Duration::from_secs(3), || async {
        t.server_sessions().await.len() != 2
    })
    .await;
    assert!(!still, "both connections stay open");
}
