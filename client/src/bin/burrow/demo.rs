//! `burrow demo`: the whole tunnel on one machine, for a first look.
//!
//! Starts the `burrow-server` binary that sits next to this one with the
//! server configuration, a demo page on the client's local address if
//! nothing listens there yet, and the client. The server runs as a child
//! process rather than inside this one, so that the client (a library
//! that depends on the protocol crate only) never carries server code. On
//! Ctrl-C the client stops first, then the server, so the client never
//! retries a server that is going away.

use std::{
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use burrow_client::{
    config::TunnelConfig,
    inspect::Inspector,
    observe::{hub::Hub, ExchangeObserver},
    ClientConfig, ClientEvent, Options,
};

use crate::signals::{stop_requested, watched};

/// What the demo tells once its tunnel is up.
struct Banner {
    url: String,
    host: String,
    server: SocketAddr,
    inspector: Option<String>,
}

/// How long the server may take to start listening.
const SERVER_START: Duration = Duration::from_secs(10);

/// Runs the demo until Ctrl-C or SIGTERM; `inspect` is `--inspect`.
pub fn run(
    client_config: &Path,
    server_config: &Path,
    inspect: Option<&str>,
) -> anyhow::Result<()> {
    let config =
        ClientConfig::from_file(client_config).map_err(|e| anyhow::anyhow!(e.with_way_out()))?;
    let config = crate::serve::inspecting(config, inspect)?;
    let tunnel = config
        .tunnels
        .first()
        .context("the client configuration has no tunnel")?
        .clone();
    let server_addr = resolve(config.server.host_port())?;
    refuse_if_taken(server_addr, server_config, client_config)?;
    let mut server = ServerProcess::start(server_config)?;
    let (inspector, hub) = watch(&config)?;
    let banner = Banner {
        url: config.public_url(&tunnel.host),
        host: tunnel.host.clone(),
        server: server_addr,
        inspector: inspector.as_ref().map(Inspector::url),
    };
    let result = actix_rt::System::new().block_on(async {
        // Ctrl-C works while the server starts, too.
        tokio::select! {
            listening = server.wait_listening(server_addr) => listening?,
            () = crate::signals::next_signal() => return Ok(()),
        }
        let page = page_unless_served(&tunnel)?;
        let inspecting = match inspector {
            Some(inspector) => Some(inspector.start(config.clone())?),
            None => None,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let options = Options {
            events: Some(tx),
            observer: hub.clone().map(|h| h as Arc<dyn ExchangeObserver>),
            ..Options::default()
        };
        let client = burrow_client::run(config, options, watched(stop_requested()));
        let result = tokio::select! {
            result = client => result.map_err(anyhow::Error::new),
            () = announce(rx, banner) => Ok(()),
        };
        drop(page);
        if let Some(inspecting) = inspecting {
            inspecting.stop(false).await;
        }
        result
    });
    if let Some(hub) = hub {
        hub.close();
    }
    // The client has stopped; now the server (see `ServerProcess`'s drop).
    drop(server);
    result?;
    log::info!("stopped");
    Ok(())
}

/// The inspector and the request log, and the hub that feeds them.
fn watch(config: &ClientConfig) -> anyhow::Result<(Option<Inspector>, Option<Arc<Hub>>)> {
    let inspector = crate::serve::inspector(config)?;
    let mut subscribers = crate::serve::request_log();
    subscribers.extend(inspector.as_ref().map(Inspector::subscriber));
    Ok((inspector, crate::serve::hub(subscribers)?))
}

/// The demo page on the tunnel's local address, unless a service listens
/// there already.
fn page_unless_served(tunnel: &TunnelConfig) -> anyhow::Result<Option<ServerHandle>> {
    let (host, port) = tunnel.local_url.socket();
    let local = resolve((host.to_owned(), port))?;
    if TcpStream::connect_timeout(&local, Duration::from_millis(300)).is_ok() {
        println!("Using the service already listening on {}", tunnel.local);
        return Ok(None);
    }
    let listener = TcpListener::bind(local);
    let listener = listener.with_context(|| format!("cannot listen on {local}"))?;
    Ok(Some(serve_page(listener, &tunnel.local)?))
}

/// Stops before anything starts when the server's address is taken: by
/// another demo, whose server the client would otherwise join, or by
/// another program.
fn refuse_if_taken(addr: SocketAddr, server: &Path, client: &Path) -> anyhow::Result<()> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {} is already in use (another burrow demo, or another program): stop it, or \
             pick another port for `listen` in {} and for `server` in {}",
            addr.port(),
            server.display(),
            client.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// The `burrow-server` child process.
struct ServerProcess {
    child: Child,
    bin: PathBuf,
}

impl ServerProcess {
    /// Starts the `burrow-server` that sits next to this executable, in a
    /// process group of its own so that the terminal's Ctrl-C reaches only
    /// the demo, which stops the client before the server.
    fn start(config: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the burrow executable")?;
        let bin = exe.with_file_name(format!("burrow-server{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            bail!(
                "burrow demo runs the burrow-server binary built next to burrow, and {} does \
                 not exist; build both with `cargo build --release` (or `cargo install --path \
                 server` beside `cargo install --path client`)",
                bin.display()
            );
        }
        // The demo's server listens where its configuration says: a PORT
        // the shell exports (for the developer's own app) is not for it.
        let child = Command::new(&bin)
            .arg("--config")
            .arg(config)
            .env_remove("PORT")
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(ServerProcess { child, bin })
    }

    /// Polls `addr` until the server accepts connections there.
    async fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + SERVER_START;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before listening", self.bin.display());
            }
            let attempt = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not listening on {addr} after {} s",
                    self.bin.display(),
                    SERVER_START.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    /// Stops the server with the demo, however the demo ends. Its client is
    /// gone by then, so nothing is in flight.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints how to reach the tunnel once it is up, then waits forever.
async fn announce(mut events: tokio::sync::mpsc::UnboundedReceiver<ClientEvent>, banner: Banner) {
    let Banner {
        url,
        host,
        server,
        inspector,
    } = banner;
    while let Some(event) = events.recv().await {
        if let ClientEvent::Registered { .. } = event {
            println!();
            println!("  Public URL:  {url}");
            println!("  Try:         curl -i {url}");
            println!("  (or, where *.localhost does not resolve:");
            println!("               curl -i -H 'Host: {host}' http://{server}/ )");
            if let Some(inspector) = inspector {
                println!("  Inspector:   {inspector}  (every request, with replay)");
            }
            println!();
            println!("Press Ctrl-C to stop.");
            break;
        }
    }
    std::future::pending::<()>().await
}

/// Serves the demo page on `listener` until the returned handle is dropped
/// with the system.
fn serve_page(listener: TcpListener, local: &str) -> std::io::Result<actix_web::dev::ServerHandle> {
    let srv = HttpServer::new(|| App::new().default_service(web::to(demo_page)))
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = srv.handle();
    actix_rt::spawn(srv);
    println!("Serving a demo page on {local} (nothing was listening there)");
    Ok(handle)
}

fn resolve((host, port): (String, u16)) -> anyhow::Result<SocketAddr> {
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
