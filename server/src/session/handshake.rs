//! A session's handshake: the client's `Hello` checked, its hosts
//! registered, and the `HelloAck` that answers it.

use actix::{ActorFutureExt, AsyncContext, Context, ContextFutureSpawner, WrapFuture};
use actix_ws::CloseCode;
use burrow_common::{
    protocol::{TunnelVerdict, PROTOCOL_VERSION},
    Frame, Hello, HelloAck,
};

use super::{State, TunnelSession};
use crate::{error::RegisterError, handle::Granted};

/// Longest client instance id accepted in a `Hello`.
pub const MAX_INSTANCE_LEN: usize = 64;

/// Most tunnels one `Hello` may ask for.
pub const MAX_HELLO_TUNNELS: usize = 256;

/// Why a `Hello` is refused as a whole, if it is.
fn refusal(hello: &Hello) -> Option<String> {
    if hello.version != PROTOCOL_VERSION {
        let newer = if hello.version > PROTOCOL_VERSION {
            "server"
        } else {
            "client"
        };
        return Some(format!(
            "protocol version {} is not supported (this server speaks {PROTOCOL_VERSION}); upgrade the {newer}",
            hello.version
        ));
    }
    if hello.tunnels.len() > MAX_HELLO_TUNNELS {
        return Some(format!(
            "a client may ask for at most {MAX_HELLO_TUNNELS} tunnels on one connection"
        ));
    }
    if hello
        .instance
        .as_ref()
        .is_some_and(|i| i.len() > MAX_INSTANCE_LEN)
    {
        return Some(format!(
            "the client instance id is longer than {MAX_INSTANCE_LEN} bytes"
        ));
    }
    None
}

impl TunnelSession {
    pub(super) fn on_hello(&mut self, hello: Hello, ctx: &mut Context<Self>) {
        if let Some(timer) = self.hello_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(why) = refusal(&hello) {
            log::debug!("session {}: {why}", self.id);
            let ack = HelloAck {
                version: PROTOCOL_VERSION,
                tunnels: Vec::new(),
                error: Some(why.clone()),
                connections: None,
                worker: None,
                node: None,
                drain: false,
                ping_secs: None,
            };
            let _ = self.link.outbox().send(&Frame::HelloAck(ack));
            return self.close(ctx, CloseCode::Policy, &why);
        }
        self.state = State::Registering;
        let requested: Vec<String> = hello.tunnels.iter().map(|t| t.host.clone()).collect();
        let registry = self.shared.registry.clone();
        let handle = self.session_handle(ctx);
        // `wait`: no other frame is handled until the registry has answered.
        async move {
            registry
                .register(handle, hello.tunnels, hello.instance)
                .await
        }
        .into_actor(self)
        .map(move |answers, act, ctx| act.on_registered(requested, answers, ctx))
        .wait(ctx);
    }

    fn on_registered(
        &mut self,
        requested: Vec<String>,
        answers: Vec<Result<Granted, RegisterError>>,
        ctx: &mut Context<Self>,
    ) {
        let verdicts: Vec<TunnelVerdict> = requested
            .into_iter()
            .zip(answers)
            .map(|(host, answer)| self.verdict(host, answer))
            .collect();
        let ack = Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            tunnels: verdicts,
            error: None,
            connections: Some(self.shared.workers),
            worker: Some(self.worker.0),
            node: Some(self.shared.node.to_string()),
            drain: true,
            ping_secs: u32::try_from(self.shared.limits.ping_interval.as_secs()).ok(),
        });
        let _ = self.link.outbox().send(&ack);
        if self.hosts.is_empty() {
            return self.close(ctx, CloseCode::Policy, "no tunnel was accepted");
        }
        self.state = State::Open;
        self.gate.open();
        // A first round trip before any stream needs a window sized by it.
        self.ping();
        let peer = self.peer.map_or_else(|| "?".into(), |p| p.to_string());
        if self.first_for.is_empty() {
            log::debug!(
                "session {} from {peer} joins the connections serving {}",
                self.id,
                self.hosts.join(", ")
            );
        } else {
            let urls: Vec<String> = self.first_for.iter().map(|h| self.public.url(h)).collect();
            log::info!(
                "serving {} (session {} from {peer})",
                urls.join(", "),
                self.id
            );
        }
    }

    /// The verdict on one requested host; a granted one is remembered.
    fn verdict(&mut self, host: String, answer: Result<Granted, RegisterError>) -> TunnelVerdict {
        match answer {
            Ok(granted) => {
                if !granted.joined {
                    self.first_for.push(granted.host.clone());
                }
                self.hosts.push(granted.host.clone());
                // The host granted: the one asked for, or a random name.
                TunnelVerdict {
                    host: granted.host,
                    accepted: true,
                    reason: None,
                    retry: false,
                }
            }
            Err(e) => {
                log::log!(e.log_level(), "session {} refused: {e}", self.id);
                TunnelVerdict {
                    host,
                    accepted: false,
                    reason: Some(e.to_string()),
                    retry: e.retry(),
                }
            }
        }
    }
}
