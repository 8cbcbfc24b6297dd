//! The burrow benchmark: direct access vs burrow vs bore and rathole (when
//! installed), all in one run so the ratios hold on a noisy machine.
//!
//! Run from the workspace root (see docs/DEVELOPMENT.md, "Benchmark"):
//!
//! ```text
//! cargo build --release && cargo run --release -p burrow --example bench
//! ```
//!
//! Needs `wrk` and `nginx` (Debian packages); `bore` and `rathole` are used
//! when found on PATH or in ~/.cargo/bin. Loopback only; each figure takes a
//! few seconds. Prints a markdown table. `--quick` shortens every figure and
//! skips the 10,000-tunnel one; `--tunnels N` measures only that one, with N.
//! `--figures 1,3` runs only those of figures 1-4 (1: 64 connections, 2: one
//! connection, 3: 100 MiB each way, 4: WebSocket echo); `--bin DIR` takes
//! burrow's binaries from DIR instead of target/release, to compare builds.
//! `--rtt 0,20,50,100` runs only the long-link figures at those round trips
//! (ms), with a link holding at most `--link-window BYTES` (3 MiB) in
//! flight each way. `--cluster` runs only the cross-node figures: two
//! nodes sharing a `redis-server`, requests through the node holding the
//! client and through the other one.

mod bulk;
mod calls;
mod cluster;
mod link;
mod load;
mod longlink;
mod many;
mod procs;
mod table;
mod tls;
mod tunnels;
mod upstream;
mod websocket;

use std::path::{Path, PathBuf};

use procs::which;
use table::Table;
use tunnels::Kind;
use upstream::Nginx;

const HOST: &str = "bench.localhost";
const SMALL: &[u8] = b"Hello, world\n";
const BIG: u64 = 100 << 20;
/// The file of the long-link transfers.
const LONG_LINK_FILE: u64 = 64 << 20;
/// Bytes a long link holds in flight each way by default.
const LINK_WINDOW: usize = 3 << 20;
const SECONDS: u32 = 5;

type Res<T> = Result<T, String>;

/// What every figure runs with.
struct Setup {
    /// Where burrow's binaries are (`--bin`).
    bin: PathBuf,
    /// Configuration files and nginx's directory.
    work: PathBuf,
    wrk: PathBuf,
    /// Seconds of load per figure.
    secs: u32,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let secs = if quick { 2 } else { SECONDS };
    let work = PathBuf::from("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let bin = PathBuf::from(value(&args, "--bin")?.unwrap_or_else(|| "target/release".into()));
    let figures = figures(&args)?;
    check_built(&bin)?;
    let wrk = which("wrk").ok_or("wrk not found (apt-get install wrk)")?;
    let setup = Setup {
        bin,
        work,
        wrk,
        secs,
    };
    // `--tunnels N`: only the many-tunnels figure, with N tunnels.
    if let Some(n) = value(&args, "--tunnels")? {
        return many::only(&setup, &n);
    }
    let nginx = which("nginx").ok_or("nginx not found (apt-get install nginx-light)")?;
    let upstream = start_upstream(&nginx, &setup.work)?;
    // `--cluster`: only the cross-node figures.
    if args.iter().any(|a| a == "--cluster") {
        return cluster::run(&setup, upstream.addr);
    }
    let kinds = columns();
    // `--rtt 0,20,50,100`: only the long-link figures, at those round trips.
    if let Some(list) = value(&args, "--rtt")? {
        let rtts = numbers(&list, "--rtt")?;
        let window = match value(&args, "--link-window")? {
            Some(w) => numbers(&w, "--link-window")?.first().copied().unwrap_or(0) as usize,
            None => LINK_WINDOW,
        };
        let kinds: Vec<Kind> = kinds
            .into_iter()
            .filter(|&k| k != Kind::BurrowTls)
            .collect();
        return longlink::run(&setup, &upstream, &kinds, &rtts, window);
    }
    println!(
        "load: wrk {}; {} s per figure\n",
        load::wrk_version(&setup.wrk),
        secs
    );

    let mut table = Table::default();
    let mut below = String::new();
    for &figure in &figures {
        below.push_str(&run_figure(figure, &setup, &kinds, &upstream, &mut table)?);
    }
    if !quick && figures.len() == 4 {
        many::figure(&setup, &mut table)?;
    }
    println!(
        "{}",
        table.render(&kinds.iter().map(|k| k.name()).collect::<Vec<_>>())
    );
    if !below.is_empty() {
        println!("\nSystem calls per request by call, wrk -c4:\n\n{below}");
    }
    Ok(())
}

/// The value after `flag`, if `flag` is given.
fn value(args: &[String], flag: &str) -> Res<Option<String>> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| {
            args.get(i + 1)
                .cloned()
                .ok_or(format!("{flag} needs a value"))
        })
        .transpose()
}

/// A comma-separated list of numbers.
fn numbers(list: &str, flag: &str) -> Res<Vec<u64>> {
    list.split(',')
        .map(|n| {
            n.trim()
                .parse()
                .map_err(|_| format!("{flag} {list}: expected numbers"))
        })
        .collect()
}

/// `--figures 1,3`: which of figures 1-4 to run (all by default).
fn figures(args: &[String]) -> Res<Vec<usize>> {
    Ok(match value(args, "--figures")? {
        None => (1..=4).collect(),
        Some(list) => list
            .split(',')
            .map(|f| match f.trim().parse() {
                Ok(n @ 1..=4) => Ok(n),
                _ => Err(format!("--figures {list}: expected numbers from 1 to 4")),
            })
            .collect::<Res<_>>()?,
    })
}

fn check_built(bin: &Path) -> Res<()> {
    for b in ["burrow", "burrow-server"] {
        if !bin.join(b).exists() {
            return Err(format!("{b} not built: run `cargo build --release` first"));
        }
    }
    Ok(())
}

fn start_upstream(nginx: &Path, work: &Path) -> Res<Nginx> {
    let echo = upstream::start_echo_server();
    let upstream = Nginx::start(nginx, work, echo)?;
    println!(
        "upstream: nginx (1 worker, no access log) on {}, WebSocket echo behind it",
        upstream.addr
    );
    Ok(upstream)
}

/// The table's columns: direct, burrow over plain HTTP and over HTTPS
/// (wss:// to the server), then bore and rathole if installed.
fn columns() -> Vec<Kind> {
    let mut kinds = vec![Kind::Direct, Kind::Burrow, Kind::BurrowTls];
    for (kind, name) in [(Kind::Bore, "bore"), (Kind::Rathole, "rathole")] {
        match which(name) {
            Some(_) => kinds.push(kind),
            None => {
                println!("{name} not found: its column is skipped (cargo install bore-cli rathole)")
            }
        }
    }
    kinds
}

/// Figure `figure` (1 to 4), every column; what goes below the table.
fn run_figure(
    figure: usize,
    setup: &Setup,
    kinds: &[Kind],
    upstream: &Nginx,
    table: &mut Table,
) -> Res<String> {
    if figure <= 2 {
        return load::small_requests(figure, kinds, setup, upstream, table);
    }
    // The other figures column by column: the columns of one figure are
    // measured within seconds of each other.
    for &kind in kinds {
        eprintln!("== figure {figure} / 4: {}", kind.name());
        match figure {
            3 => bulk::figure(kind, setup, upstream, table)?,
            _ => websocket::figure(kind, setup, upstream, table)?,
        }
    }
    Ok(String::new())
}
