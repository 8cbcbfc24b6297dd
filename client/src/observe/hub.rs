//! The fan-out of traffic events: the forwarding threads queue them, and
//! one thread hands them in batches to every subscriber (the request log,
//! the terminal screen, the inspector to come), so that no subscriber runs
//! on a forwarding thread or slows a request.
//!
//! Queueing costs a request a lock and a push (and the freeing of two of
//! its thread's records the hub let go of, see `observe::home`); the hub's
//! thread is woken by the first event after a batch, waits [`GATHER`] for
//! more, or until [`BATCH`] have come, and takes them all: a tunnel wakes
//! it at most twenty times a second, or once every [`BATCH`] events when
//! it is busier, and the records waiting for it stay about a megabyte.
//! Past [`MAX_QUEUED`] events (a subscriber that stalls) events are
//! counted, not kept, and the count is handed over with the next batch.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use super::{
    home::{self, Returns},
    Capture, Exchange, ExchangeObserver,
};

/// How long the hub waits, once woken, for more events to join a batch:
/// short enough that a person watching sees a request at once.
pub const GATHER: Duration = Duration::from_millis(50);

/// Events that end the hub's wait early: at tens of thousands of requests
/// a second, [`GATHER`]'s worth of records held several megabytes.
pub const BATCH: usize = 1024;

/// Most events kept for the subscribers.
pub const MAX_QUEUED: usize = 16 * 1024;

/// What happened to the traffic.
#[derive(Debug, Clone)]
pub enum TrafficEvent {
    /// A request arrived from the server.
    Started {
        /// Its stream on its connection (with `started`, tells exchanges
        /// apart).
        stream: u32,
        /// The public host.
        host: String,
        /// The method.
        method: String,
        /// The target, as the caller sent it.
        uri: String,
        /// When it arrived.
        started: Instant,
    },
    /// The local service's response head came.
    Head {
        /// The exchange's stream.
        stream: u32,
        /// When the exchange started.
        started: Instant,
        /// The status.
        status: u16,
    },
    /// An exchange's bodies moved another
    /// [`super::PROGRESS_STEP`] bytes.
    Progress {
        /// The exchange's stream.
        stream: u32,
        /// When the exchange started.
        started: Instant,
        /// Request body bytes so far.
        sent: u64,
        /// Response body bytes so far.
        received: u64,
    },
    /// An exchange ended, with all that was recorded of it (moved here
    /// from the forwarding path, not copied; a subscriber that keeps it
    /// keeps a share of it, not a copy).
    Ended(Arc<Exchange>),
}

/// Takes batches of events on the hub's thread.
pub trait Subscriber: Send {
    /// What this subscriber needs recorded.
    fn capture(&self) -> Capture;
    /// A batch of events, in the order they were queued; `dropped` were
    /// left out before them (the queue was full).
    fn events(&mut self, batch: &[TrafficEvent], dropped: u64);
    /// The hub is closing (the client has stopped): finish what is kept.
    fn flush(&mut self) {}
}

struct Queue {
    events: Vec<TrafficEvent>,
    dropped: u64,
    /// The hub's thread waits for a first event (and must be woken by it).
    waiting: bool,
    /// The hub's thread gathers a batch (and is woken when it is full).
    gathering: bool,
    closed: bool,
    /// Records the subscribers let go of, for their home threads to free.
    returns: Returns,
}

struct Shared {
    queue: Mutex<Queue>,
    /// How long a batch gathers ([`GATHER`]).
    gather: Duration,
    ready: Condvar,
    /// Held while a batch is delivered, so that a flush waits for it.
    delivering: Mutex<Vec<Box<dyn Subscriber>>>,
}

/// The observer the binary gives the client: queues events for its
/// subscribers.
pub struct Hub {
    shared: Arc<Shared>,
    capture: Capture,
}

impl Hub {
    /// A hub for `subscribers`, its thread started; `None` with no
    /// subscriber, so that the client records nothing.
    pub fn start(subscribers: Vec<Box<dyn Subscriber>>) -> std::io::Result<Option<Arc<Hub>>> {
        Hub::start_gathering(subscribers, GATHER)
    }

    fn start_gathering(
        subscribers: Vec<Box<dyn Subscriber>>,
        gather: Duration,
    ) -> std::io::Result<Option<Arc<Hub>>> {
        if subscribers.is_empty() {
            return Ok(None);
        }
        let capture = subscribers
            .iter()
            .fold(Capture::default(), |c, s| c.union(s.capture()));
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                events: Vec::new(),
                dropped: 0,
                waiting: false,
                gathering: false,
                closed: false,
                returns: Returns::default(),
            }),
            gather,
            ready: Condvar::new(),
            delivering: Mutex::new(subscribers),
        });
        let runner = Arc::clone(&shared);
        thread::Builder::new()
            .name("burrow-events".into())
            .spawn(move || runner.run())?;
        Ok(Some(Arc::new(Hub { shared, capture })))
    }

    /// Hands what is queued to the subscribers now (before the process
    /// exits), and stops the hub's thread.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        self.shared.deliver(&mut Vec::new());
        let mut subscribers = self.shared.subscribers();
        subscribers.iter_mut().for_each(|s| s.flush());
    }

    fn push(&self, event: TrafficEvent) {
        // Records of this thread's that the hub let go of: freed here, once
        // the lock is released.
        let (wake, _freed_here) = {
            let mut q = self.shared.lock();
            let freed = q.returns.take_for(home::here());
            let wake = if q.events.len() >= MAX_QUEUED {
                q.dropped += 1;
                false
            } else {
                q.events.push(event);
                let full = q.gathering && q.events.len() == BATCH;
                std::mem::take(&mut q.waiting) || full
            };
            (wake, freed)
        };
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

impl ExchangeObserver for Hub {
    fn capture(&self) -> Capture {
        self.capture
    }

    fn started(&self, e: &Exchange) {
        self.push(TrafficEvent::Started {
            stream: e.stream,
            host: e.host.clone(),
            method: e.method.clone(),
            uri: e.uri.clone(),
            started: e.started,
        });
    }

    fn head(&self, e: &Exchange) {
        if let Some(status) = e.status {
            self.push(TrafficEvent::Head {
                stream: e.stream,
                started: e.started,
                status,
            });
        }
    }

    fn progress(&self, e: &Exchange) {
        self.push(TrafficEvent::Progress {
            stream: e.stream,
            started: e.started,
            sent: e.request_body.total,
            received: e.response_body.total,
        });
    }

    fn exchange(&self, e: Exchange) {
        self.push(TrafficEvent::Ended(Arc::new(e)));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hub's thread: a batch per wake-up, until closed.
    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            let mut q = self.lock();
            while q.events.is_empty() && q.dropped == 0 && !q.closed {
                q.waiting = true;
                q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            let until = Instant::now() + self.gather;
            q.gathering = true;
            while q.events.len() < BATCH && !q.closed {
                let Some(left) = until.checked_duration_since(Instant::now()) else {
                    break;
                };
                q = self
                    .ready
                    .wait_timeout(q, left)
                    .map_or_else(|e| e.into_inner().0, |w| w.0);
            }
            q.gathering = false;
            if q.closed {
                return;
            }
            drop(q);
            self.deliver(&mut batch);
        }
    }

    /// Takes what is queued and hands it to every subscriber.
    fn subscribers(&self) -> MutexGuard<'_, Vec<Box<dyn Subscriber>>> {
        self.delivering.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, batch: &mut Vec<TrafficEvent>) {
        let mut subscribers = self.subscribers();
        let dropped = {
            let mut q = self.lock();
            std::mem::swap(&mut q.events, batch);
            std::mem::take(&mut q.dropped)
        };
        if batch.is_empty() && dropped == 0 {
            return;
        }
        let released = home::gathering(|| {
            for s in subscribers.iter_mut() {
                s.events(batch, dropped);
            }
            for event in batch.drain(..) {
                if let TrafficEvent::Ended(record) = event {
                    home::release(record);
                }
            }
        });
        drop(subscribers);
        self.lock().returns.queue(released);
    }
}

#[cfg(test)]
mod tests;
