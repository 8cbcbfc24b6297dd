//! Child processes in tests: configuration files, signals, exits, logs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{HOST, TOKEN};

/// A file under target/ with a unique name.
pub fn write_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Kills the child when the test ends, passed or not.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`TERM`, `INT`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Lines a child writes to one of its pipes, as they come.
pub fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, killing it after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server binary `cargo test` built next to the client's.
pub fn server_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_burrow")).with_file_name("burrow-server")
}

/// The server on `port`, with `extra` settings, serving the test host.
pub fn spawn_server(name: &str, port: u16, extra: &str) -> Reaper {
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\n{extra}\n\
         [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n"
    );
    spawn_server_with(&write_file(name, &text), port, Stdio::null())
}

/// The server with the configuration at `path`, listening on `port`, its
/// standard error to `stderr`.
pub fn spawn_server_with(path: &Path, port: u16, stderr: Stdio) -> Reaper {
    let child = Command::new(server_bin())
        .arg("--config")
        .arg(path)
        .stderr(stderr)
        .spawn()
        .expect("spawn burrow-server");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Reaper(child)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Reads lines until one contains `needle`; returns all read so far.
pub fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {limit:?}; got {seen:#?}");
}

/// [`wait_for`], off the test's thread: the lines read up to the one
/// holding `needle`, and the log to read on.
pub async fn line_with(
    lines: mpsc::Receiver<String>,
    needle: &'static str,
    limit: Duration,
) -> (Vec<String>, mpsc::Receiver<String>) {
    actix_rt::task::spawn_blocking(move || (wait_for(&lines, needle, limit), lines))
        .await
        .expect("the log reader")
}

/// A local service answering every request with `body` (and closing the
/// connection); its port.
pub fn service(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    port
}
