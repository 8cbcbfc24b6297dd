//! The tunnel session actor: one per connected client. It owns the client's
//! WebSocket and the table of streams in flight on it.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{
    fut, Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, ContextFutureSpawner,
    Handler, Message as ActorMessage, Running, SpawnHandle, StreamHandler, WrapFuture,
};
use actix_ws::{CloseCode, CloseReason, Item, Message, ProtocolError};
use burrow_common::{
    batch,
    flow::{Activity, BodyEvent, RecvCredit, SendCredit},
    fragments::{Fragments, Whole},
    outbox::{data_fragments, Outgoing},
    protocol::{ResponseHead, TunnelVerdict, PROTOCOL_VERSION},
    queue::{Receiver, Sender},
    stream_map::{self, StreamMap},
    Frame, Hello, HelloAck, Outbox, ResetCode,
};
use bytes::Bytes;

use crate::{
    messages::{
        current_worker, CancelStream, CloseSession, Gate, OpenStream, Register, SessionHandle,
        StreamCount, Unregister,
    },
    registry::Registry,
};

/// Longest client instance id accepted in a `Hello`.
pub const MAX_INSTANCE_LEN: usize = 64;

/// How long a new connection may take to send its `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings an idle client.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence after which a client is considered gone (half-open connection).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Registering,
    Open,
    Closing,
}

struct StreamEntry {
    /// The opener's events: the response head, then the body.
    events: Sender<BodyEvent>,
    /// Whether the response head has been delivered.
    answered: bool,
    /// When the stream was opened (for the request timeout).
    opened: Instant,
    recv_credit: Arc<RecvCredit>,
    send_credit: Arc<SendCredit>,
    activity: Arc<Activity>,
}

impl StreamEntry {
    /// Ends the stream for its opener with `event` (a reset or an expiry).
    fn end(self, event: BodyEvent) {
        self.send_credit.close();
        let _ = self.events.send(event);
    }
}

/// One connected client.
pub struct TunnelSession {
    id: u64,
    ws: actix_ws::Session,
    outbox: Outbox,
    outbox_rx: Option<Receiver<Outgoing>>,
    registry: Arc<Addr<Registry>>,
    streams: StreamMap<StreamEntry>,
    /// Shared with the session's handles; see [`Gate`].
    gate: Arc<Gate>,
    /// Set once the client has asked for a drain (see [`Frame::Drain`]).
    draining: bool,
    /// A [`FinishDrain`] is in the mailbox.
    finish_queued: bool,
    state: State,
    hosts: Vec<String>,
    last_heard: Instant,
    last_ping: Instant,
    hello_timer: Option<SpawnHandle>,
    limits: SessionLimits,
    /// The server's worker threads: the pool size suggested to clients.
    workers: u32,
    /// The binary message arriving in fragments, if any.
    fragments: Fragments,
}

/// The time limits a session enforces on its streams.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Longest wait for a stream's response head.
    pub request_timeout: Duration,
    /// Longest time an answered stream may move no bytes.
    pub idle_timeout: Duration,
}

impl TunnelSession {
    /// A session for a freshly upgraded WebSocket, enforcing `limits` on
    /// its streams, on a server with `workers` worker threads.
    pub fn new(
        ws: actix_ws::Session,
        registry: Arc<Addr<Registry>>,
        limits: SessionLimits,
        workers: u32,
    ) -> Self {
        let (outbox, outbox_rx) = Outbox::new();
        TunnelSession {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            ws,
            outbox,
            outbox_rx: Some(outbox_rx),
            registry,
            streams: StreamMap::default(),
            gate: Arc::new(Gate::default()),
            draining: false,
            finish_queued: false,
            state: State::AwaitingHello,
            hosts: Vec::new(),
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            hello_timer: None,
            limits,
            workers,
            fragments: Fragments::default(),
        }
    }

    fn session_handle(&self, ctx: &mut Context<Self>) -> SessionHandle {
        SessionHandle {
            id: self.id,
            addr: ctx.address(),
            outbox: self.outbox.clone(),
            gate: self.gate.clone(),
            worker: current_worker(),
        }
    }

    /// Sends `last` (if any) and a close frame, then stops. Frames still in
    /// the outbox are dropped: this is for the handshake and for shutdown.
    fn close(&mut self, ctx: &mut Context<Self>, last: Option<Bytes>, code: CloseCode, why: &str) {
        self.state = State::Closing;
        let mut ws = self.ws.clone();
        let reason = CloseReason {
            code,
            description: Some(why.to_owned()),
        };
        actix::spawn(async move {
            if let Some(bytes) = last {
                let _ = ws.binary(bytes).await;
            }
            let _ = ws.close(Some(reason)).await;
        });
        ctx.stop();
    }

    fn protocol_error(&mut self, ctx: &mut Context<Self>, why: String) {
        log::warn!("session {}: protocol error: {why}; closing", self.id);
        self.close(ctx, None, CloseCode::Protocol, &why);
    }

    /// Handles each frame of one WebSocket message, in order.
    fn on_message(&mut self, msg: Bytes, ctx: &mut Context<Self>) {
        let frames = match batch::unpack(msg) {
            Ok(frames) => frames,
            Err(e) => return self.protocol_error(ctx, e.to_string()),
        };
        for frame in frames {
            match frame.and_then(Frame::decode) {
                Ok(frame) => self.on_frame(frame, ctx),
                Err(e) => return self.protocol_error(ctx, e.to_string()),
            }
            if self.state == State::Closing {
                return;
            }
        }
        self.check_drained(ctx);
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match (self.state, frame) {
            (State::AwaitingHello, Frame::Hello(hello)) => self.on_hello(hello, ctx),
            (State::Open, Frame::ResponseHead { stream, head }) => self.on_head(stream, head),
            (State::Open, Frame::Data { stream, data }) => self.on_data(stream, data),
            (State::Open, Frame::End { stream }) => {
                if let Some(e) = self.streams.remove(&stream) {
                    e.send_credit.close();
                    if !e.answered {
                        let reason = "body ended before the response head".to_owned();
                        self.reset(stream, e, ResetCode::ProtocolError, reason);
                    } else {
                        let _ = e.events.send(BodyEvent::End);
                    }
                }
            }
            (
                State::Open,
                Frame::Reset {
                    stream,
                    code,
                    reason,
                },
            ) => {
                if let Some(e) = self.streams.remove(&stream) {
                    e.end(BodyEvent::Reset(code, reason));
                }
            }
            (State::Open, Frame::Window { stream, increment }) => {
                if let Some(e) = self.streams.get(&stream) {
                    e.activity.touch();
                    e.send_credit.grant(increment);
                }
            }
            (State::Open, Frame::Drain) => self.start_drain(ctx),
            (State::Closing, _) => {}
            (state, frame) => {
                let why = format!("unexpected {} frame while {state:?}", frame.name());
                self.protocol_error(ctx, why);
            }
        }
    }

    /// The client wants this connection closed once its streams are done:
    /// new requests go to the client's other connections from now on.
    fn start_drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        log::debug!("session {}: draining", self.id);
        self.draining = true;
        self.gate.close();
        self.registry.do_send(Unregister {
            session_id: self.id,
        });
        self.check_drained(ctx);
    }

    /// Once a draining session has no stream left and no opener is on its
    /// way in, queues [`FinishDrain`] behind whatever the mailbox holds, so
    /// that a stream sent just before the gate closed is still served.
    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.draining && !self.finish_queued && self.streams.is_empty() && self.gate.settled() {
            self.finish_queued = true;
            ctx.address().do_send(FinishDrain);
        }
    }

    fn on_hello(&mut self, hello: Hello, ctx: &mut Context<Self>) {
        if let Some(timer) = self.hello_timer.take() {
            ctx.cancel_future(timer);
        }
        let refusal = if hello.version != PROTOCOL_VERSION {
            let newer = if hello.version > PROTOCOL_VERSION {
                "server"
            } else {
                "client"
            };
            Some(format!(
                "protocol version {} is not supported (this server speaks {PROTOCOL_VERSION}); upgrade the {newer}",
                hello.version
            ))
        } else if hello
            .instance
            .as_ref()
            .is_some_and(|i| i.len() > MAX_INSTANCE_LEN)
        {
            Some(format!(
                "the client instance id is longer than {MAX_INSTANCE_LEN} bytes"
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            log::info!("session {}: {why}", self.id);
            let ack = HelloAck {
                version: PROTOCOL_VERSION,
                tunnels: Vec::new(),
                error: Some(why.clone()),
                connections: None,
                worker: None,
                drain: false,
            };
            let bytes = Frame::HelloAck(ack).encode().ok();
            return self.close(ctx, bytes, CloseCode::Policy, &why);
        }
        self.state = State::Registering;
        let register = Register {
            session: self.session_handle(ctx),
            tunnels: hello.tunnels,
            instance: hello.instance,
        };
        // `wait`: no other frame is handled until the registry has answered.
        self.registry
            .send(register)
            .into_actor(self)
            .map(|res, act, ctx| act.on_registered(res.unwrap_or_default(), ctx))
            .wait(ctx);
    }

    fn on_registered(&mut self, verdicts: Vec<TunnelVerdict>, ctx: &mut Context<Self>) {
        self.hosts = verdicts
            .iter()
            .filter(|v| v.accepted)
            .map(|v| v.host.clone())
            .collect();
        let ack = Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            tunnels: verdicts,
            error: None,
            connections: Some(self.workers),
            worker: Some(current_worker()),
            drain: true,
        });
        let bytes = ack.encode().ok();
        if self.hosts.is_empty() {
            return self.close(ctx, bytes, CloseCode::Policy, "no tunnel was accepted");
        }
        if let Some(bytes) = bytes {
            let _ = self.outbox.send_encoded(bytes);
        }
        self.state = State::Open;
        self.gate.open();
        log::info!("session {} serving {}", self.id, self.hosts.join(", "));
    }

    fn on_head(&mut self, stream: u32, head: ResponseHead) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.answered {
            if let Some(e) = self.streams.remove(&stream) {
                let why = "second response head".to_owned();
                self.reset(stream, e, ResetCode::ProtocolError, why);
            }
            return;
        }
        entry.answered = true;
        let end_stream = head.end_stream;
        let _ = entry.events.send(BodyEvent::Head(Box::new(head)));
        if end_stream {
            if let Some(e) = self.streams.remove(&stream) {
                e.send_credit.close();
            }
        }
    }

    fn on_data(&mut self, stream: u32, data: Bytes) {
        let Some(entry) = self.streams.get(&stream) else {
            return;
        };
        let why = if !entry.answered {
            "data before the response head"
        } else if !entry.recv_credit.take(data.len()) {
            "data beyond the granted window"
        } else {
            entry.activity.touch();
            // A closed receiver means the caller left; its cancel is on the way.
            let _ = entry.events.send(BodyEvent::Data(data));
            return;
        };
        if let Some(e) = self.streams.remove(&stream) {
            self.reset(stream, e, ResetCode::ProtocolError, why.to_owned());
        }
    }

    /// Fails a stream locally and tells the client.
    fn reset(&mut self, stream: u32, entry: StreamEntry, code: ResetCode, reason: String) {
        let event = BodyEvent::Reset(code, reason.clone());
        self.reset_with(stream, entry, code, reason, event);
    }

    /// Resets a stream on the client's side and tells its opener `event`.
    fn reset_with(
        &mut self,
        stream: u32,
        entry: StreamEntry,
        code: ResetCode,
        reason: String,
        event: BodyEvent,
    ) {
        log::debug!("session {}: reset stream {stream}: {reason}", self.id);
        let _ = self.outbox.send(&Frame::Reset {
            stream,
            code,
            reason,
        });
        entry.end(event);
    }

    /// Resets streams past a limit: still waiting for their head after the
    /// request timeout (the opener answers 504), or answered and moving no
    /// bytes for the idle timeout. An idle session frees its stream table.
    fn sweep(&mut self) {
        let SessionLimits {
            request_timeout,
            idle_timeout,
        } = self.limits;
        let expired: Vec<(u32, bool)> = self
            .streams
            .iter()
            .filter_map(|(id, e)| {
                if !e.answered && e.opened.elapsed() >= request_timeout {
                    Some((*id, true))
                } else if e.answered && e.activity.idle_for() >= idle_timeout {
                    Some((*id, false))
                } else {
                    None
                }
            })
            .collect();
        for (id, waiting) in expired {
            let Some(e) = self.streams.remove(&id) else {
                continue;
            };
            if waiting {
                let why = format!("no response head within {} s", request_timeout.as_secs());
                self.reset_with(id, e, ResetCode::Cancel, why, BodyEvent::Expired);
            } else {
                let why = format!("no traffic for {} s", idle_timeout.as_secs());
                self.reset(id, e, ResetCode::Cancel, why);
            }
        }
        stream_map::release_if_empty(&mut self.streams);
    }
}

/// One WebSocket frame the writer sends.
enum WsOut {
    Binary(Bytes),
    Fragment(Item),
}

/// Sends `messages` in order; an error means the WebSocket is closed.
async fn send_all(
    ws: &mut actix_ws::Session,
    messages: Vec<WsOut>,
) -> Result<(), actix_ws::Closed> {
    for msg in messages {
        match msg {
            WsOut::Binary(bytes) => ws.binary(bytes).await?,
            WsOut::Fragment(item) => ws.continuation(item).await?,
        }
    }
    Ok(())
}

/// The WebSocket frames that carry `packed`, in order: a binary message
/// each, except split `Data` frames, which go as their fragments. Built
/// before the writer awaits, so its future (kept by every session) stays
/// small.
fn ws_messages(packed: Vec<Outgoing>) -> Vec<WsOut> {
    let mut out = Vec::with_capacity(packed.len());
    for entry in packed {
        match entry {
            Outgoing::Frame(bytes) => out.push(WsOut::Binary(bytes)),
            Outgoing::Data { stream, pieces } => {
                out.extend(data_fragments(stream, pieces).map(WsOut::Fragment));
            }
        }
    }
    out
}

impl Actor for TunnelSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The writer: the only task that writes to the WebSocket, so frames
        // leave in the order they were queued.
        if let Some(mut rx) = self.outbox_rx.take() {
            let mut ws = self.ws.clone();
            async move {
                // Whatever is queued when the writer wakes goes out together:
                // small frames share a message (see `batch`). Nothing is
                // kept between rounds, so an idle session holds no buffers.
                while let Some(first) = rx.recv().await {
                    let mut packed = Vec::new();
                    batch::pack(std::iter::once(first).chain(rx.take_all()), &mut packed);
                    // Boxed: sending holds actix-ws's send futures, several
                    // hundred bytes that every idle session would otherwise
                    // keep in its writer.
                    let round = Box::pin(send_all(&mut ws, ws_messages(packed)));
                    if round.await.is_err() {
                        return;
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop())
            .spawn(ctx);
        }
        self.hello_timer = Some(ctx.run_later(HELLO_TIMEOUT, |act, ctx| {
            if act.state == State::AwaitingHello {
                log::debug!("session {}: no hello in time; closing", act.id);
                act.close(ctx, None, CloseCode::Policy, "no hello received");
            }
        }));
        // One timer per session for the stream limits and the heartbeat: an
        // idle session costs little, and 10,000 of them stay cheap. Limits
        // are enforced to within a quarter of their length.
        let shortest = self.limits.request_timeout.min(self.limits.idle_timeout);
        let tick = (shortest / 4).clamp(Duration::from_millis(100), PING_INTERVAL);
        ctx.run_interval(tick, |act, ctx| {
            act.sweep();
            act.check_drained(ctx);
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                log::info!("session {}: client silent for too long; closing", act.id);
                act.close(ctx, None, CloseCode::Away, "heartbeat timeout");
                return;
            }
            if act.last_ping.elapsed() >= PING_INTERVAL {
                act.last_ping = Instant::now();
                let mut ws = act.ws.clone();
                ctx.spawn(fut::wrap_future(async move {
                    let _ = ws.ping(b"").await;
                }));
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if !self.hosts.is_empty() {
            log::info!("session {} closed ({})", self.id, self.hosts.join(", "));
        }
        self.registry.do_send(Unregister {
            session_id: self.id,
        });
        for (_, e) in self.streams.drain() {
            // Dropping the senders tells every opener the tunnel is gone.
            e.send_credit.close();
        }
        Running::Stop
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for TunnelSession {
    fn handle(&mut self, msg: Result<Message, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match msg {
            Ok(Message::Binary(bytes)) => self.on_message(bytes, ctx),
            Ok(Message::Ping(payload)) => {
                let mut ws = self.ws.clone();
                ctx.spawn(fut::wrap_future(async move {
                    let _ = ws.pong(&payload).await;
                }));
            }
            Ok(Message::Pong(_)) | Ok(Message::Nop) => {}
            Ok(Message::Close(reason)) => {
                log::debug!("session {}: client closed: {reason:?}", self.id);
                self.close(ctx, None, CloseCode::Normal, "bye");
            }
            Ok(Message::Continuation(item)) => match self.fragments.push(item) {
                Ok(Some(Whole::Message(msg))) => self.on_message(msg, ctx),
                Ok(Some(Whole::Data(frame))) => self.on_frame(frame, ctx),
                Ok(None) => {}
                Err(e) => self.protocol_error(ctx, e.to_string()),
            },
            Ok(Message::Text(_)) => {
                self.protocol_error(ctx, "only binary messages are allowed".into());
            }
            Err(e) => {
                log::debug!("session {}: websocket error: {e}", self.id);
                ctx.stop();
            }
        }
    }
}

impl Handler<OpenStream> for TunnelSession {
    type Result = ();

    fn handle(&mut self, msg: OpenStream, _: &mut Context<Self>) {
        // Dropping `msg` unanswered tells the opener the tunnel is gone (or,
        // after 2^31 streams, that its id is still in use).
        if self.state != State::Open || self.streams.contains_key(&msg.id) {
            return;
        }
        self.streams.insert(
            msg.id,
            StreamEntry {
                events: msg.events,
                answered: false,
                opened: Instant::now(),
                recv_credit: msg.recv_credit,
                send_credit: msg.send_credit,
                activity: msg.activity,
            },
        );
    }
}

impl Handler<CancelStream> for TunnelSession {
    type Result = ();

    fn handle(&mut self, msg: CancelStream, ctx: &mut Context<Self>) {
        if let Some(e) = self.streams.remove(&msg.id) {
            self.reset(msg.id, e, msg.code, String::new());
            self.check_drained(ctx);
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
            log::debug!("session {}: drained; closing", self.id);
            self.close(ctx, None, CloseCode::Normal, "drained");
        }
    }
}

impl Handler<CloseSession> for TunnelSession {
    type Result = ();

    fn handle(&mut self, _: CloseSession, ctx: &mut Context<Self>) {
        self.close(ctx, None, CloseCode::Away, "server shutting down");
    }
}

impl Handler<StreamCount> for TunnelSession {
    type Result = usize;

    fn handle(&mut self, _: StreamCount, _: &mut Context<Self>) -> usize {
        self.streams.len()
    }
}
