//! Figure 3: 100 MiB each way, every byte checked.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    time::Instant,
};

use crate::{
    table::{mib_pair, Table},
    tunnels::{Kind, Tunnel},
    upstream::Nginx,
    Res, Setup, BIG,
};

/// Transfers per bulk figure.
const BULK_RUNS: usize = 3;

/// One column of figure 3: the best of three transfers each way (one takes
/// a tenth of a second, where a stall of the shared machine shows).
pub fn figure(kind: Kind, setup: &Setup, upstream: &Nginx, table: &mut Table) -> Res<()> {
    let name = kind.name();
    let t = Tunnel::start(kind, &setup.bin, &setup.work, upstream.addr)?;
    t.check()?;
    let down = best_of(BULK_RUNS, || download(t.addr, t.host(), t.tls(), BIG))?;
    let up = best_of(BULK_RUNS, || upload(t.addr, t.host(), t.tls(), BIG))?;
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
        t.peak_kib().map(mib_pair),
    );
    Ok(())
}

/// The shortest of `n` timings (each run is checked by `f`).
fn best_of(n: usize, mut f: impl FnMut() -> Res<f64>) -> Res<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..n {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Seconds to download the file of `size` bytes (`size` a whole number of
/// MiB the upstream serves, see `upstream::Nginx`); every byte is checked.
pub fn download(addr: SocketAddr, host: Option<&str>, tls: bool, size: u64) -> Res<f64> {
    let mut s = crate::tls::connect(addr, tls)?;
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    let start = Instant::now();
    write!(
        s,
        "GET /{}m.bin HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        size >> 20
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
    if length != Some(size) {
        return Err(format!("download: content-length {length:?}"));
    }
    // The file repeats one 1 MiB block; compare against two copies of it so
    // any read (at any offset, up to 1 MiB long) is one slice comparison.
    let block: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i % (1 << 20) % 251) as u8)
        .collect();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < size {
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

/// Seconds to upload `size` bytes (whole MiB); the upstream must report
/// the full length.
pub fn upload(addr: SocketAddr, host: Option<&str>, tls: bool, size: u64) -> Res<f64> {
    let mut s = crate::tls::connect(addr, tls)?;
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    let chunk = vec![0x42u8; 1 << 20];
    let start = Instant::now();
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    for _ in 0..size >> 20 {
        s.write_all(&chunk).map_err(|e| format!("upload: {e}"))?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") || !text.contains(&size.to_string()) {
        return Err(format!("upload answer: {text}"));
    }
    Ok(secs)
}
