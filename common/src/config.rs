//! What both binaries' configuration loaders share: the error type, TOML
//! parsing with one-line errors that name file, line and key, and secrets
//! that never print.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

pub use crate::token::Token;
use thiserror::Error;

/// Why a configuration file could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}{place}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Where a relative path was looked for (` (in /some/dir)`), or
        /// empty.
        place: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the expected shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what: `line 3, column 8 (`listen = 80`): invalid type ...`.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid config file {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// The error as a command-line program tells it: a file that cannot
    /// be read also gets the way out, `--config FILE` (both binaries take
    /// it).
    pub fn with_way_out(&self) -> String {
        match self {
            ConfigError::Read { .. } => format!("{self}; name another file with --config FILE"),
            _ => self.to_string(),
        }
    }

    /// An `Invalid` error for `key` in `path`.
    pub fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads a file to a string.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| {
        let place = match std::env::current_dir() {
            Ok(dir) if path.is_relative() => format!(" (in {})", dir.display()),
            _ => String::new(),
        };
        ConfigError::Read {
            path: path.to_owned(),
            place,
            error,
        }
    })
}

/// Parses TOML text; errors carry the line, column and key on one line.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        let message = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = before.len() - line_start + 1;
                // The line itself names the key, which toml's message may not.
                let source = text[line_start..].lines().next().unwrap_or("").trim();
                format!("line {line}, column {column} (`{source}`): {message}")
            }
            None => message,
        };
        ConfigError::Parse {
            path: path.to_owned(),
            message,
        }
    })
}

/// Lower-cases a host name and checks it is one (letters, digits, `-`, `.`,
/// `_`); `None` when it is not.
pub fn normalize_host(host: &str) -> Option<String> {
    canonical_host(host).map(Cow::into_owned)
}

/// [`normalize_host`] without the copy when `host` already is in that form
/// (as a request's Host header nearly always is).
pub fn canonical_host(host: &str) -> Option<Cow<'_, str>> {
    let host = host.trim().trim_end_matches('.');
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    // One pass: labels of 1 to 63 letters, digits, `-` or `_`.
    let mut label = 0;
    let mut upper = false;
    for b in host.bytes() {
        match b {
            b'.' if label == 0 => return None,
            b'.' => {
                label = 0;
                continue;
            }
            b'A'..=b'Z' => upper = true,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => return None,
        }
        label += 1;
        if label > 63 {
            return None;
        }
    }
    Some(match upper {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        port: u16,
    }

    #[test]
    fn parse_errors_are_one_line_with_line_column_and_key() {
        let path = Path::new("x.toml");
        let err = parse::<Sample>("name = \"a\"\nport = \"80\"\n", path).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.starts_with("invalid config file x.toml: line 2, column 8 (`port = \"80\"`):"),
            "{msg}"
        );
        let msg = parse::<Sample>("name = \"a\"\nport = 1\nextra = 2\n", path)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 3, column 1") && msg.contains("extra"),
            "{msg}"
        );
        let msg = parse::<Sample>("name = \"a\n", path)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("A.B.").as_deref(), Some("a.b"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a..b"), None);
        assert_eq!(normalize_host("a:80"), None);
        // Already canonical: borrowed, not copied.
        assert!(matches!(
            canonical_host(" demo.localhost. "),
            Some(Cow::Borrowed("demo.localhost"))
        ));
        assert!(matches!(
            canonical_host("Demo.localhost"),
            Some(Cow::Owned(h)) if h == "demo.localhost"
        ));
        assert_eq!(canonical_host("a b"), None);
        assert_eq!(canonical_host(".a"), None);
        let long = "a".repeat(64);
        assert_eq!(canonical_host(&long), None);
        assert!(canonical_host(&long[1..]).is_some());
        assert_eq!(canonical_host(&["ab"; 127].join(".")), None);
        assert!(canonical_host(&["ab"; 84].join(".")).is_some());
    }
}
