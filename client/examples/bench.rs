//! The burrow benchmark: direct access vs burrow vs bore and rathole (when
//! installed), all in one run so the ratios hold on a noisy machine.
//!
//! Run from the workspace root (see README, "Benchmark"):
//!
//! ```text
//! cargo build --release -p burrow-server && cargo build --release -p burrow &&
//!     cargo run --release -p burrow --example bench
//! ```
//!
//! Needs `wrk` and `nginx` (Debian packages); `bore` and `rathole` are used
//! when found on PATH or in ~/.cargo/bin. Loopback only; each figure takes a
//! few seconds. Prints a markdown table. `--quick` shortens every figure and
//! skips the 10,000-tunnel one; `--tunnels N` measures only that one, with N.
//! `--figures 1,3` runs only those of figures 1-4 (1: 64 connections, 2: one
//! connection, 3: 100 MiB each way, 4: WebSocket echo); `--bin DIR` takes
//! burrow's binaries from DIR instead of target/release, to compare builds.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use awc::ws;
use burrow_common::{
    batch,
    protocol::{ResponseHead, TunnelRequest},
    Frame, Hello, PROTOCOL_VERSION,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

const HOST: &str = "bench.localhost";
const SMALL: &[u8] = b"Hello, world\n";
const BIG: u64 = 100 << 20;
const SECONDS: u32 = 5;

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 2 } else { SECONDS };
    let work = PathBuf::from("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| {
                args.get(i + 1)
                    .cloned()
                    .ok_or(format!("{flag} needs a value"))
            })
            .transpose()
    };
    let bin = PathBuf::from(value("--bin")?.unwrap_or_else(|| "target/release".into()));
    let figures: Vec<usize> = match value("--figures")? {
        None => (1..=4).collect(),
        Some(list) => list
            .split(',')
            .map(|f| match f.trim().parse() {
                Ok(n @ 1..=4) => Ok(n),
                _ => Err(format!("--figures {list}: expected numbers from 1 to 4")),
            })
            .collect::<Res<_>>()?,
    };
    for b in ["burrow", "burrow-server"] {
        if !bin.join(b).exists() {
            return Err(format!(
                "{b} not built: run `cargo build --release -p burrow-server` and \
                 `cargo build --release -p burrow` first"
            ));
        }
    }
    let wrk = which("wrk").ok_or("wrk not found (apt-get install wrk)")?;
    // `--tunnels N`: only the many-tunnels figure, with N tunnels.
    if let Some(n) = value("--tunnels")? {
        let n: usize = n
            .parse()
            .map_err(|_| format!("--tunnels {n}: not a number"))?;
        let (per_tunnel, took, rps) = many_tunnels(&bin, &work, n, &wrk, secs)?;
        println!(
            "{n} tunnels: {per_tunnel:.1} KiB server RSS per tunnel, registered in {took:.2} s, \
             {rps:.0} requests/s spread over them"
        );
        return Ok(());
    }
    let nginx = which("nginx").ok_or("nginx not found (apt-get install nginx-light)")?;

    let echo = start_echo_server();
    let upstream = Nginx::start(&nginx, &work, echo)?;
    println!(
        "upstream: nginx (1 worker, no access log) on {}, WebSocket echo behind it",
        upstream.addr
    );
    let mut kinds = vec![Kind::Direct, Kind::Burrow];
    for (kind, name) in [(Kind::Bore, "bore"), (Kind::Rathole, "rathole")] {
        match which(name) {
            Some(_) => kinds.push(kind),
            None => {
                println!("{name} not found: its column is skipped (cargo install bore-cli rathole)")
            }
        }
    }
    println!("load: wrk {}; {} s per figure\n", wrk_version(&wrk), secs);

    let mut table = Table::default();
    for figure in figures.iter().map(|f| f - 1) {
        if figure < 2 {
            small_requests(
                figure, &kinds, &bin, &work, &upstream, &wrk, secs, &mut table,
            )?;
            continue;
        }
        // The other figures column by column: the columns of one figure are
        // measured within seconds of each other.
        for &kind in &kinds {
            let name = kind.name();
            eprintln!("== figure {} / 4: {name}", figure + 1);
            match figure {
                2 => {
                    // 3: 100 MiB each way, the best of three transfers (one takes a
                    // tenth of a second, where a stall of the shared machine shows).
                    let t = Tunnel::start(kind, &bin, &work, upstream.addr)?;
                    t.check()?;
                    let down = best_of(BULK_RUNS, || download(t.addr, t.host()))?;
                    let up = best_of(BULK_RUNS, || upload(t.addr, t.host()))?;
                    table.set(
                        "100 MiB download: s (MiB/s)",
                        name,
                        Some(format!("{:.2} ({:.0})", down, 100.0 / down)),
                    );
                    table.set(
                        "100 MiB upload: s (MiB/s)",
                        name,
                        Some(format!("{:.2} ({:.0})", up, 100.0 / up)),
                    );
                    table.set(
                        "100 MiB: peak RSS, server + client (MiB)",
                        name,
                        t.peak_kib()
                            .map(|(s, c)| format!("{:.1} + {:.1}", mib(s), mib(c))),
                    );
                    drop(t);
                }
                _ => {
                    // 7: WebSocket echo round trips.
                    let t = Tunnel::start(kind, &bin, &work, upstream.addr)?;
                    let rt = ws_round_trips(t.addr, t.host(), 16, secs)?;
                    table.set(
                        "WebSocket echo, 16 sockets: round trips/s",
                        name,
                        Some(format!("{rt:.0}")),
                    );
                    drop(t);
                }
            }
        }
    }

    // 6: many tunnels on one server (burrow only: the peers need a process per tunnel).
    if !quick && figures.len() == 4 {
        eprintln!("== 10,000 tunnels");
        let (per_tunnel, took, rps) = many_tunnels(&bin, &work, 10_000, &wrk, secs)?;
        table.set(
            "10,000 tunnels: server RSS per tunnel (KiB)",
            "burrow",
            Some(format!("{per_tunnel:.1}")),
        );
        table.set(
            "10,000 tunnels: time to register all (s)",
            "burrow",
            Some(format!("{took:.2}")),
        );
        table.set(
            "10,000 tunnels: requests/s spread over all",
            "burrow",
            Some(format!("{rps:.0}")),
        );
    }

    println!(
        "{}",
        table.render(&kinds.iter().map(|k| k.name()).collect::<Vec<_>>())
    );
    Ok(())
}

/// Rounds of the small-request figures (1 and 2).
const ROUNDS: usize = 5;

/// Figures 1 (64 connections, `figure` 0) and 2 (one connection): every
/// column's tunnel is started, then measured in rounds, each round running
/// every column once in an order that rotates; each column reports its
/// median round. A slow spell of the shared machine then costs every
/// column one round, instead of costing whichever column it fell on.
#[allow(clippy::too_many_arguments)]
fn small_requests(
    figure: usize,
    kinds: &[Kind],
    bin: &Path,
    work: &Path,
    upstream: &Nginx,
    wrk: &Path,
    secs: u32,
    table: &mut Table,
) -> Res<()> {
    let conns = if figure == 0 { 64 } else { 1 };
    let (rounds, round_secs) = if secs < SECONDS { (3, 1) } else { (ROUNDS, 2) };
    let mut tunnels = Vec::new();
    for &kind in kinds {
        let t = Tunnel::start(kind, bin, work, upstream.addr)?;
        t.check()?;
        if figure == 0 {
            table.set(
                "idle RSS, server + client (MiB)",
                kind.name(),
                t.rss_kib()
                    .map(|(s, c)| format!("{:.1} + {:.1}", mib(s), mib(c))),
            );
        }
        tunnels.push(t);
    }
    let cpu0: Vec<_> = tunnels.iter().map(Tunnel::cpu_ticks).collect();
    let mut runs: Vec<Vec<WrkResult>> = tunnels.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..tunnels.len() {
            let i = (round + j) % tunnels.len();
            let t = &tunnels[i];
            eprintln!(
                "== figure {} / 4, round {} / {rounds}: {}",
                figure + 1,
                round + 1,
                t.kind.name()
            );
            runs[i].push(wrk_run(wrk, t.addr, t.host(), conns, round_secs)?);
        }
    }
    for ((t, cpu0), mut runs) in tunnels.iter().zip(cpu0).zip(runs) {
        let name = t.kind.name();
        let requests: u64 = runs.iter().map(|r| r.requests).sum();
        let cpu = t.cpu_ticks().zip(cpu0).map(|(a, b)| a - b);
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let Some(median) = runs.get(runs.len() / 2) else {
            continue;
        };
        if figure == 0 {
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
            table.set(
                "64 conns: tunnel CPU per request (µs)",
                name,
                cpu.map(|ticks| format!("{:.1}", ticks as f64 * 10_000.0 / requests as f64)),
            );
            table.set(
                "64 conns: peak RSS, server + client (MiB)",
                name,
                t.peak_kib()
                    .map(|(s, c)| format!("{:.1} + {:.1}", mib(s), mib(c))),
            );
        } else {
            table.set(
                "1 conn: requests/s",
                name,
                Some(format!("{:.0}", median.rps)),
            );
            table.set("1 conn: p50 latency", name, Some(median.p50.clone()));
        }
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------- tunnels

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Burrow,
    Bore,
    Rathole,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Burrow => "burrow",
            Kind::Bore => "bore",
            Kind::Rathole => "rathole",
        }
    }
}

/// A running tunnel (or none, for direct access) in front of the upstream.
struct Tunnel {
    kind: Kind,
    addr: SocketAddr,
    procs: Vec<Proc>,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Res<Proc> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .map(Proc)
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Tunnel {
    fn start(kind: Kind, bin: &Path, work: &Path, upstream: SocketAddr) -> Res<Tunnel> {
        let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut procs = Vec::new();
        match kind {
            Kind::Direct => {
                return Ok(Tunnel {
                    kind,
                    addr: upstream,
                    procs,
                })
            }
            Kind::Burrow => {
                let server = work.join("burrow-server.toml");
                write(
                    &server,
                    &format!(
                    "listen = \"{public}\"\n[[hosts]]\nhost = \"{HOST}\"\ntoken = \"bench-token\"\n"
                ),
                )?;
                let client = work.join("burrow.toml");
                write(
                    &client,
                    &format!(
                    "server = \"ws://{public}/_burrow/connect\"\n[[tunnels]]\nhost = \"{HOST}\"\n\
                     token = \"bench-token\"\nlocal = \"http://{upstream}\"\n"
                ),
                )?;
                procs.push(spawn(
                    Command::new(bin.join("burrow-server"))
                        .arg("--config")
                        .arg(&server),
                )?);
                wait_port(public)?;
                procs.push(spawn(
                    Command::new(bin.join("burrow"))
                        .arg("--config")
                        .arg(&client),
                )?);
            }
            Kind::Bore => {
                let bore = which("bore").ok_or("bore vanished")?;
                procs.push(spawn(Command::new(&bore).args([
                    "server",
                    "--bind-addr",
                    "127.0.0.1",
                ]))?);
                wait_port(([127, 0, 0, 1], 7835).into())?;
                procs.push(spawn(Command::new(&bore).args([
                    "local",
                    &upstream.port().to_string(),
                    "--local-host",
                    "127.0.0.1",
                    "--to",
                    "127.0.0.1",
                    "--port",
                    &public.port().to_string(),
                ]))?);
            }
            Kind::Rathole => {
                let rathole = which("rathole").ok_or("rathole vanished")?;
                let control = free_port();
                let server = work.join("rathole-server.toml");
                write(
                    &server,
                    &format!(
                        "[server]\nbind_addr = \"127.0.0.1:{control}\"\n[server.services.bench]\n\
                     token = \"bench-token\"\nbind_addr = \"{public}\"\nnodelay = true\n"
                    ),
                )?;
                let client = work.join("rathole-client.toml");
                write(
                    &client,
                    &format!(
                    "[client]\nremote_addr = \"127.0.0.1:{control}\"\n[client.services.bench]\n\
                     token = \"bench-token\"\nlocal_addr = \"{upstream}\"\nnodelay = true\n"
                ),
                )?;
                procs.push(spawn(Command::new(&rathole).arg("--server").arg(&server))?);
                wait_port(([127, 0, 0, 1], control).into())?;
                procs.push(spawn(Command::new(&rathole).arg("--client").arg(&client))?);
            }
        }
        let t = Tunnel {
            kind,
            addr: public,
            procs,
        };
        // Ready when a request goes all the way through.
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if matches!(http_get(t.addr, t.host(), "/small"), Ok((200, body)) if body == SMALL) {
                return Ok(t);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{} did not come up", kind.name()))
    }

    fn host(&self) -> Option<&'static str> {
        (self.kind == Kind::Burrow).then_some(HOST)
    }

    /// Every answer is checked before anything is timed.
    fn check(&self) -> Res<()> {
        let (status, body) = http_get(self.addr, self.host(), "/small")?;
        if status != 200 || body != SMALL {
            return Err(format!(
                "{}: wrong answer to /small: {status} {body:?}",
                self.kind.name()
            ));
        }
        Ok(())
    }

    fn pids(&self) -> Option<(u32, u32)> {
        match self.procs.as_slice() {
            [server, client] => Some((server.0.id(), client.0.id())),
            _ => None,
        }
    }

    fn rss_kib(&self) -> Option<(u64, u64)> {
        let (s, c) = self.pids()?;
        Some((proc_status(s, "VmRSS:")?, proc_status(c, "VmRSS:")?))
    }

    fn peak_kib(&self) -> Option<(u64, u64)> {
        let (s, c) = self.pids()?;
        Some((proc_status(s, "VmHWM:")?, proc_status(c, "VmHWM:")?))
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let (s, c) = self.pids()?;
        Some(cpu_ticks(s)? + cpu_ticks(c)?)
    }
}

fn write(path: &Path, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn wait_port(addr: SocketAddr) -> Res<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr}"))
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn which(name: &str) -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain([
            PathBuf::from(home).join(".cargo/bin"),
            PathBuf::from("/usr/sbin"),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------- upstream

struct Nginx {
    addr: SocketAddr,
    _proc: Proc,
}

impl Nginx {
    fn start(nginx: &Path, work: &Path, echo: SocketAddr) -> Res<Nginx> {
        let dir = std::fs::canonicalize(work)
            .map_err(|e| e.to_string())?
            .join("nginx");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let big = dir.join("100m.bin");
        if std::fs::metadata(&big).map(|m| m.len()).ok() != Some(BIG) {
            let mut f = std::fs::File::create(&big).map_err(|e| e.to_string())?;
            let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
            for _ in 0..100 {
                f.write_all(&chunk).map_err(|e| e.to_string())?;
            }
        }
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        write(&conf, &format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 20000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 10000000;\n  client_max_body_size 0;\n\
               server {{\n    listen {addr};\n    root {d};\n\
                 location = /small {{ default_type text/plain; return 200 \"Hello, world\\n\"; }}\n\
                 location = /upload {{ client_body_buffer_size 1m; proxy_request_buffering off; proxy_pass http://{echo}/upload; }}\n\
                 location = /ws {{ proxy_pass http://{echo}/ws; proxy_http_version 1.1;\n\
                   proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; }}\n\
               }}\n}}\n"
        ))?;
        let proc = spawn(Command::new(nginx).arg("-c").arg(&conf).arg("-p").arg(&dir))?;
        wait_port(addr)?;
        Ok(Nginx { addr, _proc: proc })
    }
}

/// A WebSocket echo and an upload sink, on their own thread.
fn start_echo_server() -> SocketAddr {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            async fn echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
                let (resp, mut session, mut stream) = actix_ws::handle(&req, body)?;
                actix_rt::spawn(async move {
                    while let Some(Ok(msg)) = stream.next().await {
                        let ok = match msg {
                            actix_ws::Message::Text(t) => session.text(t).await,
                            actix_ws::Message::Binary(b) => session.binary(b).await,
                            actix_ws::Message::Close(_) => break,
                            _ => Ok(()),
                        };
                        if ok.is_err() {
                            break;
                        }
                    }
                });
                Ok(resp)
            }
            async fn upload(mut body: web::Payload) -> HttpResponse {
                let mut n = 0u64;
                while let Some(Ok(chunk)) = body.next().await {
                    n += chunk.len() as u64;
                }
                HttpResponse::Ok().body(n.to_string())
            }
            let server = HttpServer::new(|| {
                App::new()
                    .route("/ws", web::get().to(echo))
                    .route("/upload", web::post().to(upload))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("echo listen")
            .run();
            let _ = server.await;
        });
    });
    addr
}

// ---------------------------------------------------------------- load

fn wrk_version(wrk: &Path) -> String {
    let out = Command::new(wrk).arg("-v").output().ok();
    out.map(|o| {
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        text.split_whitespace().nth(1).unwrap_or("?").to_owned()
    })
    .unwrap_or_else(|| "?".into())
}

struct WrkResult {
    rps: f64,
    requests: u64,
    p50: String,
    p99: String,
}

fn wrk_run(
    wrk: &Path,
    addr: SocketAddr,
    host: Option<&str>,
    conns: u32,
    secs: u32,
) -> Res<WrkResult> {
    wrk_with(wrk, addr, host, conns, secs, None, "/small")
}

fn wrk_with(
    wrk: &Path,
    addr: SocketAddr,
    host: Option<&str>,
    conns: u32,
    secs: u32,
    script: Option<&Path>,
    path: &str,
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
    cmd.arg(format!("http://{addr}{path}"));
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

/// A GET over a fresh connection; returns status and body.
fn http_get(addr: SocketAddr, host: Option<&str>, path: &str) -> Res<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?
        + 4;
    let status = std::str::from_utf8(&out[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad status")?;
    let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
    let mut body = out[head_end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Transfers per bulk figure.
const BULK_RUNS: usize = 3;

/// The shortest of `n` timings (each run is checked by `f`).
fn best_of(n: usize, mut f: impl FnMut() -> Res<f64>) -> Res<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..n {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Seconds to download the 100 MiB file; every byte is checked.
fn download(addr: SocketAddr, host: Option<&str>) -> Res<f64> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    let start = Instant::now();
    write!(
        s,
        "GET /100m.bin HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(256 << 10, s);
    let mut line = String::new();
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<u64>().ok();
        }
    }
    if length != Some(BIG) {
        return Err(format!("download: content-length {length:?}"));
    }
    // The file repeats one 1 MiB block; compare against two copies of it so
    // any read (at any offset, up to 1 MiB long) is one slice comparison.
    let block: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i % (1 << 20) % 251) as u8)
        .collect();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < BIG {
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("download cut at {got} bytes"));
        }
        let at = (got % (1 << 20)) as usize;
        if buf[..n] != block[at..at + n] {
            return Err(format!("download: bytes {got}..{} differ", got + n as u64));
        }
        got += n as u64;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds to upload 100 MiB; the upstream must report the full length.
fn upload(addr: SocketAddr, host: Option<&str>) -> Res<f64> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    let chunk = vec![0x42u8; 1 << 20];
    let start = Instant::now();
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        s.write_all(&chunk).map_err(|e| format!("upload: {e}"))?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") || !text.contains(&BIG.to_string()) {
        return Err(format!("upload answer: {text}"));
    }
    Ok(secs)
}

/// Echo round trips per second over `sockets` WebSockets, each checked.
fn ws_round_trips(addr: SocketAddr, host: Option<&str>, sockets: usize, secs: u32) -> Res<f64> {
    let host = host.map(str::to_owned);
    actix_rt::System::new().block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs.into());
        let tasks = (0..sockets).map(|i| {
            let host = host.clone();
            async move {
                let mut req = awc::Client::new().ws(format!("ws://{addr}/ws"));
                if let Some(h) = &host {
                    req = req.set_header("host", h.as_str());
                }
                let (_, mut s) = req
                    .connect()
                    .await
                    .map_err(|e| format!("ws connect: {e}"))?;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let msg = format!("socket {i} message {n}");
                    s.send(ws::Message::Text(msg.clone().into()))
                        .await
                        .map_err(|e| e.to_string())?;
                    match s.next().await {
                        Some(Ok(ws::Frame::Text(t))) if t == msg.as_bytes() => n += 1,
                        other => return Err(format!("ws echo: {other:?}")),
                    }
                }
                let _ = s.send(ws::Message::Close(None)).await;
                Ok::<u64, String>(n)
            }
        });
        let start = Instant::now();
        let counts = futures_util::future::join_all(tasks).await;
        let total: u64 = counts.into_iter().collect::<Res<Vec<u64>>>()?.iter().sum();
        Ok(total as f64 / start.elapsed().as_secs_f64())
    })
}

// ---------------------------------------------------------------- many tunnels

/// Registers `n` tunnels, one WebSocket each, answering requests in-process.
/// Returns server KiB per tunnel, seconds to register all, and requests/s
/// spread over them.
fn many_tunnels(bin: &Path, work: &Path, n: usize, wrk: &Path, secs: u32) -> Res<(f64, f64, f64)> {
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut conf = format!("listen = \"{public}\"\n");
    for i in 0..n {
        let _ = write!(
            conf,
            "[[hosts]]\nhost = \"t{i}.bench\"\ntoken = \"token-{i}\"\n"
        );
    }
    let path = work.join("many.toml");
    write(&path, &conf)?;
    let server = spawn(Command::new("sh").arg("-c").arg(format!(
        "ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec {} --config {}",
        bin.join("burrow-server").display(),
        path.display()
    )))?;
    wait_port(public)?;
    let pid = server.0.id();
    // `sh -c exec` keeps the pid; give it a moment to finish its start-up allocations.
    std::thread::sleep(Duration::from_millis(300));
    let before = proc_status(pid, "VmRSS:").ok_or("no server RSS")?;

    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let start = Instant::now();
            let mut joins = Vec::with_capacity(n);
            // Open in waves so the listen backlog is not overrun.
            for wave in (0..n).collect::<Vec<_>>().chunks(500) {
                let opened =
                    futures_util::future::join_all(wave.iter().map(|&i| fake_client(public, i)))
                        .await;
                for o in opened {
                    match o {
                        Ok(task) => joins.push(task),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Ok(start.elapsed().as_secs_f64()));
            let _ = stop_rx.await;
            for j in joins {
                j.abort();
            }
        });
    });
    let took = rx.recv().map_err(|e| e.to_string())??;
    std::thread::sleep(Duration::from_millis(500));
    let after = proc_status(pid, "VmRSS:").ok_or("no server RSS")?;
    let per_tunnel = (after.saturating_sub(before)) as f64 / n as f64;

    let script = work.join("many.lua");
    write(&script, &format!(
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  \
         return wrk.format(\"GET\", \"/small\", {{[\"Host\"] = \"t\" .. (counter % {n}) .. \".bench\"}})\nend\n"
    ))?;
    let r = wrk_with(wrk, public, None, 64, secs, Some(&script), "/small")?;
    let _ = stop_tx.send(());
    drop(server);
    Ok((per_tunnel, took, r.rps))
}

/// One registered tunnel answering every request with the small body.
async fn fake_client(server: SocketAddr, i: usize) -> Res<tokio::task::JoinHandle<()>> {
    let (_, mut s) = awc::Client::new()
        .ws(format!("ws://{server}/_burrow/connect"))
        .connect()
        .await
        .map_err(|e| format!("tunnel {i}: {e}"))?;
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        tunnels: vec![TunnelRequest {
            host: format!("t{i}.bench"),
            token: format!("token-{i}"),
        }],
        instance: None,
    });
    s.send(ws::Message::Binary(
        hello.encode().map_err(|e| e.to_string())?,
    ))
    .await
    .map_err(|e| e.to_string())?;
    match s.next().await {
        Some(Ok(ws::Frame::Binary(b))) => match Frame::decode(b) {
            Ok(Frame::HelloAck(ack)) if ack.tunnels.iter().all(|v| v.accepted) => {}
            other => return Err(format!("tunnel {i} refused: {other:?}")),
        },
        other => return Err(format!("tunnel {i}: {other:?}")),
    }
    Ok(actix_rt::spawn(async move {
        while let Some(Ok(frame)) = s.next().await {
            match frame {
                ws::Frame::Binary(msg) => {
                    let Ok(frames) = batch::unpack(msg) else {
                        break;
                    };
                    for b in frames.flatten() {
                        let Ok(Frame::RequestHead { stream, .. }) = Frame::decode(b) else {
                            continue;
                        };
                        let head = Frame::ResponseHead {
                            stream,
                            head: ResponseHead {
                                status: 200,
                                headers: vec![(
                                    Bytes::from_static(b"content-length"),
                                    Bytes::from_static(b"13"),
                                )],
                                end_stream: true,
                                body: Some(Bytes::from_static(SMALL)),
                            },
                        };
                        if let Ok(f) = head.encode() {
                            let _ = s.feed(ws::Message::Binary(f)).await;
                        }
                    }
                    let _ = s.flush().await;
                }
                ws::Frame::Ping(p) => {
                    let _ = s.send(ws::Message::Pong(p)).await;
                }
                _ => {}
            }
        }
    }))
}

// ---------------------------------------------------------------- table

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    cells: BTreeMap<(String, String), String>,
}

impl Table {
    fn set(&mut self, row: &str, col: &str, value: Option<String>) {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.to_owned());
        }
        if let Some(v) = value {
            self.cells.insert((row.to_owned(), col.to_owned()), v);
        }
    }

    fn render(&self, cols: &[&str]) -> String {
        let mut out = String::from("| figure |");
        for c in cols {
            let _ = write!(out, " {c} |");
        }
        out.push_str("\n|---|");
        for _ in cols {
            out.push_str("---:|");
        }
        for r in &self.rows {
            let _ = write!(out, "\n| {r} |");
            for c in cols {
                let v = self
                    .cells
                    .get(&(r.clone(), c.to_string()))
                    .map_or("n/a", String::as_str);
                let _ = write!(out, " {v} |");
            }
        }
        out
    }
}
