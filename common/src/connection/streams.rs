//! A connection's table of streams in flight, the same at both ends: each
//! entry's credit each way, what a `Data` or `Window` frame does to it, and
//! which entries a sweep finds past their limits. What an entry holds
//! beyond that (the opener's events on the server, the forwarding task on
//! the client), and what an expiry does, stay with each end; the limits
//! are a parameter.

use std::time::Duration;

use crate::{
    flow::{RecvCredit, SendCredit},
    stream_map::{self, StreamMap},
};

/// What the table needs of an entry.
pub trait Entry {
    /// What the peer may still send on the stream.
    fn recv_credit(&self) -> &RecvCredit;
    /// What this end may still send on it.
    fn send_credit(&self) -> &SendCredit;
    /// How long ago the stream was opened.
    fn age(&self) -> Duration;
    /// Whether the response head has passed.
    fn answered(&self) -> bool;
    /// How long the stream has moved no bytes (for [`Limits::idle`]).
    fn idle_for(&self) -> Duration {
        Duration::ZERO
    }
}

/// How long a stream may wait for its response head, and, once answered,
/// move no bytes (`None`: no limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The wait for the response head.
    pub head: Duration,
    /// The silence of an answered stream.
    pub idle: Option<Duration>,
}

/// Which limit a stream passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No response head within [`Limits::head`].
    NoHead,
    /// Answered, and silent for [`Limits::idle`].
    Idle,
}

/// The streams in flight on one connection.
#[derive(Debug)]
pub struct Streams<E> {
    map: StreamMap<E>,
}

impl<E> Default for Streams<E> {
    fn default() -> Self {
        Streams {
            map: StreamMap::default(),
        }
    }
}

impl<E: Entry> Streams<E> {
    /// The entry of stream `id`.
    pub fn get(&self, id: u32) -> Option<&E> {
        self.map.get(&id)
    }

    /// The entry of stream `id`, to change.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut E> {
        self.map.get_mut(&id)
    }

    /// Whether stream `id` is in flight.
    pub fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    /// Adds stream `id`.
    pub fn insert(&mut self, id: u32, entry: E) {
        self.map.insert(id, entry);
    }

    /// Takes stream `id` out.
    pub fn remove(&mut self, id: u32) -> Option<E> {
        self.map.remove(&id)
    }

    /// Streams in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes every stream out (the connection is ending).
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, E)> + '_ {
        self.map.drain()
    }

    /// Charges a `Data` frame of `len` bytes to stream `id`'s window: the
    /// entry to deliver the bytes to (`None` for a stream no longer here,
    /// whose bytes are dropped), or, when the peer sent beyond what it was
    /// granted, the entry taken out of the table for the end to reset.
    pub fn data(&mut self, id: u32, len: usize) -> Result<Option<&mut E>, E> {
        use std::collections::hash_map::Entry as Slot;
        match self.map.entry(id) {
            Slot::Vacant(_) => Ok(None),
            Slot::Occupied(e) if e.get().recv_credit().take(len) => Ok(Some(e.into_mut())),
            Slot::Occupied(e) => Err(e.remove()),
        }
    }

    /// Adds the credit of a `Window` frame to stream `id`; its entry.
    pub fn window(&self, id: u32, increment: u32) -> Option<&E> {
        let entry = self.map.get(&id)?;
        entry.send_credit().grant(increment);
        Some(entry)
    }

    /// Takes out the streams past `limits`, with the limit each passed,
    /// and frees the table's storage once no stream is left (an idle
    /// connection, of which a server may hold thousands, keeps none).
    pub fn expired(&mut self, limits: Limits) -> Vec<(u32, E, Expiry)> {
        let past: Vec<(u32, Expiry)> = self
            .map
            .iter()
            .filter_map(|(id, e)| {
                if !e.answered() && e.age() >= limits.head {
                    Some((*id, Expiry::NoHead))
                } else if e.answered() && limits.idle.is_some_and(|idle| e.idle_for() >= idle) {
                    Some((*id, Expiry::Idle))
                } else {
                    None
                }
            })
            .collect();
        let taken = past
            .into_iter()
            .filter_map(|(id, why)| Some((id, self.map.remove(&id)?, why)))
            .collect();
        stream_map::release_if_empty(&mut self.map);
        taken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    struct Probe {
        recv: Arc<RecvCredit>,
        send: Arc<SendCredit>,
        age: Duration,
        answered: bool,
        idle: Duration,
    }

    impl Entry for Probe {
        fn recv_credit(&self) -> &RecvCredit {
            &self.recv
        }
        fn send_credit(&self) -> &SendCredit {
            &self.send
        }
        fn age(&self) -> Duration {
            self.age
        }
        fn answered(&self) -> bool {
            self.answered
        }
        fn idle_for(&self) -> Duration {
            self.idle
        }
    }

    fn probe(age: u64, answered: bool, idle: u64) -> Probe {
        Probe {
            recv: RecvCredit::new(),
            send: SendCredit::new(),
            age: Duration::from_secs(age),
            answered,
            idle: Duration::from_secs(idle),
        }
    }

    #[test]
    fn data_beyond_the_window_takes_the_stream_out() {
        let mut s = Streams::default();
        s.insert(1, probe(0, true, 0));
        let window = crate::protocol::INITIAL_WINDOW as usize;
        assert!(matches!(s.data(1, window - 1), Ok(Some(_))));
        assert!(matches!(s.data(3, 10), Ok(None)), "an unknown stream");
        assert!(s.data(1, 2).is_err(), "one byte too many");
        assert!(!s.contains(1));
    }

    #[test]
    fn a_sweep_takes_out_what_passed_its_limit_and_frees_the_table() {
        let mut s = Streams::default();
        s.insert(1, probe(31, false, 0)); // no head in time
        s.insert(3, probe(5, false, 0)); // still waiting
        s.insert(5, probe(100, true, 61)); // silent too long
        s.insert(7, probe(100, true, 1)); // moving
        let limits = Limits {
            head: Duration::from_secs(30),
            idle: Some(Duration::from_secs(60)),
        };
        let mut gone: Vec<(u32, Expiry)> = s
            .expired(limits)
            .into_iter()
            .map(|(id, _, why)| (id, why))
            .collect();
        gone.sort_by_key(|(id, _)| *id);
        assert_eq!(gone, [(1, Expiry::NoHead), (5, Expiry::Idle)]);
        assert_eq!(s.len(), 2);
        let no_idle = Limits {
            idle: None,
            ..limits
        };
        s.insert(9, probe(100, true, 1000));
        assert!(s.expired(no_idle).is_empty(), "no idle limit");
        s.remove(3);
        s.remove(7);
        s.remove(9);
        assert!(s.expired(limits).is_empty());
        assert_eq!(s.map.capacity(), 0, "an empty table keeps no storage");
    }
}
