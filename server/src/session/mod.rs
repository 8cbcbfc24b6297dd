//! The tunnel session actor: one per connected client connection. It owns
//! the client's WebSocket and the table of streams in flight on it
//! ([`streams`]); [`handshake`] registers its hosts, [`writer`] is the only
//! task that writes to its socket.

mod drain;
mod handshake;
mod live;
mod streams;
mod writer;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{
    fut, Actor, ActorContext, ActorFutureExt, AsyncContext, Context, ContextFutureSpawner, Handler,
    Running, SpawnHandle, StreamHandler,
};
use actix_ws::{CloseCode, Message, ProtocolError};
use burrow_common::{
    connection::{streams::Streams, Frames, Heartbeat, Incoming, Link, WsIn},
    flow::{OpeningAllowance, PathState},
    fragments::Piece,
    outbox::Pending,
    Frame, Outbox,
};
use tokio::sync::oneshot;

pub use live::Live;
pub use streams::SessionLimits;
use streams::StreamEntry;

use crate::{
    gate::Gate,
    handle::{RegistryHandle, SessionHandle},
    messages::ToSession,
    placement::WorkerId,
};

/// How long a new connection may take to send its `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Registering,
    Open,
    Closing,
}

/// What every session of a server shares.
pub struct SessionShared {
    /// The registry.
    pub registry: RegistryHandle,
    /// The limits sessions enforce on their streams.
    pub limits: SessionLimits,
    /// The server's worker threads: the pool size suggested to clients.
    pub workers: u32,
    /// The server's node id, told to clients with their worker.
    pub node: Arc<str>,
    /// The sessions running now.
    pub live: Live,
}

/// How callers reach a listener: its scheme and port, for the public URLs
/// the server logs.
#[derive(Debug, Clone, Copy)]
pub struct PublicOrigin {
    /// `http` or `https`.
    pub proto: &'static str,
    /// The listener's port.
    pub port: u16,
}

impl PublicOrigin {
    /// The public URL of `host` on this listener.
    pub fn url(&self, host: &str) -> String {
        let default = matches!((self.proto, self.port), ("http", 80) | ("https", 443));
        match default {
            true => format!("{}://{host}/", self.proto),
            false => format!("{}://{host}:{}/", self.proto, self.port),
        }
    }
}

/// One connected client connection.
pub struct TunnelSession {
    id: u64,
    /// The socket and the receiving end of the frame queue, until
    /// `started` hands them to the writer, the socket's one user.
    unstarted: Option<(actix_ws::Session, Pending)>,
    /// Dropped with the session: the writer then has a little while to
    /// send what is queued (see `writer`).
    _writer_stop: Option<oneshot::Sender<()>>,
    /// The connection below its streams: the frame queue, the path, the
    /// message being reassembled.
    link: Link,
    shared: Arc<SessionShared>,
    /// The worker the session runs on.
    worker: WorkerId,
    /// The client's address, for logs.
    peer: Option<SocketAddr>,
    streams: Streams<StreamEntry>,
    /// Shared with the session's handles; see [`Gate`].
    gate: Arc<Gate>,
    /// What the client promised request bodies (`Window` on stream 0).
    opening: Arc<OpeningAllowance>,
    /// Set once the client has asked for a drain (see [`Frame::Drain`]).
    draining: bool,
    /// A `FinishDrain` is in the mailbox (see `drain`).
    finish_queued: bool,
    state: State,
    hosts: Vec<String>,
    /// The hosts this session was the first of its client to serve.
    first_for: Vec<String>,
    /// How callers reach the listener the session came in on.
    public: PublicOrigin,
    last_heard: Instant,
    last_ping: Instant,
    hello_timer: Option<SpawnHandle>,
    /// Why the session is closing, once it is.
    end: Option<(log::Level, String)>,
    /// Set when the session ends on purpose (the client closed or drained
    /// it, or the server did): its hosts are freed at once. Otherwise its
    /// connection was lost, and they are kept for the reconnect grace.
    leaving: bool,
}

impl TunnelSession {
    /// A session for a freshly upgraded WebSocket from `peer`, on `worker`,
    /// that came in on a listener callers reach at `origin`.
    pub fn new(
        ws: actix_ws::Session,
        shared: Arc<SessionShared>,
        worker: WorkerId,
        peer: Option<SocketAddr>,
        origin: PublicOrigin,
    ) -> Self {
        let (outbox, outbox_rx) = Outbox::new();
        TunnelSession {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            unstarted: Some((ws, outbox_rx)),
            _writer_stop: None,
            link: Link::new(outbox, Arc::new(PathState::new()), Heartbeat::Sends),
            shared,
            worker,
            peer,
            streams: Streams::default(),
            gate: Arc::new(Gate::default()),
            opening: Arc::default(),
            draining: false,
            finish_queued: false,
            state: State::AwaitingHello,
            hosts: Vec::new(),
            first_for: Vec::new(),
            public: origin,
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            hello_timer: None,
            end: None,
            leaving: false,
        }
    }

    fn session_handle(&self, ctx: &mut Context<Self>) -> SessionHandle {
        SessionHandle {
            id: self.id,
            to_session: ctx.address().recipient(),
            outbox: self.link.outbox().clone(),
            gate: self.gate.clone(),
            path: self.link.path().clone(),
            opening: self.opening.clone(),
            worker: self.worker,
            peer: self.peer,
        }
    }

    /// Pings the client; its pong measures the round trip (`PathState`).
    fn ping(&mut self) {
        self.last_ping = Instant::now();
        let _ = self.link.ping();
    }

    /// Queues a close behind the frames queued so far, and stops: the
    /// writer sends them, then the close.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, why: &str) {
        self.state = State::Closing;
        let level = match code {
            CloseCode::Normal => log::Level::Debug,
            _ => log::Level::Info,
        };
        self.end.get_or_insert((level, why.to_owned()));
        self.link.close(code.into(), why);
        ctx.stop();
    }

    fn protocol_error(&mut self, ctx: &mut Context<Self>, why: String) {
        self.end = Some((log::Level::Warn, format!("protocol error: {why}")));
        self.close(ctx, CloseCode::Protocol, &why);
    }

    /// Handles each frame of one WebSocket message, in order.
    fn on_frames(&mut self, frames: Frames, ctx: &mut Context<Self>) {
        for frame in frames {
            match frame {
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
            (State::Open, Frame::End { stream }) => self.on_end(stream),
            (
                State::Open,
                Frame::Reset {
                    stream,
                    code,
                    reason,
                },
            ) => self.on_reset(stream, code, reason),
            (State::Open, Frame::Window { stream, increment }) => self.on_window(stream, increment),
            (State::Open, Frame::Drain) => self.start_drain(ctx),
            (State::Closing, _) => {}
            (state, frame) => {
                let why = format!("unexpected {} frame while {state:?}", frame.name());
                self.protocol_error(ctx, why);
            }
        }
    }

    /// The periodic tick: stream limits, drain, heartbeat.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.sweep();
        self.check_drained(ctx);
        let ping = self.shared.limits.ping_interval;
        let silence = ping * burrow_common::protocol::SILENT_PINGS;
        if self.last_heard.elapsed() > silence {
            let why = format!(
                "no word from the client for {} s (heartbeat timeout)",
                silence.as_secs()
            );
            self.close(ctx, CloseCode::Away, &why);
            return;
        }
        if self.last_ping.elapsed() >= ping {
            self.ping();
        }
    }
}

/// A message as the WebSocket library hands it over, in common's terms
/// (`None` for the library's own no-op).
fn ws_in(msg: Message) -> Option<WsIn> {
    Some(match msg {
        Message::Binary(bytes) => WsIn::Binary(bytes),
        Message::Continuation(item) => WsIn::Fragment(match item {
            actix_ws::Item::FirstBinary(b) => Piece::FirstBinary(b),
            actix_ws::Item::FirstText(b) => Piece::FirstText(b),
            actix_ws::Item::Continue(b) => Piece::Continue(b),
            actix_ws::Item::Last(b) => Piece::Last(b),
        }),
        Message::Ping(payload) => WsIn::Ping(payload),
        Message::Pong(payload) => WsIn::Pong(payload),
        Message::Close(reason) => WsIn::Close(reason.and_then(|r| r.description)),
        Message::Text(_) => WsIn::Text,
        Message::Nop => return None,
    })
}

impl Actor for TunnelSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared.live.started();
        if let Some((ws, rx)) = self.unstarted.take() {
            // The writer runs on its own, so that it can send what is
            // queued, and the close, after the session stopped.
            let (stop, stopped) = oneshot::channel();
            self._writer_stop = Some(stop);
            fut::wrap_future::<_, Self>(actix::spawn(writer::write_loop(ws, rx, stopped)))
                .map(|_, _, ctx: &mut Context<Self>| ctx.stop())
                .spawn(ctx);
        }
        self.hello_timer = Some(ctx.run_later(HELLO_TIMEOUT, |act, ctx| {
            if act.state == State::AwaitingHello {
                act.end = Some((log::Level::Debug, "no hello in time".into()));
                act.close(ctx, CloseCode::Policy, "no hello received");
            }
        }));
        // One timer per session for the stream limits and the heartbeat: an
        // idle session costs little, and 10,000 of them stay cheap. Limits
        // are enforced to within a quarter of their length.
        let limits = self.shared.limits;
        let shortest = limits.request_timeout.min(limits.idle_timeout);
        let tick = (shortest / 4).clamp(Duration::from_millis(100), limits.ping_interval);
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if !self.hosts.is_empty() {
            let (mut level, why) = self
                .end
                .take()
                .unwrap_or((log::Level::Info, "connection lost".into()));
            if self.first_for.is_empty() && level == log::Level::Info {
                // One of a client's extra connections: its first one's
                // events are the ones worth a line.
                level = log::Level::Debug;
            }
            let hosts = self.hosts.join(", ");
            log::log!(level, "session {} ({hosts}) closed: {why}", self.id);
        }
        self.shared.registry.unregister(self.id, !self.leaving);
        for (_, e) in self.streams.drain() {
            e.abandon();
        }
        self.shared.live.stopped();
        Running::Stop
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for TunnelSession {
    fn handle(&mut self, msg: Result<Message, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        let msg = match msg.map(ws_in) {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(e) => {
                self.end = Some((log::Level::Info, format!("websocket error: {e}")));
                return ctx.stop();
            }
        };
        match self.link.receive(msg) {
            Ok(Incoming::Frames(frames)) => self.on_frames(frames, ctx),
            Ok(Incoming::Closed(why)) => {
                let why = why.unwrap_or_else(|| "no reason given".into());
                self.end = Some((log::Level::Info, format!("the client closed it ({why})")));
                self.leaving = true;
                self.close(ctx, CloseCode::Normal, "bye");
            }
            Err(e) => self.protocol_error(ctx, e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.end
            .get_or_insert((log::Level::Info, "the connection dropped".into()));
        ctx.stop();
    }
}

impl Handler<ToSession> for TunnelSession {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Context<Self>) {
        match msg {
            ToSession::Open(open) => {
                // Dropping `open` unanswered tells the opener the tunnel is
                // gone (or, after 2^31 streams, that its id is still in use).
                if self.state == State::Open && !self.streams.contains(open.id) {
                    let id = open.id;
                    self.streams.insert(id, StreamEntry::new(open));
                }
            }
            ToSession::Cancel(cancel) => {
                self.cancel(cancel.id, cancel.code);
                self.check_drained(ctx);
            }
            ToSession::Close(why) => {
                self.leaving = true;
                self.close(ctx, CloseCode::Away, why);
            }
            ToSession::GoAway => self.go_away(ctx),
            ToSession::CountStreams(reply) => {
                let _ = reply.send(self.streams.len());
            }
        }
    }
}
