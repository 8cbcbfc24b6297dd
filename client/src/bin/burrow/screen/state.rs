//! What the screen shows, kept up to date from three sides: the traffic
//! hub's batches (requests), the client's events (the connection) and the
//! log (lines that would have gone to standard error).

use std::{
    collections::{HashMap, VecDeque},
    io::Write,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use burrow_client::{
    observe::{
        hub::{Subscriber, TrafficEvent},
        Capture,
    },
    ClientEvent,
};

/// Requests listed, newest first.
const RECENT: usize = 200;
/// Log lines kept.
const LOG_LINES: usize = 50;
/// Durations the percentiles are taken over: the latest ones.
const LATENCIES: usize = 1000;

/// The connection to the server, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not registered yet.
    Connecting,
    /// Registered: requests may arrive.
    Online,
    /// Lost, and being opened again.
    Reconnecting(String),
    /// The client is stopping.
    Stopping,
}

/// One finished request, as listed.
#[derive(Debug, Clone)]
pub struct Row {
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    /// The status, or why there was none.
    pub outcome: String,
    pub took: Duration,
    pub size: u64,
}

/// Everything the screen draws.
#[derive(Debug)]
pub struct State {
    pub tunnels: Vec<(String, String)>,
    /// The inspector's page, when it runs.
    pub inspector: Option<String>,
    pub link: Link,
    pub rtt: Option<Duration>,
    pub reconnects: u32,
    pub requests: u64,
    /// Requests started and not ended, by stream and start: their body
    /// bytes so far, both ways.
    pub open: HashMap<(u32, Instant), u64>,
    pub latencies: VecDeque<Duration>,
    pub recent: VecDeque<Row>,
    pub log: VecDeque<String>,
    /// Exchanges the hub left out (it was full).
    pub missed: u64,
}

/// The state, shared by its feeders and the screen's thread.
#[derive(Debug, Clone)]
pub struct Shared(Arc<Mutex<State>>);

impl Shared {
    pub fn new(tunnels: Vec<(String, String)>) -> Shared {
        Shared(Arc::new(Mutex::new(State {
            tunnels,
            inspector: None,
            link: Link::Connecting,
            rtt: None,
            reconnects: 0,
            requests: 0,
            open: HashMap::new(),
            latencies: VecDeque::new(),
            recent: VecDeque::new(),
            log: VecDeque::new(),
            missed: 0,
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the client reported.
    pub fn client_event(&self, event: &ClientEvent, urls: impl FnOnce() -> Vec<(String, String)>) {
        let mut s = self.lock();
        match event {
            ClientEvent::Registered { .. } => {
                s.link = Link::Online;
                s.tunnels = urls();
            }
            ClientEvent::Disconnected { reason } => {
                if s.link == Link::Online {
                    s.reconnects += 1;
                }
                s.link = Link::Reconnecting(reason.clone());
            }
            ClientEvent::RoundTrip(rtt) => s.rtt = Some(*rtt),
        }
    }

    /// The client was asked to stop.
    pub fn stopping(&self) {
        self.lock().link = Link::Stopping;
    }
}

impl State {
    /// Body bytes the open requests have moved so far.
    pub fn moving(&self) -> u64 {
        self.open.values().sum()
    }

    /// The `p`th percentile of the latest durations (`p` in 0..=100).
    pub fn percentile(&self, p: usize) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let i = (sorted.len() * p / 100).min(sorted.len() - 1);
        Some(sorted[i])
    }

    fn ended(&mut self, e: &burrow_client::observe::Exchange) {
        self.open.remove(&(e.stream, e.started));
        self.requests += 1;
        if self.latencies.len() == LATENCIES {
            self.latencies.pop_front();
        }
        self.latencies.push_back(e.elapsed);
        let outcome = match (&e.status, &e.failure) {
            (Some(status), None) => status.to_string(),
            (Some(status), Some(_)) => format!("{status} cut"),
            (None, Some(f)) => f.code.to_string(),
            (None, None) => "-".into(),
        };
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(Row {
            at: SystemTime::now() - e.started.elapsed(),
            method: e.method.clone(),
            path: e.uri.clone(),
            outcome,
            took: e.elapsed,
            size: e.response_body.total,
        });
    }
}

impl Subscriber for Shared {
    fn capture(&self) -> Capture {
        Capture {
            live: true,
            ..Capture::default()
        }
    }

    fn events(&mut self, batch: &[TrafficEvent], dropped: u64) {
        let mut s = self.lock();
        s.missed += dropped;
        for event in batch {
            match event {
                TrafficEvent::Started {
                    stream, started, ..
                } => {
                    s.open.insert((*stream, *started), 0);
                }
                TrafficEvent::Head { .. } => {}
                TrafficEvent::Progress {
                    stream,
                    started,
                    sent,
                    received,
                } => {
                    if let Some(moved) = s.open.get_mut(&(*stream, *started)) {
                        *moved = sent + received;
                    }
                }
                TrafficEvent::Ended(e) => s.ended(e),
            }
        }
    }
}

/// The log's lines, kept for the screen instead of written to standard
/// error (which the screen covers).
pub struct LogLines {
    state: Shared,
    partial: Vec<u8>,
}

impl LogLines {
    pub fn new(state: Shared) -> LogLines {
        LogLines {
            state,
            partial: Vec::new(),
        }
    }
}

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let mut s = self.state.lock();
            if s.log.len() == LOG_LINES {
                s.log.pop_front();
            }
            s.log.push_back(text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
