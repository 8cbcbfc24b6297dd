//! Shared test harness: a real local service, a real server and a real
//! client, all on ephemeral loopback ports.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod inspected;
pub mod link;
pub mod procs;
pub mod upstream;

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use burrow_client::{ClientConfig, ClientEvent};
use burrow_server::{RunningServer, ServerConfig};
use tokio::sync::mpsc::UnboundedReceiver;

/// Host every test tunnel serves.
pub const HOST: &str = "demo.localhost";
/// Its token.
pub const TOKEN: &str = "test-token";

/// The test server's configuration, with `extra` lines. Unless they set
/// it, hosts are not kept for a client that drops (most tests want to see
/// a host freed at once).
pub fn server_config(extra: &str) -> ServerConfig {
    let text = server_toml(extra);
    ServerConfig::from_str(&text, Path::new("test-server.toml")).expect("server config")
}

/// [`server_config`]'s text, for tests that add tables to it.
pub fn server_toml(extra: &str) -> String {
    let grace = match extra.contains("reconnect_grace_secs") {
        true => "",
        false => "reconnect_grace_secs = 0\n",
    };
    format!(
        "listen = \"127.0.0.1:0\"\nworkers = 2\n{grace}{extra}\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n\
         [[hosts]]\nhost = \"other.localhost\"\ntoken = \"other-token\"\n"
    )
}

pub fn client_config(server: SocketAddr, local: &str, token: &str) -> ClientConfig {
    client_config_text(&client_toml(server, local, token))
}

pub fn client_toml(server: SocketAddr, local: &str, token: &str) -> String {
    format!(
        "server = \"ws://{server}/_burrow/connect\"\nmax_reconnect_delay_secs = 1\n\
         [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{token}\"\nlocal = \"{local}\"\n"
    )
}

pub fn client_config_text(text: &str) -> ClientConfig {
    ClientConfig::from_str(text, Path::new("test-client.toml")).expect("client config")
}

/// Starts a server on a fresh loopback port.
pub fn start_server(config: ServerConfig) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    start_server_on(listener, config)
}

/// Starts a server on `listener`.
pub fn start_server_on(listener: TcpListener, config: ServerConfig) -> RunningServer {
    let listeners = vec![burrow_server::PublicListener::plain(listener)];
    burrow_server::start(listeners, config).expect("start server")
}

/// A server, a client connected to it, and the local service behind it.
pub struct Tunnel {
    pub server: RunningServer,
    pub upstream: upstream::Upstream,
    pub client: tokio::task::JoinHandle<Result<(), burrow_client::ClientError>>,
    pub events: UnboundedReceiver<ClientEvent>,
}

impl Tunnel {
    /// Starts everything and waits until the client has registered.
    pub async fn start() -> Tunnel {
        Self::start_with(server_config("")).await
    }

    pub async fn start_with(config: ServerConfig) -> Tunnel {
        Self::start_with_client(config, "").await
    }

    /// A client for the running `server` that dials it at `via` (the
    /// server itself, or a link in front of it), and the local service.
    pub async fn around(server: RunningServer, via: SocketAddr) -> Tunnel {
        Self::around_with(server, via, "").await
    }

    /// Like [`Tunnel::around`], with `client_extra` at the top of the
    /// client's configuration.
    async fn around_with(server: RunningServer, via: SocketAddr, client_extra: &str) -> Tunnel {
        let upstream = upstream::Upstream::start();
        let text = format!("{client_extra}{}", client_toml(via, &upstream.url(), TOKEN));
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let client = actix_rt::spawn(run_client(client_config_text(&text), tx));
        wait_registered(&mut events).await;
        Tunnel {
            server,
            upstream,
            client,
            events,
        }
    }

    /// Like [`Tunnel::start_with`], with `client_extra` at the top of the
    /// client's configuration.
    pub async fn start_with_client(config: ServerConfig, client_extra: &str) -> Tunnel {
        let server = start_server(config);
        let via = server.addr();
        Self::around_with(server, via, client_extra).await
    }

    /// `http://127.0.0.1:PORT` of the public listener.
    pub fn public(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// A request to the tunnel's public host.
    pub fn get(&self, path: &str) -> awc::ClientRequest {
        self.request(awc::http::Method::GET, path)
    }

    pub fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        caller()
            .request(method, format!("{}{path}", self.public()))
            .insert_header(("host", HOST))
    }

    /// The server's sessions for the test host (one per client connection).
    pub async fn server_sessions(
        &self,
    ) -> Vec<std::sync::Arc<burrow_server::handle::SessionHandle>> {
        self.server
            .registry()
            .lookup(HOST)
            .await
            .map(|h| h.sessions)
            .unwrap_or_default()
    }

    /// Streams open on each of the server's sessions for the test host.
    pub async fn streams_per_session(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for session in self.server_sessions().await {
            counts.push(session.stream_count().await);
        }
        counts
    }

    /// Number of streams open on the server's sessions for the test host.
    pub async fn server_streams(&self) -> usize {
        self.streams_per_session().await.iter().sum()
    }
}

/// Runs a client that reports to `events` and runs until it is refused or
/// its task is dropped.
pub async fn run_client(
    config: ClientConfig,
    events: tokio::sync::mpsc::UnboundedSender<ClientEvent>,
) -> Result<(), burrow_client::ClientError> {
    let options = burrow_client::Options {
        events: Some(events),
        ..Default::default()
    };
    burrow_client::run(config, options, std::future::pending()).await
}

/// Waits for the client's `Registered` event (no sleeping).
pub async fn wait_registered(events: &mut UnboundedReceiver<ClientEvent>) {
    let wait = async {
        while let Some(e) = events.recv().await {
            if let ClientEvent::Registered { .. } = e {
                return;
            }
        }
        panic!("client stopped before registering");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("client registered in time");
}

/// The client's next event other than a measured round trip (which
/// comes at the server's heartbeats, whenever they fall).
pub async fn next_event(events: &mut UnboundedReceiver<ClientEvent>) -> Option<ClientEvent> {
    loop {
        match events.recv().await {
            Some(ClientEvent::RoundTrip(_)) => continue,
            other => return other,
        }
    }
}

/// Waits for the client's next event, a disconnection whose reason holds
/// `needle` (a refusal it will retry).
pub async fn expect_refusal(events: &mut UnboundedReceiver<ClientEvent>, needle: &str) {
    let refused = tokio::time::timeout(Duration::from_secs(20), next_event(events))
        .await
        .expect("an answer");
    match refused {
        Some(ClientEvent::Disconnected { reason }) => {
            assert!(reason.contains(needle), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A caller: an HTTP client with generous limits and no redirects.
pub fn caller() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(1000))
        .disable_redirects()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The deterministic test pattern: byte `i` of every sized body.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(7) % 251) as u8
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern_byte).collect()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Writes `request` on a new connection to `addr` and reads until the
/// server closes it (the request must ask for that, or be refused).
pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    out
}

/// A stand-in tunnel server on a free loopback port, for tests that speak
/// the protocol to the client themselves: `handler` takes each client
/// connection at `/_burrow/connect`, with `data` as the app's data.
pub fn stand_in_server<T, F, Args>(data: actix_web::web::Data<T>, handler: F) -> SocketAddr
where
    T: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    use actix_web::{web, App, HttpServer};
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/_burrow/connect", web::get().to(handler.clone()))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listening")
    .run();
    actix_rt::spawn(server);
    addr
}
