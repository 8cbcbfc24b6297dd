//! A new configuration put in force without a restart: its hosts, limits
//! and `[access]`. A held host the new configuration no longer grants to
//! the token it was claimed with (removed, or given another token) loses
//! its sessions; the others get the new settings for their next request.

use std::sync::Arc;

use actix::{Context, Handler, MessageResult};

use super::{patterns, wildcards, Registry};
use crate::{
    handle::{Reload, Reloaded},
    policy::HostPolicy,
    tunnel::TunnelState,
};

impl Handler<Reload> for Registry {
    type Result = MessageResult<Reload>;

    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        self.policy = HostPolicy::new(&msg.hosts);
        self.wildcard = wildcards(&msg.hosts);
        self.patterns = patterns(&msg.hosts);
        self.limits = Arc::new(msg.limits);
        self.access = msg.access;
        self.grace = msg.grace;
        let mut disconnected = Vec::new();
        for (host, holders) in &mut self.hosts {
            let entry = match &holders.token {
                Some(token) => self.policy.claim(host, token).ok().map(|(_, e)| e),
                None => self.policy.exact_entry(host),
            };
            let Some(entry) = entry else {
                disconnected.push(host.clone());
                continue;
            };
            holders.entry = entry;
            let old = &holders.tunnel;
            holders.tunnel = Arc::new(TunnelState::new(
                old.rules.clone(),
                self.access.clone(),
                self.limits.clone(),
                holders.stats.clone(),
                Some(old),
            ));
        }
        for host in &disconnected {
            if let Some(holders) = self.hosts.remove(host) {
                if let Some(cluster) = &self.cluster {
                    cluster.release(host);
                }
                holders.changed();
                for session in &holders.sessions {
                    session.close("its host is no longer in the server's configuration");
                }
            }
        }
        self.held.clear();
        for holders in self.hosts.values() {
            *self.held.entry(holders.entry).or_default() += 1;
            // Every worker looks the host up again, and so sees its new state.
            holders.changed();
        }
        MessageResult(Reloaded {
            disconnected,
            kept: self.hosts.len(),
        })
    }
}
