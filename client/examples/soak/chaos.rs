//! The fault thread: quiet periods of normal traffic, and between them one
//! fault at a time at a random moment, each followed by polling until a
//! request goes through the tunnel again. It also takes the processes'
//! measurements, with the callers paused.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use crate::{
    cast::{Cast, Role, Usage},
    clock::{secs, Origin},
    link::Link,
    pattern::{self, Rng},
    traffic::Control,
    Res, HOST,
};

/// After the probe first succeeds, failures still count as the fault's for
/// this long: requests already refused by then may still be arriving.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The longest a recovery may take before the system counts as not back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// The longest the server may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Fault {
    Client,
    Server,
    Local,
    /// Shorter than the three silent heartbeats (3 s): nobody is dropped.
    ShortFreeze,
    /// Longer: the server drops the client, which reconnects.
    LongFreeze,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Client => "kill -9 client",
            Fault::Server => "SIGTERM server",
            Fault::Local => "kill -9 local service",
            Fault::ShortFreeze => "freeze 1-2.5 s",
            Fault::LongFreeze => "freeze 3.5-5 s",
        }
    }

    /// `--faults client,server,local,freeze` (`freeze` is both lengths).
    pub fn parse(list: &str) -> Res<Vec<Fault>> {
        let mut faults = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "client" => faults.push(Fault::Client),
                "server" => faults.push(Fault::Server),
                "local" => faults.push(Fault::Local),
                "freeze" => faults.extend([Fault::ShortFreeze, Fault::LongFreeze]),
                "none" => {}
                _ => return Err(format!("--faults: unknown fault {word:?}")),
            }
        }
        Ok(faults)
    }
}

/// How long each phase lasts.
pub struct Plan {
    pub faults: Vec<Fault>,
    pub warm_up: Duration,
    /// Faults are started until this long after the warm-up (and always
    /// until each kind has happened once).
    pub fault_phase: Duration,
    pub quiet: (f64, f64),
    pub final_quiet: Duration,
}

impl Plan {
    /// Phases for a run of `secs` seconds: shorter quiet periods in a short
    /// run, so it still sees every kind of fault.
    pub fn new(secs: u64, faults: Vec<Fault>) -> Plan {
        let warm = (secs / 20).clamp(2, 10);
        let last = (secs / 20).clamp(3, 15);
        Plan {
            faults,
            warm_up: Duration::from_secs(warm),
            fault_phase: Duration::from_secs(secs.saturating_sub(warm + last)),
            quiet: if secs < 120 { (1.0, 2.0) } else { (3.0, 8.0) },
            final_quiet: Duration::from_secs(last),
        }
    }
}

/// One injected fault and when the system was back.
pub struct Injected {
    pub fault: Fault,
    /// From the fault's start to the end of its settle margin; failures
    /// whose lifetime overlaps it are the fault's.
    pub window: (Instant, Instant),
    pub recovery: Option<Duration>,
}

/// A process's figures for the report.
#[derive(Default)]
pub struct Figures {
    pub start: Option<Usage>,
    pub end: Option<Usage>,
    pub peak: Usage,
    pub restarts: u32,
    pub age: Duration,
}

/// What the fault thread reports.
pub struct Chaos {
    pub faults: Vec<Injected>,
    /// How the server ended after each SIGTERM, and how long it took.
    pub server_exits: Vec<(String, Duration)>,
    /// Processes that exited without being asked to.
    pub crashes: Vec<String>,
    pub figures: Vec<(Role, Figures)>,
}

/// Sets `done` when the fault thread ends, however it ends, so the callers
/// stop too.
struct Finish(Arc<Control>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}

struct Run {
    cast: Cast,
    link: Link,
    rng: Rng,
    control: Arc<Control>,
    origin: Origin,
    out: Chaos,
}

pub fn run(
    cast: Cast,
    link: Link,
    plan: Plan,
    seed: u64,
    control: Arc<Control>,
    origin: Origin,
) -> Res<Chaos> {
    let _finish = Finish(control.clone());
    let figures = Role::ALL.map(|r| (r, Figures::default())).into();
    let mut run = Run {
        cast,
        link,
        rng: Rng::new(seed),
        control,
        origin,
        out: Chaos {
            faults: Vec::new(),
            server_exits: Vec::new(),
            crashes: Vec::new(),
            figures,
        },
    };
    run.idle(plan.warm_up)?;
    for (i, usage) in run.measure(true).into_iter().enumerate() {
        run.out.figures[i].1.start = usage;
    }
    run.faults(&plan)?;
    run.idle(plan.final_quiet)?;
    // The callers stay paused: they stop here, before the processes they
    // call are killed with the cast.
    let end = run.measure(false);
    run.control.done.store(true, Ordering::SeqCst);
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let f = &mut run.out.figures[i].1;
        f.end = end[i];
        f.restarts = run.cast.restarts(role);
        f.age = run.cast.age(role);
    }
    Ok(run.out)
}

impl Run {
    /// Faults in shuffled rounds of every kind asked for, each after a
    /// quiet period; the first round is always completed.
    fn faults(&mut self, plan: &Plan) -> Res<()> {
        let end = Instant::now() + plan.fault_phase;
        let mut deck: Vec<Fault> = Vec::new();
        let mut injected = 0;
        while injected < plan.faults.len() || Instant::now() < end {
            if deck.is_empty() {
                deck = plan.faults.clone();
                self.rng.shuffle(&mut deck);
            }
            let quiet = self.rng.secs(plan.quiet.0, plan.quiet.1);
            let Some(fault) = deck.pop() else {
                // No faults asked for: traffic alone until the end.
                return self.idle(end.saturating_duration_since(Instant::now()));
            };
            self.idle(quiet)?;
            self.inject(fault)?;
            injected += 1;
        }
        Ok(())
    }

    fn inject(&mut self, fault: Fault) -> Res<()> {
        // How long the killed process stays down before it is started again.
        let down = self.rng.secs(0.0, 1.0);
        let start = Instant::now();
        let mut note = format!("down {} s", secs(down));
        match fault {
            Fault::Client | Fault::Local => {
                let role = if fault == Fault::Client {
                    Role::Client
                } else {
                    Role::Local
                };
                self.cast.kill(role);
                std::thread::sleep(down);
                self.cast.start(role)?;
            }
            Fault::Server => {
                let (exit, took) = self.cast.terminate(Role::Server, EXIT_LIMIT);
                note = format!("{exit} {} s after SIGTERM, {note}", secs(took));
                self.out.server_exits.push((exit, took));
                std::thread::sleep(down);
                self.cast.start(Role::Server)?;
            }
            Fault::ShortFreeze | Fault::LongFreeze => {
                let span = if fault == Fault::ShortFreeze {
                    self.rng.secs(1.0, 2.5)
                } else {
                    self.rng.secs(3.5, 5.0)
                };
                note = format!("frozen {} s", secs(span));
                self.link.freeze();
                std::thread::sleep(span);
                self.link.thaw();
            }
        }
        let recovered = probe_until(self.cast.public, start + RECOVERY_LIMIT).is_some();
        let back = Instant::now();
        let recovery = recovered.then(|| back - start);
        println!(
            "{}  {}, {note}: {}",
            self.origin.show(start),
            fault.name(),
            recovery.map_or("NOT back within 30 s".into(), |r| format!(
                "back after {} s",
                secs(r)
            )),
        );
        self.out.faults.push(Injected {
            fault,
            window: (start, back + SETTLE),
            recovery,
        });
        Ok(())
    }

    /// Waits `span` with traffic running, noting peaks and any process
    /// that exited on its own (which is then started again).
    fn idle(&mut self, span: Duration) -> Res<()> {
        let end = Instant::now() + span;
        loop {
            self.sample();
            for (role, how) in self.cast.exited() {
                let line = format!(
                    "{}: {} exited by itself ({how}); started again",
                    self.origin.show(Instant::now()),
                    role.name()
                );
                println!("{line}");
                self.out.crashes.push(line);
                self.cast.start(role)?;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(500)));
        }
    }

    fn sample(&mut self) {
        for (i, role) in Role::ALL.into_iter().enumerate() {
            if let Some(u) = self.cast.usage(role) {
                let peak = &mut self.out.figures[i].1.peak;
                peak.rss_kib = peak.rss_kib.max(u.rss_kib);
                peak.fds = peak.fds.max(u.fds);
            }
        }
    }

    /// Every process's memory and open files, with the callers paused and
    /// their connections closed, so the start and the end compare alike.
    fn measure(&mut self, resume: bool) -> [Option<Usage>; 3] {
        self.control.paused.store(true, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(60);
        while self.control.busy.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Time for closed connections and freed buffers to be let go of
        // (mimalloc returns freed pages after 10 ms).
        std::thread::sleep(Duration::from_millis(1500));
        let usage = Role::ALL.map(|r| self.cast.usage(r));
        self.control.paused.store(!resume, Ordering::SeqCst);
        usage
    }
}

/// Polls until a request through the tunnel is answered right, or
/// `deadline`; returns how long that took from now.
pub fn probe_until(public: SocketAddr, deadline: Instant) -> Option<Duration> {
    let start = Instant::now();
    while Instant::now() < deadline {
        if probe(public) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// One GET of a small body over a fresh connection: 200 and every byte.
fn probe(public: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&public, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let asked = write!(
        s,
        "GET /sized/7/64 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    if asked.is_err() || s.read_to_end(&mut answer).is_err() {
        return false;
    }
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    answer.starts_with(b"HTTP/1.1 200 ") && answer[head_end + 4..] == pattern::bytes(7, 0, 64)
}
