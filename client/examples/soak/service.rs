//! The local service the tunnel serves, run as a child process (`soak
//! upstream --port P`) so it can be killed and started again. Every answer
//! is derived from the request's path, so the caller knows what to expect.

use std::{net::TcpListener, time::Duration};

use actix_web::{body::SizedStream, web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::AggregatedMessage;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};

use crate::{pattern, Res};

/// Largest WebSocket message the echo takes (and gives back) whole.
pub const WS_MAX: usize = 2 << 20;

/// Pieces of a streamed body.
const PIECE: u64 = 64 * 1024;

/// Serves on 127.0.0.1:`port` until killed.
pub fn run(port: u16) -> Res<()> {
    // std's bind sets SO_REUSEADDR, so a new incarnation gets the port back
    // while the old one's connections linger in TIME_WAIT.
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    actix_rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route("/sized/{seed}/{len}", web::get().to(sized))
                .route("/chunked/{seed}/{len}", web::get().to(chunked))
                .route("/sse/{seed}/{n}", web::get().to(events))
                .route("/slow/{seed}/{ms}", web::get().to(slow))
                .route("/upload", web::post().to(upload))
                .route("/ws", web::get().to(echo))
        })
        .workers(2)
        .listen(listener)
        .map_err(|e| e.to_string())?
        .run()
        .await
        .map_err(|e| e.to_string())
    })
}

/// Bytes `0..len` of `seed`'s body, in pieces whose sizes `seed` picks too
/// (chunked answers then arrive in uneven chunks).
fn body(seed: u64, len: u64, uneven: bool) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let mut sizes = pattern::Rng::new(seed);
    stream::unfold(0u64, move |at| {
        let step = if uneven { sizes.range(1, PIECE) } else { PIECE };
        let take = step.min(len - at);
        let piece = (take > 0).then(|| {
            let bytes = Bytes::from(pattern::bytes(seed, at, take as usize));
            (Ok(bytes), at + take)
        });
        std::future::ready(piece)
    })
}

/// A body with Content-Length.
async fn sized(path: web::Path<(u64, u64)>) -> HttpResponse {
    let (seed, len) = path.into_inner();
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(SizedStream::new(len, body(seed, len, false)))
}

/// The same body without Content-Length: chunked on the wire.
async fn chunked(path: web::Path<(u64, u64)>) -> HttpResponse {
    let (seed, len) = path.into_inner();
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(body(seed, len, true))
}

/// `n` server-sent events 100 ms apart, then the end of the stream.
async fn events(path: web::Path<(u64, u64)>) -> HttpResponse {
    let (seed, n) = path.into_inner();
    let events = stream::unfold(0u64, move |i| async move {
        if i == n {
            return None;
        }
        if i > 0 {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let event = Bytes::from(pattern::sse_event(seed, i));
        Some((Ok::<_, actix_web::Error>(event), i + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(events)
}

/// A small body, after `ms` milliseconds of thought.
async fn slow(path: web::Path<(u64, u64)>) -> HttpResponse {
    let (seed, ms) = path.into_inner();
    actix_rt::time::sleep(Duration::from_millis(ms)).await;
    HttpResponse::Ok().body(pattern::bytes(seed, 0, 1024))
}

/// The length and digest of the body received, so the caller can tell it
/// arrived whole and unchanged.
async fn upload(mut payload: web::Payload) -> HttpResponse {
    let (mut len, mut digest) = (0u64, pattern::FNV_START);
    while let Some(piece) = payload.next().await {
        match piece {
            Ok(piece) => {
                len += piece.len() as u64;
                digest = pattern::fnv(digest, &piece);
            }
            // A cut upload gets no receipt: its caller must see a failure.
            Err(e) => return HttpResponse::BadRequest().body(format!("upload cut: {e}")),
        }
    }
    HttpResponse::Ok().body(pattern::receipt(len, digest))
}

/// WebSocket echo of whole messages: fragments are joined first, so what
/// comes back is each message as the caller meant it.
async fn echo(req: HttpRequest, payload: web::Payload) -> actix_web::Result<HttpResponse> {
    let (answer, mut session, messages) = actix_ws::handle(&req, payload)?;
    let mut messages = messages
        .max_frame_size(WS_MAX)
        .aggregate_continuations()
        .max_continuation_size(WS_MAX);
    actix_rt::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let sent = match message {
                AggregatedMessage::Text(text) => session.text(text).await,
                AggregatedMessage::Binary(data) => session.binary(data).await,
                AggregatedMessage::Ping(data) => session.pong(&data).await,
                AggregatedMessage::Pong(_) => Ok(()),
                AggregatedMessage::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(answer)
}
