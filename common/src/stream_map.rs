//! Tables keyed by stream id.
//!
//! Both ends look a stream up for every frame they receive. Stream ids are
//! chosen by the peers, not by callers on the Internet, so the default
//! hasher's protection against chosen keys buys nothing here and costs a
//! SipHash per lookup; a multiplicative hash spreads the ids as well.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A map from stream id to `V`.
pub type StreamMap<V> = HashMap<u32, V, BuildHasherDefault<StreamIdHasher>>;

/// Hashes one `u32` stream id by Fibonacci multiplication.
#[derive(Default, Clone, Copy, Debug)]
pub struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `u32`; fold them in byte by byte.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Frees the storage of `map` once it holds no streams. A table keeps the
/// size its busiest moment gave it; an idle connection, of which a server
/// may hold thousands, need not. Returns whether storage was freed.
pub fn release_if_empty<V>(map: &mut StreamMap<V>) -> bool {
    if map.is_empty() && map.capacity() > 0 {
        *map = StreamMap::default();
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_many_ids_and_spreads_them() {
        let mut m = StreamMap::default();
        for id in (1..20_000u32).step_by(2) {
            m.insert(id, id);
        }
        for id in (1..20_000u32).step_by(2) {
            assert_eq!(m.get(&id), Some(&id));
            assert_eq!(m.get(&(id + 1)), None);
        }
        // Consecutive odd ids must differ in the high bits the table uses
        // for its control bytes, not only in the low ones.
        let top = |id: u32| {
            let mut h = StreamIdHasher::default();
            h.write_u32(id);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (1..200u32).step_by(2).map(top).collect();
        assert!(distinct.len() > 50, "only {} distinct tags", distinct.len());
    }

    #[test]
    fn an_emptied_table_gives_its_storage_back() {
        let mut m = StreamMap::default();
        assert!(!release_if_empty(&mut m), "nothing to free yet");
        for id in 1..100u32 {
            m.insert(id, ());
        }
        assert!(!release_if_empty(&mut m), "streams are open");
        m.retain(|_, _| false);
        assert!(m.capacity() > 0);
        assert!(release_if_empty(&mut m));
        assert_eq!(m.capacity(), 0);
    }
}
