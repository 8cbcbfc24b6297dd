//! The 10,000-tunnel figure: many tunnels on one burrow-server (burrow
//! only: the peers need a process per tunnel), each answered by a fake
//! client in this process.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use burrow_common::{
    batch,
    protocol::{ResponseHead, TunnelRequest},
    Frame, Hello, PROTOCOL_VERSION,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    load::wrk_with,
    procs::{free_port, proc_status, spawn, wait_port, write, Proc},
    table::Table,
    Res, Setup, SMALL,
};

/// A fake client's WebSocket to the server.
type Socket = Framed<BoxedSocket, ws::Codec>;

/// `--tunnels N`: this figure alone, with N tunnels, as a sentence.
pub fn only(setup: &Setup, n: &str) -> Res<()> {
    let n: usize = n
        .parse()
        .map_err(|_| format!("--tunnels {n}: not a number"))?;
    let (per_tunnel, took, rps) = many_tunnels(setup, n)?;
    println!(
        "{n} tunnels: {per_tunnel:.1} KiB server RSS per tunnel, registered in {took:.2} s, \
         {rps:.0} requests/s spread over them"
    );
    Ok(())
}

/// The figure's rows in the table, with 10,000 tunnels.
pub fn figure(setup: &Setup, table: &mut Table) -> Res<()> {
    eprintln!("== 10,000 tunnels");
    let (per_tunnel, took, rps) = many_tunnels(setup, 10_000)?;
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
    Ok(())
}

/// Registers `n` tunnels, one WebSocket each, answering requests in-process.
/// Returns server KiB per tunnel, seconds to register all, and requests/s
/// spread over them.
fn many_tunnels(setup: &Setup, n: usize) -> Res<(f64, f64, f64)> {
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let server = start_server(setup, public, n)?;
    let pid = server.id();
    // `sh -c exec` keeps the pid; give it a moment to finish its start-up allocations.
    std::thread::sleep(Duration::from_millis(300));
    let before = proc_status(pid, "VmRSS:").ok_or("no server RSS")?;

    let (took, stop) = register_all(public, n)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = proc_status(pid, "VmRSS:").ok_or("no server RSS")?;
    let per_tunnel = (after.saturating_sub(before)) as f64 / n as f64;

    let rps = spread_load(setup, public, n)?;
    let _ = stop.send(());
    drop(server);
    Ok((per_tunnel, took, rps))
}

/// A burrow-server on `public` that accepts tunnels t0.bench to t{n-1}.bench.
fn start_server(setup: &Setup, public: SocketAddr, n: usize) -> Res<Proc> {
    let mut conf = format!("listen = \"{public}\"\n");
    for i in 0..n {
        let _ = write!(
            conf,
            "[[hosts]]\nhost = \"t{i}.bench\"\ntoken = \"token-{i}\"\n"
        );
    }
    let path = setup.work.join("many.toml");
    write(&path, &conf)?;
    let server = spawn(Command::new("sh").arg("-c").arg(format!(
        "ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec {} --config {}",
        setup.bin.join("burrow-server").display(),
        path.display()
    )))?;
    wait_port(public)?;
    Ok(server)
}

/// Opens the `n` fake clients on a thread of their own; they answer until
/// the returned sender fires or is dropped. Returns seconds to register all.
fn register_all(public: SocketAddr, n: usize) -> Res<(f64, oneshot::Sender<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let start = Instant::now();
            let joins = match open_all(public, n).await {
                Ok(joins) => joins,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(start.elapsed().as_secs_f64()));
            let _ = stop_rx.await;
            for j in joins {
                j.abort();
            }
        });
    });
    let took = rx.recv().map_err(|e| e.to_string())??;
    Ok((took, stop_tx))
}

/// Opens in waves so the listen backlog is not overrun.
async fn open_all(public: SocketAddr, n: usize) -> Res<Vec<JoinHandle<()>>> {
    let mut joins = Vec::with_capacity(n);
    for wave in (0..n).collect::<Vec<_>>().chunks(500) {
        let opened =
            futures_util::future::join_all(wave.iter().map(|&i| fake_client(public, i))).await;
        for o in opened {
            joins.push(o?);
        }
    }
    Ok(joins)
}

/// Requests/s from wrk, each request to the next of the `n` hosts.
fn spread_load(setup: &Setup, public: SocketAddr, n: usize) -> Res<f64> {
    let script = setup.work.join("many.lua");
    write(&script, &format!(
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  \
         return wrk.format(\"GET\", \"/small\", {{[\"Host\"] = \"t\" .. (counter % {n}) .. \".bench\"}})\nend\n"
    ))?;
    let url = format!("http://{public}/small");
    let r = wrk_with(&setup.wrk, &url, None, 64, setup.secs, Some(&script))?;
    Ok(r.rps)
}

/// One registered tunnel answering every request with the small body.
async fn fake_client(server: SocketAddr, i: usize) -> Res<JoinHandle<()>> {
    let s = register(server, i).await?;
    Ok(actix_rt::spawn(answer_all(s)))
}

/// Connects as tunnel `i` and waits for the server to accept it.
async fn register(server: SocketAddr, i: usize) -> Res<Socket> {
    let (_, mut s) = awc::Client::new()
        .ws(format!("ws://{server}/_burrow/connect"))
        .connect()
        .await
        .map_err(|e| format!("tunnel {i}: {e}"))?;
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        tunnels: vec![TunnelRequest {
            host: format!("t{i}.bench"),
            token: burrow_common::Token::new(format!("token-{i}")),
            access: Default::default(),
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
            Ok(Frame::HelloAck(ack)) if ack.tunnels.iter().all(|v| v.accepted) => Ok(s),
            other => Err(format!("tunnel {i} refused: {other:?}")),
        },
        other => Err(format!("tunnel {i}: {other:?}")),
    }
}

/// Answers every request head on `s` until the socket ends.
async fn answer_all(mut s: Socket) {
    while let Some(Ok(frame)) = s.next().await {
        match frame {
            ws::Frame::Binary(msg) => {
                let Ok(frames) = batch::unpack(msg) else {
                    break;
                };
                for b in frames.flatten() {
                    if let Some(f) = answer(b) {
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
}

/// The encoded small answer to `b`, if `b` is a request head.
fn answer(b: Bytes) -> Option<Bytes> {
    let Ok(Frame::RequestHead { stream, .. }) = Frame::decode(b) else {
        return None;
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
    head.encode().ok()
}
