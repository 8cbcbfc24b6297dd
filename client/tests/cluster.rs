//! Several server nodes sharing one host directory in a real Redis:
//! requests reach the right client through any node, byte-exact and
//! concurrently; a host held through one node is refused to another
//! client on any node; the internal listener takes only the nodes'
//! requests; tunnels keep serving while Redis is down.

mod support;

use std::time::Duration;

use awc::http::StatusCode;
use futures_util::{future::join_all, StreamExt};
use support::{cluster::*, *};

/// A client for `host` (with `token`) connected to `node`, its local
/// service, and its events.
struct Client {
    upstream: upstream::Upstream,
    task: tokio::task::JoinHandle<Result<(), burrow_client::ClientError>>,
    events: tokio::sync::mpsc::UnboundedReceiver<burrow_client::ClientEvent>,
}

fn client(node: &Node, host: &str, token: &str) -> Client {
    client_of(&[node.server.addr().to_string()], "", host, token)
}

/// A client for `host` (with `token`) whose `server` lists the servers at
/// `addrs` (`host:port`), with `extra` settings.
fn client_of(addrs: &[String], extra: &str, host: &str, token: &str) -> Client {
    let upstream = upstream::Upstream::start();
    let servers: Vec<String> = addrs
        .iter()
        .map(|a| format!("\"ws://{a}/_burrow/connect\""))
        .collect();
    let text = format!(
        "server = [{}]\nmax_reconnect_delay_secs = 1\n{extra}\n\
         [[tunnels]]\nhost = \"{host}\"\ntoken = \"{token}\"\nlocal = \"{}\"\n",
        servers.join(", "),
        upstream.url()
    );
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let task = actix_rt::spawn(run_client(client_config_text(&text), tx));
    Client {
        upstream,
        task,
        events,
    }
}

/// The status a WebSocket upgrade was refused with (a panic if it opened).
async fn refused_upgrade(upgrade: awc::ws::WebsocketsRequest) -> StatusCode {
    match upgrade.connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status,
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.0.status())),
    }
}

/// GET `path` for `host` through `node`: status and body.
async fn get(node: &Node, host: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let mut resp = caller()
        .get(format!("{}{path}", node.public()))
        .insert_header(("host", host))
        .send()
        .await
        .expect("an answer");
    let body = resp.body().limit(8 << 20).await.expect("body");
    (resp.status(), body.to_vec())
}

#[actix_rt::test]
async fn requests_reach_the_right_client_through_every_node() {
    let redis = Redis::start();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&redis, n, ""))
        .collect();
    let mut one = client(&nodes[0], HOST, TOKEN);
    let mut two = client(&nodes[1], "other.localhost", "other-token");
    wait_registered(&mut one.events).await;
    wait_registered(&mut two.events).await;

    // Every node, both hosts, at once.
    let calls = nodes.iter().flat_map(|node| {
        [(HOST, 1), ("other.localhost", 2)]
            .into_iter()
            .map(move |(host, n)| async move {
                let path = format!("/id/{n}");
                (node.name.clone(), host, get(node, host, &path).await)
            })
    });
    for (node, host, (status, body)) in join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{host} through {node}");
        let want = if host == HOST { "id-1" } else { "id-2" };
        assert_eq!(
            String::from_utf8_lossy(&body),
            want,
            "{host} through {node}"
        );
    }
    assert!(
        one.upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    assert!(
        two.upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    // 100 MiB each way through a node that holds no connection of HOST's client.
    let far = &nodes[2];
    let n: u64 = 100 << 20;
    let mut down = caller()
        .get(format!("{}/bytes/{n}", far.public()))
        .insert_header(("host", HOST))
        .send()
        .await
        .expect("download");
    assert_eq!(down.status(), StatusCode::OK);
    let mut offset = 0u64;
    while let Some(chunk) = down.next().await {
        let chunk = chunk.expect("chunk");
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(
                *b,
                pattern_byte(offset + i as u64),
                "byte {}",
                offset + i as u64
            );
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, n);
    let body = futures_util::stream::iter((0..n).step_by(1 << 16).map(move |start| {
        let end = (start + (1 << 16)).min(n);
        Ok::<_, std::io::Error>(bytes::Bytes::from(
            (start..end).map(pattern_byte).collect::<Vec<u8>>(),
        ))
    }));
    let mut up = caller()
        .post(format!("{}/sum", far.public()))
        .insert_header(("host", HOST))
        .send_stream(body)
        .await
        .expect("upload");
    let summed = up.body().await.expect("sum");
    let summed = String::from_utf8_lossy(&summed);
    assert!(summed.starts_with(&format!("{n} ")), "{summed}");
    assert!(summed.ends_with("true"), "{summed}");

    // An unknown host is unknown on every node.
    let (status, _) = get(far, "nobody.localhost", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    one.task.abort();
    two.task.abort();
}

#[actix_rt::test]
async fn a_client_that_lost_its_node_comes_back_through_another_and_its_host_follows() {
    let redis = Redis::start();
    // A grace long enough that only the handover can answer in time.
    let a = Node::start(&redis, "a", "reconnect_grace_secs = 30");
    let b = Node::start(&redis, "b", "reconnect_grace_secs = 30");
    let link = link::FreezingLink::start(a.server.addr()).await;
    let addrs = [link.addr.to_string(), b.server.addr().to_string()];
    let mut one = client_of(&addrs, "connections = 1", HOST, TOKEN);
    wait_registered(&mut one.events).await;
    assert_eq!(get(&b, HOST, "/id/1").await.0, StatusCode::OK);

    // The client's way to a breaks; a keeps the host for it, but it comes
    // back through b, and a hands the host over.
    link.refuse(true);
    link.cut();
    wait_registered(&mut one.events).await;
    let started = std::time::Instant::now();
    for node in [&a, &b] {
        let (status, body) = get(node, HOST, "/id/2").await;
        assert_eq!(status, StatusCode::OK, "through {}", node.name);
        assert_eq!(body, b"id-2");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a waited out its grace instead of handing the host over"
    );
    one.task.abort();
}

#[actix_rt::test]
async fn one_clients_connections_on_two_nodes_serve_through_both() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", "");
    let b = Node::start(&redis, "b", "");
    let front = RoundRobin::start(vec![a.server.addr(), b.server.addr()]).await;
    let mut one = client_of(&[front.addr.to_string()], "connections = 2", HOST, TOKEN);
    wait_registered(&mut one.events).await;
    let both = eventually(Duration::from_secs(20), || async {
        let mut held = 0;
        for node in [&a, &b] {
            let sessions = node.server.registry().lookup(HOST).await;
            held += usize::from(sessions.is_some_and(|h| !h.sessions.is_empty()));
        }
        held == 2
    })
    .await;
    assert!(
        both,
        "the client's connections do not serve through both nodes"
    );
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let (status, body) = get(node, HOST, &format!("/id/{i}")).await;
        assert_eq!(status, StatusCode::OK, "through {}", node.name);
        assert_eq!(body, format!("id-{i}").as_bytes());
    }
    one.task.abort();
}

#[actix_rt::test]
async fn a_server_name_with_several_addresses_is_tried_address_by_address() {
    // `localhost` is 127.0.0.1 then ::1 to the client; the server listens
    // on ::1 only, so the first address refuses and the second answers.
    let listener = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback");
    let port = listener.local_addr().expect("addr").port();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the IPv4 port must be closed for this test"
    );
    let server = start_server_on(listener, server_config(""));
    let mut one = client_of(&[format!("localhost:{port}")], "", HOST, TOKEN);
    wait_registered(&mut one.events).await;
    let sessions = server
        .registry()
        .lookup(HOST)
        .await
        .map(|h| h.sessions.len());
    assert!(sessions.unwrap_or(0) >= 1);
    one.task.abort();
}

#[actix_rt::test]
async fn websockets_cross_nodes_both_ways() {
    use awc::ws;
    let redis = Redis::start();
    let a = Node::start(&redis, "a", "");
    let b = Node::start(&redis, "b", "");
    let mut one = client(&a, HOST, TOKEN);
    wait_registered(&mut one.events).await;
    let (resp, mut socket) = caller()
        .ws(format!("ws://{}/ws", b.server.addr()))
        .set_header("host", HOST)
        .max_frame_size(4 << 20)
        .connect()
        .await
        .expect("a WebSocket through the node without the client");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let big = bytes::Bytes::from(pattern(1 << 20));
    let sent = [
        ws::Message::Text("hello".into()),
        ws::Message::Binary(big.clone()),
    ];
    let want = [
        ws::Frame::Text(bytes::Bytes::from_static(b"hello")),
        ws::Frame::Binary(big),
    ];
    for (message, want) in sent.into_iter().zip(want) {
        futures_util::SinkExt::send(&mut socket, message)
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an echo in time")
            .expect("an echo")
            .expect("a frame");
        assert_eq!(got, want);
    }
    futures_util::SinkExt::send(&mut socket, ws::Message::Close(None))
        .await
        .expect("close");
    // A refused upgrade comes back as the local service gave it.
    let refused = caller()
        .ws(format!("ws://{}/ws-refuse", b.server.addr()))
        .set_header("host", HOST);
    assert_eq!(refused_upgrade(refused).await, StatusCode::FORBIDDEN);
    one.task.abort();
}

#[actix_rt::test]
async fn a_host_held_through_one_node_is_refused_on_another_until_released() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", "");
    let b = Node::start(&redis, "b", "");
    let mut first = client(&a, HOST, TOKEN);
    wait_registered(&mut first.events).await;
    assert_ne!(redis.cli(&["GET", &format!("burrow:lease:{HOST}")]), "");

    let mut second = client(&b, HOST, TOKEN);
    expect_refusal(&mut second.events, "already served by another client").await;
    // Still the first client's, through either node.
    let (status, _) = get(&b, HOST, "/id/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        second
            .upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // The holder leaves (no grace here): the second client, retrying, gets it.
    first.task.abort();
    wait_registered(&mut second.events).await;
    let (status, _) = get(&a, HOST, "/id/8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        second
            .upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    second.task.abort();
}

#[actix_rt::test]
async fn a_tokens_tunnel_limit_counts_across_nodes() {
    let redis = Redis::start();
    let limit = "[limits]\nmax_tunnels_per_token = 1\n";
    let a = Node::start(&redis, "a", limit);
    let b = Node::start(&redis, "b", limit);
    let mut one = client(&a, "one.wild.localhost", "wild-token");
    wait_registered(&mut one.events).await;
    let two = client(&b, "two.wild.localhost", "wild-token");
    let refused = tokio::time::timeout(Duration::from_secs(20), two.task)
        .await
        .expect("refused in time")
        .expect("the client's task");
    let refused = refused.expect_err("a refusal").to_string();
    assert!(refused.contains("already holds 1 hosts"), "{refused}");
    // The first leaves: its place is free on every node.
    one.task.abort();
    let freed = eventually(Duration::from_secs(10), || async {
        redis.cli(&["ZCARD", "burrow:entry:*.wild.localhost"]) == "0"
    })
    .await;
    assert!(freed, "the first client's host still counts");
    let mut two = client(&b, "two.wild.localhost", "wild-token");
    wait_registered(&mut two.events).await;
    assert_eq!(
        get(&a, "two.wild.localhost", "/id/4").await.0,
        StatusCode::OK
    );
    two.task.abort();
}

#[actix_rt::test]
async fn every_nodes_admin_lists_the_clusters_tunnels_and_counts_what_crossed() {
    let redis = Redis::start();
    let admin =
        |port: u16| format!("admin_listen = \"127.0.0.1:{port}\"\nadmin_token = \"{SECRET}\"\n");
    let ports = (procs::free_port(), procs::free_port());
    let a = Node::start(&redis, "a", &admin(ports.0));
    let b = Node::start(&redis, "b", &admin(ports.1));
    let mut one = client(&a, HOST, TOKEN);
    wait_registered(&mut one.events).await;
    assert_eq!(get(&b, HOST, "/id/5").await.0, StatusCode::OK);
    let api = |port: u16, path: &str| {
        caller()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .insert_header(("authorization", format!("Bearer {SECRET}")))
    };
    for (port, here) in [(ports.0, true), (ports.1, false)] {
        let mut resp = api(port, "/api/tunnels").send().await.expect("tunnels");
        let list: serde_json::Value = resp.json().await.expect("json");
        let entry = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["host"] == HOST))
            .unwrap_or_else(|| panic!("{HOST} missing from {list}"));
        assert_eq!(entry["nodes"], serde_json::json!(["a"]), "{entry}");
        assert_eq!(entry["here"], here, "{entry}");
    }
    let metrics = |port: u16| async move {
        let mut resp = api(port, "/metrics").send().await.expect("metrics");
        String::from_utf8_lossy(&resp.body().await.expect("body")).into_owned()
    };
    let (on_a, on_b) = (metrics(ports.0).await, metrics(ports.1).await);
    assert!(
        on_b.contains("burrow_cluster_forwarded_total{direction=\"out\"} 1"),
        "{on_b}"
    );
    assert!(
        on_a.contains("burrow_cluster_forwarded_total{direction=\"in\"} 1"),
        "{on_a}"
    );
    assert!(
        !on_a.contains("burrow_cluster_lease_operations_total 0"),
        "{on_a}"
    );
    one.task.abort();
}

#[actix_rt::test]
async fn the_internal_listener_refuses_requests_without_the_secret() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", "");
    let mut one = client(&a, HOST, TOKEN);
    wait_registered(&mut one.events).await;
    let internal = format!("http://{}/id/1", a.internal);
    for secret in [None, Some("wrong"), Some("")] {
        let mut req = caller().get(&internal).insert_header(("host", HOST));
        if let Some(secret) = secret {
            req = req.insert_header(("x-burrow-cluster", secret));
        }
        let resp = req.send().await.expect("an answer");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "secret {secret:?}");
    }
    // Nor does it take clients: a client's upgrade to the control path,
    // secret and all, is a request for an unknown host there.
    let control = caller()
        .ws(format!("ws://{}/_burrow/connect", a.internal))
        .set_header("x-burrow-cluster", SECRET);
    assert_eq!(refused_upgrade(control).await, StatusCode::NOT_FOUND);
    // The secret never reaches the local service.
    let mut resp = caller()
        .get(format!("http://{}/echo", a.internal))
        .insert_header(("x-burrow-cluster", SECRET))
        .insert_header(("host", HOST))
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.body().await.expect("body");
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    assert!(resp
        .headers()
        .keys()
        .all(|k| !k.as_str().contains("cluster")));
    // None of the forged requests reached it.
    assert_eq!(
        one.upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    one.task.abort();
}

#[actix_rt::test]
async fn tunnels_keep_serving_while_redis_is_down_and_leases_come_back() {
    let mut redis = Redis::start();
    let a = Node::start(&redis, "a", "");
    let b = Node::start(&redis, "b", "");
    let mut one = client(&a, HOST, TOKEN);
    wait_registered(&mut one.events).await;
    // b learns where HOST lives.
    assert_eq!(get(&b, HOST, "/id/1").await.0, StatusCode::OK);

    redis.stop();
    for node in [&a, &b] {
        assert_eq!(
            get(node, HOST, "/id/2").await.0,
            StatusCode::OK,
            "{}",
            node.name
        );
    }
    // A new registration is refused, saying why.
    let mut two = client(&b, "other.localhost", "other-token");
    expect_refusal(&mut two.events, "host directory is unreachable").await;

    // Back, empty: the lease is taken again and registrations resume.
    redis.restart();
    wait_registered(&mut two.events).await;
    let lease = format!("burrow:lease:{HOST}");
    let back = eventually(Duration::from_secs(10), || async {
        !redis.cli(&["GET", &lease]).is_empty()
    })
    .await;
    assert!(back, "the lease was not taken again");
    assert_eq!(get(&a, "other.localhost", "/id/3").await.0, StatusCode::OK);
    one.task.abort();
    two.task.abort();
}
