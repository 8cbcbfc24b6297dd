//! Answers a local service gives that must reach the caller as they are,
//! from local services written here to behave as real ones do.

mod support;

use std::time::Duration;

use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A local service that answers every request, once its head is in, with
/// `answer` and closes: as a WebSocket server answers a plain GET.
async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            actix_rt::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

#[actix_rt::test]
async fn a_426_with_upgrade_headers_is_an_ordinary_answer_with_its_body() {
    const BODY: &str = "This service speaks WebSocket only; send an Upgrade request.\n";
    const ANSWER: &str = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nContent-Type: text/plain\r\nContent-Length: 61\r\n\r\n\
        This service speaks WebSocket only; send an Upgrade request.\n";
    assert_eq!(BODY.len(), 61);
    let local = answering(ANSWER.as_bytes()).await;
    let server = start_server(server_config(""));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let config = client_config(server.addr(), &format!("http://{local}"), TOKEN);
    let _client = actix_rt::spawn(run_client(config, tx));
    wait_registered(&mut events).await;
    for _ in 0..3 {
        let mut resp = caller()
            .get(format!("http://{}/chat", server.addr()))
            .insert_header(("host", HOST))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 426);
        assert!(resp.headers().get("x-burrow-error").is_none());
        assert_eq!(
            resp.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        assert_eq!(resp.body().await.expect("body"), BODY.as_bytes());
    }
}
