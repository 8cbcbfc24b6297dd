//! The soak's randomness and content: a seeded generator (SplitMix64),
//! and bodies that both the local service and the callers derive from a
//! seed, so every answer byte can be checked without storing what was sent.

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective mix of one 64-bit word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small seeded generator: the same seed gives the same sequence, which
/// is what lets `--seed` repeat a run's choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.range(0, n) == 0
    }

    /// Seconds as a duration, uniformly in `lo..hi`, to the millisecond.
    pub fn secs(&mut self, lo: f64, hi: f64) -> std::time::Duration {
        let ms = self.range((lo * 1000.0) as u64, (hi * 1000.0) as u64);
        std::time::Duration::from_millis(ms)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Bytes `start..start + len` of the body named by `seed`: byte `i` is byte
/// `i % 8` of the mixed word `i / 8`, so any slice is made without the rest.
pub fn bytes(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let end = start + len as u64;
    let mut i = start;
    while i < end {
        let word = mix(seed ^ (i / 8).wrapping_mul(GAMMA)).to_le_bytes();
        let from = (i % 8) as usize;
        let take = ((end - i) as usize).min(8 - from);
        out.extend_from_slice(&word[from..from + take]);
        i += take as u64;
    }
    out
}

/// The body of `seed` as text: the same bytes mapped to `a`-`z`, for
/// WebSocket text messages (which must be UTF-8).
pub fn text(seed: u64, len: usize) -> String {
    bytes(seed, 0, len)
        .into_iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

/// FNV-1a over `data`, continuing from `hash` (start with [`FNV_START`]):
/// the upload sink's digest of what it received.
pub fn fnv(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// What the upload sink answers for a body: its length and digest.
pub fn receipt(len: u64, digest: u64) -> String {
    format!("{len} {digest:016x}")
}

/// Event `i` of the event stream named by `seed`, as it goes on the wire.
pub fn sse_event(seed: u64, i: u64) -> String {
    let len = 16 + (mix(seed ^ i) % 200) as usize;
    format!("id: {i}\ndata: {}\n\n", text(seed ^ (i << 32), len))
}

/// The whole event stream of `seed` with `n` events.
pub fn sse_stream(seed: u64, n: u64) -> String {
    (0..n).map(|i| sse_event(seed, i)).collect()
}
