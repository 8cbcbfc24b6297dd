//! The burrow soak test: mixed traffic through the real `burrow-server` and
//! `burrow` binaries for a given time, while the client, the server and the
//! local service are killed and started again and the link between client
//! and server freezes, at random moments; every answer is checked byte for
//! byte.
//!
//! Run from the workspace root (see docs/DEVELOPMENT.md, "Soak test"):
//!
//! ```text
//! cargo build --release --bins --examples && target/release/examples/soak --secs 600
//! ```
//!
//! Options: `--secs N` (600), `--seed S` (from the clock, printed, to repeat
//! a run's choices), `--bin DIR` (where burrow's binaries are;
//! target/release), `--workers N` (concurrent callers; 8), `--faults
//! client,server,local,freeze` (which faults; all, `none` for traffic
//! alone). Exits 0 only when no request failed outside a fault's window
//! and no answer had a wrong byte. Loopback only.

mod cast;
mod chaos;
mod clock;
mod http;
mod link;
mod pattern;
#[path = "../bench/procs.rs"]
#[allow(dead_code)]
mod procs;
mod report;
mod service;
mod sockets;
#[path = "../bench/table.rs"]
#[allow(dead_code)]
mod table;
mod traffic;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cast::Cast;
use chaos::{Fault, Plan};
use link::Link;

/// The tunnel's public host.
const HOST: &str = "soak.localhost";

type Res<T> = Result<T, String>;

struct Options {
    secs: u64,
    seed: u64,
    bin: PathBuf,
    workers: u64,
    faults: Vec<Fault>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The local service, started by the soak itself as a child process.
    if args.first().map(String::as_str) == Some("upstream") {
        let port = flags(&args[1..], &["--port"])
            .and_then(|f| number(&f, "--port", 0))
            .and_then(|p| u16::try_from(p).map_err(|_| format!("--port {p}: not a port")));
        if let Err(e) = port.and_then(service::run) {
            eprintln!("soak upstream: {e}");
            std::process::exit(1);
        }
        return;
    }
    match flags(&args, &FLAGS).and_then(|f| run(&f)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

/// The options `soak` takes, each with a value.
const FLAGS: [&str; 5] = ["--secs", "--seed", "--bin", "--workers", "--faults"];

/// `--flag value` pairs; a flag not in `known`, or without its value, is
/// an error.
fn flags(args: &[String], known: &[&str]) -> Res<HashMap<String, String>> {
    let mut given = HashMap::new();
    let mut words = args.iter();
    while let Some(flag) = words.next() {
        if !known.contains(&flag.as_str()) {
            return Err(format!(
                "unknown option {flag} (options: {})",
                known.join(", ")
            ));
        }
        let v = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        given.insert(flag.clone(), v.clone());
    }
    Ok(given)
}

fn options(given: &HashMap<String, String>) -> Res<Options> {
    let clock_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let faults = given
        .get("--faults")
        .map_or("client,server,local,freeze", String::as_str);
    Ok(Options {
        secs: number(given, "--secs", 600)?,
        seed: number(given, "--seed", clock_seed)?,
        bin: PathBuf::from(given.get("--bin").map_or("target/release", String::as_str)),
        workers: number(given, "--workers", 8)?.max(1),
        faults: Fault::parse(faults)?,
    })
}

/// The number given with `flag`, or `default`.
fn number(given: &HashMap<String, String>, flag: &str, default: u64) -> Res<u64> {
    given.get(flag).map_or(Ok(default), |t| {
        t.parse().map_err(|_| format!("{flag} {t}: not a number"))
    })
}

fn run(given: &HashMap<String, String>) -> Res<bool> {
    let o = options(given)?;
    for b in ["burrow", "burrow-server"] {
        if !o.bin.join(b).is_file() {
            return Err(format!(
                "{} not found: build it (cargo build --release --bins), or name its folder with --bin",
                o.bin.join(b).display()
            ));
        }
    }
    let bin = std::fs::canonicalize(&o.bin).map_err(|e| format!("{}: {e}", o.bin.display()))?;
    let dir = std::env::temp_dir().join(format!("burrow-soak-{}-{}", std::process::id(), o.seed));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names: Vec<&str> = o.faults.iter().map(|f| f.name()).collect();
    println!(
        "soak: {} s, seed {}, {} callers, faults: {}",
        o.secs,
        o.seed,
        o.workers,
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    );
    let public = ([127, 0, 0, 1], procs::free_port()).into();
    let link = Link::start(public)?;
    let mut cast = Cast::new(&bin, dir.clone(), public, link.addr)?;
    cast.start_all()?;
    if chaos::probe_until(public, Instant::now() + Duration::from_secs(30)).is_none() {
        return Err(format!(
            "the tunnel did not answer within 30 s (logs in {})",
            dir.display()
        ));
    }
    let origin = clock::Origin::now();
    let control = Arc::new(traffic::Control::default());
    let plan = Plan::new(o.secs, o.faults.clone());
    let faults = {
        let control = control.clone();
        let seed = o.seed;
        std::thread::spawn(move || chaos::run(cast, link, plan, seed, control, origin))
    };
    let tally = actix_rt::System::new().block_on(traffic::run(o.workers, o.seed, public, control));
    let chaos = faults
        .join()
        .map_err(|_| "the fault thread panicked".to_owned())??;
    let passed = report::print(&tally, &chaos, &origin);
    println!(
        "seed {} ({}); logs and configuration in {}",
        o.seed,
        if passed { "passed" } else { "FAILED" },
        dir.display()
    );
    Ok(passed)
}
