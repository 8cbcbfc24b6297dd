//! The three processes under test: the real `burrow-server` and `burrow`
//! binaries and the local service, each started, killed and started again
//! on the same ports, with their output kept in a log file per process.

use std::{
    fs::File,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::{
    clock,
    procs::{free_port, proc_status, wait_port, write},
    Res, HOST,
};

const TOKEN: &str = "soak-token";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Server,
    Client,
    Local,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Server, Role::Client, Role::Local];

    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "burrow-server",
            Role::Client => "burrow",
            Role::Local => "local service",
        }
    }

    fn log(self) -> &'static str {
        match self {
            Role::Server => "server.log",
            Role::Client => "client.log",
            Role::Local => "local.log",
        }
    }
}

/// One process: how to start it, and its current incarnation.
struct Member {
    role: Role,
    command: Vec<String>,
    child: Option<Child>,
    started: Instant,
    starts: u32,
}

/// What /proc says about a process: resident memory (KiB), open files.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
}

/// All three processes; dropping it kills and reaps every one, whichever
/// way the run ends.
pub struct Cast {
    members: Vec<Member>,
    pub dir: PathBuf,
    pub public: SocketAddr,
    pub local: SocketAddr,
}

impl Cast {
    /// Writes the configuration files for a server on `public` reached
    /// through `link`, and a client serving the local service on `local`.
    pub fn new(bin: &Path, dir: PathBuf, public: SocketAddr, link: SocketAddr) -> Res<Cast> {
        let local: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let server_toml = dir.join("server.toml");
        // A one-second heartbeat: a client silent for three is dropped, so
        // freezes of 1-5 s fall on either side of that limit. A SIGTERM lets
        // requests in flight finish for up to 5 s (slow answers take 3); the
        // reconnect grace keeps its default, 10 s.
        write(
            &server_toml,
            &format!(
                "listen = \"{public}\"\nheartbeat_secs = 1\nworkers = 2\ndrain_timeout_secs = 5\n\
                 [[hosts]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\n"
            ),
        )?;
        let client_toml = dir.join("client.toml");
        // Reconnection pauses capped at 2 s keep each recovery short.
        write(
            &client_toml,
            &format!(
                "server = \"ws://{link}/_burrow/connect\"\nmax_reconnect_delay_secs = 2\n\
                 [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\nlocal = \"http://{local}\"\n"
            ),
        )?;
        let path = |p: &Path| p.display().to_string();
        let me = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
        let commands = [
            vec![
                path(&bin.join("burrow-server")),
                "--config".into(),
                path(&server_toml),
            ],
            vec![
                path(&bin.join("burrow")),
                "--config".into(),
                path(&client_toml),
            ],
            vec![
                path(&me),
                "upstream".into(),
                "--port".into(),
                local.port().to_string(),
            ],
        ];
        let members = Role::ALL
            .into_iter()
            .zip(commands)
            .map(|(role, command)| Member {
                role,
                command,
                child: None,
                started: Instant::now(),
                starts: 0,
            })
            .collect();
        Ok(Cast {
            members,
            dir,
            public,
            local,
        })
    }

    fn member(&mut self, role: Role) -> &mut Member {
        let i = Role::ALL.iter().position(|r| *r == role).unwrap_or(0);
        &mut self.members[i]
    }

    /// Starts all three, the local service and the server first, waiting
    /// until each listens.
    pub fn start_all(&mut self) -> Res<()> {
        for role in [Role::Local, Role::Server, Role::Client] {
            self.start(role)?;
        }
        Ok(())
    }

    /// Starts `role`'s next incarnation; for a listener, polls until its
    /// port accepts connections.
    pub fn start(&mut self, role: Role) -> Res<()> {
        let dir = self.dir.clone();
        let addr = match role {
            Role::Server => Some(self.public),
            Role::Local => Some(self.local),
            Role::Client => None,
        };
        let m = self.member(role);
        let log_path = dir.join(role.log());
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        m.starts += 1;
        // Each incarnation's lines start with this one, to match a
        // failure's time against the right process.
        let _ = writeln!(log, "=== start {} at {} UTC", m.starts, clock::utc_now());
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let (program, args) = m.command.split_first().ok_or("empty command")?;
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        m.child = Some(child);
        m.started = Instant::now();
        match addr {
            Some(addr) => wait_port(addr),
            None => Ok(()),
        }
    }

    /// `kill -9`, then reaps it.
    pub fn kill(&mut self, role: Role) {
        if let Some(mut child) = self.member(role).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (up to `limit`, then SIGKILL).
    /// Returns how it ended, as a table cell says it, and when.
    pub fn terminate(&mut self, role: Role, limit: Duration) -> (String, Duration) {
        let start = Instant::now();
        let Some(mut child) = self.member(role).child.take() else {
            return ("not running".into(), Duration::ZERO);
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let how = if matches!(sent, Ok(s) if s.success()) {
            wait_exit(&mut child, start + limit)
        } else {
            None
        };
        let how = how.unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            format!("SIGKILL: no exit within {} s of SIGTERM", limit.as_secs())
        });
        (how, start.elapsed())
    }

    /// Processes that exited without being asked to, with how they ended.
    pub fn exited(&mut self) -> Vec<(Role, String)> {
        let mut gone = Vec::new();
        for m in &mut self.members {
            if let Some(Ok(Some(status))) = m.child.as_mut().map(Child::try_wait) {
                m.child = None;
                gone.push((m.role, describe(status)));
            }
        }
        gone
    }

    pub fn usage(&mut self, role: Role) -> Option<Usage> {
        let pid = self.member(role).child.as_ref()?.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Usage {
            rss_kib: proc_status(pid, "VmRSS:")?,
            fds,
        })
    }

    /// Times started again after the first.
    pub fn restarts(&mut self, role: Role) -> u32 {
        self.member(role).starts.saturating_sub(1)
    }

    /// Age of the running incarnation.
    pub fn age(&mut self, role: Role) -> Duration {
        self.member(role).started.elapsed()
    }
}

impl Drop for Cast {
    fn drop(&mut self) {
        for role in Role::ALL {
            self.kill(role);
        }
    }
}

/// How `child` exited, polling until `deadline`; `None` if it did not.
fn wait_exit(child: &mut Child, deadline: Instant) -> Option<String> {
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(describe(status)),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Some(format!("cannot wait: {e}")),
        }
    }
    None
}

/// An exit status as the table shows it: `exit 0`, `exit 1`, `signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}
