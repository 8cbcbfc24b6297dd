//! What a session is told from outside its own socket ([`ToSession`]):
//! named-field structs that name no actor type, so the proxy and the
//! registry reach sessions without depending on the session module.

use std::sync::Arc;

use actix::Message;
use burrow_common::{
    flow::{Activity, BodyEvent, RecvCredit, SendCredit},
    queue::Sender,
    ResetCode,
};
use tokio::sync::oneshot;

/// Everything a session is told from outside its own socket.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToSession {
    /// Put a stream in the session's table for one public request.
    Open(OpenStream),
    /// The opener no longer wants a stream.
    Cancel(CancelStream),
    /// Close the session's WebSocket and stop, telling the client why
    /// (server shutdown, an operator's disconnect, a host no longer
    /// configured): its hosts are freed at once.
    Close(&'static str),
    /// The server is draining: tell the client, take no new stream, and
    /// close once the open ones are done.
    GoAway,
    /// Report how many streams are open (introspection for tests and
    /// metrics).
    CountStreams(oneshot::Sender<usize>),
}

/// A stream for one public request; the opener queues the `RequestHead`
/// frame itself right after. The answer arrives on `events` (the response
/// head, then the body, or a reset); if the session is gone, `events` is
/// dropped unanswered.
pub struct OpenStream {
    /// The stream's id, from [`SessionHandle::next_stream_id`](crate::handle::SessionHandle::next_stream_id).
    pub id: u32,
    /// Receives the response head, then the body (or a reset).
    pub events: Sender<BodyEvent>,
    /// Accounting of what the client may send on this stream.
    pub recv_credit: Arc<RecvCredit>,
    /// Credit for sending the request body, fed by `Window` frames.
    pub send_credit: Arc<SendCredit>,
    /// When the stream last moved bytes (for the idle timeout).
    pub activity: Arc<Activity>,
}

/// The opener no longer wants a stream (caller gone, timeout, bad upload).
pub struct CancelStream {
    /// The stream.
    pub id: u32,
    /// Reset code sent to the client if the stream is still open.
    pub code: ResetCode,
}
