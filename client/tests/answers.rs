//! Answers a local service gives that must reach the caller as they are,
//! from local services written here to behave as real ones do.

mod support;

use std::time::Duration;

use support::*;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
};

/// A local service on a port of its own, running `serve` for each
/// connection.
async fn local_service<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            actix_rt::spawn(serve(conn));
        }
    });
    addr
}

/// Reads more of `rd` into `buf`; `false` once it has ended.
async fn read_more(rd: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 65536];
    let n = rd.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    n > 0
}

/// The next head in `buf` (read from `rd` as needed), taken off its front;
/// `None` when `rd` ends first.
async fn next_head(rd: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(buf.drain(..end + 4).collect());
        }
        if !read_more(rd, buf).await {
            return None;
        }
    }
}

/// Reads until `buf` holds `n` bytes; `false` when `rd` ends first.
async fn fill_to(rd: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        if !read_more(rd, buf).await {
            return false;
        }
    }
    true
}

/// The `Content-Length` of a head (0 without one).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A local service that answers every request, once its head is in, with
/// `answer` and closes: as a WebSocket server answers a plain GET.
async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
    local_service(move |mut conn| async move {
        if next_head(&mut conn, &mut Vec::new()).await.is_some() {
            let _ = conn.write_all(answer).await;
            let _ = conn.shutdown().await;
        }
    })
    .await
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

/// What Python's `http.server` answers a POST it has no handler for,
/// before it reads the body.
const REFUSAL: &str = "HTTP/1.0 501 Unsupported method ('POST')\r\n\
    Server: SimpleHTTP/0.6 Python/3.11.7\r\nConnection: close\r\n\
    Content-Type: text/html;charset=utf-8\r\nContent-Length: 26\r\n\r\n\
    <p>Unsupported method.</p>";

const UPLOAD: usize = 8 * 1024 * 1024;

/// A tunnel to a local service at `local`.
async fn tunnel_to(local: std::net::SocketAddr) -> burrow_server::RunningServer {
    let server = start_server(server_config(""));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let config = client_config(server.addr(), &format!("http://{local}"), TOKEN);
    actix_rt::spawn(run_client(config, tx));
    wait_registered(&mut events).await;
    server
}

/// A caller's raw connection, with the bytes read past the last head.
struct Raw {
    rd: OwnedReadHalf,
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(server: &burrow_server::RunningServer, head: &str) -> Raw {
        let conn = TcpStream::connect(server.addr()).await.expect("connect");
        let (rd, mut wr) = conn.into_split();
        wr.write_all(head.as_bytes()).await.expect("write head");
        Raw {
            rd,
            wr: Some(wr),
            buf: Vec::new(),
        }
    }

    /// The next response head: its status and text.
    async fn head(&mut self) -> (u16, String) {
        let read = next_head(&mut self.rd, &mut self.buf);
        let head = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a response head in time")
            .expect("a response head before the connection closed");
        let text = String::from_utf8_lossy(&head).into_owned();
        let status = text[9..12].parse().expect("status");
        (status, text)
    }

    /// The next `n` body bytes.
    async fn body(&mut self, n: usize) -> Vec<u8> {
        let whole = fill_to(&mut self.rd, &mut self.buf, n).await;
        assert!(whole, "closed inside the body");
        self.buf.drain(..n).collect()
    }

    /// Whether the server closes the connection (in time).
    async fn closes(&mut self) -> bool {
        let until_end = async { while read_more(&mut self.rd, &mut self.buf).await {} };
        tokio::time::timeout(Duration::from_secs(10), until_end)
            .await
            .is_ok()
    }

    /// Sends `n` body bytes from a task of their own, as a caller uploads
    /// while it reads; the task stops when the server stops taking them.
    fn upload(&mut self, n: usize) -> actix_rt::task::JoinHandle<()> {
        let mut wr = self.wr.take().expect("writer");
        actix_rt::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                if wr.write_all(&chunk[..k]).await.is_err() {
                    return;
                }
                left -= k;
            }
        })
    }
}

fn post_head(len: usize, expect: bool) -> String {
    let expect = if expect {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\n{expect}Content-Length: {len}\r\n\r\n")
}

#[actix_rt::test]
async fn an_answer_given_before_the_body_was_read_reaches_the_caller() {
    let server = tunnel_to(answering(REFUSAL.as_bytes()).await).await;
    let mut raw = Raw::connect(&server, &post_head(UPLOAD, false)).await;
    let _upload = raw.upload(UPLOAD);
    let (status, head) = raw.head().await;
    assert_eq!(status, 501, "{head}");
    assert!(!head.contains("x-burrow-error"), "{head}");
    assert_eq!(raw.body(26).await, b"<p>Unsupported method.</p>");
    assert!(raw.closes().await, "the unread upload ends the connection");
}

#[actix_rt::test]
async fn a_caller_expecting_100_continue_gets_the_refusal_and_no_continue() {
    let server = tunnel_to(answering(REFUSAL.as_bytes()).await).await;
    let mut raw = Raw::connect(&server, &post_head(UPLOAD, true)).await;
    let (status, head) = raw.head().await;
    assert_eq!(status, 501, "the first answer is the service's: {head}");
    assert_eq!(raw.body(26).await, b"<p>Unsupported method.</p>");
    assert!(raw.closes().await);
}

/// A local service that reads a request head, says `100 Continue` when the
/// request expects it and `speaks_expect`, reads the body its
/// `Content-Length` gives and answers with what it saw.
async fn uploads(speaks_expect: bool) -> std::net::SocketAddr {
    local_service(move |mut conn| async move {
        let mut buf = Vec::new();
        let Some(head) = next_head(&mut conn, &mut buf).await else {
            return;
        };
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let expects = text.contains("\r\nexpect: 100-continue\r\n");
        if expects && speaks_expect {
            let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        if !fill_to(&mut conn, &mut buf, content_length(&head)).await {
            return;
        }
        let text = format!("got {} bytes, expect seen: {expects}", buf.len());
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        let _ = conn.write_all(answer.as_bytes()).await;
    })
    .await
}

#[actix_rt::test]
async fn the_local_services_own_100_continue_is_relayed() {
    for speaks_expect in [true, false] {
        // One that ignores the expectation gets the body after the wait.
        let server = tunnel_to(uploads(speaks_expect).await).await;
        let mut raw = Raw::connect(&server, &post_head(100_000, true)).await;
        let (status, head) = raw.head().await;
        assert_eq!(status, 100, "{head}");
        let wr = raw.wr.as_mut().expect("writer");
        wr.write_all(&vec![b'x'; 100_000]).await.expect("body");
        let (status, head) = raw.head().await;
        assert_eq!(status, 200, "{head}");
        let text = "got 100000 bytes, expect seen: true";
        assert_eq!(raw.body(text.len()).await, text.as_bytes());
    }
}

/// A local service that answers each request with the head it received.
async fn echoing() -> std::net::SocketAddr {
    local_service(|mut conn| async move {
        let mut buf = Vec::new();
        while let Some(head) = next_head(&mut conn, &mut buf).await {
            let len = content_length(&head);
            if !fill_to(&mut conn, &mut buf, len).await {
                return;
            }
            buf.drain(..len);
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len());
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.write_all(&head).await;
        }
    })
    .await
}

/// The fields of a head (names lower-cased), in order, without the
/// `X-Forwarded-*` ones the tunnel documents as its own.
fn fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| !n.starts_with("x-forwarded-"))
        .collect()
}

/// `fields` grouped by name, values in the order sent.
fn by_name(fields: Vec<(String, String)>) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (n, v) in fields {
        map.entry(n).or_default().push(v);
    }
    map
}

#[actix_rt::test]
async fn the_local_service_receives_the_callers_fields_and_nothing_else() {
    let server = tunnel_to(echoing().await).await;
    let requests = [
        format!(
            "GET /echo?x=1 HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: test/1\r\nAccept: */*\r\n\
             X-Custom: a\r\nCookie: k=v\r\nX-Custom: b\r\n\r\n"
        ),
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n\
             Date: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello"
        ),
    ];
    for sent in requests {
        let mut raw = Raw::connect(&server, &sent).await;
        let (status, head) = raw.head().await;
        assert_eq!(status, 200, "{head}");
        let len: usize = fields(&head)
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .expect("length");
        let received = String::from_utf8(raw.body(len).await).expect("text");
        let sent_head = &sent[..sent.find("\r\n\r\n").expect("head") + 4];
        assert_eq!(
            by_name(fields(&received)),
            by_name(fields(sent_head)),
            "{received}"
        );
        assert!(
            received.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
            "{received}"
        );
    }
}
