//! A node dies (SIGKILL): the `burrow` client on it moves to the next node
//! its `server` list names, its host answers again through every live
//! node, and requests sent to the live nodes meanwhile wait for it (within
//! the reconnect grace) instead of failing. Every part is a real process:
//! three `burrow-server` nodes, a `redis-server` and the `burrow` client.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use awc::http::StatusCode;
use futures_util::future::join_all;
use support::{
    cluster::{Redis, SECRET},
    procs::{free_port, spawn_server_with, write_file, Reaper},
    *,
};

const BIN: &str = env!("CARGO_BIN_EXE_burrow");

/// A node process: its public port.
struct NodeProcess {
    port: u16,
    process: Reaper,
}

fn node(redis: &Redis, name: &str) -> NodeProcess {
    let port = free_port();
    let internal = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\nreconnect_grace_secs = 15\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n\
         [cluster]\nredis = \"{}\"\nnode_id = \"{name}\"\n\
         internal_listen = \"127.0.0.1:{internal}\"\nsecret = \"{SECRET}\"\nlease_secs = 3\n",
        redis.url()
    );
    let path = write_file(&format!("node-{name}"), &text);
    let process = spawn_server_with(&path, port, Stdio::null());
    NodeProcess { port, process }
}

/// GET `/id/{n}` for the test host through the node on `port`: the status,
/// or `None` when the node did not answer at all.
async fn get(port: u16, n: u64) -> Option<StatusCode> {
    let resp = caller()
        .get(format!("http://127.0.0.1:{port}/id/{n}"))
        .insert_header(("host", HOST))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    Some(resp.status())
}

#[actix_rt::test]
async fn a_killed_nodes_client_moves_and_its_host_answers_through_every_live_node() {
    let redis = Redis::start();
    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"].iter().map(|n| node(&redis, n)).collect();
    let upstream = upstream::Upstream::start();
    let servers = nodes
        .iter()
        .take(2)
        .map(|n| format!("\"ws://127.0.0.1:{}/_burrow/connect\"", n.port))
        .collect::<Vec<_>>()
        .join(", ");
    let config = write_file(
        "failover-client",
        &format!(
            "server = [{servers}]\nmax_reconnect_delay_secs = 1\nconnections = 1\n\
             [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\nlocal = \"{}\"\n",
            upstream.url()
        ),
    );
    let home = std::env::temp_dir().join(format!("burrow-failover-{}", std::process::id()));
    let _client = Reaper(
        Command::new(BIN)
            .args(["--log", "--config"])
            .arg(&config)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn burrow"),
    );
    // Up through every node, the client on a (the first listed).
    let up = eventually(Duration::from_secs(20), || async {
        let answers = join_all(nodes.iter().map(|n| get(n.port, 0))).await;
        answers.iter().all(|a| *a == Some(StatusCode::OK))
    })
    .await;
    assert!(up, "the host never answered through every node");

    // a dies; requests go to b and c right away, each sent once.
    let killed = Instant::now();
    let mut a = nodes.remove(0);
    a.process.0.kill().expect("SIGKILL a");
    let _ = a.process.0.wait();
    let sent = nodes
        .iter()
        .flat_map(|n| (1..=4).map(move |i| (n.port, i)))
        .map(|(port, i)| async move { (port, get(port, i).await, killed.elapsed()) });
    let answered = join_all(sent).await;
    let slowest = answered
        .iter()
        .map(|(_, _, t)| *t)
        .max()
        .unwrap_or_default();
    println!(
        "node killed: the host answered again through every live node within {} ms",
        slowest.as_millis()
    );
    for (port, status, _) in &answered {
        assert_eq!(*status, Some(StatusCode::OK), "a request to port {port}");
    }
    assert!(slowest < Duration::from_secs(15), "{slowest:?}");
    let _ = std::fs::remove_dir_all(&home);
}
