//! Where other nodes' hosts live, as this node last asked the directory:
//! kept a short while, dropped as soon as the directory publishes a change
//! of the host, and kept as they are while Redis is down (the routes a
//! node knows keep working without it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;

use super::{directory::CHANGES, Cluster};

/// How long a route found is trusted without a change published. Changes
/// are published, so this only bounds what a missed message costs.
const FOUND_FOR: Duration = Duration::from_secs(30);
/// How long "no node holds it" is kept: a stranger's requests for
/// unknown names cost Redis one lookup per name a second at most.
const MISSING_FOR: Duration = Duration::from_secs(1);
/// Wait before listening again after the change channel dropped.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);
/// Most hosts remembered; beyond, the cache starts over.
const MOST: usize = 65_536;

struct Route {
    urls: Vec<Arc<str>>,
    at: Instant,
}

/// The cache of routes.
pub(super) struct Routes {
    map: Mutex<HashMap<String, Route>>,
    /// Counts the changes published, for requests waiting for a host to
    /// come back.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            map: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Routes {
    /// The route to `host`, while fresh.
    pub(super) fn fresh(&self, host: &str) -> Option<Vec<Arc<str>>> {
        let map = self.lock();
        let route = map.get(host)?;
        let keep = match route.urls.is_empty() {
            true => MISSING_FOR,
            false => FOUND_FOR,
        };
        (route.at.elapsed() < keep).then(|| route.urls.clone())
    }

    /// The last route known to `host`, however old.
    pub(super) fn stale(&self, host: &str) -> Vec<Arc<str>> {
        self.lock()
            .get(host)
            .map(|r| r.urls.clone())
            .unwrap_or_default()
    }

    /// How many changes were published so far: taken before a lookup in
    /// the directory, and given to [`Routes::put`] with its answer.
    pub(super) fn seen(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Keeps the route to `host` just found, and answers it. Not kept when
    /// a change was published since the lookup began (`seen`): the answer
    /// may be from before it, and kept it would outlive the change that
    /// dropped the route (a request waiting for the host would then try the
    /// old node again, and wait for a change that had come already).
    pub(super) fn put(&self, host: &str, urls: Vec<String>, seen: u64) -> Vec<Arc<str>> {
        let urls: Vec<Arc<str>> = urls.into_iter().map(Arc::from).collect();
        let mut map = self.lock();
        if self.seen() != seen {
            return urls;
        }
        if map.len() >= MOST {
            map.clear();
        }
        let at = Instant::now();
        let route = Route {
            urls: urls.clone(),
            at,
        };
        map.insert(host.to_owned(), route);
        urls
    }

    /// Drops the route to `host`.
    pub(super) fn forget(&self, host: &str) {
        self.lock().remove(host);
    }

    fn forget_all(&self) {
        self.changes.send_modify(|n| *n += 1);
        self.lock().clear();
    }

    /// A host's change was published. Counted before the route is
    /// dropped: a lookup that puts its answer after the count is seen
    /// keeps nothing, and one that put it before has it dropped here.
    pub(super) fn changed(&self, host: &str) {
        self.changes.send_modify(|n| *n += 1);
        self.forget(host);
    }

    /// Wakes on the next change published after this call.
    pub(super) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops a host's route whenever the directory publishes a change of it;
/// listens again (forgetting every route, as changes may have been
/// missed) whenever the channel drops.
pub(super) async fn listen(client: redis::Client, cluster: Arc<Cluster>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(CHANGES).await {
                Ok(()) => {
                    cluster.routes.forget_all();
                    let mut changes = pubsub.on_message();
                    while let Some(change) = changes.next().await {
                        if let Ok(host) = std::str::from_utf8(change.get_payload_bytes()) {
                            cluster.changed(host);
                        }
                    }
                    log::debug!("cluster: the change channel dropped; listening again");
                }
                Err(e) => log::debug!("cluster: cannot listen for changes: {e}"),
            },
            Err(e) => log::debug!("cluster: cannot listen for changes: {e}"),
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_before_a_change_is_not_kept() {
        let routes = Routes::default();
        let seen = routes.seen();
        routes.put("h", vec!["http://a".into()], seen);
        assert_eq!(routes.fresh("h").map(|u| u.len()), Some(1));
        // A lookup begins, the host changes, the lookup's answer comes.
        let seen = routes.seen();
        routes.changed("h");
        let urls = routes.put("h", vec!["http://a".into()], seen);
        assert_eq!(urls.len(), 1, "answered all the same");
        assert!(routes.fresh("h").is_none(), "but not kept");
        // The next lookup's is.
        let seen = routes.seen();
        routes.put("h", vec!["http://b".into()], seen);
        assert_eq!(
            routes.fresh("h").as_deref(),
            Some(&[Arc::from("http://b")][..])
        );
    }
}
