//! Random host names for clients that ask for none, as localtunnel gives
//! them: two words to read and say (`brave-otter`), then five random
//! letters and digits so that nobody finds a tunnel by guessing (about 38
//! bits in all).

use ring::rand::{SecureRandom, SystemRandom};

const ADJECTIVES: [&str; 32] = [
    "amber", "brave", "calm", "clever", "cosy", "crisp", "dapper", "eager", "fancy", "gentle",
    "glad", "golden", "happy", "jolly", "keen", "kind", "lively", "lucky", "merry", "mellow",
    "nimble", "plucky", "proud", "quick", "quiet", "rapid", "shiny", "silver", "sunny", "swift",
    "tidy", "witty",
];

const NOUNS: [&str; 32] = [
    "badger", "beaver", "bison", "crane", "dingo", "eagle", "falcon", "ferret", "gecko", "heron",
    "ibis", "koala", "lemur", "lynx", "marmot", "marten", "mole", "newt", "otter", "owl", "panda",
    "puffin", "quail", "rabbit", "raven", "robin", "seal", "stoat", "tapir", "vole", "walrus",
    "wombat",
];

/// Letters and digits of the suffix (no `l`, `o`, `0` or `1`, which read
/// alike).
const SUFFIX: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A fresh random label: `adjective-noun-xxxxx`; `None` only if the
/// system's random source fails.
pub fn random_label() -> Option<String> {
    let mut bytes = [0u8; 7];
    SystemRandom::new().fill(&mut bytes).ok()?;
    let adjective = ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()];
    let noun = NOUNS[usize::from(bytes[1]) % NOUNS.len()];
    let suffix: String = bytes[2..]
        .iter()
        .map(|b| char::from(SUFFIX[usize::from(*b) % SUFFIX.len()]))
        .collect();
    Some(format!("{adjective}-{noun}-{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_valid_host_labels_and_differ() {
        let a = random_label().unwrap();
        let b = random_label().unwrap();
        assert_ne!(a, b);
        assert!(a.len() <= 63 && a.split('-').count() == 3, "{a}");
        assert!(burrow_common::config::normalize_host(&format!("{a}.example.com")).is_some());
    }
}
