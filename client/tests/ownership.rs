//! Who may serve a host: tokens stored as their SHA-256, wildcard entries,
//! and no takeover of a host a live client holds.

mod support;

use std::{path::Path, time::Duration};

use burrow_client::{ClientError, ClientEvent};
use burrow_server::{config::sha256_hex, RunningServer, ServerConfig};
use support::*;
use tokio::sync::mpsc::UnboundedReceiver;

/// A server whose `*.dev.localhost` entry keeps only the hash of `wild`.
fn server() -> RunningServer {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n\
         [[hosts]]\nhost = \"*.dev.localhost\"\ntoken_sha256 = \"{}\"\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex("wild"),
        sha256_hex(TOKEN)
    );
    start_server(ServerConfig::from_str(&text, Path::new("server.toml")).expect("config"))
}

/// A client for `host` with `token` in front of `local`, and its events.
fn client(
    server: &RunningServer,
    host: &str,
    token: &str,
    local: &str,
) -> (
    tokio::task::JoinHandle<Result<(), ClientError>>,
    UnboundedReceiver<ClientEvent>,
) {
    let text = client_toml(server.addr(), local, token).replace(HOST, host);
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    (
        actix_rt::spawn(run_client(client_config_text(&text), tx)),
        events,
    )
}

async fn status_for(server: &RunningServer, host: &str) -> u16 {
    let res = caller()
        .get(format!("http://{}/x", server.addr()))
        .insert_header(("host", host))
        .send()
        .await
        .expect("answer");
    res.status().as_u16()
}

/// The reason of the client's final refusal.
async fn refusal(task: tokio::task::JoinHandle<Result<(), ClientError>>) -> String {
    let ended = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the client stops")
        .expect("task");
    ended.expect_err("refused").to_string()
}

#[actix_rt::test]
async fn hashed_tokens_and_wildcards_claim_what_they_cover_and_nothing_else() {
    let server = server();
    let upstream = upstream::Upstream::start();
    let (_a, mut events) = client(&server, HOST, TOKEN, &upstream.url());
    wait_registered(&mut events).await;
    assert_eq!(status_for(&server, HOST).await, 200);

    let (_w, mut events) = client(&server, "feature-1.dev.localhost", "wild", &upstream.url());
    wait_registered(&mut events).await;
    assert_eq!(status_for(&server, "feature-1.dev.localhost").await, 200);
    assert_eq!(status_for(&server, "feature-2.dev.localhost").await, 404);

    for (host, token, reason) in [
        ("a.b.dev.localhost", "wild", "not configured"),
        ("dev.localhost", "wild", "not configured"),
        ("feature-3.dev.localhost", TOKEN, "invalid token"),
        // The hash itself is not the token.
        (HOST, sha256_hex(TOKEN).as_str(), "invalid token"),
    ] {
        let (task, _events) = client(&server, host, token, &upstream.url());
        let message = refusal(task).await;
        assert!(message.contains(reason), "{host}: {message}");
    }
}

#[actix_rt::test]
async fn a_held_host_is_not_taken_over_even_with_the_right_token() {
    let server = server();
    let upstream = upstream::Upstream::start();
    let host = "shared.dev.localhost";
    let (first, mut events) = client(&server, host, "wild", &upstream.url());
    wait_registered(&mut events).await;

    // Another client with the right token waits; the holder keeps serving.
    let (second, mut second_events) = client(&server, host, "wild", "http://127.0.0.1:9");
    expect_refusal(&mut second_events, "already served by another client").await;
    assert_eq!(status_for(&server, host).await, 200);

    // Once the holder is gone, the waiting client gets the host (its local
    // service is down: 502 from it, not the holder's 200).
    first.abort();
    wait_registered(&mut second_events).await;
    assert_eq!(status_for(&server, host).await, 502);
    second.abort();
}

/// A client with one tunnel that asks for no host.
fn random_client(
    server: &RunningServer,
    token: &str,
    local: &str,
) -> (
    tokio::task::JoinHandle<Result<(), ClientError>>,
    UnboundedReceiver<ClientEvent>,
) {
    let text = format!(
        "server = \"ws://{}/_burrow/connect\"\nmax_reconnect_delay_secs = 1\n\
         [[tunnels]]\ntoken = \"{token}\"\nlocal = \"{local}\"\n",
        server.addr()
    );
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    (
        actix_rt::spawn(run_client(client_config_text(&text), tx)),
        events,
    )
}

/// The hosts of the client's next registration.
async fn registered_hosts(events: &mut UnboundedReceiver<ClientEvent>) -> Vec<String> {
    let wait = async {
        while let Some(e) = events.recv().await {
            if let ClientEvent::Registered { hosts } = e {
                return hosts;
            }
        }
        panic!("client stopped before registering");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("registered in time")
}

#[actix_rt::test]
async fn a_client_that_asks_for_no_host_gets_a_random_name_and_keeps_it() {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n\
         [[hosts]]\nhost = \"*.t.localhost\"\ntoken_sha256 = \"{}\"\nrandom = true\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n",
        sha256_hex("free")
    );
    let server = start_server(ServerConfig::from_str(&text, Path::new("s.toml")).expect("config"));
    let upstream = upstream::Upstream::start();
    let (_a, mut events) = random_client(&server, "free", &upstream.url());
    let name = registered_hosts(&mut events).await.remove(0);
    let label = name.strip_suffix(".t.localhost").expect("under the domain");
    let parts: Vec<&str> = label.split('-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert!(
        parts[2].len() == 5
            && parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric())),
        "{name}"
    );
    assert_eq!(status_for(&server, &name).await, 200);

    let (_b, mut other_events) = random_client(&server, "free", &upstream.url());
    let other = registered_hosts(&mut other_events).await.remove(0);
    assert_ne!(other, name);

    // Its connection cut, the client comes back under the same name.
    server.registry().close_all().await;
    assert_eq!(registered_hosts(&mut events).await, vec![name.clone()]);
    assert_eq!(status_for(&server, &name).await, 200);

    // A token no entry offers random names to is told so.
    let (task, _events) = random_client(&server, TOKEN, &upstream.url());
    let message = refusal(task).await;
    assert!(message.contains("offers no random host names"), "{message}");
}
