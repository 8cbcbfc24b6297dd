//! A session leaving the registry: the hosts it was the last to serve are
//! freed, or, when its connection was lost, kept for its client for the
//! reconnect grace (see [`crate::grace`]). Only the leaving session's own
//! hosts are looked at (`Registry::by_session`): 10,000 clients dropping
//! at once cost 10,000 small steps, not 10,000 walks over every host.

use std::time::Instant;

use actix::{AsyncContext, Context, Handler};

use super::{Holders, Registry};
use crate::{
    cluster::Handover,
    grace::Reservation,
    handle::{Unregister, Withdraw},
};

impl Handler<Unregister> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, ctx: &mut Context<Self>) {
        let mut emptied = Vec::new();
        let granted = self.by_session.remove(&msg.session_id);
        for host in granted.into_iter().flatten() {
            let Some(holders) = self.hosts.get_mut(&host) else {
                continue;
            };
            let before = holders.sessions.len();
            holders.sessions.retain(|s| s.id != msg.session_id);
            if holders.sessions.len() == before {
                continue;
            }
            holders.changed();
            if holders.sessions.is_empty() {
                emptied.push(host);
            }
        }
        let keep = msg.lost && !self.grace.is_zero() && !self.draining;
        for host in emptied {
            match keep {
                true => self.reserve(host, ctx),
                false => self.free(&host),
            }
        }
    }
}

impl Handler<Withdraw> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Withdraw, _: &mut Context<Self>) {
        if let Some(hosts) = self.by_session.get_mut(&msg.session_id) {
            hosts.retain(|h| *h != msg.host);
        }
        let Some(holders) = self.hosts.get_mut(&msg.host) else {
            return;
        };
        holders.sessions.retain(|s| s.id != msg.session_id);
        holders.changed();
        if holders.sessions.is_empty() && holders.reserved.is_none() {
            self.free(&msg.host);
        }
    }
}

impl Handler<Handover> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Handover, _: &mut Context<Self>) {
        let kept_only = self
            .hosts
            .get(&msg.host)
            .is_some_and(|h| h.sessions.is_empty() && h.reserved.is_some());
        if kept_only {
            log::info!(
                "{}: its client came back through another node; requests go there",
                msg.host
            );
            self.free(&msg.host);
        }
    }
}

impl Registry {
    /// Removes `host` and its count against its entry.
    pub(super) fn free(&mut self, host: &str) {
        if let Some(holders) = self.hosts.remove(host) {
            self.held
                .entry(holders.entry)
                .and_modify(|n| *n = n.saturating_sub(1));
            if let Some(cluster) = &self.cluster {
                cluster.release(host);
            }
        }
    }

    /// Keeps `host`, which just lost its last session, for its client
    /// until the grace ends.
    fn reserve(&mut self, host: String, ctx: &mut Context<Self>) {
        let Some(holders) = self.hosts.get_mut(&host) else {
            return;
        };
        let id = self.next_reservation;
        self.next_reservation += 1;
        let max = self.limits.max_streams_per_tunnel;
        holders.reserved = Some(Reservation::new(
            id,
            holders.instance.clone(),
            self.grace,
            max,
        ));
        log::info!(
            "keeping {host} for its client for {} s while it reconnects",
            self.grace.as_secs()
        );
        self.expire_later(host, id, self.grace, ctx);
    }

    /// After a restart, keeps a configured host nobody serves yet for the
    /// rest of the grace, for whichever client holds its token: its client
    /// was most likely connected to the server before. `None` when the
    /// host is not configured exactly or the grace is over.
    pub(super) fn reserve_after_start(
        &mut self,
        host: &str,
        ctx: &mut Context<Self>,
    ) -> Option<()> {
        // In a cluster the directory's lease keeps the host for its
        // client, which may well be connected through another node.
        if self.cluster.is_some() {
            return None;
        }
        let left = self.grace.checked_sub(self.started.elapsed())?;
        let entry = self.policy.exact_entry(host)?;
        if self.draining || left.is_zero() {
            return None;
        }
        let id = self.next_reservation;
        self.next_reservation += 1;
        let mut holders = Holders::new(entry);
        let max = self.limits.max_streams_per_tunnel;
        holders.reserved = Some(Reservation::new(id, None, left, max));
        *self.held.entry(entry).or_default() += 1;
        self.hosts.insert(host.to_owned(), holders);
        self.added
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.expire_later(host.to_owned(), id, left, ctx);
        Some(())
    }

    fn expire_later(
        &self,
        host: String,
        id: u64,
        after: std::time::Duration,
        ctx: &mut Context<Self>,
    ) {
        let since = Instant::now();
        ctx.run_later(after, move |registry, _| {
            let Some(holders) = registry.hosts.get(&host) else {
                return;
            };
            let current = holders.reserved.as_ref().is_some_and(|r| r.id == id);
            if current && holders.sessions.is_empty() {
                let waiting = holders.reserved.as_ref().map_or(0, Reservation::waiting);
                // A host kept after a restart for a client that never
                // comes is not news unless someone was waiting.
                let level = match holders.instance.is_some() || waiting > 0 {
                    true => log::Level::Info,
                    false => log::Level::Debug,
                };
                log::log!(
                    level,
                    "{host} freed: its client did not come back within {} s \
                     ({waiting} waiting request(s) answered 503)",
                    since.elapsed().as_secs()
                );
                registry.free(&host);
            }
        });
    }
}
