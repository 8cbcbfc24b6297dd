//! The client's extra connections.
//!
//! A server hands each request to a connection on the worker thread that
//! accepted it, when the client has one there, so the request never crosses
//! threads. The server says how many workers it has in its handshake
//! answer; once the first connection is registered, the client opens the
//! rest, each served by a thread of its own with its own local HTTP client.
//! Every connection presents the same instance id, which is how the server
//! tells a client's own connections (which share its hosts) from another
//! client's (which are refused a held host).

use std::{
    hash::{BuildHasher, Hasher},
    time::SystemTime,
};

use futures_util::future::{self, Either};
use tokio::sync::oneshot;

use crate::config::{ClientConfig, MAX_CONNECTIONS};

/// An id for this client process: random, and different from any other
/// process's.
pub fn instance_id() -> String {
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_usize(i);
        if let Ok(t) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// Most connections a client opens on the server's suggestion alone.
pub const MAX_SUGGESTED: u32 = 8;

/// How many connections to hold: the configured number (at most
/// [`MAX_CONNECTIONS`]), else what the server suggests, but no more than
/// this machine's cores (each connection has a thread) nor
/// [`MAX_SUGGESTED`]; one if the server says nothing.
pub fn pool_size(configured: Option<u32>, suggested: Option<u32>, cores: u32) -> u32 {
    match configured {
        Some(n) => n.clamp(1, MAX_CONNECTIONS),
        None => suggested.unwrap_or(1).min(cores).clamp(1, MAX_SUGGESTED),
    }
}

/// This machine's cores, as far as the process may use them.
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// The connections beyond the first, each on its own thread. Dropping the
/// pool stops them.
pub struct Pool {
    config: ClientConfig,
    instance: String,
    /// Dropping a sender stops its connection's thread.
    members: Vec<oneshot::Sender<()>>,
}

impl Pool {
    /// A pool without extra connections yet.
    pub fn new(config: ClientConfig, instance: String) -> Self {
        Pool {
            config,
            instance,
            members: Vec::new(),
        }
    }

    /// Opens extra connections until the client holds `total`, counting
    /// the first. Never closes any.
    pub fn grow_to(&mut self, total: u32) {
        while self.members.len() + 1 < total as usize {
            let (stop, stopped) = oneshot::channel::<()>();
            let config = self.config.clone();
            let instance = self.instance.clone();
            let n = self.members.len() + 2;
            let thread = std::thread::Builder::new()
                .name(format!("burrow-conn-{n}"))
                .spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let serve = async {
                            let mut registered = |_: Option<u32>| {};
                            crate::serve_until_refused(&config, &instance, &mut registered, None)
                                .await
                        };
                        match future::select(Box::pin(serve), stopped).await {
                            Either::Left((Err(e), _)) => {
                                log::warn!("connection {n} stopped: {e}")
                            }
                            Either::Left((Ok(()), _)) | Either::Right(_) => {}
                        }
                    })
                });
            match thread {
                Ok(_) => {
                    log::debug!("opened connection {n}");
                    self.members.push(stop);
                }
                Err(e) => {
                    log::warn!("cannot start a thread for connection {n}: {e}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_follows_config_then_server_then_one() {
        assert_eq!(pool_size(Some(3), Some(2), 2), 3);
        assert_eq!(pool_size(Some(100), None, 2), MAX_CONNECTIONS);
        assert_eq!(pool_size(None, Some(2), 4), 2);
        assert_eq!(pool_size(None, Some(4), 2), 2, "no more than the cores");
        assert_eq!(pool_size(None, None, 4), 1);
        assert_eq!(pool_size(None, Some(0), 4), 1);
        assert_eq!(pool_size(None, Some(1000), 64), MAX_SUGGESTED);
    }

    #[test]
    fn instance_ids_differ() {
        let a = instance_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, instance_id());
    }
}
