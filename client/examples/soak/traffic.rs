//! The callers: a few concurrent workers sending a seeded mix of requests
//! to the server's public port, each answer checked byte for byte.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt::Display,
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use awc::Client;

use crate::{
    http::{self, Answer, Body},
    pattern,
    pattern::Rng,
    sockets,
};

/// Longest any one exchange may take before it counts as a timeout.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Small,
    Large,
    Chunked,
    Sse,
    Slow,
    Upload,
    ChunkedUpload,
    WebSocket,
}

impl Kind {
    /// Each kind with its weight in the mix.
    const MIX: [(Kind, u64); 8] = [
        (Kind::Small, 30),
        (Kind::Large, 6),
        (Kind::Chunked, 12),
        (Kind::Sse, 10),
        (Kind::Slow, 8),
        (Kind::Upload, 10),
        (Kind::ChunkedUpload, 8),
        (Kind::WebSocket, 16),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Small => "small",
            Kind::Large => "large",
            Kind::Chunked => "chunked",
            Kind::Sse => "SSE",
            Kind::Slow => "slow",
            Kind::Upload => "upload",
            Kind::ChunkedUpload => "chunked upload",
            Kind::WebSocket => "WebSocket",
        }
    }

    fn pick(rng: &mut Rng) -> Kind {
        let total: u64 = Kind::MIX.iter().map(|(_, w)| w).sum();
        let mut left = rng.range(0, total);
        for (kind, weight) in Kind::MIX {
            if left < weight {
                return kind;
            }
            left -= weight;
        }
        Kind::Small
    }
}

/// What went wrong with one exchange.
#[derive(Debug)]
pub struct Problem {
    /// The status of a refused answer, if one came.
    pub status: Option<u16>,
    /// A short label (`connection refused`, `body cut short`).
    pub label: String,
    /// More about it: burrow's error text, or where the bytes differ.
    pub detail: String,
    /// An answer that claimed success but was wrong or short.
    pub wrong: bool,
}

impl Problem {
    /// A transport error, labelled by what its message says.
    pub fn error(stage: &str, e: impl Display) -> Problem {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let label = [
            ("refused", "connection refused"),
            ("reset", "connection reset"),
            ("broken pipe", "broken pipe"),
            ("timeout", "timeout"),
            ("timed out", "timeout"),
            ("incomplete", "body cut short"),
            ("not complete", "body cut short"),
            ("closed", "connection closed"),
            ("eof", "connection closed"),
        ]
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map_or_else(|| format!("{stage} failed"), |(_, l)| (*l).to_owned());
        Problem {
            status: None,
            label,
            detail: format!("{stage}: {text}"),
            wrong: false,
        }
    }

    pub fn status(status: u16, detail: String) -> Problem {
        Problem {
            status: Some(status),
            label: status.to_string(),
            detail,
            wrong: false,
        }
    }

    pub fn wrong(detail: String) -> Problem {
        Problem {
            status: Some(200),
            label: "wrong bytes".into(),
            detail,
            wrong: true,
        }
    }

    pub fn other(label: &str, detail: String) -> Problem {
        Problem {
            status: None,
            label: label.into(),
            detail,
            wrong: false,
        }
    }
}

/// A failed exchange and when it ran.
pub struct Failure {
    pub kind: Kind,
    pub start: Instant,
    pub end: Instant,
    pub problem: Problem,
}

/// Every exchange's result, counted by kind; failures kept whole.
#[derive(Default)]
pub struct Tally {
    pub sent: BTreeMap<Kind, u64>,
    pub ok: BTreeMap<Kind, u64>,
    pub failures: Vec<Failure>,
}

impl Tally {
    fn record(&mut self, kind: Kind, start: Instant, result: Result<(), Problem>) {
        *self.sent.entry(kind).or_default() += 1;
        match result {
            Ok(()) => *self.ok.entry(kind).or_default() += 1,
            Err(problem) => self.failures.push(Failure {
                kind,
                start,
                end: Instant::now(),
                problem,
            }),
        }
    }
}

/// What the fault thread and the callers share: pausing the callers for a
/// measurement, and the end of the run.
#[derive(Default)]
pub struct Control {
    pub paused: AtomicBool,
    pub done: AtomicBool,
    pub busy: AtomicUsize,
}

/// Runs `workers` callers until `control.done`; returns what they saw.
pub async fn run(workers: u64, seed: u64, public: SocketAddr, control: Arc<Control>) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let rng = Rng::new(seed ^ (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            actix_rt::spawn(worker(rng, public, control.clone(), tally.clone()))
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    Rc::try_unwrap(tally).map_or_else(|_| Tally::default(), RefCell::into_inner)
}

/// The WebSocket caller (plain HTTP goes through [`http`], which tells a
/// cut answer from a whole one).
fn caller() -> Client {
    Client::builder().timeout(EXCHANGE_LIMIT).finish()
}

async fn worker(
    mut rng: Rng,
    public: SocketAddr,
    control: Arc<Control>,
    tally: Rc<RefCell<Tally>>,
) {
    let client = caller();
    while !control.done.load(Ordering::SeqCst) {
        // Busy first, paused checked second: the fault thread sets paused,
        // then waits for busy to reach 0, and no exchange slips between.
        control.busy.fetch_add(1, Ordering::SeqCst);
        if control.paused.load(Ordering::SeqCst) {
            control.busy.fetch_sub(1, Ordering::SeqCst);
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let kind = Kind::pick(&mut rng);
        let start = Instant::now();
        let result =
            actix_rt::time::timeout(EXCHANGE_LIMIT, exchange(&client, public, kind, &mut rng))
                .await
                .unwrap_or_else(|_| Err(Problem::other("timeout", "no end within 40 s".into())));
        control.busy.fetch_sub(1, Ordering::SeqCst);
        let failed = result.is_err();
        tally.borrow_mut().record(kind, start, result);
        // A caller that failed waits a little, as a real one would, so an
        // outage is not a busy loop of instant failures.
        let pause = if failed { 100 } else { rng.range(0, 20) };
        actix_rt::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One exchange of `kind`, its sizes and content drawn from `rng`.
async fn exchange(
    client: &Client,
    public: SocketAddr,
    kind: Kind,
    rng: &mut Rng,
) -> Result<(), Problem> {
    let seed = rng.next_u64();
    let (path, expect) = match kind {
        Kind::Small | Kind::Large | Kind::Chunked => {
            let (route, len) = match kind {
                Kind::Small => ("sized", rng.range(0, 4096)),
                Kind::Large => ("sized", rng.range(1 << 20, 8 << 20)),
                _ => ("chunked", rng.range(0, 2 << 20)),
            };
            let expect = pattern::bytes(seed, 0, len as usize);
            (format!("/{route}/{seed}/{len}"), expect)
        }
        Kind::Sse => {
            let n = rng.range(1, 8);
            let expect = pattern::sse_stream(seed, n).into_bytes();
            (format!("/sse/{seed}/{n}"), expect)
        }
        Kind::Slow => {
            let ms = rng.range(1000, 3000);
            (format!("/slow/{seed}/{ms}"), pattern::bytes(seed, 0, 1024))
        }
        Kind::Upload | Kind::ChunkedUpload => return upload(public, kind, seed, rng).await,
        Kind::WebSocket => {
            let url = format!("ws://{public}/ws");
            return sockets::session(client, &url, seed, rng).await;
        }
    };
    let answer = http::exchange(public, "GET", &path, Body::None).await?;
    check(answer, &expect)
}

/// A body sent whole (with Content-Length) or in uneven pieces (chunked);
/// the answer is the service's receipt for what it got.
async fn upload(public: SocketAddr, kind: Kind, seed: u64, rng: &mut Rng) -> Result<(), Problem> {
    let len = rng.range(0, 4 << 20) as usize;
    let body = pattern::bytes(seed, 0, len);
    let receipt = pattern::receipt(len as u64, pattern::fnv(pattern::FNV_START, &body));
    let framed = if kind == Kind::Upload {
        Body::Sized(&body)
    } else {
        let mut pieces = Vec::new();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = (rng.range(1, 128 << 10) as usize).min(rest.len());
            let (piece, after) = rest.split_at(n);
            pieces.push(piece);
            rest = after;
        }
        Body::Chunked(pieces)
    };
    let answer = http::exchange(public, "POST", "/upload", framed).await?;
    check(answer, receipt.as_bytes())
}

/// A 200 whose body is exactly `expect`; anything else is a problem.
fn check(answer: Answer, expect: &[u8]) -> Result<(), Problem> {
    if answer.status != 200 {
        let b = &answer.body;
        let text = String::from_utf8_lossy(&b[..b.len().min(200)]);
        return Err(Problem::status(answer.status, text.trim().to_owned()));
    }
    compare(&answer.body, expect)
}

/// Whether `got` is `expect`, and if not, how they differ.
pub fn compare(got: &[u8], expect: &[u8]) -> Result<(), Problem> {
    if got == expect {
        return Ok(());
    }
    let at = got.iter().zip(expect).position(|(a, b)| a != b);
    Err(Problem::wrong(format!(
        "{} bytes where {} were expected; {}",
        got.len(),
        expect.len(),
        at.map_or("one is a prefix of the other".into(), |i| format!(
            "first difference at byte {i}"
        )),
    )))
}
