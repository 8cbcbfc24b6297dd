//! `--cluster`: the cross-node path. Two `burrow-server` nodes share a
//! `redis-server`; one client connects to the first. The same requests go
//! through the node holding the client's connection (the owner) and
//! through the other node, which forwards each to the owner: requests per
//! second over 64 connections, p50 over one, CPU per request of all three
//! burrow processes, and 100 MiB each way, in alternating rounds.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    bulk,
    load::wrk_with,
    procs::{cpu_ticks, free_port, spawn, spawn_logged, wait_port, which, write, Proc},
    table::Table,
    tunnels::http_get,
    Res, Setup, BIG, HOST, SMALL,
};

const ROUNDS: usize = 3;
const COLUMNS: [&str; 2] = ["owner node", "other node"];

/// Redis, two nodes and a client, all running.
struct Cluster {
    /// The two nodes' public addresses: the owner's first.
    nodes: [SocketAddr; 2],
    /// Redis, the nodes, the client.
    procs: Vec<Proc>,
}

pub fn run(setup: &Setup, upstream: SocketAddr) -> Res<()> {
    let cluster = start(setup, upstream)?;
    let mut table = Table::default();
    let pids: Vec<u32> = cluster.procs.iter().skip(1).map(Proc::id).collect();
    let ticks = || pids.iter().filter_map(|&p| cpu_ticks(p)).sum::<u64>();
    let mut rps: [Vec<f64>; 2] = Default::default();
    let mut p50: [Vec<String>; 2] = Default::default();
    let mut cpu = [(0u64, 0u64); 2];
    for round in 0..ROUNDS {
        for (i, addr) in cluster.nodes.iter().enumerate() {
            eprintln!("== cluster, round {} / {ROUNDS}: {}", round + 1, COLUMNS[i]);
            let url = format!("http://{addr}/small");
            let before = ticks();
            let busy = wrk_with(&setup.wrk, &url, Some(HOST), 64, 2, None)?;
            cpu[i].0 += ticks() - before;
            cpu[i].1 += busy.requests;
            rps[i].push(busy.rps);
            p50[i].push(wrk_with(&setup.wrk, &url, Some(HOST), 1, 2, None)?.p50);
        }
    }
    for (i, col) in COLUMNS.iter().enumerate() {
        let median = median(&mut rps[i]);
        table.set("64 conns: requests/s", col, Some(format!("{median:.0}")));
        p50[i].sort();
        table.set("1 conn: p50 latency", col, p50[i].get(ROUNDS / 2).cloned());
        let us = cpu[i].0 as f64 * 10_000.0 / cpu[i].1.max(1) as f64;
        let row = "64 conns: CPU per request, both nodes + client, µs";
        table.set(row, col, Some(format!("{us:.1}")));
    }
    for (i, addr) in cluster.nodes.iter().enumerate() {
        eprintln!("== cluster, 100 MiB: {}", COLUMNS[i]);
        // The shortest of three transfers, in seconds, each checked.
        let best = |f: &dyn Fn() -> Res<f64>| -> Res<f64> {
            let times = (0..3).map(|_| f()).collect::<Res<Vec<_>>>()?;
            Ok(times.into_iter().fold(f64::INFINITY, f64::min))
        };
        let down = best(&|| bulk::download(*addr, Some(HOST), false, BIG))?;
        let up = best(&|| bulk::upload(*addr, Some(HOST), false, BIG))?;
        let rate = |secs: f64| Some(format!("{:.0}", (BIG >> 20) as f64 / secs));
        table.set("100 MiB download: MiB/s", COLUMNS[i], rate(down));
        table.set("100 MiB upload: MiB/s", COLUMNS[i], rate(up));
    }
    println!("{}", table.render(&COLUMNS));
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Redis on a free port, two nodes, and the client on the first node;
/// ready once a request goes through each node.
fn start(setup: &Setup, upstream: SocketAddr) -> Res<Cluster> {
    let redis_bin =
        which("redis-server").ok_or("redis-server not found (apt-get install redis-server)")?;
    let redis: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut procs = vec![spawn(Command::new(redis_bin).args([
        "--port",
        &redis.port().to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]))?];
    wait_port(redis)?;
    let mut nodes = Vec::new();
    for name in ["owner", "other"] {
        let (public, internal) = (free_port(), free_port());
        let config = setup.work.join(format!("node-{name}.toml"));
        write(
            &config,
            &format!(
                "listen = \"127.0.0.1:{public}\"\n[[hosts]]\nhost = \"{HOST}\"\n\
                 token = \"bench-token\"\n[cluster]\nredis = \"redis://{redis}\"\n\
                 node_id = \"{name}\"\ninternal_listen = \"127.0.0.1:{internal}\"\n\
                 secret = \"bench-cluster-secret-0123456789\"\n"
            ),
        )?;
        procs.push(spawn_logged(
            Command::new(setup.bin.join("burrow-server"))
                .arg("--config")
                .arg(&config),
            &setup.work.join(format!("node-{name}.log")),
        )?);
        let addr: SocketAddr = ([127, 0, 0, 1], public).into();
        wait_port(addr)?;
        nodes.push(addr);
    }
    let client = setup.work.join("cluster-client.toml");
    write(
        &client,
        &format!(
            "server = \"ws://{}/_burrow/connect\"\n[[tunnels]]\nhost = \"{HOST}\"\n\
             token = \"bench-token\"\nlocal = \"http://{upstream}\"\n",
            nodes[0]
        ),
    )?;
    procs.push(spawn_logged(
        Command::new(setup.bin.join("burrow"))
            .arg("--config")
            .arg(&client),
        &setup.work.join("cluster-client.log"),
    )?);
    let nodes = [nodes[0], nodes[1]];
    for addr in nodes {
        ready(addr)?;
    }
    Ok(Cluster { nodes, procs })
}

/// Ready when a request through `addr` is answered right.
fn ready(addr: SocketAddr) -> Res<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if matches!(http_get(addr, Some(HOST), false, "/small"), Ok((200, body)) if body == SMALL) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the cluster did not answer through {addr}"))
}
