//! Which server worker each of the client's connections is served by.
//!
//! A server hands each request to a connection on the worker thread that
//! accepted it, when the client has one there, so the request never
//! crosses threads. Each connection learns from the handshake answer which
//! worker of which server node serves it; an extra connection that lands
//! on a worker another connection already covers is opened again (a few
//! times) to land on another, until every worker of that node is covered.
//! Workers are told apart per node, so connections that land on different
//! nodes behind one address each count for their own node.

use std::{
    cell::Cell,
    sync::{Arc, Mutex},
};

use burrow_common::HelloAck;

/// Times an extra connection that landed on a covered server worker is
/// opened again before it settles for that worker.
pub const PLACEMENT_ATTEMPTS: u32 = 8;

/// One server worker: the node it belongs to (empty when the server names
/// none) and its index there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Worker {
    node: Box<str>,
    index: u32,
}

impl Worker {
    fn of(ack: &HelloAck) -> Option<Worker> {
        Some(Worker {
            node: ack.node.as_deref().unwrap_or("").into(),
            index: ack.worker?,
        })
    }
}

/// The server workers the client's registered connections are served by,
/// one entry per connection; shared by all of them.
#[derive(Clone, Default)]
pub struct CoveredWorkers(Arc<Mutex<Vec<Worker>>>);

impl CoveredWorkers {
    /// Records a connection on `worker` of a node with `workers` workers,
    /// unless `worker` is already covered while some of that node's workers
    /// are not, and `settle` is false. Returns whether it was recorded.
    fn claim(&self, worker: &Worker, workers: Option<u32>, settle: bool) -> bool {
        let Ok(mut covered) = self.0.lock() else {
            return true;
        };
        if !settle && covered.contains(worker) {
            let mut distinct: Vec<u32> = covered
                .iter()
                .filter(|w| w.node == worker.node)
                .map(|w| w.index)
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            let all_covered = workers.is_some_and(|n| distinct.len() >= n as usize);
            if !all_covered {
                return false;
            }
        }
        covered.push(worker.clone());
        true
    }

    /// Forgets one connection on `worker`.
    fn release(&self, worker: &Worker) {
        if let Ok(mut covered) = self.0.lock() {
            if let Some(i) = covered.iter().position(|w| w == worker) {
                covered.swap_remove(i);
            }
        }
    }
}

/// One connection's claim on the worker serving it: recorded in the
/// client's [`CoveredWorkers`] while the connection is registered.
pub struct WorkerClaim {
    covered: CoveredWorkers,
    mine: std::cell::RefCell<Option<Worker>>,
    /// Placements refused so far (for an extra connection).
    attempts: Cell<u32>,
}

impl WorkerClaim {
    /// A connection's claim among the client's `covered` workers.
    pub fn new(covered: CoveredWorkers) -> Self {
        WorkerClaim {
            covered,
            mine: std::cell::RefCell::new(None),
            attempts: Cell::new(0),
        }
    }

    /// Claims the worker named in `ack` wherever it is (the first
    /// connection stays where it lands).
    pub fn take_any(&self, ack: &HelloAck) {
        self.take(ack, true);
    }

    /// Claims the worker named in `ack` if no other connection covers it,
    /// or settles for it after [`PLACEMENT_ATTEMPTS`] refusals. `false`
    /// asks for the connection to be opened again.
    pub fn take_uncovered(&self, ack: &HelloAck) -> bool {
        let settle = self.attempts.get() >= PLACEMENT_ATTEMPTS;
        if !self.take(ack, settle) {
            self.attempts.set(self.attempts.get() + 1);
            return false;
        }
        self.attempts.set(0);
        true
    }

    /// `true` when taken or when the server names no worker.
    fn take(&self, ack: &HelloAck, settle: bool) -> bool {
        let Some(worker) = Worker::of(ack) else {
            return true;
        };
        if !self.covered.claim(&worker, ack.connections, settle) {
            return false;
        }
        *self.mine.borrow_mut() = Some(worker);
        true
    }

    /// Gives the worker back (the connection has ended).
    pub fn release(&self) {
        if let Some(worker) = self.mine.borrow_mut().take() {
            self.covered.release(&worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(node: &str, worker: u32) -> HelloAck {
        HelloAck {
            version: burrow_common::PROTOCOL_VERSION,
            tunnels: Vec::new(),
            error: None,
            connections: Some(2),
            worker: Some(worker),
            node: Some(node.into()),
            drain: true,
            ping_secs: None,
        }
    }

    #[test]
    fn extra_connections_take_uncovered_workers_then_settle() {
        let covered = CoveredWorkers::default();
        WorkerClaim::new(covered.clone()).take_any(&ack("a", 0));
        let extra = WorkerClaim::new(covered.clone());
        for _ in 0..PLACEMENT_ATTEMPTS {
            assert!(!extra.take_uncovered(&ack("a", 0)), "worker 0 is covered");
        }
        assert!(
            extra.take_uncovered(&ack("a", 0)),
            "settles after its attempts"
        );
        extra.release();
        assert!(
            extra.take_uncovered(&ack("a", 1)),
            "an uncovered worker at once"
        );
        let third = WorkerClaim::new(covered.clone());
        assert!(
            third.take_uncovered(&ack("a", 1)),
            "every worker covered: more connections than workers share them"
        );
        third.release();
        extra.release();
        let fourth = WorkerClaim::new(covered.clone());
        assert!(
            !fourth.take_uncovered(&ack("a", 0)),
            "worker 1 is free again"
        );
        assert!(fourth.take_uncovered(&ack("a", 1)));
    }

    #[test]
    fn workers_of_different_nodes_are_different_workers() {
        let covered = CoveredWorkers::default();
        WorkerClaim::new(covered.clone()).take_any(&ack("a", 0));
        let other_node = WorkerClaim::new(covered.clone());
        assert!(other_node.take_uncovered(&ack("b", 0)));
        let same_node = WorkerClaim::new(covered);
        assert!(!same_node.take_uncovered(&ack("a", 0)));
    }
}
