//! WebSocket passthrough and long-lived streams, end to end: a real
//! WebSocket server behind the client and a real WebSocket caller.

mod support;

use std::time::{Duration, Instant};

use actix_ws::Item;
use awc::ws::{self, CloseCode, CloseReason};
use bytes::Bytes;
use futures_util::{future::join_all, SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

async fn open(t: &Tunnel, path: &str) -> (awc::ClientResponse, Socket) {
    caller()
        .ws(format!("ws://{}{path}", t.server.addr()))
        .set_header("host", HOST)
        .max_frame_size(4 << 20)
        .connect()
        .await
        .expect("websocket through the tunnel")
}

/// The next data frame, skipping nothing: pings and pongs are returned too.
async fn next(socket: &mut Socket) -> ws::Frame {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .expect("socket open")
        .expect("valid frame")
}

async fn socket_closes(socket: &mut Socket, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(ws::Frame::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends a WebSocket upgrade for `path` over a plain TCP connection (so
/// that nothing rewrites it) and reads the answer until it contains
/// `until`.
async fn raw_upgrade(t: &Tunnel, path: &str, until: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains(until) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[actix_rt::test]
async fn echoes_text_binary_large_fragmented_and_pings() {
    let t = Tunnel::start().await;
    let (resp, mut s) = open(&t, "/ws").await;
    assert_eq!(resp.status().as_u16(), 101);

    s.send(ws::Message::Text("hello".into())).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Text(Bytes::from_static(b"hello"))
    );

    let bin = Bytes::from(pattern(1000));
    s.send(ws::Message::Binary(bin.clone())).await.unwrap();
    assert_eq!(next(&mut s).await, ws::Frame::Binary(bin));

    let big = Bytes::from(pattern(1 << 20));
    s.send(ws::Message::Binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut s).await, ws::Frame::Binary(big));

    let parts = || {
        [
            Item::FirstText(Bytes::from_static(b"frag")),
            Item::Continue(Bytes::from_static(b"men")),
            Item::Last(Bytes::from_static(b"ted")),
        ]
    };
    for p in parts() {
        s.send(ws::Message::Continuation(p)).await.unwrap();
    }
    for p in parts() {
        assert_eq!(next(&mut s).await, ws::Frame::Continuation(p));
    }

    s.send(ws::Message::Ping(Bytes::from_static(b"p1")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Pong(Bytes::from_static(b"p1"))
    );
}

#[actix_rt::test]
async fn subprotocol_is_negotiated_end_to_end() {
    let t = Tunnel::start().await;
    // awc checks Sec-WebSocket-Accept against the key it sent, so a passing
    // handshake also proves the key and the answer crossed unchanged.
    let (resp, _s) = caller()
        .ws(format!("ws://{}/ws", t.server.addr()))
        .set_header("host", HOST)
        .protocols(["superchat", "chat"])
        .connect()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "chat"
    );
}

#[actix_rt::test]
async fn refusals_and_other_upgrades_come_back_as_answers() {
    let t = Tunnel::start().await;
    let text = raw_upgrade(&t, "/ws-refuse", "forbidden here").await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("x-refused: yes"), "{text}");

    let mut s = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = s.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    assert!(
        head.contains("only WebSocket upgrades are relayed"),
        "{head}"
    );
    assert!(!head.contains("connection: upgrade"), "{head}");
}

/// An upgrade the local service never answers is bounded by the same local
/// timeout as any request: the upstream answers after 5 s, the tunnel gives
/// up after 1 and the caller gets 504.
#[actix_rt::test]
async fn an_unanswered_upgrade_is_504_after_the_local_timeout() {
    let t = Tunnel::start_with_client(server_config(""), "local_timeout_secs = 1\n").await;
    let text = raw_upgrade(&t, "/sleep/5000", "\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
}

#[actix_rt::test]
async fn close_codes_cross_both_ways_and_streams_are_freed() {
    let t = Tunnel::start().await;
    let (_, mut s) = open(&t, "/ws").await;
    s.send(ws::Message::Close(Some(CloseReason {
        code: CloseCode::Other(4001),
        description: Some("caller done".into()),
    })))
    .await
    .unwrap();
    match next(&mut s).await {
        ws::Frame::Close(Some(r)) => {
            assert_eq!(r.code, CloseCode::Other(4001));
            assert_eq!(r.description.as_deref(), Some("caller done"));
        }
        other => panic!("expected a close, got {other:?}"),
    }
    drop(s);

    let (_, mut s) = open(&t, "/ws").await;
    s.send(ws::Message::Text("close-me".into())).await.unwrap();
    match next(&mut s).await {
        ws::Frame::Close(Some(r)) => {
            assert_eq!(r.code, CloseCode::Other(4002));
            assert_eq!(r.description.as_deref(), Some("asked to"));
        }
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(socket_closes(&mut s, Duration::from_secs(5)).await);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await,
        "upgraded streams left in the session's table"
    );
}

#[actix_rt::test]
async fn a_hundred_concurrent_websockets_each_get_their_own_echo() {
    let t = Tunnel::start().await;
    let sockets = (0..100).map(|i| {
        let t = &t;
        async move {
            let (_, mut s) = open(t, "/ws").await;
            for round in 0..3 {
                let msg = format!("socket {i} round {round}");
                s.send(ws::Message::Text(msg.clone().into())).await.unwrap();
                assert_eq!(next(&mut s).await, ws::Frame::Text(Bytes::from(msg)));
            }
            let payload = Bytes::from(vec![i as u8; 10_000]);
            s.send(ws::Message::Binary(payload.clone())).await.unwrap();
            assert_eq!(next(&mut s).await, ws::Frame::Binary(payload));
            s.send(ws::Message::Close(None)).await.unwrap();
            i
        }
    });
    let done = join_all(sockets).await;
    assert_eq!(done.len(), 100);
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.server_streams().await == 0
        })
        .await
    );
}

#[actix_rt::test]
async fn server_sent_events_arrive_one_by_one() {
    let t = Tunnel::start().await;
    let mut resp = t.get("/sse").send().await.unwrap();
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    for i in 0..3 {
        if i > 0 {
            // The local service sends event i only now: it cannot have been
            // delivered together with the ones before.
            t.upstream.control.release.notify_one();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.next())
            .await
            .expect("event in time")
            .expect("an event")
            .unwrap();
        assert_eq!(chunk, Bytes::from(format!("data: event {i}\n\n")));
    }
    assert!(resp.next().await.is_none());
}

#[actix_rt::test]
async fn idle_timeout_cuts_silent_streams_but_not_busy_ones() {
    let t = Tunnel::start_with(server_config(
        "idle_timeout_secs = 2\nrequest_timeout_secs = 1",
    ))
    .await;
    // A WebSocket with traffic every 300 ms outlives the idle period and the
    // request timeout several times over: only the wait for the head is
    // limited by the latter.
    let (_, mut s) = open(&t, "/ws").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4500) {
        s.send(ws::Message::Ping(Bytes::from_static(b"k")))
            .await
            .unwrap();
        assert_eq!(
            next(&mut s).await,
            ws::Frame::Pong(Bytes::from_static(b"k"))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.send(ws::Message::Text("still here".into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Text(Bytes::from_static(b"still here"))
    );

    // An event stream that goes silent is closed after the idle timeout.
    let mut resp = t.get("/sse-quiet").send().await.unwrap();
    let first = resp.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b": hi\n\n");
    let cut = tokio::time::timeout(Duration::from_secs(10), resp.next()).await;
    assert!(matches!(cut, Ok(None) | Ok(Some(Err(_)))), "{cut:?}");

    // And a silent WebSocket too.
    let (_, mut quiet) = open(&t, "/ws").await;
    assert!(socket_closes(&mut quiet, Duration::from_secs(10)).await);
}

#[actix_rt::test]
async fn server_shutdown_closes_open_websockets() {
    // An open WebSocket is a stream in flight: the drain lets it run until
    // its timeout, then closes it.
    let t = Tunnel::start_with(server_config("drain_timeout_secs = 1")).await;
    let (_, mut s) = open(&t, "/ws").await;
    s.send(ws::Message::Text("x".into())).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Text(Bytes::from_static(b"x"))
    );
    let stop = Instant::now();
    t.server.stop().await;
    assert!(socket_closes(&mut s, Duration::from_secs(5)).await);
    println!(
        "caller's socket closed {:?} after shutdown began",
        stop.elapsed()
    );
}

#[actix_rt::test]
async fn either_end_closing_closes_the_other() {
    let t = Tunnel::start().await;
    let sockets = || {
        t.upstream
            .control
            .sockets
            .load(std::sync::atomic::Ordering::SeqCst)
    };

    // The caller vanishes without a close frame: the local socket closes.
    let (_, mut s) = open(&t, "/ws").await;
    s.send(ws::Message::Text("x".into())).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Text(Bytes::from_static(b"x"))
    );
    assert_eq!(sockets(), 1);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || async { sockets() == 0 }).await,
        "local socket still open after the caller left"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await
    );

    // The local service goes away: the caller's socket closes.
    let (_, mut s) = open(&t, "/ws").await;
    s.send(ws::Message::Text("y".into())).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        ws::Frame::Text(Bytes::from_static(b"y"))
    );
    t.upstream.stop().await;
    assert!(socket_closes(&mut s, Duration::from_secs(5)).await);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await
    );
}
