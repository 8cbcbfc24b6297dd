//! Credit promised ahead of any stream, so that a request body starts at
//! its path's rate instead of waiting a round trip for its first grant.
//!
//! A stream's first grant reaches its sender a round trip after the sender
//! started, so on a long path every body's first round trip runs on the
//! initial window alone. The server opens the streams, so it grants an
//! answer's window right behind the request head ([`super::OpenedWindow`]).
//! The client learns of a request from its head, with the body's first
//! bytes right behind it: it can only promise before. A `Window` on stream 0
//! adds to what the server may give the request bodies of the streams it
//! opens ([`OpeningAllowance`]), and each `RequestHead` says how much its
//! body took ([`crate::protocol::RequestHead::credit`]), so that both ends
//! count the same. The client ([`OpeningCredit`]) promises on a long path
//! what its request bodies' windows have widened to, from the same budgets
//! as any widening: a promise is memory it may have to hold.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use thiserror::Error;

use super::{
    path::PathState,
    window::{
        give_both, take_both, OpenedWindow, ReceiveWindow, WindowBudget, WindowMemory, MAX_WINDOW,
        WIDE_WINDOW_BUDGET,
    },
};
use crate::protocol::INITIAL_WINDOW;

/// The promising side of one connection: credit promised to the peer's
/// streams and not drawn yet.
#[derive(Debug)]
pub struct OpeningCredit {
    promised: u32,
    budget: &'static WindowBudget,
    path: Arc<PathState>,
    /// The widest window the streams' bodies reached: what a body may
    /// start with.
    memory: Arc<WindowMemory>,
}

/// A stream took more opening credit than was promised: the peer broke
/// the protocol.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a stream took {drawn} bytes of opening credit where {promised} were promised")]
pub struct Overdrawn {
    drawn: u32,
    promised: u32,
}

impl OpeningCredit {
    /// Nothing promised yet, on `path`, for bodies whose widest window
    /// `memory` keeps (shared by the connections to one server).
    pub fn new(path: Arc<PathState>, memory: Arc<WindowMemory>) -> Self {
        OpeningCredit {
            promised: 0,
            budget: &WIDE_WINDOW_BUDGET,
            path,
            memory,
        }
    }

    /// Credit to promise the peer now (a `Window` on stream 0), if any: on
    /// a long path, what brings the promise up to the widest window the
    /// bodies reached (beyond [`INITIAL_WINDOW`]), when both budgets cover
    /// it. Cheap enough to ask after every message.
    pub fn top_up(&mut self) -> Option<u32> {
        let wanted = self
            .memory
            .widest()
            .min(MAX_WINDOW)
            .saturating_sub(INITIAL_WINDOW);
        let more = wanted.saturating_sub(self.promised);
        if more == 0 || !self.path.is_long() || !take_both(self.budget, &self.path, more) {
            return None;
        }
        self.promised += more;
        Some(more)
    }

    /// The receive window of a body whose stream took `drawn` bytes of the
    /// promise: [`INITIAL_WINDOW`] and `drawn`.
    pub fn draw(&mut self, drawn: u32) -> Result<OpenedWindow, Overdrawn> {
        let promised = self.promised;
        self.promised = promised
            .checked_sub(drawn)
            .ok_or(Overdrawn { drawn, promised })?;
        let memory = Arc::clone(&self.memory);
        let window = ReceiveWindow::drawn(self.budget, Arc::clone(&self.path), memory, drawn);
        Ok(OpenedWindow(window))
    }

    /// Whether promises are made on this path: then a connection idle
    /// while its peers' bodies widen ([`WindowMemory::grown`]) should
    /// [`OpeningCredit::top_up`] too.
    pub fn on_long_path(&self) -> bool {
        self.path.is_long()
    }

    /// Credit promised and not drawn.
    pub fn promised(&self) -> u32 {
        self.promised
    }
}

impl Drop for OpeningCredit {
    fn drop(&mut self) {
        give_both(self.budget, &self.path, self.promised);
    }
}

/// The opening side of one connection: credit its peer promised, which
/// the request bodies of the streams it opens take.
#[derive(Debug, Default)]
pub struct OpeningAllowance(AtomicU64);

impl OpeningAllowance {
    /// Adds credit the peer promised.
    pub fn add(&self, n: u32) {
        self.0.fetch_add(u64::from(n), Ordering::AcqRel);
    }

    /// Takes up to `want` bytes for a body opening now: what its head says
    /// it took (0 when nothing is left, which is one load).
    pub fn draw(&self, want: u64) -> u32 {
        let want = want.min(u64::from(MAX_WINDOW));
        if want == 0 || self.0.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let before = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left - left.min(want))
            })
            .unwrap_or_default();
        // At most MAX_WINDOW.
        before.min(want) as u32
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const M: u32 = 1 << 20;

    fn memory_at(widest: u32) -> Arc<WindowMemory> {
        let memory = Arc::new(WindowMemory::default());
        memory.grew_to(widest);
        memory
    }

    fn path(rtt_ms: u64, budget: u64) -> Arc<PathState> {
        let path = Arc::new(PathState::with_budget(budget));
        path.sample(Duration::from_millis(rtt_ms));
        path
    }

    #[test]
    fn a_long_path_promises_what_bodies_widened_to_and_only_that() {
        let path = path(50, 32 << 20);
        let memory = Arc::new(WindowMemory::default());
        let mut credit = OpeningCredit::new(Arc::clone(&path), Arc::clone(&memory));
        assert_eq!(credit.top_up(), None, "no body has widened yet");
        memory.grew_to(6 * M);
        assert_eq!(credit.top_up(), Some(6 * M - INITIAL_WINDOW));
        assert_eq!(credit.top_up(), None, "promised already");
        memory.grew_to(64 * M);
        assert_eq!(
            credit.top_up(),
            Some(MAX_WINDOW - 6 * M),
            "up to the widest window"
        );
        assert_eq!(credit.promised(), MAX_WINDOW - INITIAL_WINDOW);
    }

    #[test]
    fn a_short_path_promises_nothing() {
        let mut credit = OpeningCredit::new(path(1, 32 << 20), memory_at(8 * M));
        assert_eq!(credit.top_up(), None);
        let unmeasured = Arc::new(PathState::with_budget(32 << 20));
        let mut credit = OpeningCredit::new(unmeasured, memory_at(8 * M));
        assert_eq!(credit.top_up(), None);
    }

    #[test]
    fn a_body_opens_with_what_its_stream_took_and_no_more_than_was_promised() {
        let path = path(50, 32 << 20);
        let mut credit = OpeningCredit::new(Arc::clone(&path), memory_at(4 * M));
        let promise = credit.top_up().expect("a promise");
        let window = credit.draw(promise - M).expect("within the promise");
        assert_eq!(window.0.size(), INITIAL_WINDOW + promise - M);
        assert_eq!(credit.promised(), M);
        assert_eq!(
            credit.draw(M + 1).map(|_| ()),
            Err(Overdrawn {
                drawn: M + 1,
                promised: M
            })
        );
        // The promise comes back up beside the body that took it.
        assert_eq!(credit.top_up(), Some(promise - M));
        drop(window);
        drop(credit);
        assert_eq!(path.budget.left(), 32 << 20, "every promise given back");
    }

    #[test]
    fn promises_stop_at_the_connection_s_budget() {
        // Room for one promise of 3.5 MiB and a body holding it.
        let path = path(50, 7 * u64::from(M));
        let mut credit = OpeningCredit::new(Arc::clone(&path), memory_at(4 * M));
        let promise = credit.top_up().expect("a promise");
        let body = credit.draw(promise).expect("drawn");
        assert_eq!(credit.top_up(), Some(promise), "7 MiB hold two");
        let second = credit.draw(promise).expect("drawn");
        assert_eq!(credit.top_up(), None, "nothing left to promise");
        drop(body);
        assert_eq!(credit.top_up(), Some(promise), "a body's end frees room");
        drop((second, credit));
        assert_eq!(path.budget.left(), 7 * u64::from(M));
    }

    #[test]
    fn an_allowance_gives_each_body_what_is_left_up_to_what_it_wants() {
        let allowance = OpeningAllowance::default();
        assert_eq!(allowance.draw(u64::MAX), 0, "nothing promised");
        allowance.add(3 * M);
        assert_eq!(allowance.draw(0), 0, "a small body wants none");
        assert_eq!(allowance.draw(u64::from(M)), M);
        assert_eq!(allowance.draw(u64::MAX), 2 * M, "the rest");
        assert_eq!(allowance.draw(u64::MAX), 0);
        allowance.add(u32::MAX);
        allowance.add(u32::MAX);
        assert_eq!(allowance.draw(u64::MAX), MAX_WINDOW, "a window at most");
    }
}
