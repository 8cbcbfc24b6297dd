//! Who may call a tunnel: basic auth and address ranges, per tunnel (sent
//! with the registration) and server-wide, enforced by the server before
//! anything reaches the client.

mod support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A local service that counts the connections it is given and answers
/// each request 200 "ok".
async fn counting_service() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    actix_rt::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            actix_rt::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if conn.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), count)
}

/// A server (with `server_extra` in its configuration) and a client whose
/// tunnel has `tunnel_extra` in its table, in front of a counting service.
async fn tunnel(server_extra: &str, tunnel_extra: &str) -> (Tunnel, Arc<AtomicUsize>) {
    let (local, count) = counting_service().await;
    let server = start_server(server_config(server_extra));
    let text = format!(
        "{}{tunnel_extra}\n",
        client_toml(server.addr(), &local, TOKEN)
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = actix_rt::spawn(run_client(client_config_text(&text), tx));
    wait_registered(&mut events).await;
    let upstream = upstream::Upstream::start();
    let tunnel = Tunnel {
        server,
        upstream,
        client,
        events,
    };
    (tunnel, count)
}

async fn status(req: awc::ClientRequest) -> (u16, Option<String>) {
    let res = req.send().await.expect("answer");
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (res.status().as_u16(), challenge)
}

#[actix_rt::test]
async fn basic_auth_turns_away_callers_without_the_credentials() {
    let (t, count) = tunnel("", "basic_auth = \"ann:s3cret\"").await;
    let (code, challenge) = status(t.get("/")).await;
    assert_eq!(code, 401);
    let challenge = challenge.expect("a challenge");
    assert!(
        challenge.starts_with("Basic realm=\"demo.localhost\""),
        "{challenge}"
    );
    assert_eq!(status(t.get("/").basic_auth("ann", "wrong")).await.0, 401);
    assert_eq!(status(t.get("/").basic_auth("bob", "s3cret")).await.0, 401);
    // A WebSocket upgrade is a request like any other.
    let upgrade = t
        .get("/ws")
        .insert_header(("connection", "upgrade"))
        .insert_header(("upgrade", "websocket"))
        .insert_header(("sec-websocket-version", "13"))
        .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(status(upgrade).await.0, 401);
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "a refused request reached the laptop"
    );
    assert_eq!(status(t.get("/").basic_auth("ann", "s3cret")).await.0, 200);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn address_ranges_allow_and_deny_callers() {
    let (t, count) = tunnel("", "allow_ips = [\"10.0.0.0/8\"]").await;
    assert_eq!(status(t.get("/")).await.0, 403);
    let (t2, count2) = tunnel(
        "",
        "allow_ips = [\"127.0.0.0/8\"]\ndeny_ips = [\"127.0.0.1\"]",
    )
    .await;
    assert_eq!(status(t2.get("/")).await.0, 403);
    let (t3, count3) = tunnel("", "allow_ips = [\"127.0.0.0/8\", \"::1\"]").await;
    assert_eq!(status(t3.get("/")).await.0, 200);
    assert_eq!(
        count.load(Ordering::SeqCst) + count2.load(Ordering::SeqCst),
        0
    );
    assert_eq!(count3.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn the_servers_own_ranges_apply_to_every_tunnel() {
    let (t, count) = tunnel("[access]\ndeny_ips = [\"127.0.0.0/8\"]\n", "").await;
    assert_eq!(status(t.get("/")).await.0, 403);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[actix_rt::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let rule = "allow_ips = [\"192.0.2.0/24\"]";
    let forwarded = |t: &Tunnel| {
        t.get("/")
            .insert_header(("x-forwarded-for", "10.9.9.9, 192.0.2.7"))
    };
    let (trusting, _) = tunnel("trust_forwarded_headers = true", rule).await;
    assert_eq!(status(forwarded(&trusting)).await.0, 200);
    // Without the trust, the header is the caller's own say.
    let (t, count) = tunnel("", rule).await;
    assert_eq!(status(forwarded(&t)).await.0, 403);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}
