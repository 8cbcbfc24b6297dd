//! The registry actor: which session serves which host.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use actix::{Actor, Context, Handler, MessageResult};
use burrow_common::protocol::TunnelVerdict;

use crate::{
    config::{normalize_host, HostConfig, Token},
    messages::{CloseAll, CloseSession, Lookup, Register, SessionHandle, Unregister},
};

/// Owns the map from public host to the session serving it. All changes go
/// through its mailbox, so there are no locks and no races between a client
/// leaving and another arriving.
pub struct Registry {
    tokens: HashMap<String, Token>,
    hosts: HashMap<String, Arc<SessionHandle>>,
}

impl Registry {
    /// A registry that accepts the configured hosts.
    pub fn new(allowed: &[HostConfig]) -> Self {
        Registry {
            tokens: allowed
                .iter()
                .map(|h| (h.host.clone(), h.token.clone()))
                .collect(),
            hosts: HashMap::new(),
        }
    }

    /// Grants `host` to `session`, or says why not and whether retrying may help.
    fn verdict(
        &mut self,
        session: &Arc<SessionHandle>,
        host: &str,
        token: &str,
    ) -> Result<(), (String, bool)> {
        let Some(host) = normalize_host(host) else {
            return Err((format!("`{host}` is not a valid host name"), false));
        };
        let Some(expected) = self.tokens.get(&host) else {
            let why = format!("host {host} is not configured on this server");
            return Err((why, false));
        };
        if !expected.matches(token) {
            return Err((format!("invalid token for host {host}"), false));
        }
        if let Some(current) = self.hosts.get(&host) {
            if current.id != session.id && current.is_alive() {
                let why = format!("host {host} is already served by another client");
                return Err((why, true));
            }
        }
        log::info!("session {} registered host {host}", session.id);
        self.hosts.insert(host, session.clone());
        Ok(())
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Register> for Registry {
    type Result = MessageResult<Register>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let session = Arc::new(msg.session);
        let verdicts = msg
            .tunnels
            .iter()
            .map(|t| match self.verdict(&session, &t.host, &t.token) {
                Ok(()) => TunnelVerdict {
                    host: t.host.clone(),
                    accepted: true,
                    reason: None,
                    retry: false,
                },
                Err((reason, retry)) => {
                    log::info!("session {} refused: {reason}", session.id);
                    TunnelVerdict {
                        host: t.host.clone(),
                        accepted: false,
                        reason: Some(reason),
                        retry,
                    }
                }
            })
            .collect();
        MessageResult(verdicts)
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.hosts.retain(|host, s| {
            let keep = s.id != msg.session_id;
            if !keep {
                log::info!("session {} removed host {host}", msg.session_id);
            }
            keep
        });
    }
}

impl Handler<Lookup> for Registry {
    type Result = Option<Arc<SessionHandle>>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.hosts.get(&msg.host).cloned()
    }
}

impl Handler<CloseAll> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> usize {
        let mut ids = HashSet::new();
        for s in self.hosts.values() {
            if ids.insert(s.id) {
                s.addr.do_send(CloseSession);
            }
        }
        ids.len()
    }
}
