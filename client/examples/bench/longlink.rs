//! `--rtt MS,...`: each tunnel with a long link between its two ends (see
//! `link`), and the link alone between caller and upstream for scale.
//! Latencies are in round trips of the link; transfers in MiB/s and as a
//! share of what the link alone carries.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    bulk::{download, upload},
    link::Shape,
    table::Table,
    tunnels::{Kind, Tunnel},
    upstream::Nginx,
    Res, Setup, LONG_LINK_FILE, SMALL,
};

/// Figures of one column at one round trip.
#[derive(Default)]
struct Figures {
    fresh: f64,
    kept: f64,
    eight: f64,
    down: f64,
    up: f64,
    four: (f64, f64, f64),
    beside: (f64, f64),
    beside_up: (f64, f64),
}

/// Every column at every round trip in `rtts` (ms), as one table.
pub fn run(
    setup: &Setup,
    upstream: &Nginx,
    kinds: &[Kind],
    rtts: &[u64],
    window: usize,
) -> Res<()> {
    let mut table = Table::default();
    let names: Vec<&str> = kinds.iter().map(|&k| name(k)).collect();
    println!(
        "long link: each way half the round trip, at most {} KiB in flight each way\n",
        window >> 10
    );
    for &ms in rtts {
        let shape = Shape {
            rtt: Duration::from_millis(ms),
            window,
        };
        let mut link_alone = None;
        for &kind in kinds {
            eprintln!("== long link, {ms} ms: {}", name(kind));
            let t = Tunnel::start_over(kind, &setup.bin, &setup.work, upstream.addr, Some(shape))?;
            t.check()?;
            let f = measure(&t)?;
            let base = *link_alone.get_or_insert((f.down, f.up, f.four.0));
            set(&mut table, ms, name(kind), &f, base);
        }
    }
    println!("{}", table.render(&names));
    Ok(())
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "link alone",
        k => k.name(),
    }
}

/// One column's cells at `ms`; `base` is the link alone's download,
/// upload and four-download rates.
fn set(table: &mut Table, ms: u64, col: &str, f: &Figures, base: (f64, f64, f64)) {
    let rt = |secs: f64| {
        if ms == 0 {
            format!("{:.2} ms", secs * 1e3)
        } else {
            format!("{:.2}", secs * 1e3 / ms as f64)
        }
    };
    let unit = if ms == 0 { "" } else { " (round trips)" };
    let share = |rate: f64, of: f64| format!("{rate:.0} ({:.2})", rate / of);
    let mut row = |what: &str, v: String| table.set(&format!("{ms} ms: {what}"), col, Some(v));
    row(&format!("new connection + GET{unit}"), rt(f.fresh));
    row(&format!("keep-alive GET{unit}"), rt(f.kept));
    row(&format!("8 new connections at once{unit}"), rt(f.eight));
    row("download MiB/s (of link alone)", share(f.down, base.0));
    row("upload MiB/s (of link alone)", share(f.up, base.1));
    row(
        "4 downloads: MiB/s (of link alone), shares",
        format!(
            "{} {:.0}-{:.0} %",
            share(f.four.0, base.2),
            f.four.1 * 100.0,
            f.four.2 * 100.0
        ),
    );
    row(
        &format!("GET beside a download p50 / p99{unit}"),
        format!("{} / {}", rt(f.beside.0), rt(f.beside.1)),
    );
    row(
        &format!("GET beside an upload p50 / p99{unit}"),
        format!("{} / {}", rt(f.beside_up.0), rt(f.beside_up.1)),
    );
}

fn measure(t: &Tunnel) -> Res<Figures> {
    let mib = (LONG_LINK_FILE >> 20) as f64;
    let best = |f: &dyn Fn() -> Res<f64>| -> Res<f64> { Ok(f()?.min(f()?)) };
    Ok(Figures {
        fresh: median((0..5).map(|_| timed(|| fresh_get(t))).collect::<Res<_>>()?),
        kept: kept_alive(t, 10)?.0,
        eight: median((0..3).map(|_| at_once(t, 8)).collect::<Res<_>>()?),
        down: mib / best(&|| download(t.addr, t.host(), false, LONG_LINK_FILE))?,
        up: mib / best(&|| upload(t.addr, t.host(), false, LONG_LINK_FILE))?,
        four: four_downloads(t)?,
        beside: beside_a_transfer(t, false)?,
        beside_up: beside_a_transfer(t, true)?,
    })
}

fn timed(f: impl FnOnce() -> Res<()>) -> Res<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `p`-th percentile of `v` (0-100).
fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = (v.len() * p / 100).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// A GET of the small answer over a connection made for it.
fn fresh_get(t: &Tunnel) -> Res<()> {
    let s = TcpStream::connect(t.addr).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    get(&mut r, t, true)
}

/// One GET on `r`'s connection, its answer read and checked.
fn get(r: &mut BufReader<TcpStream>, t: &Tunnel, close: bool) -> Res<()> {
    let host = t.host().map_or_else(|| t.addr.to_string(), str::to_owned);
    let conn = if close { "close" } else { "keep-alive" };
    write!(
        r.get_mut(),
        "GET /small HTTP/1.1\r\nHost: {host}\r\nConnection: {conn}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let mut length = None;
    let mut status = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed before the answer".into());
        }
        let l = line.trim_end().to_ascii_lowercase();
        if status.is_empty() {
            status = l;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or("an answer without content-length")?;
    let mut body = vec![0; length];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    if !status.starts_with("http/1.1 200") || body != SMALL {
        return Err(format!(
            "{}: wrong answer: {status} {body:?}",
            t.kind.name()
        ));
    }
    Ok(())
}

/// The median and 99th percentile of `n` GETs on one kept-alive
/// connection (after one that opens it).
fn kept_alive(t: &Tunnel, n: usize) -> Res<(f64, f64)> {
    let s = TcpStream::connect(t.addr).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(s);
    get(&mut r, t, false)?;
    let times = (0..n)
        .map(|_| timed(|| get(&mut r, t, false)))
        .collect::<Res<Vec<_>>>()?;
    Ok((median(times.clone()), percentile(times, 99)))
}

/// Seconds until `n` GETs, each on a connection of its own, started at
/// once, are all answered.
fn at_once(t: &Tunnel, n: usize) -> Res<f64> {
    thread::scope(|scope| {
        let start = Instant::now();
        let all: Vec<_> = (0..n).map(|_| scope.spawn(|| fresh_get(t))).collect();
        for h in all {
            h.join().map_err(|_| "a caller thread panicked")??;
        }
        Ok(start.elapsed().as_secs_f64())
    })
}

/// Four downloads at once: the total rate, and the smallest and largest
/// share of it one of them had.
fn four_downloads(t: &Tunnel) -> Res<(f64, f64, f64)> {
    let mib = (LONG_LINK_FILE >> 20) as f64;
    let times = thread::scope(|scope| {
        let start = Instant::now();
        let all: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| download(t.addr, t.host(), false, LONG_LINK_FILE)))
            .collect();
        let each = all
            .into_iter()
            .map(|h| h.join().map_err(|_| "a download thread panicked")?)
            .collect::<Res<Vec<f64>>>()?;
        Ok::<_, String>((each, start.elapsed().as_secs_f64()))
    })?;
    let (each, all) = times;
    let rates: Vec<f64> = each.iter().map(|s| mib / s).collect();
    let sum: f64 = rates.iter().sum();
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min) / sum;
    let hi = rates.iter().copied().fold(0.0, f64::max) / sum;
    Ok((4.0 * mib / all, lo, hi))
}

/// p50 and p99 of small GETs on a kept-alive connection while downloads
/// (or uploads, `up`), one after another, fill the link.
fn beside_a_transfer(t: &Tunnel, up: bool) -> Res<(f64, f64)> {
    let done = Arc::new(AtomicBool::new(false));
    let running = Arc::clone(&done);
    let (addr, host) = (t.addr, t.host());
    let filler = thread::spawn(move || {
        while !running.load(Ordering::Acquire) {
            match up {
                true => upload(addr, host, false, LONG_LINK_FILE)?,
                false => download(addr, host, false, LONG_LINK_FILE)?,
            };
        }
        Ok::<(), String>(())
    });
    // Let the transfer reach full speed first.
    thread::sleep(Duration::from_millis(500));
    let got = kept_alive(t, 40);
    done.store(true, Ordering::Release);
    filler
        .join()
        .map_err(|_| "the download thread panicked")??;
    got
}
