//! The server against a hand-driven WebSocket peer: handshake refusals and
//! protocol violations get clear errors, never a panic or a hang.

use std::{net::TcpListener, path::Path, time::Duration};

use actix_ws::Item;
use awc::ws;
use burrow_common::{
    batch,
    fragments::{Fragments, Piece, Reassembled},
    frame,
    outbox::Outgoing,
    protocol::{ResponseHead, TunnelRequest},
    Frame, Hello, HelloAck, ResetCode, PROTOCOL_VERSION,
};
use burrow_server::ServerConfig;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

type Ws = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

fn start() -> burrow_server::RunningServer {
    start_with_workers(1)
}

/// A server with `workers` worker threads serving the test host.
fn start_with_workers(workers: usize) -> burrow_server::RunningServer {
    let config = ServerConfig::from_str(
        &format!(
            "listen = \"127.0.0.1:0\"\nworkers = {workers}\nreconnect_grace_secs = 0\n\
             [[hosts]]\nhost = \"demo.localhost\"\ntoken = \"tok\"\n"
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    burrow_server::start(vec![burrow_server::PublicListener::plain(listener)], config).unwrap()
}

async fn connect(server: &burrow_server::RunningServer) -> Ws {
    let (_, ws) = awc::Client::new()
        .ws(format!("ws://{}/_burrow/connect", server.addr()))
        .max_frame_size(burrow_common::protocol::MAX_MESSAGE_SIZE)
        .connect()
        .await
        .expect("websocket");
    ws
}

async fn send(ws: &mut Ws, frame: Frame) {
    ws.send(ws::Message::Binary(frame.encode().unwrap()))
        .await
        .unwrap();
}

thread_local! {
    /// Frames of a batch not yet returned by `next` (each test has its
    /// own thread and one connection).
    static PENDING: std::cell::RefCell<std::collections::VecDeque<Frame>> = Default::default();
    /// The message arriving in fragments, if any.
    static FRAGMENTS: std::cell::RefCell<Fragments> = Default::default();
}

/// The first frame of a message; the rest wait in `PENDING`.
fn first_of(msg: Bytes) -> Frame {
    let mut frames = batch::unpack(msg)
        .expect("valid message")
        .map(|f| Frame::decode(f.expect("valid batch")).expect("valid frame"));
    let first = frames.next().expect("at least one frame");
    PENDING.with_borrow_mut(|p| p.extend(frames));
    first
}

/// A fragment in common's terms.
fn piece(item: Item) -> Piece {
    match item {
        Item::FirstBinary(b) => Piece::FirstBinary(b),
        Item::FirstText(b) => Piece::FirstText(b),
        Item::Continue(b) => Piece::Continue(b),
        Item::Last(b) => Piece::Last(b),
    }
}

/// The next protocol frame, or the close reason if the server closed.
async fn next(ws: &mut Ws) -> Result<Frame, Option<ws::CloseReason>> {
    if let Some(frame) = PENDING.with_borrow_mut(|p| p.pop_front()) {
        return Ok(frame);
    }
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("server answered in time");
        match item {
            Some(Ok(ws::Frame::Binary(b))) => return Ok(first_of(b)),
            // Large data frames come as header and payload fragments.
            // Large data frames come as header and payload fragments.
            Some(Ok(ws::Frame::Continuation(item))) => {
                match FRAGMENTS
                    .with_borrow_mut(|f| f.push(piece(item)))
                    .expect("valid fragments")
                {
                    Some(Reassembled::Message(b)) => return Ok(first_of(b)),
                    Some(Reassembled::Data(frame)) => return Ok(frame),
                    None => continue,
                }
            }
            Some(Ok(ws::Frame::Close(reason))) => return Err(reason),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn register_as(ws: &mut Ws, token: &str, instance: Option<&str>) -> HelloAck {
    send(
        ws,
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            tunnels: vec![TunnelRequest {
                host: "demo.localhost".into(),
                token: token.into(),
                access: Default::default(),
            }],
            instance: instance.map(str::to_owned),
        }),
    )
    .await;
    match next(ws).await {
        Ok(Frame::HelloAck(ack)) => ack,
        other => panic!("expected hello-ack, got {other:?}"),
    }
}

/// A public GET of `path` for the tunnel's host, on its own task: the
/// status and body the caller got.
fn public_get(
    server: &burrow_server::RunningServer,
    path: &str,
) -> actix_rt::task::JoinHandle<(u16, Bytes)> {
    let url = format!("http://{}{path}", server.addr());
    actix_rt::spawn(async move {
        let mut r = awc::Client::new()
            .get(url)
            .insert_header(("host", "demo.localhost"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.body().await.unwrap())
    })
}

/// The next frame, which must open a stream: its id and head.
async fn next_request(ws: &mut Ws) -> (u32, burrow_common::RequestHead) {
    match next(ws).await {
        Ok(Frame::RequestHead { stream, head }) => (stream, head),
        other => panic!("expected a request head, got {other:?}"),
    }
}

/// The reason the server gave for closing the session with a protocol error.
async fn protocol_close(ws: &mut Ws) -> String {
    let reason = next(ws)
        .await
        .expect_err("connection closed")
        .expect("a close reason");
    assert_eq!(reason.code, ws::CloseCode::Protocol);
    reason.description.unwrap_or_default()
}

#[actix_rt::test]
async fn newer_protocol_version_is_refused_with_advice() {
    let server = start();
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION + 1,
            tunnels: vec![],
            instance: None,
        }),
    )
    .await;
    let ack = match next(&mut ws).await {
        Ok(Frame::HelloAck(ack)) => ack,
        other => panic!("expected hello-ack, got {other:?}"),
    };
    let error = ack.error.expect("an error");
    assert!(
        error.contains("not supported") && error.contains("upgrade the server"),
        "{error}"
    );
    assert!(
        next(&mut ws).await.is_err(),
        "connection closes after the refusal"
    );
}

#[actix_rt::test]
async fn a_hello_asking_for_too_many_tunnels_is_refused() {
    let server = start();
    let mut ws = connect(&server).await;
    let tunnel = |i: usize| TunnelRequest {
        host: format!("t{i}.localhost"),
        token: "tok".into(),
        access: Default::default(),
    };
    send(
        &mut ws,
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            tunnels: (0..257).map(tunnel).collect(),
            instance: None,
        }),
    )
    .await;
    match next(&mut ws).await {
        Ok(Frame::HelloAck(ack)) => {
            let error = ack.error.expect("an error");
            assert!(error.contains("at most 256 tunnels"), "{error}");
        }
        other => panic!("expected hello-ack, got {other:?}"),
    }
}

#[actix_rt::test]
async fn an_address_guessing_tokens_is_slowed_down() {
    let server = start();
    for _ in 0..burrow_server::throttle::MAX_FAILURES {
        let mut ws = connect(&server).await;
        let ack = register_as(&mut ws, "guess", None).await;
        assert!(ack.tunnels[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("invalid token")));
    }
    // Even the right token waits now, and is told for how long.
    let mut ws = connect(&server).await;
    let v = register_as(&mut ws, "tok", None).await.tunnels[0].clone();
    assert!(!v.accepted && v.retry, "{v:?}");
    let reason = v.reason.unwrap_or_default();
    assert!(
        reason.contains("too many refused registrations"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn wrong_token_and_unknown_host_are_refused_finally() {
    let server = start();
    let mut ws = connect(&server).await;
    let ack = register_as(&mut ws, "wrong", None).await;
    let v = &ack.tunnels[0];
    assert!(!v.accepted && !v.retry);
    assert_eq!(
        v.reason.as_deref(),
        Some("invalid token for host demo.localhost")
    );
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            tunnels: vec![TunnelRequest {
                host: "elsewhere.localhost".into(),
                token: "tok".into(),
                access: Default::default(),
            }],
            instance: None,
        }),
    )
    .await;
    match next(&mut ws).await {
        Ok(Frame::HelloAck(ack)) => {
            assert_eq!(
                ack.tunnels[0].reason.as_deref(),
                Some("host elsewhere.localhost is not configured on this server")
            )
        }
        other => panic!("expected hello-ack, got {other:?}"),
    }
}

#[actix_rt::test]
async fn unknown_frame_kind_closes_with_a_protocol_error() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    ws.send(ws::Message::Binary(Bytes::from_static(&[0x7f, 0, 0, 0, 1])))
        .await
        .unwrap();
    let text = protocol_close(&mut ws).await;
    assert!(text.contains("unknown frame kind 0x7f"), "{text}");
}

#[actix_rt::test]
async fn a_malformed_frame_closes_only_its_own_session() {
    let server = start();
    let mut bad = connect_as(&server, Some("instance-a")).await;
    let mut good = connect_as(&server, Some("instance-a")).await;
    wait_sessions(&server, 2).await;
    // A request head cut short.
    bad.send(ws::Message::Binary(Bytes::from_static(&[
        3, 0, 0, 0, 1, 0xff,
    ])))
    .await
    .unwrap();
    let text = protocol_close(&mut bad).await;
    assert!(!text.is_empty());
    wait_sessions(&server, 1).await;
    assert_served_by(&server, &mut good, "/still-served").await;
}

#[actix_rt::test]
async fn text_messages_close_with_a_protocol_error() {
    let server = start();
    let mut ws = connect(&server).await;
    ws.send(ws::Message::Text("hello".into())).await.unwrap();
    let text = protocol_close(&mut ws).await;
    assert!(text.contains("only binary"), "{text}");
}

#[actix_rt::test]
async fn stream_violations_reset_the_stream_and_fail_the_caller() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let call = public_get(&server, "/x");
    let (stream, head) = next_request(&mut ws).await;
    assert_eq!(head.method, "GET");
    assert_eq!(head.uri, "/x");
    assert!(head.end_stream);
    // Credit for a stream nobody opened is ignored; the connection stays up.
    send(
        &mut ws,
        Frame::Window {
            stream: 9999,
            increment: 10,
        },
    )
    .await;
    // Body bytes before the response head break the stream's rules.
    send(
        &mut ws,
        Frame::Data {
            stream,
            data: Bytes::from_static(b"early"),
        },
    )
    .await;
    match next(&mut ws).await {
        Ok(Frame::Reset {
            stream: s,
            code,
            reason,
        }) => {
            assert_eq!(s, stream);
            assert_eq!(code, ResetCode::ProtocolError);
            assert!(reason.contains("before the response head"), "{reason}");
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    let (status, _) = call.await.unwrap();
    assert_eq!(status, 502);

    // The session still serves the next request.
    let call = public_get(&server, "/y");
    let (stream, _) = next_request(&mut ws).await;
    send(
        &mut ws,
        Frame::ResponseHead {
            stream,
            head: ResponseHead {
                status: 201,
                headers: vec![(
                    Bytes::from_static(b"content-length"),
                    Bytes::from_static(b"2"),
                )],
                end_stream: false,
                body: None,
            },
        },
    )
    .await;
    send(
        &mut ws,
        Frame::Data {
            stream,
            data: Bytes::from_static(b"ok"),
        },
    )
    .await;
    send(&mut ws, Frame::End { stream }).await;
    let (status, body) = call.await.unwrap();
    assert_eq!((status, &body[..]), (201, &b"ok"[..]));
}

#[actix_rt::test]
async fn a_peer_that_overruns_its_credit_is_reset() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    // A caller that never reads: the server can drain only what the
    // sockets buffer, so the peer's flood must run past its window.
    let mut caller = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    caller
        .write_all(b"GET /flood HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
        .await
        .unwrap();
    let (stream, _) = next_request(&mut ws).await;
    send(
        &mut ws,
        Frame::ResponseHead {
            stream,
            head: ResponseHead {
                status: 200,
                headers: vec![],
                end_stream: false,
                body: None,
            },
        },
    )
    .await;
    let chunk = Bytes::from(vec![7u8; burrow_common::protocol::MAX_DATA_PAYLOAD]);
    let sender = async {
        // 64 MiB without waiting for credit; stops once the server resets.
        for _ in 0..1024 {
            let frame = Frame::Data {
                stream,
                data: chunk.clone(),
            };
            if ws
                .feed(ws::Message::Binary(frame.encode().unwrap()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = ws.flush().await;
    };
    tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("flood sent");
    loop {
        match next(&mut ws).await {
            Ok(Frame::Reset {
                stream: s,
                code,
                reason,
            }) if s == stream => {
                assert_eq!(code, ResetCode::ProtocolError);
                assert!(reason.contains("beyond the granted window"), "{reason}");
                break;
            }
            Ok(Frame::Window { .. }) => continue,
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    drop(caller);
}

#[actix_rt::test]
async fn a_batch_of_answers_is_handled_frame_by_frame_and_a_bad_batch_closes() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let calls: Vec<_> = ["/a", "/b", "/c"]
        .into_iter()
        .map(|path| public_get(&server, path))
        .collect();
    let mut opened = Vec::new();
    while opened.len() < 3 {
        let (stream, head) = next_request(&mut ws).await;
        opened.push((stream, head.uri));
    }
    // All three answers in one message, each its path back as the body: the
    // first inline, the second as Data and End, the third with an empty body.
    let answer = |stream: u32, body: Option<Bytes>, end: bool| Frame::ResponseHead {
        stream,
        head: burrow_common::ResponseHead {
            status: 200,
            headers: Vec::new(),
            end_stream: end,
            body,
        },
    };
    let (a, b, c) = (&opened[0], &opened[1], &opened[2]);
    let frames = [
        answer(a.0, Some(Bytes::from(a.1.clone())), true),
        answer(b.0, None, false),
        Frame::Data {
            stream: b.0,
            data: Bytes::from(b.1.clone()),
        },
        Frame::End { stream: b.0 },
        answer(c.0, None, true),
    ];
    let mut messages = Vec::new();
    let encoded = frames.iter().map(|f| Outgoing::Frame(f.encode().unwrap()));
    batch::pack(encoded, &mut messages);
    assert_eq!(messages.len(), 1, "small frames share one message");
    for m in messages {
        let Outgoing::Frame(m) = m else {
            panic!("small frames are whole messages")
        };
        ws.send(ws::Message::Binary(m)).await.unwrap();
    }
    // Each call gets its own path back, except the one answered empty.
    for (call, path) in calls.into_iter().zip(["/a", "/b", "/c"]) {
        let expect = if path == c.1 {
            Bytes::new()
        } else {
            Bytes::from(path)
        };
        assert_eq!(call.await.unwrap(), (200, expect), "{path}");
    }

    // A batch whose length runs past its end is a protocol error.
    let bad = Bytes::from_static(&[batch::KIND_BATCH, 0, 0, 0, 0, 0, 0, 0, 99, 8]);
    ws.send(ws::Message::Binary(bad)).await.unwrap();
    let text = protocol_close(&mut ws).await;
    assert!(text.contains("batch"), "{text}");
}

#[actix_rt::test]
async fn a_fragmented_message_is_one_message() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let call = public_get(&server, "/frag");
    let (stream, _) = next_request(&mut ws).await;
    let answer = Frame::ResponseHead {
        stream,
        head: burrow_common::ResponseHead {
            status: 200,
            headers: Vec::new(),
            end_stream: true,
            body: Some(Bytes::from_static(b"in pieces")),
        },
    }
    .encode()
    .unwrap();
    // Cut anywhere, even inside the frame header.
    let pieces = [
        actix_ws::Item::FirstBinary(answer.slice(..3)),
        actix_ws::Item::Continue(answer.slice(3..10)),
        actix_ws::Item::Continue(Bytes::new()),
        actix_ws::Item::Last(answer.slice(10..)),
    ];
    for piece in pieces {
        ws.send(ws::Message::Continuation(piece)).await.unwrap();
    }
    let (status, body) = call.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"in pieces"[..]));

    // Pieces adding up to more than a message may hold close the session.
    let big = Bytes::from(vec![0u8; 200 << 10]);
    ws.send(ws::Message::Continuation(actix_ws::Item::FirstBinary(
        big.clone(),
    )))
    .await
    .unwrap();
    ws.send(ws::Message::Continuation(actix_ws::Item::Last(big)))
        .await
        .unwrap();
    let text = protocol_close(&mut ws).await;
    assert!(text.contains("limit"), "reason names the limit: {text}");
}

#[actix_rt::test]
async fn a_data_frame_in_pieces_streams_to_the_caller_and_an_oversized_one_closes() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let call = public_get(&server, "/pieces");
    let (stream, _) = next_request(&mut ws).await;
    let head = burrow_common::ResponseHead {
        status: 200,
        headers: Vec::new(),
        end_stream: false,
        body: None,
    };
    send(&mut ws, Frame::ResponseHead { stream, head }).await;
    // One Data frame: its header alone, then its payload in pieces.
    let pieces = [
        Item::FirstBinary(frame::data_header(stream)),
        Item::Continue(Bytes::from_static(b"first ")),
        Item::Continue(Bytes::new()),
        Item::Continue(Bytes::from_static(b"second ")),
        Item::Last(Bytes::from_static(b"third")),
    ];
    for piece in pieces {
        ws.send(ws::Message::Continuation(piece)).await.unwrap();
    }
    send(&mut ws, Frame::End { stream }).await;
    let (status, body) = call.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"first second third"[..]));

    // Pieces adding up to more than one Data frame may carry close the session.
    let most = Bytes::from(vec![0u8; burrow_common::protocol::MAX_DATA_PAYLOAD]);
    for piece in [
        Item::FirstBinary(frame::data_header(stream)),
        Item::Continue(most),
        Item::Last(Bytes::from_static(b"x")),
    ] {
        ws.send(ws::Message::Continuation(piece)).await.unwrap();
    }
    let text = protocol_close(&mut ws).await;
    assert!(
        text.contains("payload limit"),
        "reason names the limit: {text}"
    );
}

/// Answers stream `id` with 200 and `body`, in one frame.
async fn answer(ws: &mut Ws, id: u32, body: &'static str) {
    let head = ResponseHead {
        status: 200,
        headers: vec![(
            Bytes::from_static(b"content-length"),
            Bytes::from(body.len().to_string()),
        )],
        end_stream: true,
        body: Some(Bytes::from_static(body.as_bytes())),
    };
    send(ws, Frame::ResponseHead { stream: id, head }).await;
}

/// A connection registered (as client `instance`, if given), its tunnel
/// accepted, and the server's answer.
async fn registered_as(
    server: &burrow_server::RunningServer,
    instance: Option<&str>,
) -> (Ws, HelloAck) {
    let mut ws = connect(server).await;
    let ack = register_as(&mut ws, "tok", instance).await;
    assert!(ack.tunnels[0].accepted, "{instance:?}: {ack:?}");
    (ws, ack)
}

/// A connection registered (as client `instance`, if given), its tunnel
/// accepted.
async fn connect_as(server: &burrow_server::RunningServer, instance: Option<&str>) -> Ws {
    registered_as(server, instance).await.0
}

/// A public GET of `path` reaches `ws`, whose answer reaches the caller.
async fn assert_served_by(server: &burrow_server::RunningServer, ws: &mut Ws, path: &'static str) {
    let caller = public_get(server, path);
    let (id, head) = next_request(ws).await;
    assert_eq!(head.uri, path);
    answer(ws, id, path).await;
    assert_eq!(
        caller.await.unwrap(),
        (200, Bytes::from_static(path.as_bytes()))
    );
}

/// Waits (polling, 10 s at most) until the registry holds `n` sessions for
/// the test host.
async fn wait_sessions(server: &burrow_server::RunningServer, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sessions(server).await != n {
        assert!(tokio::time::Instant::now() < deadline, "never {n} sessions");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sessions the registry holds for the test host.
async fn sessions(server: &burrow_server::RunningServer) -> usize {
    let found = server.registry().lookup("demo.localhost").await;
    found.map_or(0, |h| h.sessions.len())
}

#[actix_rt::test]
async fn connections_of_one_instance_share_a_host_and_others_wait() {
    let server = start();
    let (mut first, ack) = registered_as(&server, Some("instance-a")).await;
    assert_eq!(ack.connections, Some(1), "one worker: one connection");
    let mut second = connect_as(&server, Some("instance-a")).await;
    assert_eq!(sessions(&server).await, 2);
    for other in [Some("instance-b"), None] {
        let mut ws = connect(&server).await;
        let v = register_as(&mut ws, "tok", other).await.tunnels[0].clone();
        assert!(!v.accepted && v.retry, "{other:?}: {v:?}");
        assert_eq!(
            v.reason.as_deref(),
            Some("host demo.localhost is already served by another client")
        );
    }

    // One worker holds both sessions: requests go to the first ready one.
    assert_served_by(&server, &mut first, "/one").await;

    // The first connection gone, the second serves the host alone.
    first.close().await.unwrap();
    drop(first);
    wait_sessions(&server, 1).await;
    assert_served_by(&server, &mut second, "/two").await;

    // With the instance's last connection gone, another client takes the host.
    second.close().await.unwrap();
    drop(second);
    wait_sessions(&server, 0).await;
    connect_as(&server, Some("instance-b")).await;
}

/// Answers every request that arrives on `ws` until `callers` requests in
/// all were answered on either connection (counted in `done`); returns how
/// many this connection answered. Reads whole messages itself: two
/// connections share this test's thread.
async fn serve_until(ws: &mut Ws, done: &std::cell::Cell<usize>, callers: usize) -> usize {
    serve_and_drain(ws, done, callers, None).await.0
}

/// A second connection of client "pool", on the worker its first one is
/// not on (accepted connections take turns between workers; retried until
/// it lands there).
async fn join_on_other_worker(server: &burrow_server::RunningServer) -> Ws {
    loop {
        let mut ws = connect_as(server, Some("pool")).await;
        let found = server
            .registry()
            .lookup("demo.localhost")
            .await
            .expect("host held");
        if found.sessions[0].worker != found.sessions[1].worker {
            return ws;
        }
        ws.close().await.unwrap();
        wait_sessions(server, 1).await;
    }
}

#[actix_rt::test]
async fn a_joining_connection_takes_its_workers_requests() {
    let server = start_with_workers(2);
    let (mut first, ack) = registered_as(&server, Some("pool")).await;
    assert_eq!(ack.connections, Some(2));
    // Both workers serve a request through the only session, and keep it.
    let done = std::cell::Cell::new(0);
    let callers: Vec<_> = (0..4).map(|_| public_get(&server, "/")).collect();
    assert_eq!(serve_until(&mut first, &done, 4).await, 4);
    for c in callers {
        assert_eq!(c.await.unwrap().0, 200);
    }

    // A second connection of the client, on the other worker.
    let mut second = join_on_other_worker(&server).await;

    // Its worker no longer hands requests to the first connection.
    let done = std::cell::Cell::new(0);
    let callers: Vec<_> = (0..16).map(|_| public_get(&server, "/")).collect();
    let (a, b) = futures_util::future::join(
        serve_until(&mut first, &done, 16),
        serve_until(&mut second, &done, 16),
    )
    .await;
    for c in callers {
        assert_eq!(c.await.unwrap().0, 200);
    }
    assert_eq!(a + b, 16);
    assert!(
        a > 0 && b > 0,
        "each connection serves its worker: {a} and {b}"
    );
}

#[actix_rt::test]
async fn a_draining_connection_finishes_its_streams_then_closes() {
    let server = start();
    let (mut first, ack) = registered_as(&server, Some("pool")).await;
    assert!(ack.drain, "the server says it honours drains");
    let mut second = connect_as(&server, Some("pool")).await;

    // A request in flight on the first connection when it asks to drain.
    let held = public_get(&server, "/held");
    let (id, head) = next_request(&mut first).await;
    assert_eq!(head.uri, "/held");
    send(&mut first, Frame::Drain).await;

    // New requests go to the other connection from now on...
    wait_sessions(&server, 1).await;
    assert_served_by(&server, &mut second, "/after-1").await;
    assert_served_by(&server, &mut second, "/after-2").await;
    // ...while the draining one still answers what it holds.
    answer(&mut first, id, "held").await;
    assert_eq!(held.await.unwrap(), (200, Bytes::from_static(b"held")));

    // Nothing left on it: the server closes it, normally.
    let reason = next(&mut first)
        .await
        .expect_err("closed once drained")
        .expect("a close reason");
    assert_eq!(reason.code, ws::CloseCode::Normal);
    assert_eq!(reason.description.as_deref(), Some("drained"));
    assert_served_by(&server, &mut second, "/after-3").await;

    // The last connection may drain too: the host is then free.
    send(&mut second, Frame::Drain).await;
    let reason = next(&mut second).await.expect_err("closed at once");
    assert_eq!(
        reason.and_then(|r| r.description).as_deref(),
        Some("drained")
    );
    wait_sessions(&server, 0).await;
    let (status, _) = public_get(&server, "/gone").await.unwrap();
    assert_eq!(status, 404);
}

/// Like [`serve_until`], and sends `Drain` once it has answered `drain_at`
/// requests; a draining connection serves on until the server closes it.
/// Returns how many it answered and the close reason, if it was closed.
async fn serve_and_drain(
    ws: &mut Ws,
    done: &std::cell::Cell<usize>,
    callers: usize,
    drain_at: Option<usize>,
) -> (usize, Option<String>) {
    let mut answered = 0;
    let mut draining = false;
    while done.get() < callers || draining {
        let msg = match tokio::time::timeout(Duration::from_millis(20), ws.next()).await {
            Ok(Some(Ok(ws::Frame::Binary(b)))) => b,
            Ok(Some(Ok(ws::Frame::Close(reason)))) => {
                return (answered, reason.and_then(|r| r.description))
            }
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        };
        for f in batch::unpack(msg).expect("valid message") {
            if let Ok(Frame::RequestHead { stream, .. }) = Frame::decode(f.expect("valid batch")) {
                answer(ws, stream, "ok").await;
                answered += 1;
                done.set(done.get() + 1);
                if drain_at == Some(answered) {
                    send(ws, Frame::Drain).await;
                    draining = true;
                }
            }
        }
    }
    (answered, None)
}

#[actix_rt::test]
async fn no_request_is_lost_while_a_connection_drains_under_load() {
    let server = start_with_workers(2);
    let mut first = connect_as(&server, Some("pool")).await;
    let mut second = join_on_other_worker(&server).await;

    // Callers arrive in waves on both workers while the first connection
    // drains after its tenth answer: each caller gets its answer, whichever
    // connection it reaches.
    const CALLERS: usize = 150;
    let done = std::cell::Cell::new(0);
    let callers = std::cell::RefCell::new(Vec::new());
    let launch = async {
        for _ in 0..CALLERS / 10 {
            for _ in 0..10 {
                callers.borrow_mut().push(public_get(&server, "/"));
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    };
    let ((a, closed), (b, _), ()) = futures_util::future::join3(
        serve_and_drain(&mut first, &done, CALLERS, Some(10)),
        serve_and_drain(&mut second, &done, CALLERS, None),
        launch,
    )
    .await;
    for c in callers.into_inner() {
        assert_eq!(c.await.unwrap(), (200, Bytes::from_static(b"ok")));
    }
    assert_eq!(a + b, CALLERS);
    assert!(a >= 10, "the first connection served until it drained: {a}");
    assert_eq!(closed.as_deref(), Some("drained"));
    wait_sessions(&server, 1).await;
}

#[actix_rt::test]
async fn an_overlong_instance_id_is_refused() {
    let server = start();
    let mut ws = connect(&server).await;
    let ack = register_as(&mut ws, "tok", Some(&"x".repeat(65))).await;
    assert!(ack.tunnels.is_empty());
    assert_eq!(
        ack.error.as_deref(),
        Some("the client instance id is longer than 64 bytes")
    );
    assert!(
        next(&mut ws).await.is_err(),
        "the server closes the connection"
    );
    let mut ws = connect(&server).await;
    assert!(
        register_as(&mut ws, "tok", Some(&"x".repeat(64)))
            .await
            .tunnels[0]
            .accepted
    );
}

#[actix_rt::test]
async fn a_stopping_server_sends_one_go_away_then_its_close_in_order() {
    let server = std::rc::Rc::new(start());
    let mut ws = connect(&server).await;
    let ack = register_as(&mut ws, "tok", None).await;
    assert!(ack.tunnels[0].accepted);
    // A ping is answered through the writer.
    ws.send(ws::Message::Ping(Bytes::from_static(b"p1")))
        .await
        .unwrap();
    // (The server's own ping, sent once the handshake is done to measure
    // the round trip, may come first: eight bytes of its clock.)
    let pong = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(ws::Frame::Ping(p)))) => assert_eq!(p.len(), 8, "{p:?}"),
            other => break other,
        }
    };
    assert!(
        matches!(pong, Ok(Some(Ok(ws::Frame::Pong(ref p)))) if &p[..] == b"p1"),
        "{pong:?}"
    );
    let stopping = server.clone();
    let stop = actix_rt::spawn(async move { stopping.stop().await });
    let mut seen = Vec::new();
    let close = loop {
        let item = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server went on in time");
        match item {
            Some(Ok(ws::Frame::Binary(b))) => {
                let mut frames = batch::unpack(b).expect("valid message");
                for frame in frames.by_ref() {
                    seen.push(format!("{:?}", Frame::decode(frame.unwrap()).unwrap()));
                }
            }
            Some(Ok(ws::Frame::Close(reason))) => break reason.expect("a close reason"),
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    };
    // One GoAway, then the close: nothing overtakes the frames queued.
    assert_eq!(seen, ["GoAway"]);
    assert_eq!(close.code, ws::CloseCode::Normal, "{close:?}");
    stop.await.unwrap();
}

#[actix_rt::test]
async fn a_protocol_error_closes_after_the_frames_queued_before_it() {
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let call = public_get(&server, "/x");
    let (stream, _) = next_request(&mut ws).await;
    // One message: body bytes before the head (the stream is reset), then
    // a frame of no known kind (the session closes).
    let early = Frame::Data {
        stream,
        data: Bytes::from_static(b"early"),
    };
    let unknown = Bytes::from_static(&[200, 0, 0, 0, 0]);
    let mut message = Vec::new();
    batch::pack(
        [
            Outgoing::Frame(early.encode().unwrap()),
            Outgoing::Frame(unknown),
        ],
        &mut message,
    );
    let [Outgoing::Frame(message)] = &message[..] else {
        panic!("one message: {message:?}");
    };
    ws.send(ws::Message::Binary(message.clone())).await.unwrap();
    match next(&mut ws).await {
        Ok(Frame::Reset {
            stream: s, code, ..
        }) => {
            assert_eq!((s, code), (stream, ResetCode::ProtocolError));
        }
        other => panic!("expected the reset first, got {other:?}"),
    }
    assert!(protocol_close(&mut ws).await.contains("unknown frame kind"));
    assert_eq!(call.await.unwrap().0, 502);
}

/// A public POST of `body` for the tunnel's host (with its length, or
/// chunked), on its own task: the status the caller got.
fn public_post(
    server: &burrow_server::RunningServer,
    body: Bytes,
    chunked: bool,
) -> actix_rt::task::JoinHandle<u16> {
    let url = format!("http://{}/up", server.addr());
    actix_rt::spawn(async move {
        let req = awc::Client::new()
            .post(url)
            .insert_header(("host", "demo.localhost"));
        let sent = if chunked {
            let once = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
            req.send_stream(once).await
        } else {
            req.send_body(body).await
        };
        sent.unwrap().status().as_u16()
    })
}

/// Receives stream `id`'s request body, granting each `Data` frame's
/// bytes back at once, with `got` bytes already received: its length.
async fn receive_body(ws: &mut Ws, id: u32, mut got: usize) -> usize {
    loop {
        match next(ws).await {
            Ok(Frame::Data { stream, data }) if stream == id => {
                got += data.len();
                let increment = data.len() as u32;
                send(ws, Frame::Window { stream, increment }).await;
            }
            Ok(Frame::End { stream }) if stream == id => return got,
            other => panic!("expected the body of stream {id}, got {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn request_bodies_take_the_credit_the_client_promised_with_their_heads() {
    use burrow_common::protocol::INITIAL_WINDOW;
    let server = start();
    let mut ws = connect_as(&server, None).await;
    let promise = |increment| Frame::Window {
        stream: 0,
        increment,
    };
    send(&mut ws, promise(3 << 20)).await;
    // Answered after the promise on the same connection: the session has
    // taken it.
    assert_served_by(&server, &mut ws, "/first").await;
    let len = 4 << 20;
    let caller = public_post(&server, Bytes::from(vec![7u8; len]), false);
    let (id, head) = next_request(&mut ws).await;
    assert_eq!(head.credit, 3 << 20, "3.5 MiB wanted, 3 promised");
    // The initial window and the credit come with no grant.
    let ahead = (INITIAL_WINDOW + head.credit) as usize;
    let mut got = 0;
    while got < ahead {
        match next(&mut ws).await {
            Ok(Frame::Data { stream, data }) if stream == id => got += data.len(),
            other => panic!("expected data, got {other:?} after {got} bytes"),
        }
    }
    assert_eq!(got, ahead);
    send(
        &mut ws,
        Frame::Window {
            stream: id,
            increment: INITIAL_WINDOW,
        },
    )
    .await;
    assert_eq!(receive_body(&mut ws, id, got).await, len);
    answer(&mut ws, id, "ok").await;
    assert_eq!(caller.await.unwrap(), 200);
    // Spent: the next body takes none.
    let caller = public_post(&server, Bytes::from(vec![7u8; 2 << 20]), false);
    let (id, head) = next_request(&mut ws).await;
    assert_eq!(head.credit, 0);
    assert_eq!(receive_body(&mut ws, id, 0).await, 2 << 20);
    answer(&mut ws, id, "ok").await;
    assert_eq!(caller.await.unwrap(), 200);
    // A body within the initial window wants none of a new promise; one
    // of unknown length takes all of it.
    send(&mut ws, promise(1 << 20)).await;
    assert_served_by(&server, &mut ws, "/second").await;
    for (chunked, credit) in [(false, 0), (true, 1 << 20)] {
        let caller = public_post(&server, Bytes::from(vec![7u8; 100_000]), chunked);
        let (id, head) = next_request(&mut ws).await;
        assert_eq!(head.credit, credit, "chunked: {chunked}");
        assert_eq!(receive_body(&mut ws, id, 0).await, 100_000);
        answer(&mut ws, id, "ok").await;
        assert_eq!(caller.await.unwrap(), 200);
    }
}
