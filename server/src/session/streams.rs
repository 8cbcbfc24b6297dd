//! A session's table of streams in flight: what the client's frames do to
//! them, and the sweep that enforces their time limits.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use burrow_common::{
    connection::streams::{self, Expiry},
    flow::{Activity, BodyEvent, RecvCredit, SendCredit},
    protocol::{ResponseHead, CONNECTION_STREAM},
    queue::Sender,
    Frame, ResetCode,
};
use bytes::Bytes;

use super::TunnelSession;
use crate::messages::OpenStream;

/// The time limits a session enforces on its streams.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Longest wait for a stream's response head.
    pub request_timeout: Duration,
    /// Longest time an answered stream may move no bytes.
    pub idle_timeout: Duration,
    /// How often the client is pinged; three of these without a word from
    /// it and the session is closed.
    pub ping_interval: Duration,
}

pub(super) struct StreamEntry {
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
        self.answered
    }

    fn idle_for(&self) -> Duration {
        self.activity.idle_for()
    }
}

impl StreamEntry {
    pub(super) fn new(msg: OpenStream) -> Self {
        StreamEntry {
            events: msg.events,
            answered: false,
            opened: Instant::now(),
            recv_credit: msg.recv_credit,
            send_credit: msg.send_credit,
            activity: msg.activity,
        }
    }

    /// Ends the stream for its opener with `event` (a reset or an expiry).
    fn end(self, event: BodyEvent) {
        self.send_credit.close();
        let _ = self.events.send(event);
    }

    /// The session is going away: dropping the sender tells the opener the
    /// tunnel is gone.
    pub(super) fn abandon(self) {
        self.send_credit.close();
    }
}

impl TunnelSession {
    pub(super) fn on_head(&mut self, stream: u32, head: ResponseHead) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        if is_interim(head.status) && !entry.answered {
            // Only `100 Continue` means anything to the opener; other
            // interim answers are not relayed.
            if head.status == 100 {
                let _ = entry.events.send(BodyEvent::Continue);
            }
            return;
        }
        if entry.answered {
            if let Some(e) = self.streams.remove(stream) {
                let why = "second response head".to_owned();
                self.reset(stream, e, ResetCode::ProtocolError, why);
            }
            return;
        }
        entry.answered = true;
        let end_stream = head.end_stream;
        let _ = entry.events.send(BodyEvent::Head(Box::new(head)));
        if end_stream {
            if let Some(e) = self.streams.remove(stream) {
                e.send_credit.close();
            }
        }
    }

    pub(super) fn on_data(&mut self, stream: u32, data: Bytes) {
        if self.streams.get(stream).is_some_and(|e| !e.answered) {
            if let Some(e) = self.streams.remove(stream) {
                let why = "data before the response head".to_owned();
                self.reset(stream, e, ResetCode::ProtocolError, why);
            }
            return;
        }
        match self.streams.data(stream, data.len()) {
            Ok(Some(entry)) => {
                entry.activity.touch();
                // A closed receiver means the caller left; its cancel is on the way.
                let _ = entry.events.send(BodyEvent::Data(data));
            }
            Ok(None) => {}
            Err(e) => {
                let why = "data beyond the granted window".to_owned();
                self.reset(stream, e, ResetCode::ProtocolError, why);
            }
        }
    }

    pub(super) fn on_end(&mut self, stream: u32) {
        if let Some(e) = self.streams.remove(stream) {
            e.send_credit.close();
            if !e.answered {
                let reason = "body ended before the response head".to_owned();
                self.reset(stream, e, ResetCode::ProtocolError, reason);
            } else {
                let _ = e.events.send(BodyEvent::End);
            }
        }
    }

    pub(super) fn on_reset(&mut self, stream: u32, code: ResetCode, reason: String) {
        if let Some(e) = self.streams.remove(stream) {
            e.end(BodyEvent::Reset(code, reason));
        }
    }

    pub(super) fn on_window(&mut self, stream: u32, increment: u32) {
        if stream == CONNECTION_STREAM {
            self.opening.add(increment);
        } else if let Some(e) = self.streams.window(stream, increment) {
            e.activity.touch();
        }
    }

    /// The opener gave up on a stream: reset it on the client's side.
    pub(super) fn cancel(&mut self, id: u32, code: ResetCode) {
        if let Some(e) = self.streams.remove(id) {
            self.reset(id, e, code, String::new());
        }
    }

    /// Fails a stream locally and tells the client.
    pub(super) fn reset(
        &mut self,
        stream: u32,
        entry: StreamEntry,
        code: ResetCode,
        reason: String,
    ) {
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
        let _ = self.link.outbox().send(&Frame::Reset {
            stream,
            code,
            reason,
        });
        entry.end(event);
    }

    /// Resets streams past a limit: still waiting for their head after the
    /// request timeout (the opener answers 504), or answered and moving no
    /// bytes for the idle timeout. An idle session frees its stream table.
    pub(super) fn sweep(&mut self) {
        let SessionLimits {
            request_timeout,
            idle_timeout,
            ..
        } = self.shared.limits;
        let limits = streams::Limits {
            head: request_timeout,
            idle: Some(idle_timeout),
        };
        for (id, e, why) in self.streams.expired(limits) {
            match why {
                Expiry::NoHead => {
                    let why = format!("no response head within {} s", request_timeout.as_secs());
                    self.reset_with(id, e, ResetCode::Cancel, why, BodyEvent::Expired);
                }
                Expiry::Idle => {
                    let why = format!("no traffic for {} s", idle_timeout.as_secs());
                    self.reset(id, e, ResetCode::Cancel, why);
                }
            }
        }
    }
}

/// An interim answer: a 1xx status other than 101 (which switches
/// protocols and is final).
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}
