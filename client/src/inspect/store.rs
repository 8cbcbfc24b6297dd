//! What the inspector keeps: the newest exchanges, each with an id, within
//! the limits of [`Limits`] (so many exchanges, so many bytes of each
//! body, so many bytes in all), filled by the event hub on its own thread
//! and read by the inspector's handlers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use tokio::sync::broadcast;

use crate::config::inspect::Limits;
use crate::observe::{
    hub::{Subscriber, TrafficEvent},
    Capture, Exchange,
};

/// One exchange as kept.
#[derive(Debug, Clone)]
pub struct Record {
    /// The inspector's id for it, counting from 1.
    pub id: u64,
    /// When it started, by the wall clock.
    pub at: SystemTime,
    /// The exchange of which this one is a replay.
    pub replay_of: Option<u64>,
    /// The local service it went to (`http://localhost:3000`).
    pub local: Arc<str>,
    /// What was recorded of it (shared with the hub's other subscribers).
    pub exchange: Arc<Exchange>,
}

/// A record and the bytes it holds, as counted against the total: counted
/// once, as it comes, so that dropping it does not read it again (by then
/// it has long left the cache).
struct Kept {
    record: Record,
    weight: usize,
}

/// Bytes `e` holds, as counted against the total.
fn weight(e: &Exchange) -> usize {
    256 + e.uri.len()
        + e.request_headers.size()
        + e.response_headers.size()
        + e.request_body.bytes.len()
        + e.response_body.bytes.len()
}

/// Both clocks, read at one moment: a record's wall-clock start is the
/// wall clock's now less the time since the exchange started.
#[derive(Clone, Copy)]
struct Clocks {
    monotonic: Instant,
    wall: SystemTime,
}

impl Clocks {
    fn now() -> Clocks {
        Clocks {
            monotonic: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// The records, newest last.
pub struct Store {
    records: VecDeque<Kept>,
    next_id: u64,
    bytes: usize,
    limits: Limits,
    /// Which local service serves each public host.
    locals: Box<dyn Fn(&str) -> String + Send>,
    /// Its answers so far, so that a record costs no lookup and no copy.
    known: HashMap<String, Arc<str>>,
    /// Tells the open event streams of each new record (its id).
    news: broadcast::Sender<u64>,
}

/// The store, shared by the hub's thread and the inspector's handlers.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Store>>);

impl Shared {
    /// An empty store within `limits`; `locals` names the local service of
    /// a public host.
    pub fn new(limits: Limits, locals: impl Fn(&str) -> String + Send + 'static) -> Self {
        let (news, _) = broadcast::channel(256);
        Shared(Arc::new(Mutex::new(Store {
            records: VecDeque::new(),
            next_id: 1,
            bytes: 0,
            limits,
            locals: Box::new(locals),
            known: HashMap::new(),
            news,
        })))
    }

    /// The store, locked.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the ids of new records.
    pub fn subscribe(&self) -> broadcast::Receiver<u64> {
        self.lock().news.subscribe()
    }
}

impl Store {
    /// The limits it keeps to.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps `exchange` (a replay of `replay_of`, if given); returns its id.
    pub fn add(&mut self, exchange: Arc<Exchange>, replay_of: Option<u64>) -> u64 {
        self.add_at(exchange, replay_of, Clocks::now())
    }

    /// [`Store::add`], the clocks read by the caller (once for a batch).
    fn add_at(&mut self, exchange: Arc<Exchange>, replay_of: Option<u64>, now: Clocks) -> u64 {
        let elapsed = now.monotonic.saturating_duration_since(exchange.started);
        let at = now
            .wall
            .checked_sub(elapsed)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let id = self.next_id;
        self.next_id += 1;
        let kept = Kept {
            weight: weight(&exchange),
            record: Record {
                id,
                at,
                replay_of,
                local: self.local_of(&exchange.host),
                exchange,
            },
        };
        self.bytes += kept.weight;
        self.records.push_back(kept);
        while self.records.len() > self.limits.entries
            || (self.bytes > self.limits.total_bytes && self.records.len() > 1)
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.weight;
                crate::observe::release(old.record.exchange);
            }
        }
        let _ = self.news.send(id);
        id
    }

    /// The local service of `host`: the newest record's when it is the same
    /// host (most often), else looked up once per host.
    fn local_of(&mut self, host: &str) -> Arc<str> {
        let last = self.records.back().map(|k| &k.record);
        if let Some(last) = last.filter(|r| r.exchange.host == host) {
            return Arc::clone(&last.local);
        }
        match self.known.get(host) {
            Some(local) => Arc::clone(local),
            None => {
                let local: Arc<str> = (self.locals)(host).into();
                self.known.insert(host.to_owned(), Arc::clone(&local));
                local
            }
        }
    }

    /// The record `id`, if still kept.
    pub fn get(&self, id: u64) -> Option<&Record> {
        let first = self.records.front()?.record.id;
        let at = usize::try_from(id.checked_sub(first)?).ok()?;
        self.records
            .get(at)
            .map(|k| &k.record)
            .filter(|r| r.id == id)
    }

    /// The records, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().rev().map(|k| &k.record)
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every record (ids keep counting).
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }
}

/// The store as a subscriber of the event hub: it keeps each exchange as
/// it ends.
pub struct Keeper(pub Shared);

impl Subscriber for Keeper {
    fn capture(&self) -> Capture {
        Capture {
            headers: true,
            body_bytes: self.0.lock().limits.body_bytes,
            live: false,
        }
    }

    fn events(&mut self, batch: &[TrafficEvent], _dropped: u64) {
        let mut store = self.0.lock();
        // A batch waited at most the hub's gathering time: one reading of
        // the clocks dates all of it.
        let now = Clocks::now();
        for event in batch {
            if let TrafficEvent::Ended(e) = event {
                store.add_at(Arc::clone(e), None, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::BodyCapture;

    fn exchange(body: usize) -> Exchange {
        let mut e = Exchange::new_for("a.localhost", "POST", "/x");
        e.request_body = BodyCapture {
            bytes: vec![b'x'; body],
            total: body as u64,
        };
        e
    }

    #[test]
    fn the_ring_keeps_the_newest_within_its_counts_and_bytes() {
        let limits = Limits {
            entries: 3,
            body_bytes: 1024,
            total_bytes: 10_000,
        };
        let shared = Shared::new(limits, |_| "http://localhost:3000".into());
        let mut store = shared.lock();
        for _ in 0..5 {
            store.add(Arc::new(exchange(10)), None);
        }
        let ids: Vec<u64> = store.newest_first().map(|r| r.id).collect();
        assert_eq!(ids, [5, 4, 3]);
        assert!(store.get(2).is_none() && store.get(4).is_some());
        // Big ones push out old ones to stay within the bytes.
        for _ in 0..3 {
            store.add(Arc::new(exchange(4_000)), None);
        }
        assert!(store.bytes() <= 10_000, "{}", store.bytes());
        let ids: Vec<u64> = store.newest_first().map(|r| r.id).collect();
        assert_eq!(ids, [8, 7]);
        store.clear();
        assert_eq!((store.newest_first().count(), store.bytes()), (0, 0));
        assert_eq!(store.add(Arc::new(exchange(1)), None), 9);
    }

    #[test]
    fn each_record_names_its_own_hosts_local_service() {
        let shared = Shared::new(Limits::default(), |host| format!("http://{host}:1"));
        let mut store = shared.lock();
        for host in ["a.localhost", "a.localhost", "b.localhost", "a.localhost"] {
            store.add(Arc::new(Exchange::new_for(host, "GET", "/")), None);
        }
        let locals: Vec<&str> = store.newest_first().map(|r| &*r.local).collect();
        assert_eq!(
            locals,
            [
                "http://a.localhost:1",
                "http://b.localhost:1",
                "http://a.localhost:1",
                "http://a.localhost:1"
            ]
        );
    }
}
