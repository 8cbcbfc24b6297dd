//! A request head from the server with CR, LF or NUL in its method, target,
//! a field name or a value is refused by the client before anything of it
//! is written to the local service, on the plain path and the upgrade path.

mod support;

use std::{
    io::Read,
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{web, HttpRequest};
use burrow_common::{batch, Frame, HelloAck, RequestHead, ResetCode};
use bytes::Bytes;
use futures_util::StreamExt;
use support::*;
use tokio::sync::mpsc;

/// The forged heads: each bad byte in each place, plain and upgrade.
fn forged() -> Vec<RequestHead> {
    let mut heads = Vec::new();
    for bad in ["\r", "\n", "\0", "\r\nX-Injected: 1\r\n"] {
        for upgrade in [false, true] {
            let mut fields = vec![
                (
                    Bytes::from_static(b"host"),
                    Bytes::from_static(HOST.as_bytes()),
                ),
                (Bytes::from_static(b"x-fine"), Bytes::from_static(b"ok")),
            ];
            if upgrade {
                fields.push((
                    Bytes::from_static(b"upgrade"),
                    Bytes::from_static(b"websocket"),
                ));
                fields.push((
                    Bytes::from_static(b"connection"),
                    Bytes::from_static(b"upgrade"),
                ));
            }
            let head = |method: String, uri: String, fields: Vec<(Bytes, Bytes)>| RequestHead {
                host: HOST.into(),
                method,
                uri,
                headers: fields,
                end_stream: !upgrade,
                upgrade,
                credit: 0,
            };
            heads.push(head(format!("GET{bad}"), "/".into(), fields.clone()));
            heads.push(head("GET".into(), format!("/a{bad}b"), fields.clone()));
            let mut named = fields.clone();
            named[1].0 = Bytes::from(format!("x-fine{bad}"));
            heads.push(head("GET".into(), "/".into(), named));
            let mut valued = fields.clone();
            valued[1].1 = Bytes::from(format!("o{bad}k"));
            heads.push(head("GET".into(), "/".into(), valued));
        }
    }
    heads
}

/// A server that accepts the client's hello, sends every forged head and
/// reports each reset the client answers with.
async fn serve(
    req: HttpRequest,
    body: web::Payload,
    resets: web::Data<mpsc::UnboundedSender<(u32, ResetCode)>>,
) -> actix_web::Result<actix_web::HttpResponse> {
    let (response, mut session, mut messages) = actix_ws::handle(&req, body)?;
    let resets = resets.get_ref().clone();
    actix_rt::spawn(async move {
        while let Some(Ok(actix_ws::Message::Binary(msg))) = messages.next().await {
            for frame in batch::unpack(msg).expect("a valid message") {
                match Frame::decode(frame.expect("a valid batch")).expect("a valid frame") {
                    Frame::Hello(_) => {
                        let ack: HelloAck = serde_json::from_value(serde_json::json!({
                            "version": burrow_common::PROTOCOL_VERSION,
                            "tunnels": [{"host": HOST, "accepted": true}],
                        }))
                        .expect("an ack");
                        let ack = Frame::HelloAck(ack).encode().expect("encoded");
                        session.binary(ack).await.expect("sent");
                        for (i, head) in forged().into_iter().enumerate() {
                            let frame = Frame::RequestHead {
                                stream: 2 * i as u32 + 1,
                                head,
                            };
                            session
                                .binary(frame.encode().expect("encoded"))
                                .await
                                .expect("sent");
                        }
                    }
                    Frame::Reset { stream, code, .. } => {
                        let _ = resets.send((stream, code));
                    }
                    _ => {}
                }
            }
        }
    });
    Ok(response)
}

#[actix_rt::test]
async fn forged_heads_are_reset_and_never_reach_the_local_service() {
    // The local service: counts connections and keeps what they send.
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let local_addr = local.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        for mut conn in local.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        }
    });

    let (tx, mut resets) = mpsc::unbounded_channel::<(u32, ResetCode)>();
    let tx = web::Data::new(tx);
    let server_addr = stand_in_server(tx, serve);

    let config = client_config(server_addr, &format!("http://{local_addr}"), TOKEN);
    let (events, _rx) = mpsc::unbounded_channel();
    let client = actix_rt::spawn(run_client(config, events));

    let mut got = Vec::new();
    while got.len() < forged().len() {
        let next = tokio::time::timeout(Duration::from_secs(10), resets.recv()).await;
        let Ok(Some(reset)) = next else {
            panic!(
                "{} of {} forged heads were reset: {got:?}",
                got.len(),
                forged().len()
            );
        };
        got.push(reset);
    }
    assert!(
        got.iter().all(|(_, code)| *code == ResetCode::BadRequest),
        "{got:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the local service was reached"
    );
    client.abort();
}
