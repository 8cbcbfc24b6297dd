//! A cluster for tests: a real `redis-server` on a free loopback port and
//! server nodes in this process sharing it.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use burrow_server::{RunningServer, ServerConfig};

use super::{procs::free_port, procs::Reaper, server_toml, start_server};

/// The secret the test nodes share.
pub const SECRET: &str = "test-cluster-secret-0123456789";

/// A Redis server of its own, stopped when dropped.
pub struct Redis {
    pub port: u16,
    process: Option<Reaper>,
}

impl Redis {
    /// Starts `redis-server` on a free port, in memory only, and waits until
    /// it answers.
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            process: None,
        };
        redis.restart();
        redis
    }

    /// Starts it again on the same port (after [`Redis::stop`]), empty.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/deps)");
        self.process = Some(Reaper(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (as a crash would: SIGKILL).
    pub fn stop(&mut self) {
        self.process = None;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "redis-server never stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// What `redis-cli` prints for `args`, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// One node of a test cluster.
pub struct Node {
    pub server: RunningServer,
    pub internal: SocketAddr,
    pub name: String,
}

impl Node {
    /// A node named `name` on `redis`, serving the test hosts, with
    /// `extra` settings.
    pub fn start(redis: &Redis, name: &str, extra: &str) -> Node {
        let internal = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let text = format!(
            "{}[[hosts]]\nhost = \"*.wild.localhost\"\ntoken = \"wild-token\"\n\
             [cluster]\nredis = \"{}\"\nnode_id = \"{name}\"\n\
             internal_listen = \"{internal}\"\nsecret = \"{SECRET}\"\nlease_secs = 3\n",
            server_toml(extra),
            redis.url()
        );
        let config = ServerConfig::from_str(&text, Path::new("node.toml")).expect("node config");
        Node {
            server: start_server(config),
            internal,
            name: name.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT` of its public listener.
    pub fn public(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

/// An L4 balancer in front of several nodes: each new connection goes to
/// the next node in turn, as DNS round-robin or a TCP load balancer would
/// send a client's connections.
pub struct RoundRobin {
    pub addr: SocketAddr,
}

impl RoundRobin {
    pub async fn start(targets: Vec<SocketAddr>) -> RoundRobin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        actix_rt::spawn(async move {
            let mut next = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = targets[next % targets.len()];
                next += 1;
                actix_rt::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        RoundRobin { addr }
    }
}
