//! The login `burrow login` saves, like `ngrok config add-authtoken`: a
//! server and token in a per-user file only its owner can read, which
//! quick mode reads so that `burrow http 3000` is the whole command.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use burrow_common::{config::ConfigError, Token};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::quick::Known;

/// Why the login could not be read or saved.
#[derive(Debug, Error)]
pub enum LoginError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("cannot tell where to keep the login: set HOME (or XDG_CONFIG_HOME)")]
    NoHome,
    /// The file could not be written.
    #[error("cannot save the login to {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file exists and does not parse.
    #[error(transparent)]
    Read(#[from] ConfigError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    server: String,
    token: Token,
}

/// This user's directory for burrow's files: `$XDG_CONFIG_HOME/burrow`,
/// else `$HOME/.config/burrow`.
pub fn user_dir() -> Result<PathBuf, LoginError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("burrow"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".config").join("burrow"))
        .ok_or(LoginError::NoHome)
}

/// The login file's path.
pub fn path() -> Result<PathBuf, LoginError> {
    Ok(user_dir()?.join("login.toml"))
}

/// The saved login, if there is one.
pub fn read() -> Result<Option<Known>, LoginError> {
    let path = path()?;
    if !path.exists() {
        return Ok(None);
    }
    let text = burrow_common::config::read(&path)?;
    let saved: Saved = burrow_common::config::parse(&text, &path)?;
    Ok(Some(Known {
        server: Some(saved.server),
        token: Some(saved.token),
        ..Known::default()
    }))
}

/// Saves `server` and `token`, readable by this user only; returns where.
pub fn save(server: &str, token: &Token) -> Result<PathBuf, LoginError> {
    let path = path()?;
    let saved = Saved {
        server: server.to_owned(),
        token: token.clone(),
    };
    let text = toml::to_string(&saved).map_err(|e| LoginError::Write {
        path: path.clone(),
        error: std::io::Error::other(e),
    })?;
    write_private(&path, text.as_bytes()).map_err(|error| LoginError::Write {
        path: path.clone(),
        error,
    })?;
    Ok(path)
}

/// Writes `bytes` to `path` through a new file only the owner may read,
/// in a folder only the owner may open, renamed into place so that a
/// reader never sees half a file.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    write_private_dir(path.parent().unwrap_or(Path::new(".")))?;
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// Makes `dir` (and its parents) if missing, the last one for its owner
/// only.
pub(crate) fn write_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
