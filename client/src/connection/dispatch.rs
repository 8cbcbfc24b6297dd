//! A connection's reading side: the read loop, frame dispatch and the
//! table of streams in flight.

use std::{cell::RefCell, rc::Rc, sync::Arc, time::Duration};

use awc::ws;
use burrow_common::{
    batch,
    flow::{BodyEvent, CancelOnDrop, RecvBody, RecvCredit, SendCredit},
    fragments::{Fragments, Reassembled},
    protocol::RequestHead,
    queue,
    stream_map::{self, StreamMap},
    DecodeError, Frame, Outbox, ResetCode,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::{sync::mpsc::UnboundedSender, task::AbortHandle, time::Instant};

use super::{close_reason, ConnError, Role, Ws, SERVER_SILENCE};
use crate::{
    forward::{forward, ForwardContext},
    reply::Answered,
    shutdown::Shutdown,
};

/// Shortest period of a connection's local-timeout sweep.
const SWEEP_MIN: Duration = Duration::from_millis(100);
/// Longest period of a connection's local-timeout sweep.
const SWEEP_MAX: Duration = Duration::from_secs(5);
/// Shortest period of the idle check.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(100);

struct StreamEntry {
    /// When the server opened the stream.
    opened: Instant,
    /// Set by the forwarding task once the response head is queued.
    answered: Answered,
    body_tx: Option<queue::Sender<BodyEvent>>,
    recv_credit: Arc<RecvCredit>,
    send_credit: Arc<SendCredit>,
    task: AbortHandle,
}

type StreamTable = Rc<RefCell<StreamMap<StreamEntry>>>;

/// One connection's reading side and its streams.
pub(super) struct Dispatcher {
    outbox: Outbox,
    ctl_tx: UnboundedSender<ws::Message>,
    streams: StreamTable,
    ctx: Rc<ForwardContext>,
    /// The binary message arriving in fragments, if any.
    fragments: Fragments,
    role: Rc<dyn Role>,
    /// Streams opened so far (tells the idle check that requests came and
    /// went between two of its ticks).
    opened: u64,
    /// How long the connection may carry no request before it drains.
    drain_after: Option<Duration>,
    /// The server honours `Drain` on this connection.
    can_drain: bool,
    /// A `Drain` frame has been queued: the server will close the
    /// connection once nothing is left on it.
    drain_sent: bool,
}

/// What woke the read loop.
enum Wake {
    /// A WebSocket frame, the end of the socket, or its error.
    Socket(Option<Result<ws::Frame, awc::error::WsProtocolError>>),
    /// Time to reset streams past the local timeout.
    Sweep,
    /// Time to see whether the connection has been idle long enough.
    IdleCheck,
    /// The silence timer ran out (perhaps only to be pushed forward).
    Silence,
    /// The client is shutting down.
    Shutdown,
}

/// The read loop's timers: one per connection each, pushed forward lazily
/// (a timer per message would cost a wheel insertion and removal each
/// time).
struct Timers {
    silence: std::pin::Pin<Box<tokio::time::Sleep>>,
    heard: Instant,
    sweep: tokio::time::Interval,
    idle_check: tokio::time::Interval,
    busy_at: Instant,
    opened_then: u64,
}

impl Timers {
    fn new(local_timeout: Duration, drain_after: Option<Duration>, opened: u64) -> Self {
        // Local response timeouts are enforced to within a quarter of their
        // length by one timer per connection, armed while streams are open.
        let every = (local_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut sweep = tokio::time::interval(every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The idle check: a connection that may drain looks a few times
        // per idle period whether it carried a request since.
        let idle_every = drain_after.map_or(SERVER_SILENCE, |d| (d / 4).max(IDLE_CHECK_MIN));
        let mut idle_check = tokio::time::interval(idle_every);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Timers {
            silence: Box::pin(tokio::time::sleep(SERVER_SILENCE)),
            heard: Instant::now(),
            sweep,
            idle_check,
            busy_at: Instant::now(),
            opened_then: opened,
        }
    }
}

impl Dispatcher {
    pub(super) fn new(
        outbox: Outbox,
        ctl_tx: UnboundedSender<ws::Message>,
        ctx: Rc<ForwardContext>,
        role: Rc<dyn Role>,
        drain_after: Option<Duration>,
        can_drain: bool,
    ) -> Self {
        Dispatcher {
            outbox,
            ctl_tx,
            streams: Rc::new(RefCell::new(StreamMap::default())),
            ctx,
            fragments: Fragments::default(),
            role,
            opened: 0,
            drain_after,
            can_drain,
            drain_sent: false,
        }
    }

    /// Stops every stream still open and tells the role the connection
    /// has ended.
    pub(super) fn close(&mut self) {
        for (_, s) in self.streams.borrow_mut().drain() {
            s.task.abort();
            s.send_credit.close();
        }
        self.role.ended();
    }

    /// Serves the connection until it ends; `Err(Drained)` once a drain it
    /// asked for is complete.
    pub(super) async fn read_loop(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<Ws>,
        shutdown: &Shutdown,
    ) -> Result<(), ConnError> {
        let mut timers = Timers::new(self.ctx.local_timeout, self.drain_after, self.opened);
        // One future for the connection's life: polled only until it fires.
        let mut stop = std::pin::pin!(shutdown.requested());
        let mut stopping = false;
        loop {
            let stop = (!stopping).then_some(stop.as_mut());
            match self.wake(stream, &mut timers, stop).await {
                Wake::Socket(next) => {
                    timers.heard = Instant::now();
                    self.on_socket(next)?;
                }
                Wake::Sweep => self.sweep(),
                Wake::IdleCheck => self.idle_check(&mut timers),
                Wake::Silence => {
                    if timers.heard.elapsed() >= SERVER_SILENCE {
                        return Err(ConnError::Lost("server silent for too long".into()));
                    }
                    let next = timers.heard + SERVER_SILENCE;
                    timers.silence.as_mut().reset(next);
                }
                Wake::Shutdown if self.can_drain => {
                    stopping = true;
                    self.ask_drain();
                }
                Wake::Shutdown => return Err(ConnError::Drained),
            }
        }
    }

    /// The next thing to do. `stop` is the shutdown signal until it has
    /// fired.
    async fn wake(
        &self,
        stream: &mut futures_util::stream::SplitStream<Ws>,
        timers: &mut Timers,
        stop: Option<std::pin::Pin<&mut impl std::future::Future<Output = ()>>>,
    ) -> Wake {
        let open = !self.streams.borrow().is_empty();
        let may_drain = self.drain_after.is_some() && !self.drain_sent;
        let stop = async {
            match stop {
                Some(stop) => stop.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            next = stream.next() => Wake::Socket(next),
            _ = timers.sweep.tick(), if open => Wake::Sweep,
            _ = timers.idle_check.tick(), if may_drain => Wake::IdleCheck,
            () = timers.silence.as_mut() => Wake::Silence,
            () = stop => Wake::Shutdown,
        }
    }

    /// Asks the server to drain the connection once it has carried no
    /// request for the configured time.
    fn idle_check(&mut self, timers: &mut Timers) {
        let open = !self.streams.borrow().is_empty();
        if open || self.opened != timers.opened_then {
            timers.busy_at = Instant::now();
            timers.opened_then = self.opened;
        } else if self
            .drain_after
            .is_some_and(|d| timers.busy_at.elapsed() >= d)
        {
            log::debug!("connection idle; asking the server to drain it");
            self.ask_drain();
        }
    }

    fn ask_drain(&mut self) {
        if self.drain_sent {
            return;
        }
        self.drain_sent = self.outbox.send(&Frame::Drain).is_ok();
    }

    fn on_socket(
        &mut self,
        next: Option<Result<ws::Frame, awc::error::WsProtocolError>>,
    ) -> Result<(), ConnError> {
        let item = match next {
            None => return Err(ConnError::Lost("server closed the connection".into())),
            Some(Err(e)) => return Err(ConnError::Protocol(e.to_string())),
            Some(Ok(item)) => item,
        };
        match item {
            ws::Frame::Binary(msg) => self.on_message(msg),
            ws::Frame::Ping(payload) => {
                let _ = self.ctl_tx.send(ws::Message::Pong(payload));
                Ok(())
            }
            ws::Frame::Pong(_) => Ok(()),
            ws::Frame::Close(_) if self.drain_sent => Err(ConnError::Drained),
            ws::Frame::Close(reason) => {
                let why = close_reason(reason);
                Err(ConnError::Lost(format!("server closed the tunnel: {why}")))
            }
            ws::Frame::Continuation(item) => {
                let whole = self
                    .fragments
                    .push(item)
                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
                match whole {
                    Some(Reassembled::Message(msg)) => self.on_message(msg),
                    Some(Reassembled::Data(frame)) => self.dispatch(frame),
                    None => Ok(()),
                }
            }
            ws::Frame::Text(_) => Err(ConnError::Protocol(
                "only binary messages are allowed".into(),
            )),
        }
    }

    /// Dispatches each frame of one whole WebSocket message, in order.
    fn on_message(&mut self, msg: Bytes) -> Result<(), ConnError> {
        let frames = batch::unpack(msg).map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.dispatch_frames(frames)
    }

    /// Dispatches the frames of one message, in order.
    pub(super) fn dispatch_frames(&mut self, frames: batch::Unpacked) -> Result<(), ConnError> {
        let protocol = |e: DecodeError| ConnError::Protocol(e.to_string());
        for bytes in frames {
            let frame = Frame::decode(bytes.map_err(protocol)?).map_err(protocol)?;
            self.dispatch(frame)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, frame: Frame) -> Result<(), ConnError> {
        match frame {
            Frame::RequestHead { stream, head } => self.open(stream, head),
            Frame::Data { stream, data } => {
                let mut streams = self.streams.borrow_mut();
                let Some(entry) = streams.get_mut(&stream) else {
                    return Ok(());
                };
                if !entry.recv_credit.take(data.len()) {
                    if let Some(e) = streams.remove(&stream) {
                        drop(streams);
                        self.reset(stream, e, "data beyond the granted window");
                    }
                    return Ok(());
                }
                if let Some(tx) = &entry.body_tx {
                    let _ = tx.send(BodyEvent::Data(data));
                }
                Ok(())
            }
            Frame::End { stream } => {
                if let Some(entry) = self.streams.borrow_mut().get_mut(&stream) {
                    if let Some(tx) = entry.body_tx.take() {
                        let _ = tx.send(BodyEvent::End);
                    }
                }
                Ok(())
            }
            Frame::Reset {
                stream,
                code,
                reason,
            } => {
                let entry = self.streams.borrow_mut().remove(&stream);
                if let Some(e) = entry {
                    log::debug!("stream {stream} reset by server: {code}");
                    if let Some(tx) = e.body_tx {
                        let _ = tx.send(BodyEvent::Reset(code, reason));
                    }
                    e.send_credit.close();
                    e.task.abort();
                }
                Ok(())
            }
            Frame::Window { stream, increment } => {
                if let Some(e) = self.streams.borrow().get(&stream) {
                    e.send_credit.grant(increment);
                }
                Ok(())
            }
            other => Err(ConnError::Protocol(format!(
                "unexpected {} frame from the server on stream {}",
                other.name(),
                other.stream()
            ))),
        }
    }

    /// Resets the streams whose local service has not answered within the
    /// local timeout (the server answers the caller 504), and frees the
    /// stream table once no stream is open.
    fn sweep(&mut self) {
        let limit = self.ctx.local_timeout;
        let late: Vec<u32> = self
            .streams
            .borrow()
            .iter()
            .filter(|(_, e)| !e.answered.get() && e.opened.elapsed() >= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let entry = self.streams.borrow_mut().remove(&id);
            if let Some(e) = entry {
                log::debug!("stream {id}: no local response head in time");
                e.task.abort();
                e.send_credit.close();
                let _ = self.outbox.send(&Frame::Reset {
                    stream: id,
                    code: ResetCode::LocalTimeout,
                    reason: format!(
                        "the local service sent no response head within {} s",
                        limit.as_secs()
                    ),
                });
            }
        }
        stream_map::release_if_empty(&mut self.streams.borrow_mut());
    }

    fn open(&mut self, id: u32, head: RequestHead) -> Result<(), ConnError> {
        if self.streams.borrow().contains_key(&id) {
            return Err(ConnError::Protocol(format!("stream {id} opened twice")));
        }
        self.opened += 1;
        let recv_credit = RecvCredit::new();
        let send_credit = SendCredit::new();
        let (body, body_tx) = if head.end_stream {
            (None, None)
        } else {
            let (tx, rx) = queue::queue();
            let body = RecvBody::new(
                id,
                rx,
                self.outbox.clone(),
                recv_credit.clone(),
                CancelOnDrop::none(),
            );
            (Some(body), Some(tx))
        };
        let streams = self.streams.clone();
        let answered = Answered::default();
        let task = actix_rt::spawn({
            let ctx = self.ctx.clone();
            let outbox = self.outbox.clone();
            let credit = send_credit.clone();
            let answered = answered.clone();
            // Boxed: the forwarding future is large, and the task would
            // otherwise copy all of it on every move while being spawned.
            let fut = Box::pin(forward(id, head, body, ctx, outbox, credit, answered));
            async move {
                fut.await;
                streams.borrow_mut().remove(&id);
            }
        });
        self.streams.borrow_mut().insert(
            id,
            StreamEntry {
                opened: Instant::now(),
                answered,
                body_tx,
                recv_credit,
                send_credit,
                task: task.abort_handle(),
            },
        );
        let open = self.streams.borrow().len();
        self.role.stream_opened(open);
        Ok(())
    }

    fn reset(&self, id: u32, entry: StreamEntry, why: &str) {
        log::debug!("stream {id}: {why}");
        let _ = self.outbox.send(&Frame::Reset {
            stream: id,
            code: ResetCode::ProtocolError,
            reason: why.to_owned(),
        });
        entry.send_credit.close();
        entry.task.abort();
    }
}
