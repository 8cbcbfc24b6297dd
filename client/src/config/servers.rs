//! `server`: one control URL, or several (the nodes of one cluster, or
//! the same service behind several names). Connections go to the one that
//! answered last, and move on to the next in the list when it does not.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use serde::Deserialize;

use crate::url::ServerUrl;

/// `server` as written: a URL or a list of them.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(crate) enum RawServers {
    /// `server = "wss://..."`.
    One(String),
    /// `server = ["wss://a...", "wss://b..."]`.
    Many(Vec<String>),
}

impl Default for RawServers {
    fn default() -> Self {
        RawServers::One(String::new())
    }
}

impl RawServers {
    /// The first URL as written (what a one-server view shows).
    pub(crate) fn first(&self) -> String {
        match self {
            RawServers::One(url) => url.clone(),
            RawServers::Many(urls) => urls.first().cloned().unwrap_or_default(),
        }
    }

    /// Every URL, checked: all of one scheme (one TLS setting serves them).
    pub(crate) fn parse(&self) -> Result<Servers, String> {
        let written = match self {
            RawServers::One(url) => std::slice::from_ref(url),
            RawServers::Many(urls) if urls.is_empty() => {
                return Err("the list is empty: give at least one URL".into())
            }
            RawServers::Many(urls) => urls.as_slice(),
        };
        let list = written
            .iter()
            .map(|url| ServerUrl::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if list.iter().any(|u| u.is_secure() != list[0].is_secure()) {
            return Err("mixes ws:// and wss:// URLs: use one scheme for all".into());
        }
        Ok(Servers {
            list: list.into(),
            current: Arc::default(),
        })
    }
}

/// The server URLs, and which one connections go to now.
#[derive(Debug, Clone)]
pub struct Servers {
    list: Arc<[ServerUrl]>,
    /// Shared by every clone: the one that answered last.
    current: Arc<AtomicUsize>,
}

impl Servers {
    /// The URLs in the order to try them now: the one that answered last
    /// first, then the rest in the order written.
    pub fn in_turn(&self) -> impl Iterator<Item = (usize, &ServerUrl)> {
        let start = self.current.load(Ordering::Relaxed) % self.list.len();
        (0..self.list.len())
            .map(move |k| (start + k) % self.list.len())
            .map(|i| (i, &self.list[i]))
    }

    /// The URL at `index` answered: connections go there first from now on.
    pub fn answered(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    /// The first URL written.
    pub fn first(&self) -> &ServerUrl {
        &self.list[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_last_that_answered_then_on_in_order() {
        let raw = RawServers::Many(vec![
            "ws://a.test/_burrow/connect".into(),
            "ws://b.test/_burrow/connect".into(),
            "ws://c.test/_burrow/connect".into(),
        ]);
        let servers = raw.parse().expect("three URLs");
        let order = |s: &Servers| s.in_turn().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(order(&servers), [0, 1, 2]);
        servers.clone().answered(2);
        assert_eq!(order(&servers), [2, 0, 1]);
        assert_eq!(servers.first().as_str(), "ws://a.test/_burrow/connect");
    }

    #[test]
    fn a_list_is_one_scheme_and_not_empty() {
        let mixed = RawServers::Many(vec!["ws://a.test".into(), "wss://b.test".into()]);
        assert!(mixed.parse().unwrap_err().contains("one scheme"));
        assert!(RawServers::Many(vec![])
            .parse()
            .unwrap_err()
            .contains("empty"));
        let one = RawServers::One("ws://a.test".into()).parse().expect("one");
        assert_eq!(one.in_turn().count(), 1);
    }
}
