//! The admin listener: Prometheus metrics, health, and the JSON admin API
//! (tunnels, disconnect, reload) behind the admin token; and reloads of
//! server.toml, by the API and by SIGHUP.

mod support;

use std::{path::PathBuf, time::Duration};

use burrow_client::ClientEvent;
use burrow_server::ServerConfig;
use support::{procs::*, *};

const ADMIN_TOKEN: &str = "admin-secret";

/// A server configuration file with the admin listener, the test hosts and
/// `extra` settings.
fn server_file(name: &str, extra: &str) -> (PathBuf, String) {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 2\nreconnect_grace_secs = 0\n\
         admin_listen = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{extra}\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n"
    );
    (write_file(name, &text), text)
}

/// A server read from `path`, a client and the local service.
async fn tunnel_from(path: &std::path::Path) -> (Tunnel, String) {
    let server = start_server(ServerConfig::from_file(path).expect("config"));
    let admin = format!("http://{}", server.admin_addr().expect("admin listener"));
    let via = server.addr();
    (Tunnel::around(server, via).await, admin)
}

async fn text_of(req: awc::ClientRequest) -> (u16, String) {
    let mut res = req.send().await.expect("answer");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn api(admin: &str, method: awc::http::Method, path: &str) -> awc::ClientRequest {
    caller()
        .request(method, format!("{admin}{path}"))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
}

#[actix_rt::test]
async fn metrics_count_requests_by_host_status_and_refusal() {
    let (path, _) = server_file("admin-metrics", "");
    let (t, admin) = tunnel_from(&path).await;
    assert_eq!(
        text_of(caller().get(format!("{admin}/healthz"))).await,
        (200, "ok\n".into())
    );
    for path in ["/id/1", "/id/2", "/status/404"] {
        t.get(path).send().await.expect("answer");
    }
    let unknown = caller()
        .get(format!("{}/", t.public()))
        .insert_header(("host", "nobody.localhost"));
    assert_eq!(unknown.send().await.expect("answer").status(), 404);
    // The tunnel's own /healthz is the local service's.
    let res = t.get("/healthz").send().await.expect("answer");
    assert_eq!(res.headers().get("x-echo-uri").expect("echoed"), "/healthz");

    let (status, metrics) = text_of(caller().get(format!("{admin}/metrics"))).await;
    assert_eq!(status, 200);
    for line in [
        "burrow_tunnels 1",
        "burrow_requests_total{host=\"demo.localhost\",class=\"2xx\"} 3",
        "burrow_requests_total{host=\"demo.localhost\",class=\"4xx\"} 1",
        "burrow_refusals_total{stage=\"request\",reason=\"unknown_host\"} 1",
        "burrow_request_duration_seconds_count 5",
        "burrow_streams_in_flight{host=\"demo.localhost\"} 0",
        "# TYPE burrow_request_duration_seconds histogram",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let bytes_out = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("burrow_bytes_total{host=\"demo.localhost\",direction=\"out\"} ")
        })
        .and_then(|n| n.parse::<u64>().ok())
        .expect("bytes out");
    assert!(bytes_out >= "id-1id-2".len() as u64, "{bytes_out}");
    assert!(metrics.contains("burrow_sessions "), "{metrics}");
    t.server.stop().await;
}

#[actix_rt::test]
async fn the_admin_api_lists_disconnects_and_asks_for_its_token() {
    let (path, _) = server_file("admin-api", "");
    let (t, admin) = tunnel_from(&path).await;
    t.get("/id/1").send().await.expect("answer");

    let (status, _) = text_of(caller().get(format!("{admin}/api/tunnels"))).await;
    assert_eq!(status, 401, "no token");
    let wrong = caller()
        .get(format!("{admin}/api/tunnels"))
        .insert_header(("authorization", "Bearer nope"));
    assert_eq!(text_of(wrong).await.0, 401, "wrong token");

    let (status, body) = text_of(api(&admin, awc::http::Method::GET, "/api/tunnels")).await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let tunnel = &list[0];
    assert_eq!(tunnel["host"], HOST);
    assert_eq!(tunnel["requests"], 1);
    assert!(tunnel["connections"].as_u64() >= Some(1), "{body}");
    assert!(tunnel["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.0.0.1:")));
    assert!(tunnel["since_unix"].as_u64() > Some(1_700_000_000));

    let (status, body) = text_of(api(
        &admin,
        awc::http::Method::DELETE,
        "/api/tunnels/demo.localhost",
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let mut t = t;
    let dropped = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = t.events.recv().await {
            if let ClientEvent::Disconnected { reason } = e {
                return reason;
            }
        }
        String::new()
    })
    .await
    .expect("the client was disconnected");
    // Told the real reason, not that the server is shutting down.
    assert!(
        dropped.contains("disconnected by the server's operator (admin API)"),
        "{dropped}"
    );
    let (status, _) = text_of(api(
        &admin,
        awc::http::Method::DELETE,
        "/api/tunnels/nobody.localhost",
    ))
    .await;
    assert_eq!(status, 404);
    t.server.stop().await;
}

#[actix_rt::test]
async fn a_reload_applies_new_limits_and_refuses_a_broken_file() {
    let (path, text) = server_file("admin-reload", "");
    let (t, admin) = tunnel_from(&path).await;
    let body = pattern(2 * 1024 * 1024);
    let post = || {
        t.request(awc::http::Method::POST, "/sum")
            .send_body(body.clone())
    };
    assert_eq!(post().await.expect("answer").status(), 200);

    std::fs::write(
        &path,
        text.replace("[[hosts]]", "[limits]\nmax_request_body_mb = 0\n[[hosts]]"),
    )
    .expect("write");
    let (status, answer) = text_of(api(&admin, awc::http::Method::POST, "/api/reload")).await;
    assert_eq!(status, 400);
    assert!(answer.contains("max_request_body_mb"), "{answer}");
    assert_eq!(
        post().await.expect("answer").status(),
        200,
        "the old limits stay"
    );

    let tighter = text.replace("[[hosts]]", "[limits]\nmax_request_body_mb = 1\n[[hosts]]");
    std::fs::write(&path, tighter.replace("workers = 2", "workers = 3")).expect("write");
    let (status, answer) = text_of(api(&admin, awc::http::Method::POST, "/api/reload")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("\"needs_restart\":[\"workers\"]"),
        "{answer}"
    );
    // One host held by its client, one entry configured.
    assert!(answer.contains("\"hosts\":1,\"configured\":1"), "{answer}");
    assert_eq!(
        post().await.expect("answer").status(),
        413,
        "the new limit applies"
    );
    t.server.stop().await;
}

#[actix_rt::test]
async fn sighup_reloads_a_removed_host_loses_its_client_and_a_broken_file_changes_nothing() {
    let port = free_port();
    let both = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n\
         [[hosts]]\nhost = \"other.localhost\"\ntoken = \"other-token\"\n"
    );
    let path = write_file("sighup", &both);
    let server = spawn_server_with(&path, port, std::process::Stdio::piped());
    let mut server = server;
    let log = lines(server.0.stderr.take().expect("stderr"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let upstream = upstream::Upstream::start();
    let serve = |host: &str, token: &str| {
        let text = client_toml(addr, &upstream.url(), token).replace(HOST, host);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        (
            actix_rt::spawn(run_client(client_config_text(&text), tx)),
            events,
        )
    };
    let (kept, mut kept_events) = serve(HOST, TOKEN);
    let (removed, mut removed_events) = serve("other.localhost", "other-token");
    wait_registered(&mut kept_events).await;
    wait_registered(&mut removed_events).await;

    let only_demo = both
        .split("[[hosts]]\nhost = \"other")
        .next()
        .expect("first part");
    std::fs::write(&path, only_demo).expect("write");
    signal(&server.0, "HUP");
    let ended = tokio::time::timeout(Duration::from_secs(20), removed)
        .await
        .expect("the removed host's client stopped")
        .expect("task");
    let refusal = ended.expect_err("refused").to_string();
    assert!(refusal.contains("not configured"), "{refusal}");
    let (_, log) = line_with(log, "configuration reloaded", Duration::from_secs(10)).await;

    std::fs::write(&path, "listen = nonsense").expect("write");
    signal(&server.0, "HUP");
    let (seen, _) = line_with(log, "configuration not reloaded", Duration::from_secs(10)).await;
    assert!(
        seen.last().is_some_and(|l| l.contains("listen")),
        "{seen:#?}"
    );
    let res = caller()
        .get(format!("http://{addr}/id/5"))
        .insert_header(("host", HOST))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 200, "the host kept serves on");
    kept.abort();
    signal(&server.0, "TERM");
    let status =
        actix_rt::task::spawn_blocking(move || wait_exit(&mut server.0, Duration::from_secs(15)))
            .await
            .expect("exit");
    assert!(status.success());
}
