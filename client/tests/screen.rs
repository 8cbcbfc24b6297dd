//! The live screen in a real pseudo-terminal (tmux): the public URL and a
//! request that passed, a resize, and Ctrl-C leaving the terminal as it
//! was with exit code 0.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::procs::*;

const BIN: &str = env!("CARGO_BIN_EXE_burrow");
const TOKEN: &str = "screen-token-0123456789";

/// A tmux server of this test's own, killed when the test ends.
struct Tmux(String);

impl Tmux {
    fn start(command: &str) -> Tmux {
        let tmux = Tmux(format!("burrow-screen-{}", std::process::id()));
        let status = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "30",
                command,
            ])
            .status()
            .expect("tmux is needed for this test: run .ci/deps");
        assert!(status.success());
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).stderr(Stdio::null()).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen once `f` holds for it, within 20 s.
    fn until(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(Instant::now() < end, "never {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).stderr(Stdio::null()).status();
    }
}

#[test]
fn the_screen_shows_the_url_and_requests_follows_a_resize_and_ctrl_c_restores_the_terminal() {
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nworkers = 1\nreconnect_grace_secs = 0\n\
         [[hosts]]\nhost = \"*.screen.localhost\"\ntoken = \"{TOKEN}\"\nrandom = true\n"
    );
    let _server = spawn_server_with(&write_file("screen-server", &text), port, Stdio::null());
    let local = service("hello");
    let home = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screen-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let command = format!(
        "cd {home} && env -u BURROW_SERVER -u BURROW_TOKEN XDG_CONFIG_HOME={home} {BIN} http {local} \
         --server 127.0.0.1:{port} --token {TOKEN}; echo EXIT=$?; sleep 60",
        home = home.display()
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.until("a public URL", |s| s.contains(".screen.localhost:"));
    assert!(screen.contains("online"), "{screen}");
    let host = screen
        .split_whitespace()
        .find_map(|w| {
            w.strip_prefix("http://")?
                .split(':')
                .next()
                .map(str::to_owned)
        })
        .expect("the URL's host");

    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET /seen-on-screen HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.ends_with("hello"), "{answer}");
    tmux.until("the request listed", |s| {
        s.lines()
            .any(|l| l.contains("GET") && l.contains("/seen-on-screen") && l.contains("200"))
            && s.contains("1 done")
    });

    tmux.run(&["resize-window", "-t", "t", "-x", "60", "-y", "20"]);
    let resized = tmux.until("drawn at the new size", |s| {
        s.lines().count() <= 20 && s.contains("Ctrl-C to stop")
    });
    assert!(
        resized.lines().all(|l| l.chars().count() <= 60),
        "{resized}"
    );

    tmux.run(&["send-keys", "-t", "t", "C-c"]);
    let after = tmux.until("an exit", |s| s.contains("EXIT="));
    assert!(after.contains("EXIT=0"), "{after}");
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "t", "#{alternate_on}"])
            .trim(),
        "0"
    );
    // Nothing of the screen is left on the terminal.
    assert!(!after.contains("Forwarding"), "{after}");
}
