//! `burrow http TARGET` and `burrow login` as a user types them: the real
//! binaries, a real local service, the server and token from flags, the
//! environment, the saved login or the configuration file, and each
//! mistake's one sentence and exit code.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use support::procs::*;

const BIN: &str = env!("CARGO_BIN_EXE_burrow");
const TOKEN: &str = "quick-token";

/// A server taking `*.quick.localhost` (random names) and
/// `named.localhost` with [`TOKEN`]; its port.
fn server(name: &str) -> (Reaper, u16) {
    server_with_grace(name, 0)
}

/// [`server`], keeping a dropped client's hosts for `grace` seconds.
fn server_with_grace(name: &str, grace: u64) -> (Reaper, u16) {
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\nreconnect_grace_secs = {grace}\n\
         [[hosts]]\nhost = \"*.quick.localhost\"\ntoken = \"{TOKEN}\"\nrandom = true\n\
         [[hosts]]\nhost = \"named.localhost\"\ntoken = \"{TOKEN}\"\n"
    );
    (
        spawn_server_with(&write_file(name, &text), port, Stdio::null()),
        port,
    )
}

/// An empty folder for one test: its working directory and its user's
/// configuration home.
fn home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("quick-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// `burrow ARGS` in `home`, with nothing from the test's own environment.
fn burrow(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(home)
        .env_remove("BURROW_SERVER")
        .env_remove("BURROW_TOKEN")
        .env("XDG_CONFIG_HOME", home.join("config-home"))
        .env("RUST_LOG", "info");
    cmd
}

/// Starts `cmd` and waits for its first `Forwarding` line: the public URL
/// and the local address it names.
fn forwarding(mut cmd: Command) -> (Reaper, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn burrow");
    let out = lines(child.stdout.take().expect("stdout"));
    let seen = wait_for(&out, "Forwarding", Duration::from_secs(20));
    let line = seen.last().expect("a line").clone();
    let mut words = line.split_whitespace().skip(1);
    let url = words.next().expect("url").to_owned();
    let local = words.nth(1).expect("local").to_owned();
    (Reaper(child), url, local)
}

/// GET / on the server at `port` for the host of `url`.
fn get_via(port: u16, url: &str) -> String {
    let host = url
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Runs `cmd` to its end: exit status and standard error.
fn finish(mut cmd: Command) -> (std::process::ExitStatus, String, String) {
    let out = cmd.output().expect("run burrow");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status, text(out.stdout), text(out.stderr))
}

#[test]
fn a_port_and_flags_are_the_whole_command_and_a_random_name_is_given() {
    let (_server, port) = server("quick-flags");
    let local = service("from the flags");
    let home = home("flags");
    let server = format!("127.0.0.1:{port}");
    let cmd = burrow(
        &home,
        &[
            "http",
            &local.to_string(),
            "--server",
            &server,
            "--token",
            TOKEN,
        ],
    );
    let (_client, url, to) = forwarding(cmd);
    assert!(
        url.starts_with("http://") && url.contains(".quick.localhost:"),
        "{url}"
    );
    assert_eq!(to, format!("http://localhost:{local}"));
    let answer = get_via(port, &url);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("from the flags"),
        "{answer}"
    );
}

#[test]
fn the_environment_stands_in_for_flags() {
    let (_server, port) = server("quick-env");
    let local = service("from the environment");
    let home = home("env");
    let mut cmd = burrow(
        &home,
        &[
            "http",
            &format!("127.0.0.1:{local}"),
            "--host",
            "named.localhost",
        ],
    );
    cmd.env(
        "BURROW_SERVER",
        format!("ws://127.0.0.1:{port}/_burrow/connect"),
    )
    .env("BURROW_TOKEN", TOKEN);
    let (_client, url, _) = forwarding(cmd);
    assert_eq!(url, format!("http://named.localhost:{port}/"));
    assert!(get_via(port, &url).ends_with("from the environment"));
}

#[test]
fn a_saved_login_is_read_by_the_next_command_and_only_its_owner_reads_it() {
    let (_server, port) = server("quick-login");
    let local = service("from the login");
    let home = home("login");
    let server = format!("127.0.0.1:{port}");
    let (status, out, err) = finish(burrow(
        &home,
        &["login", "--server", &server, "--token", TOKEN],
    ));
    assert!(status.success(), "{err}");
    assert!(out.starts_with("Saved:") && !out.contains(TOKEN), "{out}");
    let file = home.join("config-home/burrow/login.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("login file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let (_client, url, _) = forwarding(burrow(&home, &["http", &local.to_string()]));
    assert!(get_via(port, &url).ends_with("from the login"));
}

#[test]
fn the_configuration_file_is_the_last_fallback() {
    let (_server, port) = server("quick-file");
    let local = service("from the file");
    let home = home("file");
    std::fs::create_dir_all(home.join("config")).expect("mkdir");
    let text = format!(
        "server = \"ws://127.0.0.1:{port}/_burrow/connect\"\n\
         [[tunnels]]\nhost = \"named.localhost\"\ntoken = \"{TOKEN}\"\nlocal = \"http://127.0.0.1:9\"\n"
    );
    std::fs::write(home.join("config/client.toml"), text).expect("write");
    let (_client, url, _) = forwarding(burrow(&home, &["http", &local.to_string()]));
    assert!(url.contains(".quick.localhost:"), "{url}");
    assert!(get_via(port, &url).ends_with("from the file"));
}

#[test]
fn each_mistake_is_one_sentence_and_a_failing_exit() {
    let home = home("mistakes");
    let (status, _, err) = finish(burrow(&home, &["http", "3000"]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("no server given") && err.contains("burrow login"),
        "{err}"
    );

    let (status, _, err) = finish(burrow(&home, &["http", "web", "--server", "x.example.com"]));
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("`web` is not a local service"), "{err}");

    // Nothing listens there: said once, and the client stops.
    let closed = format!("127.0.0.1:{}", free_port());
    let mut cmd = burrow(
        &home,
        &["http", "3000", "--server", &closed, "--token", TOKEN],
    );
    cmd.stdin(Stdio::null());
    let (status, _, err) = finish(cmd);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the server at ws://"), "{err}");
    assert!(!err.contains("reconnecting"), "{err}");

    let (_server, port) = server("quick-mistakes");
    let server = format!("127.0.0.1:{port}");
    let (status, _, err) = finish(burrow(
        &home,
        &["http", "3000", "--server", &server, "--token", "wrong"],
    ));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("a random name: ") && err.contains("token"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the token is never shown: {err}");
}

#[test]
fn a_restarted_client_gets_its_host_back_at_once_and_a_stranger_waits() {
    let (_server, port) = server_with_grace("quick-restart", 120);
    let local = service("after the restart");
    let (mine, theirs) = (home("restart-mine"), home("restart-theirs"));
    let server = format!("127.0.0.1:{port}");
    let args = [
        "http",
        &local.to_string(),
        "--host",
        "named.localhost",
        "--server",
        &server,
        "--token",
        TOKEN,
    ];
    let (first, url, _) = forwarding(burrow(&mine, &args));
    // A crash: the server keeps the host for its client through the grace.
    drop(first);
    let mut stranger = burrow(&theirs, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow");
    let log = lines(stranger.stderr.take().expect("stderr"));
    let stranger = Reaper(stranger);
    let seen = wait_for(
        &log,
        "already served by another client",
        Duration::from_secs(20),
    );
    let said = seen.last().expect("the line");
    assert!(
        said.contains("trying again until it is free (Ctrl-C to stop)"),
        "{said}"
    );
    drop(stranger);
    // The same user's client, restarted: its host at once, not after the
    // 120 s grace.
    let (_again, again, _) = forwarding(burrow(&mine, &args));
    assert_eq!(again, url);
    assert!(get_via(port, &url).ends_with("after the restart"));
}

#[test]
fn names_under_localhost_are_this_machine_for_the_server_and_the_service() {
    let (_server, port) = server("quick-localhost");
    let local = service("through names");
    let home = home("localhost");
    let target = format!("app.localhost:{local}");
    let server = format!("tunnel.localhost:{port}");
    let args = ["http", &target, "--server", &server, "--token", TOKEN];
    let (_client, url, to) = forwarding(burrow(&home, &args));
    assert_eq!(to, format!("http://app.localhost:{local}"));
    assert!(get_via(port, &url).ends_with("through names"));
}
