//! `burrow demo`: the whole tunnel on one machine, for a first look.
//!
//! Starts a burrow-server from the server configuration, a demo page on the
//! client's local address if nothing listens there yet, and the client.

use std::{
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    path::Path,
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use burrow_server::ServerConfig;

use crate::{ClientConfig, ClientEvent};

/// Runs the demo until Ctrl-C.
pub fn run(client_config: &Path, server_config: &Path) -> anyhow::Result<()> {
    let server_cfg = ServerConfig::from_file(server_config)?;
    let client_cfg = ClientConfig::from_file(client_config)?;
    let listener = TcpListener::bind(server_cfg.listen)
        .with_context(|| format!("cannot listen on {}", server_cfg.listen))?;
    let tunnel = client_cfg
        .tunnels
        .first()
        .context("the client configuration has no tunnel")?
        .clone();
    let local = local_addr(&tunnel.local)?;
    let page = if TcpStream::connect_timeout(&local, Duration::from_millis(300)).is_ok() {
        println!("Using the service already listening on {}", tunnel.local);
        None
    } else {
        Some(TcpListener::bind(local).with_context(|| format!("cannot listen on {local}"))?)
    };

    actix_rt::System::new().block_on(async move {
        let server = burrow_server::start(listener, server_cfg)?;
        let _page = match page {
            Some(l) => {
                let srv = HttpServer::new(|| App::new().default_service(web::to(demo_page)))
                    .workers(1)
                    .disable_signals()
                    .listen(l)?
                    .run();
                let handle = srv.handle();
                actix_rt::spawn(srv);
                println!(
                    "Serving a demo page on {} (nothing was listening there)",
                    tunnel.local
                );
                Some(handle)
            }
            None => None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let url = client_cfg.public_url(&tunnel.host);
        let client = actix_rt::spawn(crate::run(client_cfg, Some(tx)));
        let announce = async {
            while let Some(event) = rx.recv().await {
                if let ClientEvent::Registered { .. } = event {
                    println!();
                    println!("  Public URL:  {url}");
                    println!("  Try:         curl -i {url}");
                    println!("  (or, where *.localhost does not resolve:");
                    println!(
                        "               curl -i -H 'Host: {}' http://{}/ )",
                        tunnel.host,
                        server.addr()
                    );
                    println!();
                    println!("Press Ctrl-C to stop.");
                    break;
                }
            }
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            _ = actix_rt::signal::ctrl_c() => Ok(()),
            _ = announce => Ok(()),
            res = client => match res {
                Ok(Err(e)) => Err(anyhow::Error::new(e)),
                _ => Ok(()),
            },
        };
        server.stop().await;
        result
    })
}

fn local_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: awc::http::Uri = url.parse().context("invalid local URL")?;
    let host = uri.host().context("local URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match (host, port).to_socket_addrs()?.next() {
        Some(addr) => Ok(addr),
        None => bail!("cannot resolve {host}"),
    }
}

async fn demo_page(req: HttpRequest) -> HttpResponse {
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>burrow demo</title></head>\n\
         <body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\n\
         <h1>It works.</h1>\n\
         <p>This page is served on your machine and reached you through a burrow tunnel.</p>\n\
         <p>Request: <code>{} {}</code> for host <code>{}</code></p>\n\
         </body></html>\n",
        html_escape(req.method().as_str()),
        html_escape(&req.uri().to_string()),
        html_escape(host)
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
