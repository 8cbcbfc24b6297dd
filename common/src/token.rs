//! Secrets that never print: the tokens that claim hosts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret (a tunnel token) that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }

    /// The secret itself, for the handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `true` for the empty token.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn matches(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Token(s.to_owned())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_and_never_print() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3creT"));
        assert_eq!(format!("{t:?}"), "Token(***)");
    }
}
