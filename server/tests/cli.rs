//! The real `burrow-server` binary: configuration errors, `PORT`, shutdown.

use std::{
    io::{BufRead, BufReader, Lines},
    path::PathBuf,
    process::{Child, ChildStderr, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_burrow-server");

fn write_config(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn invalid_config_exits_non_zero_naming_file_line_and_key() {
    let cases = [
        ("srv-bad-toml", "listen = \"127.0.0.1:1\n", vec!["line 1"]),
        (
            "srv-wrong-type",
            "listen = 8080\n",
            vec!["line 1", "listen"],
        ),
        ("srv-bad-addr", "listen = \"localhost\"\n", vec!["`listen`"]),
        (
            "srv-missing-token",
            "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a\"\n",
            vec!["hosts[0].token", "token_sha256"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = write_config(name, text);
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name}: {stderr}");
        for n in needles {
            assert!(
                stderr.contains(n),
                "{name}: {stderr:?} should mention {n:?}"
            );
        }
    }
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/server.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/server.toml"));
}

/// A server with one host on the port `PORT=0` picks, logging at
/// `rust_log` (the default without it), and its log up to the line that
/// names its address.
struct Logging {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
    start: Vec<String>,
    addr: String,
}

impl Logging {
    fn start(name: &str, rust_log: Option<&str>) -> Logging {
        let path = write_config(
            name,
            "listen = \"127.0.0.1:9\"\n[[hosts]]\nhost = \"a.localhost\"\ntoken = \"secret-token\"\n",
        );
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&path).env("PORT", "0");
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut start = Vec::new();
        let addr = loop {
            let line = lines.next().expect("server log").expect("utf-8 log");
            start.push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        Logging {
            child,
            lines,
            start,
            addr,
        }
    }

    fn sigterm(&self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
    }
}

#[test]
fn port_variable_overrides_the_listen_port_and_sigterm_stops_promptly() {
    let mut server = Logging::start("srv-port", Some("info"));
    for line in &server.start {
        assert!(!line.contains("secret-token"), "token in log: {line}");
    }
    // Twelve characters: taken, with a word on what a good token is.
    let short = server
        .start
        .iter()
        .find(|l| l.contains("short enough to guess"));
    let short = short.expect("a warning about the short token");
    assert!(
        short.contains("`hosts[0].token` is 12 character(s) long"),
        "{short}"
    );
    assert!(short.contains("openssl rand -hex 16"), "{short}");
    let addr = &server.addr;
    assert!(!addr.ends_with(":9"), "PORT was ignored: {addr}");
    let resp = std::net::TcpStream::connect(addr);
    assert!(resp.is_ok(), "server not listening on {addr}");

    let start = Instant::now();
    server.sigterm();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_config_file_names_the_path_tried_and_the_way_out() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["--config", "no-such-dir/server.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-dir/server.toml"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("--config FILE"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

/// Sends `request` raw and returns the answer.
fn raw(addr: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_default_log_has_the_servers_lines_and_no_strangers_parse_errors() {
    let mut server = Logging::start("srv-quiet", None);
    for (bad, why) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n"[..],
            "the request has more than one Host field\n",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a.localhost\r\nBad Name: x\r\n\r\n",
            "a header name holds a character",
        ),
    ] {
        let answer = raw(&server.addr, bad);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(body.starts_with(why), "{answer}");
        let length = format!("content-length: {}\r\n", body.len());
        assert!(head.to_ascii_lowercase().contains(&length), "{answer}");
        assert!(head.contains("text/plain"), "{answer}");
    }
    server.sigterm();
    let rest: Vec<String> = server.lines.by_ref().map_while(Result::ok).collect();
    assert!(server.child.wait().unwrap().success());
    let start = &server.start;
    assert!(
        !start.iter().any(|l| l.contains("actix")),
        "start-up chatter: {start:#?}"
    );
    assert!(
        !rest.iter().any(|l| l.contains("ERROR")),
        "a stranger's request was logged as an error: {rest:#?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("shutting down")),
        "{rest:#?}"
    );
}

#[test]
fn hash_token_prints_the_line_for_the_configuration() {
    use std::io::Write;
    let out = Command::new(BIN)
        .args(["hash-token", "secret"])
        .output()
        .expect("run");
    let expected =
        "token_sha256 = \"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\"\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // From standard input, so the token stays out of the shell's history.
    let mut child = Command::new(BIN)
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"secret\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
