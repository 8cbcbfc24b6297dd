//! A kept-alive connection the local service closes just as the next
//! request goes out on it: an idempotent request without a body is sent
//! once more on a new connection; any other request is answered 502 with
//! the reason, and sent only once.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use awc::http::Method;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A local service that answers the first request on each connection
/// (with a body naming the connection) and closes the connection, without
/// an answer, once the second request's head has arrived: the race of a
/// service closing an idle connection as a request is sent on it, made
/// certain.
struct OneShotService {
    addr: SocketAddr,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// `"<connection> <method> <path>"` of every request head received.
    requests: Arc<Mutex<Vec<String>>>,
}

impl OneShotService {
    async fn start() -> OneShotService {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (connections.clone(), requests.clone());
        actix_rt::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                actix_rt::spawn(serve(tcp, n, log.clone()));
            }
        });
        OneShotService {
            addr,
            connections,
            requests,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("log").clone()
    }
}

async fn serve(mut tcp: TcpStream, n: usize, log: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let Some(first) = read_head(&mut tcp, &mut buf).await else {
        return;
    };
    log.lock().expect("log").push(format!("{n} {first}"));
    let body = format!("connection {n}");
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    if let Some(second) = read_head(&mut tcp, &mut buf).await {
        log.lock().expect("log").push(format!("{n} {second}"));
    }
    // Dropped without an answer.
}

/// Reads one request head (what follows it stays in `buf`); its method and
/// path, or `None` when the connection ends first.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let line = head.lines().next().unwrap_or_default();
            let mut words = line.split(' ');
            let method = words.next().unwrap_or_default();
            let path = words.next().unwrap_or_default();
            return Some(format!("{method} {path}"));
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A server and a client with one connection (so that every request uses
/// the same pooled HTTP client) in front of `service`.
struct Setup {
    server: burrow_server::RunningServer,
    _client: tokio::task::JoinHandle<Result<(), burrow_client::ClientError>>,
}

impl Setup {
    async fn start(service: &OneShotService) -> Setup {
        let server = start_server(server_config(""));
        let local = format!("http://{}", service.addr);
        let text = format!(
            "connections = 1\n{}",
            client_toml(server.addr(), &local, TOKEN)
        );
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let client = actix_rt::spawn(run_client(client_config_text(&text), tx));
        wait_registered(&mut events).await;
        Setup {
            server,
            _client: client,
        }
    }

    fn request(&self, method: Method, path: &str) -> awc::ClientRequest {
        caller()
            .request(method, format!("http://{}{path}", self.server.addr()))
            .insert_header(("host", HOST))
    }

    /// A first GET, answered on connection 1, which then waits in the
    /// client's pool for the next request.
    async fn first_get(&self) {
        let mut res = self
            .request(Method::GET, "/first")
            .send()
            .await
            .expect("answer");
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.body().await.expect("body"), "connection 1".as_bytes());
    }
}

#[actix_rt::test]
async fn a_get_on_a_closed_kept_alive_connection_is_sent_again_on_a_new_one() {
    let service = OneShotService::start().await;
    let t = Setup::start(&service).await;
    t.first_get().await;
    let mut res = t
        .request(Method::GET, "/second")
        .send()
        .await
        .expect("answer");
    let body = res.body().await.expect("body");
    assert_eq!(res.status().as_u16(), 200, "{body:?}");
    assert_eq!(body, "connection 2".as_bytes());
    assert_eq!(service.connections(), 2);
    assert_eq!(
        service.requests(),
        ["1 GET /first", "1 GET /second", "2 GET /second"]
    );
}

/// A `method` request with a body on the kept-alive connection the service
/// closes: 502, and the service saw it once. Its answer's text and the
/// service's log.
async fn with_a_body(method: Method) -> (String, Vec<String>) {
    let service = OneShotService::start().await;
    let t = Setup::start(&service).await;
    t.first_get().await;
    let mut res = t
        .request(method.clone(), "/second")
        .send_body("12345")
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 502);
    let body = res.body().await.expect("body");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.contains("kept-alive"), "{text}");
    assert_eq!(service.connections(), 1, "the {method} was sent once");
    (text, service.requests())
}

#[actix_rt::test]
async fn a_post_on_a_closed_kept_alive_connection_is_answered_502_with_the_reason() {
    let (text, requests) = with_a_body(Method::POST).await;
    assert!(text.contains("POST is not retried"), "{text}");
    assert_eq!(requests, ["1 GET /first", "1 POST /second"]);
}

#[actix_rt::test]
async fn a_put_with_a_body_is_not_sent_again_either() {
    let (text, _) = with_a_body(Method::PUT).await;
    assert!(text.contains("body"), "{text}");
}
