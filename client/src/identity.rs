//! Who this client is to the server across restarts. The server keeps a
//! client's hosts for it through the reconnect grace, but only for the
//! same client instance: a client that crashed, or was restarted by a
//! file watcher or a reboot, would otherwise wait out the grace as a
//! stranger. So the instance id, and the names the server gave tunnels
//! that asked for none, are kept in a per-user state file, one per
//! configuration (its server and tunnels), readable by its owner only.
//!
//! A second client started with the same configuration while the first
//! runs must not present the same instance (the server would take its
//! connections for the first one's), so the state file is held under a
//! lock, and a client that cannot take it gets an identity of its own.

use std::{
    collections::hash_map::DefaultHasher,
    fs::File,
    hash::{Hash, Hasher},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::{config::ClientConfig, login, pool};

/// This client's instance id, and where it is kept.
#[derive(Debug)]
pub struct Identity {
    instance: String,
    /// The state file, while this process holds its lock.
    kept: Option<(PathBuf, File)>,
}

#[derive(Serialize, Deserialize, Default)]
struct State {
    instance: String,
    /// The host each tunnel was last registered as, in order.
    #[serde(default)]
    hosts: Vec<String>,
}

impl Identity {
    /// An identity for this run only.
    pub fn fresh() -> Identity {
        Identity {
            instance: pool::instance_id(),
            kept: None,
        }
    }

    /// The identity kept for `config` by this user: the last run's
    /// instance id, and the names it was given, set into `config.given`.
    /// A fresh one when there is no state folder, or when another running
    /// client holds this configuration's.
    pub fn kept_for(config: &ClientConfig) -> Identity {
        match Self::load(config) {
            Ok(Some(identity)) => identity,
            Ok(None) => Identity::fresh(),
            Err(e) => {
                log::debug!("no kept identity: {e}");
                Identity::fresh()
            }
        }
    }

    fn load(config: &ClientConfig) -> std::io::Result<Option<Identity>> {
        let Ok(dir) = login::user_dir() else {
            return Ok(None);
        };
        let path = dir.join("state").join(format!("{}.toml", key(config)));
        login::write_private_dir(path.parent().unwrap_or(&dir))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))?;
        if lock.try_lock().is_err() {
            log::debug!("another client runs this configuration; using an identity of its own");
            return Ok(None);
        }
        let state: Option<State> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| toml::from_str(&text).ok());
        let state = state.filter(|s| !s.instance.is_empty()).unwrap_or_default();
        if state.hosts.len() == config.tunnels.len() {
            for (i, (tunnel, host)) in config.tunnels.iter().zip(&state.hosts).enumerate() {
                if tunnel.host.is_empty() && !host.is_empty() {
                    config.given.set(i, host.clone());
                }
            }
        }
        let identity = Identity {
            instance: match state.instance.is_empty() {
                true => pool::instance_id(),
                false => state.instance,
            },
            kept: Some((path, lock)),
        };
        identity.remember(&state.hosts);
        Ok(Some(identity))
    }

    /// The instance id the client presents.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Keeps the hosts the tunnels are registered as, for the next run.
    pub fn remember(&self, hosts: &[String]) {
        let Some((path, _)) = &self.kept else { return };
        let state = State {
            instance: self.instance.clone(),
            hosts: hosts.to_vec(),
        };
        let written = toml::to_string(&state)
            .map_err(std::io::Error::other)
            .and_then(|text| login::write_private(path, text.as_bytes()));
        if let Err(e) = written {
            log::debug!(
                "cannot keep the client's identity in {}: {e}",
                path.display()
            );
        }
    }
}

/// A configuration's key: its server and each tunnel's host and local
/// service, hashed.
fn key(config: &ClientConfig) -> String {
    let mut h = DefaultHasher::new();
    config.server.as_str().hash(&mut h);
    for t in &config.tunnels {
        (&t.host, &t.local).hash(&mut h);
    }
    format!("{:016x}", h.finish())
}
