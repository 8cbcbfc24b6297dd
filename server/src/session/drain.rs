//! Draining a session: it takes no new stream and closes once its open
//! ones are done, at the client's request (`Drain`) or because the server
//! is shutting down (`GoAway`).

use actix::{AsyncContext, Context, Handler, Message as ActorMessage};
use actix_ws::CloseCode;
use burrow_common::Frame;

use super::{State, TunnelSession};

impl TunnelSession {
    /// The client wants this connection closed once its streams are done
    /// (new requests go to the client's other connections from now on), or
    /// the server is draining.
    pub(super) fn start_drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        log::debug!("session {}: draining", self.id);
        self.draining = true;
        self.gate.close();
        self.shared.registry.unregister(self.id, false);
        self.check_drained(ctx);
    }

    /// The server is shutting down: the client is told, and the session
    /// drains. One that is still in its handshake simply closes.
    pub(super) fn go_away(&mut self, ctx: &mut Context<Self>) {
        if self.state != State::Open {
            self.leaving = true;
            return self.close(ctx, CloseCode::Away, "server shutting down");
        }
        let _ = self.link.outbox().send(&Frame::GoAway);
        self.end = Some((log::Level::Debug, "the server shut down".into()));
        self.start_drain(ctx);
    }

    /// Once a draining session has no stream left and no opener is on its
    /// way in, queues [`FinishDrain`] behind whatever the mailbox holds, so
    /// that a stream sent just before the gate closed is still served.
    pub(super) fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.draining && !self.finish_queued && self.streams.is_empty() && self.gate.settled() {
            self.finish_queued = true;
            ctx.address().do_send(FinishDrain);
        }
    }
}

/// Sent by a draining session to itself once it found nothing left to
/// serve; handled after every message queued before it.
#[derive(ActorMessage)]
#[rtype(result = "()")]
struct FinishDrain;

impl Handler<FinishDrain> for TunnelSession {
    type Result = ();

    fn handle(&mut self, _: FinishDrain, ctx: &mut Context<Self>) {
        self.finish_queued = false;
        if self.state == State::Open && self.streams.is_empty() {
            self.end
                .get_or_insert((log::Level::Debug, "drained at the client's request".into()));
            self.leaving = true;
            // Behind the GoAway, if one was queued: the writer sends both in
            // their turn.
            self.close(ctx, CloseCode::Normal, "drained");
        }
    }
}
