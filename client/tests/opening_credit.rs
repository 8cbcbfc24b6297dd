//! A client whose path to the server is long promises the server credit
//! for the request bodies to come (a `Window` on stream 0) once a body's
//! window has widened; a body that takes that credit with its head arrives
//! whole at the local service without waiting for a grant; a head that
//! takes more than was promised ends the connection as a protocol error.

mod support;

use std::time::Duration;

use actix_web::{web, HttpRequest};
use burrow_common::{
    batch,
    flow::MAX_WINDOW,
    protocol::{INITIAL_WINDOW, MAX_DATA_PAYLOAD},
    Frame, HelloAck, RequestHead, ResponseHead,
};
use bytes::Bytes;
use futures_util::StreamExt;
use support::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The round trip the fake server puts on the handshake: the client
/// measures it there, and takes its path for a long one.
const ROUND_TRIP: Duration = Duration::from_millis(30);

struct Wires {
    from_client: UnboundedSender<Frame>,
    outgoing: std::sync::Mutex<Option<UnboundedReceiver<Frame>>>,
}

/// A server that answers the hello a round trip late, then sends what
/// the test gives it and hands the test every frame the client sends.
async fn serve(
    req: HttpRequest,
    body: web::Payload,
    wires: web::Data<Wires>,
) -> actix_web::Result<actix_web::HttpResponse> {
    let (response, mut session, mut messages) = actix_ws::handle(&req, body)?;
    let mut outgoing = wires
        .outgoing
        .lock()
        .unwrap()
        .take()
        .expect("one connection");
    let from_client = wires.from_client.clone();
    actix_rt::spawn(async move {
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(Ok(actix_ws::Message::Binary(msg))) = msg else { break };
                    for frame in batch::unpack(msg).expect("a valid message") {
                        let frame = Frame::decode(frame.expect("a batch")).expect("a frame");
                        if let Frame::Hello(_) = frame {
                            actix_rt::time::sleep(ROUND_TRIP).await;
                            let ack: HelloAck = serde_json::from_value(serde_json::json!({
                                "version": burrow_common::PROTOCOL_VERSION,
                                "tunnels": [{"host": HOST, "accepted": true}],
                            }))
                            .expect("an ack");
                            let ack = Frame::HelloAck(ack).encode().expect("encoded");
                            session.binary(ack).await.expect("sent");
                        } else if from_client.send(frame).is_err() {
                            return;
                        }
                    }
                }
                Some(frame) = outgoing.recv() => {
                    let bytes = frame.encode().expect("encoded");
                    if session.binary(bytes).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(response)
}

/// The test's side of the fake server: what it sends, and the credit the
/// client has given.
struct Server {
    send: UnboundedSender<Frame>,
    from_client: UnboundedReceiver<Frame>,
    /// Opening credit promised and not taken yet.
    promised: u64,
    /// Credit of the stream being sent.
    credit: u64,
}

impl Server {
    fn head(&mut self, stream: u32, len: u64, credit: u32) {
        let head = RequestHead {
            host: HOST.into(),
            method: "POST".into(),
            uri: "/sum".into(),
            headers: vec![
                (
                    Bytes::from_static(b"host"),
                    Bytes::from_static(HOST.as_bytes()),
                ),
                (
                    Bytes::from_static(b"content-length"),
                    Bytes::from(len.to_string()),
                ),
            ],
            end_stream: false,
            upgrade: false,
            credit,
        };
        // (An overdraw takes more than the test saw promised.)
        self.promised = self.promised.saturating_sub(u64::from(credit));
        self.credit = u64::from(INITIAL_WINDOW + credit);
        self.send
            .send(Frame::RequestHead { stream, head })
            .expect("server up");
    }

    /// The client's next frame, with the credit it gives counted.
    async fn next(&mut self) -> Frame {
        let frame = self
            .from_client
            .recv()
            .await
            .expect("the client is connected");
        if let Frame::Window { stream, increment } = frame {
            match stream {
                0 => self.promised += u64::from(increment),
                _ => self.credit += u64::from(increment),
            }
        }
        frame
    }

    /// Sends `len` bytes of the test pattern on `stream`, waiting for
    /// credit only when it runs out, then its end.
    async fn body(&mut self, stream: u32, len: u64) {
        let mut sent = 0;
        while sent < len {
            while self.credit == 0 {
                self.next().await;
            }
            let n = (len - sent).min(self.credit).min(MAX_DATA_PAYLOAD as u64);
            let data = (sent..sent + n).map(pattern_byte).collect::<Vec<u8>>();
            self.send
                .send(Frame::Data {
                    stream,
                    data: data.into(),
                })
                .expect("server up");
            self.credit -= n;
            sent += n;
        }
        self.send.send(Frame::End { stream }).expect("server up");
    }

    /// The local service's answer on `stream`: what `/sum` counted.
    async fn answer(&mut self, stream: u32) -> String {
        loop {
            match self.next().await {
                Frame::ResponseHead {
                    stream: s,
                    head:
                        ResponseHead {
                            body: Some(body), ..
                        },
                } if s == stream => return String::from_utf8_lossy(&body).into_owned(),
                Frame::Reset {
                    stream: s, reason, ..
                } if s == stream => {
                    panic!("stream {s} reset: {reason}")
                }
                _ => {}
            }
        }
    }
}

#[actix_rt::test]
async fn a_long_path_s_promise_lets_a_body_start_whole_and_an_overdraw_ends_the_connection() {
    let upstream = upstream::Upstream::start();
    let (to_client, outgoing) = unbounded_channel();
    let (from_client_tx, from_client) = unbounded_channel();
    let wires = web::Data::new(Wires {
        from_client: from_client_tx,
        outgoing: std::sync::Mutex::new(Some(outgoing)),
    });
    let server_addr = stand_in_server(wires, serve);
    let (events_tx, mut events) = unbounded_channel();
    let config = client_config(server_addr, &upstream.url(), TOKEN);
    let client = actix_rt::spawn(run_client(config, events_tx));
    wait_registered(&mut events).await;
    let mut server = Server {
        send: to_client,
        from_client,
        promised: 0,
        credit: 0,
    };
    let scenario = async {
        // A body sent as the client grants: its window widens on this
        // path, and the client promises that much to the bodies to come.
        let first = 8 << 20;
        server.head(1, first, 0);
        server.body(1, first).await;
        assert!(server.answer(1).await.starts_with(&format!("{first} ")));
        while server.promised == 0 {
            server.next().await;
        }
        assert!(server.promised <= u64::from(MAX_WINDOW - INITIAL_WINDOW));
        // A body that takes the promise: all of it is sent at once, with
        // no grant waited for, and arrives whole.
        let drawn = u32::try_from(server.promised).unwrap();
        let second = u64::from(INITIAL_WINDOW + drawn);
        server.head(3, second, drawn);
        server.credit = second;
        server.body(3, second).await;
        assert_eq!(
            server.answer(3).await,
            format!("{second} {} true", fnv(second))
        );
        // More than any promise can be.
        server.head(5, u64::from(MAX_WINDOW) * 2, MAX_WINDOW);
    };
    tokio::time::timeout(Duration::from_secs(60), scenario)
        .await
        .expect("the scenario ran in time");
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(20), next_event(&mut events)).await {
            Ok(Some(burrow_client::ClientEvent::Disconnected { reason })) => break reason,
            Ok(Some(_)) => continue,
            other => panic!("no disconnection: {other:?}"),
        }
    };
    assert!(reason.contains("opening credit"), "{reason}");
    client.abort();
}

/// The FNV-1a hash `/sum` reports for `len` bytes of the test pattern.
fn fnv(len: u64) -> String {
    let hash = (0..len).fold(0xcbf29ce484222325u64, |h, i| {
        (h ^ u64::from(pattern_byte(i))).wrapping_mul(0x100000001b3)
    });
    format!("{hash:x}")
}
