//! System calls per request of each end, counted by strace over a short
//! run of wrk with four connections. A `write` or a wake-up added to every
//! request shows here at once, where CPU time hides it in the noise of a
//! shared machine.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{load::wrk_with, table::Table, tunnels::Tunnel, Res, Setup};

/// Connections of the counted run: few, so that strace's cost does not
/// starve a tunnel of the machine's two cores.
const CONNS: u32 = 4;

/// Calls per request by name, for one process.
type Counts = BTreeMap<String, f64>;

/// The row for every tunnel, and the busiest calls of each end below the
/// table (returned as text).
pub fn figure(tunnels: &[Tunnel], setup: &Setup, table: &mut Table) -> Res<String> {
    let Some(strace) = crate::procs::which("strace") else {
        println!("strace not found: system calls are not counted (apt-get install strace)");
        return Ok(String::new());
    };
    let mut detail = String::new();
    for t in tunnels {
        let Some((server, client)) = t.pids() else {
            continue;
        };
        eprintln!("== system calls: {}", t.kind.name());
        let (s, c) = count(&strace, setup, t, [server, client])?;
        let (st, ct) = (s.values().sum::<f64>(), c.values().sum::<f64>());
        table.set(
            "4 conns: system calls per request (server + client)",
            t.kind.name(),
            Some(format!("{:.1} ({st:.1} + {ct:.1})", st + ct)),
        );
        detail.push_str(&format!(
            "- {}: server {}; client {}\n",
            t.kind.name(),
            busiest(&s),
            busiest(&c)
        ));
    }
    Ok(detail)
}

/// The calls of both processes per request over one wrk run.
fn count(strace: &Path, setup: &Setup, t: &Tunnel, pids: [u32; 2]) -> Res<(Counts, Counts)> {
    let url = format!("{}://{}/small", t.scheme(), t.addr);
    // Warm: connections made, pools filled.
    wrk_with(&setup.wrk, &url, t.host(), CONNS, 1, None)?;
    let outs: Vec<PathBuf> = pids
        .iter()
        .map(|p| setup.work.join(format!("strace-{p}.txt")))
        .collect();
    let mut tracers = Vec::new();
    for (pid, out) in pids.iter().zip(&outs) {
        tracers.push(Tracer::attach(strace, *pid, out)?);
    }
    let run = wrk_with(&setup.wrk, &url, t.host(), CONNS, setup.secs.min(3), None);
    for tracer in &mut tracers {
        tracer.finish()?;
    }
    let requests = run?.requests.max(1) as f64;
    let read = |p: &PathBuf| parse(p).map(|c| per_request(c, requests));
    Ok((read(&outs[0])?, read(&outs[1])?))
}

/// strace attached to every thread of a process.
struct Tracer(Child);

impl Tracer {
    fn attach(strace: &Path, pid: u32, out: &Path) -> Res<Tracer> {
        let threads = threads(pid)?;
        let mut cmd = Command::new(strace);
        cmd.args(["-c", "-q", "-o"]).arg(out);
        for t in &threads {
            cmd.arg("-p").arg(t.to_string());
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("strace: {e}"))?;
        let tracer = Tracer(child);
        // Counting starts once every thread is traced.
        let end = Instant::now() + Duration::from_secs(10);
        while !threads.iter().all(|t| traced(pid, *t)) {
            if Instant::now() > end {
                return Err(format!("strace did not attach to {pid}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(tracer)
    }

    /// Stops tracing; strace writes its table as it goes.
    fn finish(&mut self) -> Res<()> {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        self.0.wait().map(drop).map_err(|e| format!("strace: {e}"))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn threads(pid: u32) -> Res<Vec<u32>> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

fn traced(pid: u32, thread: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{thread}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() != "0")
    })
}

/// strace -c's table: calls by name.
fn parse(path: &Path) -> Res<Counts> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut calls = Counts::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let numeric = f
            .first()
            .is_some_and(|c| c.starts_with(|c: char| c.is_ascii_digit()));
        if f.len() >= 5 && numeric && f[f.len() - 1] != "total" {
            if let Ok(n) = f[3].parse::<f64>() {
                calls.insert(f[f.len() - 1].to_owned(), n);
            }
        }
    }
    Ok(calls)
}

fn per_request(mut calls: Counts, requests: f64) -> Counts {
    calls.values_mut().for_each(|n| *n /= requests);
    calls
}

/// The calls made at least once per 20 requests, most frequent first.
fn busiest(calls: &Counts) -> String {
    let mut list: Vec<_> = calls.iter().filter(|(_, &n)| n >= 0.05).collect();
    list.sort_by(|a, b| b.1.total_cmp(a.1));
    let text: Vec<String> = list.iter().map(|(k, n)| format!("{k} {n:.2}")).collect();
    text.join(", ")
}
