//! Figures 1 and 2: small requests under wrk, over 64 connections and over
//! one; wrk itself.

use std::{path::Path, process::Command};

use crate::{
    table::{mib_pair, Table},
    tunnels::{Kind, Tunnel},
    upstream::Nginx,
    Res, Setup, SECONDS,
};

/// Rounds of the small-request figures (1 and 2).
const ROUNDS: usize = 5;

/// Figures 1 (64 connections) and 2 (one connection): every column's
/// tunnel is started, then measured in rounds, each round running every
/// column once in an order that rotates; each column reports its median
/// round. A slow spell of the shared machine then costs every column one
/// round, instead of costing whichever column it fell on.
///
/// Figure 1 also counts each end's system calls per request; what it
/// returns is their breakdown, for below the table.
pub fn small_requests(
    figure: usize,
    kinds: &[Kind],
    setup: &Setup,
    upstream: &Nginx,
    table: &mut Table,
) -> Res<String> {
    let tunnels = start_all(figure, kinds, setup, upstream, table)?;
    let cpu0: Vec<_> = tunnels.iter().map(Tunnel::cpu_ticks).collect();
    let runs = run_rounds(figure, &tunnels, setup)?;
    for ((t, cpu0), mut runs) in tunnels.iter().zip(cpu0).zip(runs) {
        let requests: u64 = runs.iter().map(|r| r.requests).sum();
        let cpu = t
            .cpu_ticks()
            .zip(cpu0)
            .map(|((s, c), (s0, c0))| (s - s0, c - c0));
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let Some(median) = runs.get(runs.len() / 2) else {
            continue;
        };
        if figure == 1 {
            set_64_conns(t, median, cpu, requests, table);
        } else {
            let name = t.kind.name();
            table.set(
                "1 conn: requests/s",
                name,
                Some(format!("{:.0}", median.rps)),
            );
            table.set("1 conn: p50 latency", name, Some(median.p50.clone()));
        }
    }
    if figure == 1 {
        return crate::calls::figure(&tunnels, setup, table);
    }
    Ok(String::new())
}

/// Every column's tunnel, checked; figure 1 also records their idle RSS.
fn start_all(
    figure: usize,
    kinds: &[Kind],
    setup: &Setup,
    upstream: &Nginx,
    table: &mut Table,
) -> Res<Vec<Tunnel>> {
    let mut tunnels = Vec::new();
    for &kind in kinds {
        let t = Tunnel::start(kind, &setup.bin, &setup.work, upstream.addr)?;
        t.check()?;
        if figure == 1 {
            table.set(
                "idle RSS, server + client (MiB)",
                kind.name(),
                t.rss_kib().map(mib_pair),
            );
        }
        tunnels.push(t);
    }
    Ok(tunnels)
}

/// The wrk runs of every round, per tunnel.
fn run_rounds(figure: usize, tunnels: &[Tunnel], setup: &Setup) -> Res<Vec<Vec<WrkResult>>> {
    let conns = if figure == 1 { 64 } else { 1 };
    let (rounds, round_secs) = if setup.secs < SECONDS {
        (3, 1)
    } else {
        (ROUNDS, 2)
    };
    let mut runs: Vec<Vec<WrkResult>> = tunnels.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..tunnels.len() {
            let i = (round + j) % tunnels.len();
            let t = &tunnels[i];
            eprintln!(
                "== figure {figure} / 4, round {} / {rounds}: {}",
                round + 1,
                t.kind.name()
            );
            runs[i].push(wrk_run(&setup.wrk, t, conns, round_secs)?);
        }
    }
    Ok(runs)
}

/// Figure 1's rows for one column; `cpu` is the server's and the client's
/// ticks over all `requests` of the rounds.
fn set_64_conns(
    t: &Tunnel,
    median: &WrkResult,
    cpu: Option<(u64, u64)>,
    requests: u64,
    table: &mut Table,
) {
    let name = t.kind.name();
    table.set(
        "64 conns: requests/s",
        name,
        Some(format!("{:.0}", median.rps)),
    );
    table.set(
        "64 conns: p50 / p99 latency",
        name,
        Some(format!("{} / {}", median.p50, median.p99)),
    );
    let us = |ticks: u64| ticks as f64 * 10_000.0 / requests.max(1) as f64;
    table.set(
        "64 conns: tunnel CPU per request, µs (server + client)",
        name,
        cpu.map(|(s, c)| format!("{:.1} ({:.1} + {:.1})", us(s + c), us(s), us(c))),
    );
    table.set(
        "64 conns: peak RSS, server + client (MiB)",
        name,
        t.peak_kib().map(mib_pair),
    );
}

pub fn wrk_version(wrk: &Path) -> String {
    let out = Command::new(wrk).arg("-v").output().ok();
    out.map(|o| {
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        text.split_whitespace().nth(1).unwrap_or("?").to_owned()
    })
    .unwrap_or_else(|| "?".into())
}

pub struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub p50: String,
    p99: String,
}

fn wrk_run(wrk: &Path, t: &Tunnel, conns: u32, secs: u32) -> Res<WrkResult> {
    let url = format!("{}://{}/small", t.scheme(), t.addr);
    wrk_with(wrk, &url, t.host(), conns, secs, None)
}

pub fn wrk_with(
    wrk: &Path,
    url: &str,
    host: Option<&str>,
    conns: u32,
    secs: u32,
    script: Option<&Path>,
) -> Res<WrkResult> {
    let threads = conns.min(2);
    let mut cmd = Command::new(wrk);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    if let Some(h) = host {
        cmd.arg("-H").arg(format!("Host: {h}"));
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{text}"));
    }
    let find = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim().to_owned())
    };
    let rps = find("Requests/sec:")
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let pct = |p: &str| {
        find(p)
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default()
    };
    Ok(WrkResult {
        rps,
        requests,
        p50: pct("50%"),
        p99: pct("99%"),
    })
}
