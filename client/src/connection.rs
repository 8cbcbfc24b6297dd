//! One WebSocket connection to the server: handshake, frame dispatch, and
//! the writer that owns the socket's sending half.

use std::{cell::RefCell, rc::Rc, sync::Arc, time::Duration};

use awc::ws;
use burrow_common::{
    batch,
    flow::{BodyEvent, CancelOnDrop, RecvBody, RecvCredit, SendCredit},
    fragments::{Fragments, Whole},
    outbox::{data_fragments, Outgoing},
    protocol::{RequestHead, TunnelRequest, MAX_MESSAGE_SIZE},
    queue,
    stream_map::{self, StreamMap},
    DecodeError, Frame, Hello, HelloAck, Outbox, ResetCode, PROTOCOL_VERSION,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender},
    task::AbortHandle,
};

use crate::{
    config::ClientConfig,
    forward::{forward, Answered, ForwardContext},
    net::http_client,
};

/// Longest wait for the server's answer to the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which the server is considered gone. The server pings
/// every 15 s, so a healthy connection is never this quiet.
pub const SERVER_SILENCE: Duration = Duration::from_secs(45);
/// Shortest period of a connection's local-timeout sweep.
const SWEEP_MIN: Duration = Duration::from_millis(100);
/// Longest period of a connection's local-timeout sweep.
const SWEEP_MAX: Duration = Duration::from_secs(5);

/// How a connection ended.
#[derive(Debug, Error)]
pub enum ConnError {
    /// The server could not be reached or refused the WebSocket upgrade.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// Server URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server refused the handshake or a tunnel.
    #[error("server refused the tunnel: {reason}")]
    Refused {
        /// The server's reasons.
        reason: String,
        /// Whether the refusal may clear by itself.
        retry: bool,
    },
    /// The connection was up and has been lost.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection landed on a server worker another connection of the
    /// client already covers; it is opened again to land on another.
    #[error("server worker {0} is already covered; reconnecting")]
    Misplaced(u32),
    /// The connection carried no request for a while; the server closed it
    /// on the client's request once nothing was left on it.
    #[error("closed an idle connection")]
    Drained,
}

type Ws = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// What a connection reports to the client it belongs to.
pub trait Observer {
    /// The server accepted the tunnels on the connection; `ack` is its
    /// answer (the connections it suggests, the worker serving this one).
    /// `false` asks for the connection to be dropped and opened again (it
    /// landed on a server worker another connection already covers).
    fn registered(&self, ack: &HelloAck) -> bool;
    /// The registered connection has ended.
    fn ended(&self);
    /// How long the connection may carry no request before it asks the
    /// server to drain and close it; `None` (the default) never.
    fn drain_when_idle(&self) -> Option<Duration> {
        None
    }
    /// The server opened a stream on the connection, which now has
    /// `_open` streams open.
    fn stream_opened(&self, _open: usize) {}
}

/// Shortest period of the idle check.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(100);

/// Connects, registers the tunnels as client `instance` and serves streams
/// until the connection ends, telling `observer` when it is registered and
/// when it ends. Never returns `Ok`: a connection always ends with a reason.
pub async fn serve(
    config: &ClientConfig,
    ctx: Rc<ForwardContext>,
    instance: &str,
    observer: Rc<dyn Observer>,
) -> Result<(), ConnError> {
    let (_, framed) = http_client(Duration::from_secs(10))
        .ws(config.server.as_str())
        .max_frame_size(MAX_MESSAGE_SIZE)
        .connect()
        .await
        .map_err(|e| ConnError::Connect {
            url: config.server.clone(),
            detail: e.to_string(),
        })?;
    let (mut sink, mut stream) = framed.split();
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        tunnels: config
            .tunnels
            .iter()
            .map(|t| TunnelRequest {
                host: t.host.clone(),
                token: t.token.expose().to_owned(),
            })
            .collect(),
        instance: Some(instance.to_owned()),
    });
    let hello = hello
        .encode()
        .map_err(|e| ConnError::Protocol(e.to_string()))?;
    sink.send(ws::Message::Binary(hello))
        .await
        .map_err(|e| ConnError::Lost(e.to_string()))?;
    let (ack, early) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_ack(&mut stream))
        .await
        .map_err(|_| ConnError::Lost("no handshake answer in time".into()))??;
    let ack = check_ack(ack)?;
    if !observer.registered(&ack) {
        return Err(ConnError::Misplaced(ack.worker.unwrap_or_default()));
    }

    let (outbox, out_rx) = Outbox::new();
    let (ctl_tx, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = actix_rt::spawn(write_loop(sink, out_rx, ctl_rx));
    // Only a server that says it honours `Drain` is asked to drain.
    let drain_after = if ack.drain {
        observer.drain_when_idle()
    } else {
        None
    };
    let mut conn = Dispatcher {
        outbox,
        ctl_tx,
        streams: Rc::new(RefCell::new(StreamMap::default())),
        ctx,
        fragments: Fragments::default(),
        observer,
        opened: 0,
        drain_after,
        drain_sent: false,
    };
    let result = match conn.dispatch_frames(early) {
        Ok(()) => conn.read_loop(&mut stream).await,
        Err(e) => Err(e),
    };
    for (_, s) in conn.streams.borrow_mut().drain() {
        s.task.abort();
        s.send_credit.close();
    }
    writer.abort();
    conn.observer.ended();
    result
}

/// The handshake answer, and the frames that shared its message (the
/// server may batch the first requests with it).
async fn read_ack(
    stream: &mut futures_util::stream::SplitStream<Ws>,
) -> Result<(HelloAck, batch::Unpacked), ConnError> {
    while let Some(item) = stream.next().await {
        match item.map_err(|e| ConnError::Lost(e.to_string()))? {
            ws::Frame::Binary(msg) => {
                let protocol = |e: DecodeError| ConnError::Protocol(e.to_string());
                let mut frames = batch::unpack(msg).map_err(protocol)?;
                let first = frames.next().unwrap_or(Err(DecodeError::TooShort(0)));
                return match Frame::decode(first.map_err(protocol)?) {
                    Ok(Frame::HelloAck(ack)) => Ok((ack, frames)),
                    Ok(other) => Err(ConnError::Protocol(format!(
                        "expected the handshake answer, got a {} frame",
                        other.name()
                    ))),
                    Err(e) => Err(protocol(e)),
                };
            }
            ws::Frame::Close(reason) => {
                let why = close_reason(reason);
                return Err(ConnError::Lost(format!(
                    "server closed the connection: {why}"
                )));
            }
            _ => {}
        }
    }
    Err(ConnError::Lost(
        "server closed the connection during the handshake".into(),
    ))
}

/// The text of a close frame's reason, for logs.
fn close_reason(reason: Option<ws::CloseReason>) -> String {
    reason
        .and_then(|r| r.description)
        .unwrap_or_else(|| "no reason given".into())
}

fn check_ack(ack: HelloAck) -> Result<HelloAck, ConnError> {
    if let Some(error) = ack.error {
        return Err(ConnError::Refused {
            reason: error,
            retry: false,
        });
    }
    let refused: Vec<_> = ack.tunnels.iter().filter(|v| !v.accepted).collect();
    if refused.is_empty() {
        return Ok(ack);
    }
    let reason = refused
        .iter()
        .map(|v| {
            let why = v.reason.as_deref().unwrap_or("refused");
            format!("{}: {why}", v.host)
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(ConnError::Refused {
        reason,
        retry: refused.iter().all(|v| v.retry),
    })
}

/// The only writer of the socket. Frames are fed as they come and flushed
/// when the queue runs dry, so bursts share system calls.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, ws::Message>,
    mut frames: queue::Receiver<Outgoing>,
    mut control: UnboundedReceiver<ws::Message>,
) {
    let mut packed = Vec::new();
    let mut messages = Vec::new();
    loop {
        tokio::select! {
            biased;
            m = control.recv() => match m {
                Some(m) => messages.push(m),
                None => break,
            },
            f = frames.recv() => match f {
                // Everything queued goes out together; small frames share
                // a message (see `batch`).
                Some(first) => {
                    batch::pack(std::iter::once(first).chain(frames.take_all()), &mut packed);
                    for out in packed.drain(..) {
                        match out {
                            Outgoing::Frame(msg) => messages.push(ws::Message::Binary(msg)),
                            Outgoing::Data { stream, pieces } => messages.extend(
                                data_fragments(stream, pieces).map(ws::Message::Continuation),
                            ),
                        }
                    }
                }
                None => break,
            },
        }
        for msg in messages.drain(..) {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

struct StreamEntry {
    /// When the server opened the stream.
    opened: tokio::time::Instant,
    /// Set by the forwarding task once the response head is queued.
    answered: Answered,
    body_tx: Option<queue::Sender<BodyEvent>>,
    recv_credit: Arc<RecvCredit>,
    send_credit: Arc<SendCredit>,
    task: AbortHandle,
}

type StreamTable = Rc<RefCell<StreamMap<StreamEntry>>>;

struct Dispatcher {
    outbox: Outbox,
    ctl_tx: UnboundedSender<ws::Message>,
    streams: StreamTable,
    ctx: Rc<ForwardContext>,
    /// The binary message arriving in fragments, if any.
    fragments: Fragments,
    observer: Rc<dyn Observer>,
    /// Streams opened so far (tells the idle check that requests came and
    /// went between two of its ticks).
    opened: u64,
    /// How long the connection may carry no request before it drains.
    drain_after: Option<Duration>,
    /// A `Drain` frame has been queued: the server will close the
    /// connection once nothing is left on it.
    drain_sent: bool,
}

impl Dispatcher {
    async fn read_loop(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<Ws>,
    ) -> Result<(), ConnError> {
        // One timer for the connection, pushed forward lazily: a timer per
        // message would cost a wheel insertion and removal each time.
        let silence = tokio::time::sleep(SERVER_SILENCE);
        tokio::pin!(silence);
        let mut heard = tokio::time::Instant::now();
        // Local response timeouts are enforced to within a quarter of their
        // length by one timer per connection, armed while streams are open.
        let every = (self.ctx.local_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut sweep = tokio::time::interval(every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The idle check: a connection that may drain looks a few times
        // per idle period whether it carried a request since.
        let idle_every = self
            .drain_after
            .map_or(SERVER_SILENCE, |d| (d / 4).max(IDLE_CHECK_MIN));
        let mut idle_check = tokio::time::interval(idle_every);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut busy_at = tokio::time::Instant::now();
        let mut opened_then = self.opened;
        loop {
            let open = !self.streams.borrow().is_empty();
            let may_drain = self.drain_after.is_some() && !self.drain_sent;
            let next = tokio::select! {
                biased;
                next = stream.next() => next,
                _ = sweep.tick(), if open => {
                    self.sweep();
                    continue;
                }
                _ = idle_check.tick(), if may_drain => {
                    if open || self.opened != opened_then {
                        busy_at = tokio::time::Instant::now();
                        opened_then = self.opened;
                    } else if self.drain_after.is_some_and(|d| busy_at.elapsed() >= d) {
                        log::debug!("connection idle; asking the server to drain it");
                        self.drain_sent = self.outbox.send(&Frame::Drain).is_ok();
                    }
                    continue;
                }
                () = &mut silence => {
                    if heard.elapsed() >= SERVER_SILENCE {
                        return Err(ConnError::Lost("server silent for too long".into()));
                    }
                    silence.as_mut().reset(heard + SERVER_SILENCE);
                    continue;
                }
            };
            heard = tokio::time::Instant::now();
            let item = match next {
                None => return Err(ConnError::Lost("server closed the connection".into())),
                Some(Err(e)) => return Err(ConnError::Protocol(e.to_string())),
                Some(Ok(item)) => item,
            };
            match item {
                ws::Frame::Binary(msg) => self.on_message(msg)?,
                ws::Frame::Ping(payload) => {
                    let _ = self.ctl_tx.send(ws::Message::Pong(payload));
                }
                ws::Frame::Pong(_) => {}
                ws::Frame::Close(_) if self.drain_sent => return Err(ConnError::Drained),
                ws::Frame::Close(reason) => {
                    let why = close_reason(reason);
                    return Err(ConnError::Lost(format!("server closed the tunnel: {why}")));
                }
                ws::Frame::Continuation(item) => {
                    let whole = self
                        .fragments
                        .push(item)
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                    match whole {
                        Some(Whole::Message(msg)) => self.on_message(msg)?,
                        Some(Whole::Data(frame)) => self.dispatch(frame)?,
                        None => {}
                    }
                }
                ws::Frame::Text(_) => {
                    return Err(ConnError::Protocol(
                        "only binary messages are allowed".into(),
                    ))
                }
            }
        }
    }

    /// Dispatches each frame of one whole WebSocket message, in order.
    fn on_message(&mut self, msg: Bytes) -> Result<(), ConnError> {
        let frames = batch::unpack(msg).map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.dispatch_frames(frames)
    }

    /// Dispatches the frames of one message, in order.
    fn dispatch_frames(&mut self, frames: batch::Unpacked) -> Result<(), ConnError> {
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
                opened: tokio::time::Instant::now(),
                answered,
                body_tx,
                recv_credit,
                send_credit,
                task: task.abort_handle(),
            },
        );
        let open = self.streams.borrow().len();
        self.observer.stream_opened(open);
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
