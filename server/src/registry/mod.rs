//! The registry actor: which session serves which host, in this process.
//! The rest of the server reaches it through
//! [`RegistryHandle`](crate::handle::RegistryHandle) and never names it.
//! [`release`] holds what happens when a session leaves: its hosts freed,
//! or kept for the reconnect grace.

mod release;
mod reload;
mod report;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use actix::{Actor, Context, Handler, MessageResult};
use burrow_common::{protocol::TunnelRequest, Token};

use crate::{
    acme::{OnDemand, RequestError, Requested},
    callers::CallerRules,
    cluster::Cluster,
    config::{HostConfig, Limits, ServerConfig},
    error::RegisterError,
    grace::Reservation,
    handle::{CloseAll, Drain, Granted, HostSessions, Lookup, Register, SessionHandle},
    metrics::{Metrics, TunnelStats},
    names,
    policy::HostPolicy,
    throttle::FailedAttempts,
    tunnel::TunnelState,
};

/// Owns the map from public host to the sessions serving it. All changes go
/// through its mailbox, so there are no locks and no races between a client
/// leaving and another arriving.
pub struct Registry {
    policy: HostPolicy,
    limits: Arc<Limits>,
    /// The server's `[access]`, for every tunnel's callers.
    access: Option<Arc<CallerRules>>,
    metrics: Arc<Metrics>,
    hosts: HashMap<String, Holders>,
    /// The hosts each session was granted (by session id), so that a
    /// session's exit looks at its own hosts, not at every host. A host
    /// freed or taken over since stays listed until the session leaves.
    by_session: HashMap<u64, Vec<String>>,
    /// Hosts held per `[[hosts]]` entry (by its index).
    held: HashMap<usize, usize>,
    /// Whether each entry (by index) is a wildcard.
    wildcard: Vec<bool>,
    /// Each entry's `host` as written (by index): what its hosts count
    /// against across a cluster's nodes.
    patterns: Vec<Arc<str>>,
    /// Certificates for a wildcard entry's hosts as they are claimed.
    on_demand: Option<OnDemand>,
    /// Refused registrations by address.
    failed: FailedAttempts,
    /// How long a host whose client dropped stays reserved for it.
    grace: Duration,
    /// When the server started: for a grace as long, its exact hosts wait
    /// for their clients to come back (after a restart).
    started: Instant,
    /// Source of reservation ids.
    next_reservation: u64,
    /// Set once the server drains: no registration, no reservation.
    draining: bool,
    /// In a cluster: the host directory the nodes share, told when this
    /// node stops holding a host.
    cluster: Option<Arc<Cluster>>,
    /// Bumped whenever a host is taken in, so that the workers' notes of
    /// hosts that were unknown are looked up again.
    added: Arc<AtomicU64>,
}

/// A host a client may claim, the entry that grants it, and the rules for
/// its callers.
type Claim = (String, usize, Option<CallerRules>);

/// The sessions holding one host: the connections of one client instance.
struct Holders {
    instance: Option<Box<str>>,
    sessions: Vec<Arc<SessionHandle>>,
    /// What the workers share about the host, as its latest registration
    /// set it.
    tunnel: Arc<TunnelState>,
    /// The `[[hosts]]` entry that granted it.
    entry: usize,
    /// Set while the host has no session and waits for its client.
    reserved: Option<Reservation>,
    /// The token it was claimed with, checked again on a reload (`None`
    /// for a host kept after a start, not claimed yet).
    token: Option<Token>,
    /// Its counts, kept across reconnects and reloads.
    stats: Arc<TunnelStats>,
    /// Since when its client holds it.
    since: SystemTime,
    /// Bumped whenever its sessions or its state change, so that the
    /// workers' copies of it (and of no other host) are looked up again.
    generation: Arc<AtomicU64>,
}

impl Holders {
    fn new(entry: usize) -> Self {
        Holders {
            instance: None,
            sessions: Vec::new(),
            tunnel: Arc::default(),
            entry,
            reserved: None,
            token: None,
            stats: Arc::default(),
            since: SystemTime::now(),
            generation: Arc::default(),
        }
    }

    /// Tells every copy of this host's lookup answer that it may be out of
    /// date.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl Registry {
    /// A registry that accepts the configured hosts, within the
    /// configured limits, counting into `metrics`; with `on_demand`, a
    /// host claimed under a wildcard entry gets its certificate when first
    /// claimed; with `cluster`, the directory learns of hosts it stops
    /// holding.
    pub fn new(
        config: &ServerConfig,
        on_demand: Option<OnDemand>,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Registry {
            policy: HostPolicy::new(&config.hosts),
            limits: Arc::new(config.limits.clone()),
            // Checked when the configuration was read.
            access: config.access.clone(),
            metrics,
            hosts: HashMap::new(),
            by_session: HashMap::new(),
            held: HashMap::new(),
            wildcard: wildcards(&config.hosts),
            patterns: patterns(&config.hosts),
            on_demand,
            failed: FailedAttempts::default(),
            grace: config.reconnect_grace,
            started: Instant::now(),
            next_reservation: 1,
            draining: false,
            cluster,
            added: Arc::default(),
        }
    }

    /// The count of hosts taken in, for [`RegistryHandle::counting`](crate::handle::RegistryHandle::counting).
    pub fn hosts_added(&self) -> Arc<AtomicU64> {
        self.added.clone()
    }

    /// Checks one requested tunnel: the host it may claim, the entry that
    /// grants it, and the rules its callers will be checked against.
    fn claim(&self, t: &TunnelRequest) -> Result<Claim, RegisterError> {
        let (host, entry) = match t.host.is_empty() {
            true => self.random_host(&t.token)?,
            false => self.policy.claim(&t.host, &t.token)?,
        };
        let rules = CallerRules::new(&t.access)
            .map_err(|why| RegisterError::BadRules(host.clone(), why))?;
        Ok((host, entry, rules))
    }

    /// A random free name under the domain that offers them to `token`.
    fn random_host(&self, token: &burrow_common::Token) -> Result<(String, usize), RegisterError> {
        let (domain, entry) = self.policy.random_domain(token)?;
        // Names collide about once in 2^38; a few tries are plenty.
        (0..8)
            .filter_map(|_| names::random_label())
            .map(|label| format!("{label}.{domain}"))
            .find(|host| !self.hosts.contains_key(host))
            .map(|host| (host, entry))
            .ok_or(RegisterError::Unavailable)
    }

    /// Grants `host` to `session` of client `instance` (joining the host's
    /// other sessions if they are that instance's), or says why not.
    fn grant(
        &mut self,
        session: &Arc<SessionHandle>,
        (instance, token): (Option<&str>, &Token),
        (host, entry, rules): Claim,
    ) -> Result<Granted, RegisterError> {
        let limit = self.limits.max_tunnels_per_token;
        let held = self.held.entry(entry).or_default();
        if !self.hosts.contains_key(&host) && *held >= limit {
            return Err(RegisterError::TooManyTunnels(host, limit));
        }
        let added = &self.added;
        let holders = self.hosts.entry(host.clone()).or_insert_with(|| {
            *held += 1;
            added.fetch_add(1, Ordering::Release);
            Holders::new(entry)
        });
        holders.sessions.retain(|s| s.is_alive());
        let joins_pool = !holders.sessions.is_empty();
        if joins_pool && (instance.is_none() || holders.instance.as_deref() != instance) {
            return Err(RegisterError::HeldByAnotherClient(host));
        }
        if let Some(reserved) = &holders.reserved {
            if reserved.instance.is_some() && reserved.instance.as_deref() != instance {
                return Err(RegisterError::HeldByAnotherClient(host));
            }
            self.metrics.reconnected(reserved.instance.is_some(), &host);
        }
        // Dropping the reservation sends the requests waiting on it to the
        // new session.
        holders.reserved = None;
        if !joins_pool {
            // A pool shares one state; a new holder starts its own.
            holders.instance = instance.map(Box::from);
            holders.token = Some(token.clone());
            holders.since = SystemTime::now();
            holders.tunnel = Arc::new(TunnelState::new(
                rules,
                self.access.clone(),
                self.limits.clone(),
                holders.stats.clone(),
                None,
            ));
            if self.wildcard.get(entry) == Some(&true) {
                certificate_for(self.on_demand.as_ref(), &host);
            }
        }
        holders.sessions.push(session.clone());
        // Workers should pick again.
        holders.changed();
        let hosts = self.by_session.entry(session.id).or_default();
        hosts.push(host.clone());
        Ok(Granted {
            host,
            joined: joins_pool,
            quota: (self.patterns.get(entry).cloned().unwrap_or_default(), limit),
        })
    }
}

/// Each entry's `host` as written (by index).
fn patterns(hosts: &[HostConfig]) -> Vec<Arc<str>> {
    hosts.iter().map(|h| Arc::from(h.host.as_str())).collect()
}

/// Whether each entry (by index) is a wildcard.
fn wildcards(hosts: &[HostConfig]) -> Vec<bool> {
    hosts
        .iter()
        .map(|h| h.wildcard_domain().is_some())
        .collect()
}

/// Asks for a certificate for `host`, just claimed under a wildcard entry
/// (never for a name a caller sent: only a client with the entry's token
/// gets here).
fn certificate_for(on_demand: Option<&OnDemand>, host: &str) {
    let Some(on_demand) = on_demand else {
        return;
    };
    match on_demand.request(host) {
        Ok(Requested::Started) => log::info!("ordering a certificate for {host}"),
        Ok(Requested::AlreadyKept) => {}
        Err(e @ RequestError::RateLimited(_)) => log::warn!("no certificate for {host} yet: {e}"),
        Err(e) => log::debug!("no certificate for {host}: {e}"),
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Register> for Registry {
    type Result = MessageResult<Register>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        if self.draining {
            let refused = Err(RegisterError::Unavailable);
            return MessageResult(msg.tunnels.iter().map(|_| refused.clone()).collect());
        }
        let session = Arc::new(msg.session);
        let now = Instant::now();
        let addr = session.peer.map(|p| p.ip());
        if let Some(wait) = addr.and_then(|a| self.failed.blocked(a, now)) {
            let refused = RegisterError::TooManyFailures(wait.as_secs().max(1));
            return MessageResult(msg.tunnels.iter().map(|_| Err(refused.clone())).collect());
        }
        let answers: Vec<_> = msg
            .tunnels
            .iter()
            .map(|t| {
                let claim = self.claim(t)?;
                self.grant(&session, (msg.instance.as_deref(), &t.token), claim)
            })
            .collect();
        for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
            self.metrics.refused_registration(refused.refusal());
        }
        if let Some(addr) = addr {
            for _ in answers
                .iter()
                .filter(|a| a.as_ref().is_err_and(|e| e.is_guess()))
            {
                self.failed.record(addr, now);
            }
        }
        MessageResult(answers)
    }
}

impl Handler<Lookup> for Registry {
    type Result = Option<HostSessions>;

    fn handle(&mut self, msg: Lookup, ctx: &mut Context<Self>) -> Self::Result {
        if !self.hosts.contains_key(&msg.host) {
            self.reserve_after_start(&msg.host, ctx)?;
        }
        self.hosts.get(&msg.host).map(|h| HostSessions {
            sessions: h.sessions.clone(),
            tunnel: h.tunnel.clone(),
            generation: h.generation.clone(),
            seen: h.generation.load(Ordering::Acquire),
            reserved: h.reserved.as_ref().map(Reservation::ticket),
        })
    }
}

impl Handler<CloseAll> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> usize {
        self.each_session(|s| s.close("server shutting down"))
    }
}

impl Handler<Drain> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> usize {
        self.stop_reserving();
        self.each_session(SessionHandle::go_away)
    }
}

impl Registry {
    /// Takes no more registrations and keeps no host for a client any
    /// longer: the requests waiting for one are answered at once.
    fn stop_reserving(&mut self) {
        self.draining = true;
        for holders in self.hosts.values_mut() {
            holders.reserved = None;
        }
    }

    /// Calls `f` once on each session; answers how many there were.
    fn each_session(&self, f: impl Fn(&SessionHandle)) -> usize {
        let mut ids = HashSet::new();
        for s in self.hosts.values().flat_map(|h| &h.sessions) {
            if ids.insert(s.id) {
                f(s);
            }
        }
        ids.len()
    }
}
