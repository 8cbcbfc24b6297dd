//! The `burrow` binary as a user runs it: `burrow demo` (which starts the
//! `burrow-server` built next to it) and a client stopped by a signal.

mod support;

use std::{
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::{procs::*, *};

const BIN: &str = env!("CARGO_BIN_EXE_burrow");

/// The client with the configuration at `path`, logging at info, and the
/// lines of its log.
fn client_logging(path: &Path) -> (Reaper, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow");
    let err = lines(child.stderr.take().expect("stderr"));
    (Reaper(child), err)
}

/// A plain GET over a fresh connection, as curl sends it.
fn get(port: u16, host: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn the_demo_serves_its_page_and_stops_cleanly_on_ctrl_c() {
    let sibling = Path::new(BIN).with_file_name("burrow-server");
    assert!(
        sibling.exists(),
        "{} is missing: the demo runs it; build the workspace (cargo test --workspace)",
        sibling.display()
    );
    let (public, local) = (free_port(), free_port());
    let server = write_file(
        "demo-server",
        &format!(
            "listen = \"127.0.0.1:{public}\"\n[[hosts]]\nhost = \"demo.localhost\"\ntoken = \"demo-secret-token-0123456789\"\n"
        ),
    );
    let client = write_file(
        "demo-client",
        &format!(
            "server = \"ws://127.0.0.1:{public}/_burrow/connect\"\n[[tunnels]]\n\
             host = \"demo.localhost\"\ntoken = \"demo-secret-token-0123456789\"\nlocal = \"http://127.0.0.1:{local}\"\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["demo", "--inspect", "127.0.0.1:0", "--config"])
        .arg(&client)
        .arg("--server-config")
        .arg(&server)
        .env("RUST_LOG", "info")
        // Many development shells export PORT, meant for the app: the
        // demo's server must not take it.
        .env("PORT", local.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow demo");
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines(child.stderr.take().expect("stderr"));
    let mut child = Reaper(child);
    let printed = wait_for(&out, "Press Ctrl-C to stop.", Duration::from_secs(20));
    assert!(
        printed.iter().any(|l| l.contains("Serving a demo page")),
        "{printed:#?}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.contains("Inspector:   http://127.0.0.1:")),
        "{printed:#?}"
    );
    let page = get(public, "demo.localhost");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<h1>It works.</h1>"), "{page}");

    signal(&child.0, "INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let logged: Vec<String> = err.try_iter().collect();
    assert!(
        !logged.iter().any(|l| l.contains("WARN")),
        "stopping the demo logged warnings: {logged:#?}"
    );
    assert!(
        logged.last().is_some_and(|l| l.ends_with("stopped")),
        "{logged:#?}"
    );
    let refused = std::net::TcpStream::connect(("127.0.0.1", public));
    assert!(refused.is_err(), "the demo's server is still running");
}

#[test]
fn a_demo_whose_port_is_taken_stops_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let public = taken.local_addr().expect("addr").port();
    let server = write_file(
        "demo-taken-server",
        &format!("listen = \"127.0.0.1:{public}\"\n[[hosts]]\nhost = \"demo.localhost\"\ntoken = \"demo-secret-token-0123456789\"\n"),
    );
    let client = write_file(
        "demo-taken-client",
        &format!(
            "server = \"ws://127.0.0.1:{public}/_burrow/connect\"\n[[tunnels]]\n\
             host = \"demo.localhost\"\ntoken = \"demo-secret-token-0123456789\"\nlocal = \"http://127.0.0.1:9\"\n"
        ),
    );
    let out = Command::new(BIN)
        .args(["demo", "--config"])
        .arg(&client)
        .arg("--server-config")
        .arg(&server)
        .output()
        .expect("run burrow demo");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("port {public} is already in use")),
        "{err}"
    );
    assert!(
        err.contains("`listen`") && err.contains("`server`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one sentence: {err}");
}

#[actix_rt::test]
async fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let t = Tunnel::start().await;
    let path = write_file(
        "sigterm-client",
        &client_toml(t.server.addr(), &t.upstream.url(), TOKEN),
    );
    // A second client would be refused the host while the in-process one
    // holds it: stop that one first.
    t.client.abort();
    let (mut child, err) = client_logging(&path);
    let (_, err) = line_with(err, "tunnel ready", Duration::from_secs(20)).await;
    // A slow answer is in flight when the signal arrives.
    let slow = actix_rt::spawn(t.get("/sleep/1500").send());
    let in_flight = eventually(Duration::from_secs(10), || async {
        t.server_streams().await > 0
    })
    .await;
    assert!(in_flight, "the slow request did not reach the client");
    signal(&child.0, "TERM");
    let status = actix_rt::task::spawn_blocking(move || {
        let status = wait_exit(&mut child.0, Duration::from_secs(15));
        // Everything it wrote, to the end of the pipe.
        let rest = std::iter::from_fn(|| err.recv_timeout(Duration::from_secs(10)).ok());
        (status, rest.collect::<Vec<_>>())
    })
    .await
    .expect("exit");
    let mut resp = slow.await.expect("task").expect("the in-flight request");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!resp.body().await.expect("body").is_empty());
    let (status, logged) = status;
    assert!(status.success(), "{status}: {logged:#?}");
    assert!(
        logged.iter().any(|l| l.contains("stopping")),
        "no last word: {logged:#?}"
    );
    // The request finished while it stopped; its line was written before
    // the process ended.
    assert!(
        logged.iter().any(|l| l.contains("GET /sleep/1500 200")),
        "the last request's line was lost: {logged:#?}"
    );
}

#[actix_rt::test]
async fn a_log_nobody_reads_holds_no_request_up() {
    let t = Tunnel::start().await;
    let path = write_file(
        "unread-log",
        &client_toml(t.server.addr(), &t.upstream.url(), TOKEN),
    );
    t.client.abort();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow");
    // Held open and never read: a pipe holds 64 KiB, about a thousand lines.
    let _unread = child.stderr.take();
    let _child = Reaper(child);
    let up = eventually(Duration::from_secs(20), || async {
        t.get("/id/0")
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    assert!(up, "the tunnel did not come up");
    for i in 0..3000 {
        let mut resp = t.get(&format!("/id/{i}")).send().await.expect("answer");
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
        let body = resp.body().await.expect("body");
        assert_eq!(body, format!("id-{i}").as_bytes());
    }
}

#[actix_rt::test]
async fn a_server_url_without_the_control_path_stops_the_client_naming_it() {
    let t = Tunnel::start().await;
    let text =
        client_toml(t.server.addr(), &t.upstream.url(), TOKEN).replace("/_burrow/connect", "");
    let path = write_file("no-control-path", &text);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burrow");
    let status = actix_rt::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(15));
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        (status, err)
    })
    .await
    .expect("exit");
    let (status, err) = status;
    assert!(!status.success(), "{status}");
    assert!(err.contains("answered 404 Not Found"), "{err}");
    assert!(err.contains("/_burrow/connect"), "{err}");
    assert!(!err.contains("reconnecting"), "it retried: {err}");
}

#[actix_rt::test]
async fn a_temporarily_unavailable_server_is_retried() {
    // A proxy in front of a restarting server answers 503.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    let unavailable = actix_web::HttpServer::new(move || {
        let counted = counted.clone();
        actix_web::App::new().default_service(actix_web::web::to(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { actix_web::HttpResponse::ServiceUnavailable().finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = unavailable.handle();
    actix_rt::spawn(unavailable);
    let path = write_file(
        "unavailable",
        &client_toml(addr, "http://127.0.0.1:9", TOKEN),
    );
    let (mut child, err) = client_logging(&path);
    let (first, _) = line_with(err, "reconnecting", Duration::from_secs(15)).await;
    assert!(first.iter().any(|l| l.contains("503")), "{first:#?}");
    // Tried again (the outage is logged once; the attempts are counted).
    let again = eventually(Duration::from_secs(15), || {
        let n = attempts.load(std::sync::atomic::Ordering::SeqCst);
        async move { n >= 3 }
    })
    .await;
    assert!(again, "only {attempts:?} attempts");
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "it gave up"
    );
    handle.stop(false).await;
}

#[test]
fn a_missing_config_file_names_the_path_tried_and_the_way_out() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["--config", "no-such-dir/client.toml"])
        .output()
        .expect("run burrow");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-dir/client.toml"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("--config FILE"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

#[actix_rt::test]
async fn each_exchange_is_one_line_and_an_outage_one_warning() {
    let server = start_server(server_config(""));
    let local = free_port();
    let path = write_file(
        "request-log",
        &client_toml(server.addr(), &format!("http://127.0.0.1:{local}"), TOKEN),
    );
    let (_child, err) = client_logging(&path);
    let (_, err) = line_with(err, "tunnel ready", Duration::from_secs(20)).await;
    let public = format!("http://{}", server.addr());
    let get = |path: &str| {
        caller()
            .get(format!("{public}{path}"))
            .insert_header(("host", HOST))
            .send()
    };
    // Nothing listens on the local port yet: three 502s, one warning.
    for _ in 0..3 {
        assert_eq!(get("/down").await.expect("answer").status().as_u16(), 502);
    }
    let upstream = upstream::Upstream::start_on(local);
    let mut resp = get("/id/3").await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.body().await.expect("body"), "id-3".as_bytes());
    let (logged, _) = line_with(err, "GET /id/3 200", Duration::from_secs(10)).await;
    let warnings = logged.iter().filter(|l| l.contains("unreachable")).count();
    assert_eq!(warnings, 1, "{logged:#?}");
    assert!(
        logged.iter().any(|l| l.contains("answers again")),
        "{logged:#?}"
    );
    let line = logged.last().expect("the request's line");
    assert!(line.contains("ms") && line.contains(" B"), "{line}");
    drop(upstream);
}

#[actix_rt::test]
async fn a_server_restart_is_logged_once_and_its_length_when_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = start_server_on(listener, server_config(""));
    let upstream = upstream::Upstream::start();
    let path = write_file("restart-log", &client_toml(addr, &upstream.url(), TOKEN));
    let (_child, err) = client_logging(&path);
    let (_, err) = line_with(err, "tunnel ready", Duration::from_secs(20)).await;
    server.stop().await;
    let (_, err) = line_with(
        err,
        "the server shut down; reconnecting",
        Duration::from_secs(20),
    )
    .await;
    // Back on the same port: the client finds it on its own.
    let again = std::net::TcpListener::bind(addr).expect("the same port");
    let server = start_server_on(again, server_config(""));
    let (seen, _) = line_with(err, "reconnected after", Duration::from_secs(20)).await;
    // The failed attempts in between are not logged at the default level.
    assert!(
        !seen.iter().any(|l| l.contains("reconnecting")),
        "the outage is logged once: {seen:#?}"
    );
    assert!(
        seen.last()
            .is_some_and(|l| l.contains(" s (") && l.contains("attempts)")),
        "{seen:#?}"
    );
    server.stop().await;
}
