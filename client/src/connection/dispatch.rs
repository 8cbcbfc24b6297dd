//! A connection's reading side: the read loop, frame dispatch and the
//! table of streams in flight.

use std::{cell::RefCell, rc::Rc, sync::Arc, time::Duration};

use burrow_common::{
    batch,
    connection::{
        streams::{self, Streams},
        Frames, Heartbeat, Link,
    },
    flow::{BodyEvent, CancelOnDrop, OpeningCredit, PathState, RecvBody, RecvCredit, SendCredit},
    protocol::{RequestHead, CONNECTION_STREAM},
    queue, DecodeError, Frame, Outbox, ResetCode,
};
use tokio::{task::AbortHandle, time::Instant};

use super::{ConnError, Role};
use crate::{
    forward::{forward, ForwardContext},
    reply::Answered,
};

pub(super) struct StreamEntry {
    /// When the server opened the stream.
    opened: Instant,
    /// Set by the forwarding task once the response head is queued.
    answered: Answered,
    body_tx: Option<queue::Sender<BodyEvent>>,
    recv_credit: Arc<RecvCredit>,
    send_credit: Arc<SendCredit>,
    task: AbortHandle,
}

impl streams::Entry for StreamEntry {
    fn recv_credit(&self) -> &RecvCredit {
        &self.recv_credit
    }

    fn send_credit(&self) -> &SendCredit {
        &self.send_credit
    }

    fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    fn answered(&self) -> bool {
        self.answered.get()
    }
}

pub(super) type StreamTable = Rc<RefCell<Streams<StreamEntry>>>;

/// One connection's reading side and its streams.
pub(super) struct Dispatcher {
    /// The connection below its streams: the frame queue, the path, the
    /// message being reassembled.
    pub(super) link: Link,
    pub(super) streams: StreamTable,
    /// Credit promised to the request bodies of streams to come.
    pub(super) opening: OpeningCredit,
    pub(super) ctx: Rc<ForwardContext>,
    pub(super) role: Rc<dyn Role>,
    /// Streams opened so far (tells the idle check that requests came and
    /// went between two of its ticks).
    pub(super) opened: u64,
    /// How long the connection may carry no request before it drains.
    pub(super) drain_after: Option<Duration>,
    /// The server honours `Drain` on this connection.
    pub(super) can_drain: bool,
    /// A `Drain` frame has been queued: the server will close the
    /// connection once nothing is left on it.
    pub(super) drain_sent: bool,
    /// Silence after which the server is taken for gone.
    pub(super) silence: Duration,
    /// The server said it is shutting down (`GoAway`): it sends no new
    /// stream here and closes the connection once the open ones are done.
    pub(super) server_leaving: bool,
    /// The socket beneath, fitted to the path as it is measured.
    pub(super) socket: super::TunnelSocket,
}

impl Dispatcher {
    pub(super) fn new(
        outbox: Outbox,
        ctx: Rc<ForwardContext>,
        role: Rc<dyn Role>,
        drain_after: Option<Duration>,
        can_drain: bool,
        silence: Duration,
        path: Arc<PathState>,
    ) -> Self {
        Dispatcher {
            // The server sends the heartbeat; each of its pings is answered
            // with one of ours, which measures the path for request bodies.
            opening: OpeningCredit::new(path.clone(), ctx.body_windows.clone()),
            link: Link::new(outbox, path, Heartbeat::Follows),
            streams: Rc::new(RefCell::new(Streams::default())),
            ctx,
            role,
            opened: 0,
            drain_after,
            can_drain,
            drain_sent: false,
            silence,
            server_leaving: false,
            socket: super::TunnelSocket::default(),
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

    /// Dispatches the frames that shared the handshake answer's message.
    pub(super) fn dispatch_early(&mut self, frames: batch::Unpacked) -> Result<(), ConnError> {
        let protocol = |e: DecodeError| ConnError::Protocol(e.to_string());
        for bytes in frames {
            let frame = Frame::decode(bytes.map_err(protocol)?).map_err(protocol)?;
            self.dispatch(frame)?;
        }
        self.promise();
        Ok(())
    }

    /// Dispatches the frames of one message, in order.
    pub(super) fn dispatch_frames(&mut self, frames: Frames) -> Result<(), ConnError> {
        for frame in frames {
            let frame = frame.map_err(|e| ConnError::Protocol(e.to_string()))?;
            self.dispatch(frame)?;
        }
        self.promise();
        Ok(())
    }

    /// Promises the server's next request bodies the credit their path
    /// needs, as far as the budgets allow (after every message, and when
    /// the bodies' widest window grew on another connection).
    pub(super) fn promise(&mut self) {
        if let Some(increment) = self.opening.top_up() {
            let _ = self.link.outbox().send(&Frame::Window {
                stream: CONNECTION_STREAM,
                increment,
            });
        }
    }

    pub(super) fn dispatch(&mut self, frame: Frame) -> Result<(), ConnError> {
        match frame {
            Frame::RequestHead { stream, head } => self.open(stream, head),
            Frame::Data { stream, data } => {
                let mut streams = self.streams.borrow_mut();
                match streams.data(stream, data.len()) {
                    Ok(Some(entry)) => {
                        if let Some(tx) = &entry.body_tx {
                            let _ = tx.send(BodyEvent::Data(data));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        drop(streams);
                        self.reset(stream, e, "data beyond the granted window");
                    }
                }
                Ok(())
            }
            Frame::End { stream } => {
                if let Some(entry) = self.streams.borrow_mut().get_mut(stream) {
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
                self.on_reset(stream, code, reason);
                Ok(())
            }
            Frame::Window { stream, increment } if stream != CONNECTION_STREAM => {
                self.streams.borrow().window(stream, increment);
                Ok(())
            }
            Frame::GoAway => {
                self.on_go_away();
                Ok(())
            }
            other => Err(ConnError::Protocol(format!(
                "unexpected {} frame from the server on stream {}",
                other.name(),
                other.stream()
            ))),
        }
    }

    /// The server reset a stream: its forwarding ends.
    fn on_reset(&mut self, stream: u32, code: ResetCode, reason: String) {
        let entry = self.streams.borrow_mut().remove(stream);
        if let Some(e) = entry {
            log::debug!("stream {stream} reset by server: {code}");
            if let Some(tx) = e.body_tx {
                let _ = tx.send(BodyEvent::Reset(code, reason));
            }
            e.send_credit.close();
            e.task.abort();
        }
    }

    /// The server is shutting down: it opens nothing new here, and closes
    /// the connection once the streams open on it are done.
    fn on_go_away(&mut self) {
        let open = self.streams.borrow().len();
        if !self.server_leaving {
            log::info!("the server is shutting down; finishing {open} request(s) in flight here");
        }
        self.server_leaving = true;
    }

    /// Resets the streams whose local service has not answered within the
    /// local timeout (the server answers the caller 504), and frees the
    /// stream table once no stream is open.
    pub(super) fn sweep(&mut self) {
        let limit = self.ctx.local_timeout;
        let limits = streams::Limits {
            head: limit,
            idle: None,
        };
        let late = self.streams.borrow_mut().expired(limits);
        for (id, e, _) in late {
            log::debug!("stream {id}: no local response head in time");
            e.task.abort();
            e.send_credit.close();
            let _ = self.link.outbox().send(&Frame::Reset {
                stream: id,
                code: ResetCode::LocalTimeout,
                reason: format!(
                    "the local service sent no response head within {} s",
                    limit.as_secs()
                ),
            });
        }
    }

    fn open(&mut self, id: u32, head: RequestHead) -> Result<(), ConnError> {
        if self.streams.borrow().contains(id) {
            return Err(ConnError::Protocol(format!("stream {id} opened twice")));
        }
        self.opened += 1;
        let recv_credit = RecvCredit::new();
        let send_credit = SendCredit::new();
        let (body, body_tx) = if head.end_stream {
            (None, None)
        } else {
            let window = self
                .opening
                .draw(head.credit)
                .map_err(|e| ConnError::Protocol(format!("stream {id}: {e}")))?;
            recv_credit.give(head.credit);
            let (tx, rx) = queue::queue();
            let body = RecvBody::new(
                id,
                rx,
                self.link.outbox().clone(),
                recv_credit.clone(),
                CancelOnDrop::none(),
            )
            .with_window(window);
            (Some(body), Some(tx))
        };
        let streams = self.streams.clone();
        let answered = Answered::default();
        let task = actix_rt::spawn({
            let ctx = self.ctx.clone();
            let outbox = self.link.outbox().clone();
            let credit = send_credit.clone();
            let answered = answered.clone();
            let fut = forward(id, head, body, ctx, outbox, credit, answered);
            async move {
                fut.await;
                streams.borrow_mut().remove(id);
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
        let _ = self.link.outbox().send(&Frame::Reset {
            stream: id,
            code: ResetCode::ProtocolError,
            reason: why.to_owned(),
        });
        entry.send_credit.close();
        entry.task.abort();
    }
}
