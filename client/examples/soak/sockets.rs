//! The WebSocket exchange: open a socket through the tunnel, send a few
//! messages of random sizes and types, check each echo, close.

use actix_codec::Framed;
use actix_http::ws::Item;
use awc::{
    error::WsClientError,
    ws::{CloseCode, CloseReason, Codec, Frame, Message},
    BoxedSocket, Client,
};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};

use crate::{
    pattern::{self, Rng},
    service::WS_MAX,
    traffic::{compare, Problem},
    HOST,
};

type Socket = Framed<BoxedSocket, Codec>;

/// A whole message as it arrived: text or not, and its bytes.
type Whole = (bool, BytesMut);

pub async fn session(client: &Client, url: &str, seed: u64, rng: &mut Rng) -> Result<(), Problem> {
    let (_, mut socket) = client
        .ws(url)
        .set_header("host", HOST)
        .max_frame_size(WS_MAX)
        .connect()
        .await
        .map_err(refused)?;
    for i in 0..rng.range(1, 12) {
        // Mostly small messages, some large enough to be split in frames.
        let len = if rng.one_in(8) {
            rng.range(64 << 10, 1 << 20)
        } else {
            rng.range(0, 16 << 10)
        } as usize;
        let part = seed ^ i.wrapping_mul(0x9e37_79b9);
        let text = rng.one_in(2);
        let (message, expect) = if text {
            let t = pattern::text(part, len);
            let b = Bytes::from(t.clone());
            (Message::Text(t.into()), b)
        } else {
            let b = Bytes::from(pattern::bytes(part, 0, len));
            (Message::Binary(b.clone()), b)
        };
        socket
            .send(message)
            .await
            .map_err(|e| Problem::error("websocket send", e))?;
        let (was_text, got) = receive(&mut socket).await?;
        if was_text != text {
            return Err(Problem::wrong(format!(
                "message {i}: sent as {}, echoed as the other kind",
                if text { "text" } else { "binary" }
            )));
        }
        compare(&got, &expect).map_err(|p| Problem::wrong(format!("message {i}: {}", p.detail)))?;
    }
    close(&mut socket).await
}

/// A refused upgrade, by its status when one came.
fn refused(e: WsClientError) -> Problem {
    match e {
        WsClientError::InvalidResponseStatus(status) => {
            Problem::status(status.as_u16(), "websocket upgrade refused".into())
        }
        other => Problem::error("websocket connect", other),
    }
}

/// The next whole message, joining fragments; pings are answered.
async fn receive(socket: &mut Socket) -> Result<Whole, Problem> {
    let mut parts: Option<Whole> = None;
    loop {
        let frame = match socket.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(Problem::error("websocket receive", e)),
            None => return Err(Problem::other("websocket cut", "ended mid-exchange".into())),
        };
        match (frame, parts.as_mut()) {
            (Frame::Text(b), None) => return Ok((true, BytesMut::from(&b[..]))),
            (Frame::Binary(b), None) => return Ok((false, BytesMut::from(&b[..]))),
            (Frame::Continuation(Item::FirstText(b)), None) => {
                parts = Some((true, BytesMut::from(&b[..])))
            }
            (Frame::Continuation(Item::FirstBinary(b)), None) => {
                parts = Some((false, BytesMut::from(&b[..])))
            }
            (Frame::Continuation(Item::Continue(b)), Some((_, so_far))) => {
                so_far.extend_from_slice(&b)
            }
            (Frame::Continuation(Item::Last(b)), Some((_, so_far))) => {
                so_far.extend_from_slice(&b);
                return parts.ok_or_else(|| Problem::wrong("lost fragments".into()));
            }
            (Frame::Ping(p), _) => socket
                .send(Message::Pong(p))
                .await
                .map_err(|e| Problem::error("websocket pong", e))?,
            (Frame::Pong(_), _) => {}
            (Frame::Close(reason), _) => {
                return Err(Problem::other(
                    "websocket closed",
                    format!("closed by the other end mid-exchange: {reason:?}"),
                ))
            }
            (frame, _) => {
                return Err(Problem::wrong(format!(
                    "{} out of order (fragments so far: {})",
                    describe(&frame),
                    parts.is_some()
                )))
            }
        }
    }
}

/// A normal close, answered by the echo's own close frame.
async fn close(socket: &mut Socket) -> Result<(), Problem> {
    let reason = CloseReason {
        code: CloseCode::Normal,
        description: None,
    };
    socket
        .send(Message::Close(Some(reason)))
        .await
        .map_err(|e| Problem::error("websocket close", e))?;
    loop {
        match socket.next().await {
            Some(Ok(Frame::Close(_))) => return Ok(()),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            Some(Ok(frame)) => {
                return Err(Problem::wrong(format!(
                    "{} after the close",
                    describe(&frame)
                )))
            }
            Some(Err(e)) => return Err(Problem::error("websocket close", e)),
            None => {
                return Err(Problem::other(
                    "websocket cut",
                    "ended before the close was answered".into(),
                ))
            }
        }
    }
}

/// A frame in a few words (its bytes would flood the report).
fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Text(b) => format!("a text frame of {} bytes", b.len()),
        Frame::Binary(b) => format!("a binary frame of {} bytes", b.len()),
        Frame::Continuation(Item::FirstText(b) | Item::FirstBinary(b)) => {
            format!("a first fragment of {} bytes", b.len())
        }
        Frame::Continuation(Item::Continue(b) | Item::Last(b)) => {
            format!("a later fragment of {} bytes", b.len())
        }
        Frame::Ping(_) | Frame::Pong(_) => "a ping or pong".into(),
        Frame::Close(reason) => format!("a close ({reason:?})"),
    }
}
