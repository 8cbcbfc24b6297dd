//! What the registry tells the admin listener: each host, who holds it and
//! its counts; and an operator's disconnect.

use actix::{Context, Handler, MessageResult};

use super::Registry;
use crate::handle::{Disconnect, Report, TunnelReport};

impl Handler<Report> for Registry {
    type Result = MessageResult<Report>;

    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        let mut reports: Vec<TunnelReport> = self
            .hosts
            .iter()
            .map(|(host, h)| TunnelReport {
                host: host.clone(),
                client: h.sessions.first().and_then(|s| s.peer),
                since: h.since,
                sessions: h.sessions.len(),
                in_flight: h.tunnel.in_flight.get(),
                stats: h.stats.clone(),
                reconnecting: h.reserved.is_some(),
            })
            .collect();
        reports.sort_by(|a, b| a.host.cmp(&b.host));
        MessageResult(reports)
    }
}

impl Handler<Disconnect> for Registry {
    type Result = usize;

    /// Closes the sessions serving the host (which frees it: a closed
    /// session is not kept for); answers how many there were.
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) -> usize {
        let Some(holders) = self.hosts.get_mut(&msg.host) else {
            return 0;
        };
        if holders.sessions.is_empty() {
            // Kept for a client that is away: let it go now.
            self.free(&msg.host);
            return 0;
        }
        for session in &holders.sessions {
            session.close("disconnected by the server's operator (admin API)");
        }
        holders.sessions.len()
    }
}
