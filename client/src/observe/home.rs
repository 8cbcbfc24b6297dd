//! A record's memory goes back to the thread that made it.
//!
//! A connection thread allocates each exchange's record (its texts, fields
//! and captured bytes); the hub's thread hands it on and lets go of it
//! (the request log), or the inspector's store does, on the same thread,
//! when a newer one pushes it out. A block freed away from the thread that
//! allocated it is queued back to that thread's heap, which then collects
//! it before it can reuse the page: under load that cost the connection
//! threads about 0.4 µs per request. So the hub's thread does not free a
//! record: it queues it for its home thread ([`Returns`]), which frees a
//! few on each exchange it hands over, in its own heap.
//!
//! Bounded: past [`MAX_RETURNED`] waiting records (a home thread that
//! ended, or handed over nothing since), records are freed where they are.

use std::{
    cell::{Cell, RefCell},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use super::Exchange;

/// Most records waiting for their home threads, all homes together: a
/// batch's worth at a few thousand requests a second; more hold memory
/// (a busy client's peak rose by 1 MiB with 4096).
pub const MAX_RETURNED: usize = 1024;

/// How many waiting records a home thread frees each time it hands over
/// an exchange: more than one, so that the queue drains as fast as it
/// fills.
const FREED_PER_TURN: usize = 2;

static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HOME: Cell<Option<usize>> = const { Cell::new(None) };
    /// Records let go of on the hub's thread during a batch, `None` on
    /// any other thread (which frees them where they are).
    static RELEASED: RefCell<Option<Vec<Arc<Exchange>>>> = const { RefCell::new(None) };
}

/// This thread's number as the home of the records it makes.
pub fn here() -> usize {
    HOME.with(|home| match home.get() {
        Some(n) => n,
        None => {
            let n = NEXT_HOME.fetch_add(1, Ordering::Relaxed);
            home.set(Some(n));
            n
        }
    })
}

/// Lets go of a record: on the hub's thread, during a batch, it is kept
/// for its home thread when this was the last share of it.
pub fn release(record: Arc<Exchange>) {
    RELEASED.with_borrow_mut(|released| match released {
        Some(list) if Arc::strong_count(&record) == 1 => list.push(record),
        _ => drop(record),
    })
}

/// Runs `f` (a batch's delivery) with the records it releases gathered,
/// and returns them.
pub fn gathering(f: impl FnOnce()) -> Vec<Arc<Exchange>> {
    RELEASED.with_borrow_mut(|r| *r = Some(Vec::new()));
    f();
    RELEASED.with_borrow_mut(Option::take).unwrap_or_default()
}

/// Records waiting to be freed by their home threads.
#[derive(Default)]
pub struct Returns {
    homes: Vec<Vec<Arc<Exchange>>>,
    waiting: usize,
}

impl Returns {
    /// Queues `records` for their homes; past the bound, frees them here.
    pub fn queue(&mut self, records: Vec<Arc<Exchange>>) {
        for record in records {
            if self.waiting >= MAX_RETURNED {
                continue;
            }
            let home = record.home;
            if self.homes.len() <= home {
                self.homes.resize_with(home + 1, Vec::new);
            }
            self.homes[home].push(record);
            self.waiting += 1;
        }
    }

    /// A few of the records waiting for `home`, to be freed there (outside
    /// any lock).
    pub fn take_for(&mut self, home: usize) -> [Option<Arc<Exchange>>; FREED_PER_TURN] {
        let mut taken = [const { None }; FREED_PER_TURN];
        if let Some(list) = self.homes.get_mut(home) {
            for slot in &mut taken {
                *slot = list.pop();
            }
        }
        self.waiting -= taken.iter().flatten().count();
        taken
    }

    /// Records waiting, all homes together.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(home: usize) -> Arc<Exchange> {
        let mut e = Exchange::new_for("a.localhost", "GET", "/");
        e.home = home;
        Arc::new(e)
    }

    #[test]
    fn the_last_share_released_in_a_batch_goes_home_and_others_are_freed_here() {
        let kept = record(1);
        let shared = Arc::clone(&kept);
        let released = gathering(|| {
            release(record(1));
            release(shared);
        });
        assert_eq!(released.len(), 1, "a share still held elsewhere stays");
        assert_eq!(Arc::strong_count(&kept), 1);
        // Outside a batch a record is freed where it is.
        release(record(1));
        assert!(gathering(|| {}).is_empty());
    }

    #[test]
    fn each_home_takes_back_its_own_a_few_at_a_time_within_the_bound() {
        let mut returns = Returns::default();
        returns.queue((0..3).map(|_| record(2)).chain([record(0)]).collect());
        assert_eq!(returns.waiting(), 4);
        assert_eq!(returns.take_for(5).iter().flatten().count(), 0);
        let first = returns.take_for(2);
        assert!(first.iter().flatten().all(|r| r.home == 2));
        assert_eq!(first.iter().flatten().count(), FREED_PER_TURN);
        assert_eq!(returns.waiting(), 2);
        returns.queue((0..MAX_RETURNED).map(|_| record(3)).collect());
        assert_eq!(
            returns.waiting(),
            MAX_RETURNED,
            "the rest freed where they were"
        );
    }
}
