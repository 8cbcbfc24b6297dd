//! Figure 4: WebSocket echo round trips, through nginx to the in-process
//! echo.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use awc::ws;
use futures_util::{SinkExt, StreamExt};

use crate::{
    table::Table,
    tunnels::{Kind, Tunnel},
    upstream::Nginx,
    Res, Setup,
};

/// One column of figure 4, over 16 sockets.
pub fn figure(kind: Kind, setup: &Setup, upstream: &Nginx, table: &mut Table) -> Res<()> {
    let t = Tunnel::start(kind, &setup.bin, &setup.work, upstream.addr)?;
    let rt = ws_round_trips(t.addr, t.host(), t.tls(), 16, setup.secs)?;
    table.set(
        "WebSocket echo, 16 sockets: round trips/s",
        kind.name(),
        Some(format!("{rt:.0}")),
    );
    Ok(())
}

/// Echo round trips per second over `sockets` WebSockets, each checked.
fn ws_round_trips(
    addr: SocketAddr,
    host: Option<&str>,
    tls: bool,
    sockets: usize,
    secs: u32,
) -> Res<f64> {
    let host = host.map(str::to_owned);
    let callers = if tls {
        Some(crate::tls::callers()?)
    } else {
        None
    };
    actix_rt::System::new().block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs.into());
        let tasks = (0..sockets).map(|i| {
            let (host, callers) = (host.clone(), callers.clone());
            async move {
                let (client, url) = match callers {
                    Some(tls) => (
                        awc::Client::builder()
                            .connector(awc::Connector::new().rustls_0_23(tls))
                            .finish(),
                        format!("wss://127.0.0.1:{}/ws", addr.port()),
                    ),
                    None => (awc::Client::new(), format!("ws://{addr}/ws")),
                };
                let mut req = client.ws(url);
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
