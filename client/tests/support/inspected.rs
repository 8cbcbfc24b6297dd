//! A client run with its inspector, as a user runs it: the real server
//! and client binaries, a real local service, the inspector on a free port.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use awc::http::StatusCode;
use serde_json::Value;

use super::{caller, procs::*, upstream::Upstream, HOST, TOKEN};

pub const BIN: &str = env!("CARGO_BIN_EXE_burrow");

/// A server, a local service and `burrow` serving it with its inspector.
pub struct Inspected {
    _server: Reaper,
    _client: Reaper,
    /// Its output, read on so that the pipe never fills.
    _output: std::sync::mpsc::Receiver<String>,
    pub port: u16,
    pub inspector: String,
    pub upstream: Upstream,
    pub home: PathBuf,
}

/// An empty folder for one test.
pub fn home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// `burrow` in `home`, with nothing from the test's own environment.
pub fn burrow(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(home)
        .env_remove("BURROW_SERVER")
        .env_remove("BURROW_TOKEN")
        .env("XDG_CONFIG_HOME", home.join("config-home"))
        .env("XDG_STATE_HOME", home.join("state-home"))
        .env("RUST_LOG", "info");
    cmd
}

impl Inspected {
    /// `burrow http` with the inspector on a free port.
    pub async fn start(name: &str) -> Inspected {
        Self::start_with(name, None).await
    }

    /// With `toml` (a client.toml without its `server` and tunnel), the
    /// client is run from a file, else as `burrow http`.
    pub async fn start_with(name: &str, toml: Option<&str>) -> Inspected {
        let upstream = Upstream::start();
        let port = free_port();
        let server = spawn_server(name, port, "");
        let home = home(name);
        let mut cmd = burrow(&home);
        match toml {
            None => cmd.args([
                "http",
                &upstream.url(),
                "--host",
                HOST,
                "--server",
                &format!("127.0.0.1:{port}"),
                "--token",
                TOKEN,
                "--inspect",
                "127.0.0.1:0",
                "--log",
            ]),
            Some(extra) => {
                let text = format!(
                    "server = \"ws://127.0.0.1:{port}/_burrow/connect\"\n{extra}\n\
                     [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\nlocal = \"{}\"\n",
                    upstream.url()
                );
                cmd.arg("--config")
                    .arg(write_file(name, &text))
                    .arg("--log")
            }
        };
        // What is not read goes nowhere, so that no pipe fills.
        let (stdout, stderr, needle) = match toml {
            None => (Stdio::piped(), Stdio::null(), "Inspector"),
            Some(_) => (Stdio::null(), Stdio::piped(), "inspector:"),
        };
        let mut child = cmd
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn burrow");
        let out: Box<dyn std::io::Read + Send> = match toml {
            None => Box::new(child.stdout.take().expect("stdout")),
            Some(_) => Box::new(child.stderr.take().expect("stderr")),
        };
        let (seen, output) = line_with(lines(out), needle, Duration::from_secs(20)).await;
        let line = seen.last().cloned().unwrap_or_default();
        let inspector = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no inspector address in {seen:#?}"))
            .to_owned();
        Inspected {
            _server: server,
            _client: Reaper(child),
            _output: output,
            port,
            inspector,
            upstream,
            home,
        }
    }

    /// A request through the tunnel.
    pub fn call(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        caller()
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .insert_header(("host", HOST))
    }

    pub fn api(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        caller().request(method, format!("{}{path}", self.inspector))
    }

    pub async fn json(&self, path: &str) -> Value {
        let mut resp = self
            .api(awc::http::Method::GET, path)
            .send()
            .await
            .expect("api");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.json().limit(64 << 20).await.expect("json")
    }

    /// A WebSocket to the echo service through the tunnel: each message
    /// sent and its echo read, then the close handshake; the echoes.
    pub async fn websocket(&self, messages: Vec<awc::ws::Message>) -> Vec<awc::ws::Frame> {
        use futures_util::{SinkExt, StreamExt};
        let (_, mut socket) = caller()
            .ws(format!("ws://127.0.0.1:{}/ws", self.port))
            .set_header("host", HOST)
            .connect()
            .await
            .expect("websocket");
        let mut echoes = Vec::new();
        for message in messages {
            socket.send(message).await.expect("send");
            echoes.push(socket.next().await.expect("an echo").expect("a frame"));
        }
        socket
            .send(awc::ws::Message::Close(None))
            .await
            .expect("close");
        while let Some(Ok(frame)) = socket.next().await {
            if matches!(frame, awc::ws::Frame::Close(_)) {
                break;
            }
        }
        echoes
    }

    /// The list, once it holds `n` requests.
    pub async fn list_of(&self, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = self
                .json("/api/requests")
                .await
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.len() == n {
                return list;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} requests, the list holds {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
