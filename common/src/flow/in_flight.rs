//! A count of the streams in flight on one tunnel, shared by every thread
//! that opens them, and the slot each stream holds until its body is done.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// Streams in flight, against a ceiling.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    /// A slot, unless `max` streams are already in flight.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<InFlightSlot> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlightSlot(self.clone()))
    }

    /// Streams in flight now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One stream's place in an [`InFlight`] count, given back when dropped.
#[derive(Debug)]
pub struct InFlightSlot(Arc<InFlight>);

impl InFlightSlot {
    /// `true` when the slot is one of `count`'s.
    pub fn is_of(&self, count: &Arc<InFlight>) -> bool {
        Arc::ptr_eq(&self.0, count)
    }
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let count = Arc::new(InFlight::default());
        let a = count.try_acquire(2).expect("first");
        let b = count.try_acquire(2).expect("second");
        assert!(count.try_acquire(2).is_none());
        assert_eq!(count.get(), 2);
        drop(a);
        let _c = count.try_acquire(2).expect("freed");
        drop(b);
        assert_eq!(count.get(), 1);
    }
}
