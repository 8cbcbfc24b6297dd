//! A real local HTTP service for the tests, on an ephemeral loopback port.

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{
    body::SizedStream,
    http::{header, StatusCode},
    web, App, HttpRequest, HttpResponse, HttpServer,
};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use tokio::sync::Notify;

use super::pattern_byte;

/// State the tests can poke.
#[derive(Default)]
pub struct Control {
    /// Releases the rest of `/slow`.
    pub release: Notify,
    /// Requests seen.
    pub hits: AtomicUsize,
    /// Bodies `/sum` began to read.
    pub sums: AtomicUsize,
    /// WebSocket echo connections open now.
    pub sockets: AtomicUsize,
}

pub struct Upstream {
    pub addr: std::net::SocketAddr,
    pub control: Arc<Control>,
    handle: actix_web::dev::ServerHandle,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_on(0)
    }

    /// The upstream on a given loopback port (0: any free one).
    pub fn start_on(port: u16) -> Upstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let control = Arc::new(Control::default());
        let data = web::Data::from(control.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/bytes/{n}", web::to(bytes_sized))
                .route("/chunked/{n}", web::get().to(bytes_chunked))
                .route("/slow", web::get().to(slow))
                .route("/sleep/{ms}", web::get().to(sleep))
                .route("/status/{code}", web::to(status))
                .route("/cookies", web::get().to(cookies))
                .route("/id/{n}", web::get().to(id))
                .route("/sum", web::post().to(sum))
                .route("/ws", web::get().to(ws_echo))
                .route("/ws-refuse", web::get().to(ws_refuse))
                .route("/ws-flood/{n}", web::get().to(ws_flood))
                .route("/sse", web::get().to(sse))
                .route("/sse-quiet", web::get().to(sse_quiet))
                .default_service(web::to(echo))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Upstream {
            addr,
            control,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

fn pattern_stream(
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    const CHUNK: u64 = 64 * 1024;
    stream::iter((0..len.div_ceil(CHUNK)).map(move |c| {
        let start = c * CHUNK;
        let end = (start + CHUNK).min(len);
        Ok(Bytes::from(
            (start..end).map(pattern_byte).collect::<Vec<u8>>(),
        ))
    }))
}

async fn bytes_sized(n: web::Path<u64>) -> HttpResponse {
    let n = n.into_inner();
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(SizedStream::new(n, pattern_stream(n)))
}

async fn bytes_chunked(n: web::Path<u64>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(pattern_stream(n.into_inner()))
}

/// First chunk at once; the last only when the test releases it.
async fn slow(control: web::Data<Control>) -> HttpResponse {
    let control = control.into_inner();
    let body = stream::once(async { Ok::<_, actix_web::Error>(Bytes::from_static(b"first;")) })
        .chain(stream::once(async move {
            control.release.notified().await;
            Ok(Bytes::from_static(b"last"))
        }));
    HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(body)
}

async fn sleep(ms: web::Path<u64>) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(ms.into_inner())).await;
    HttpResponse::Ok().body("slept")
}

async fn status(code: web::Path<u16>) -> HttpResponse {
    let code = StatusCode::from_u16(code.into_inner()).unwrap_or(StatusCode::IM_A_TEAPOT);
    let mut b = HttpResponse::build(code);
    if code == StatusCode::NOT_MODIFIED {
        b.insert_header((header::ETAG, "\"v1\""));
        return b.body(actix_web::body::None::new());
    }
    if code == StatusCode::NO_CONTENT {
        return b.finish();
    }
    b.body(format!("status {}", code.as_u16()))
}

async fn cookies() -> HttpResponse {
    HttpResponse::Ok()
        .append_header((header::SET_COOKIE, "a=1; Path=/"))
        .append_header((header::SET_COOKIE, "b=2; Path=/"))
        .body("two cookies")
}

async fn id(n: web::Path<u64>, control: web::Data<Control>) -> HttpResponse {
    control.hits.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok()
        .insert_header(("x-id", n.to_string()))
        .body(format!("id-{n}"))
}

/// Reads the whole body and answers its length and a checksum.
async fn sum(mut body: web::Payload, control: web::Data<Control>) -> HttpResponse {
    control.sums.fetch_add(1, Ordering::Relaxed);
    let mut len = 0u64;
    let mut hash = 0xcbf29ce484222325u64;
    let mut pattern_ok = true;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().body("body error");
        };
        for b in chunk.iter() {
            pattern_ok &= *b == pattern_byte(len);
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3);
            len += 1;
        }
    }
    HttpResponse::Ok().body(format!("{len} {hash:x} {pattern_ok}"))
}

/// Echoes the body and reports what arrived in `x-echo-*` headers.
async fn echo(req: HttpRequest, body: web::Payload) -> HttpResponse {
    let h = req.headers();
    let get = |name: &str| {
        h.get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut names: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("x-echo-method", req.method().as_str()))
        .insert_header(("x-echo-uri", req.uri().to_string()))
        .insert_header(("x-echo-host", get("host")))
        .insert_header(("x-echo-xff", get("x-forwarded-for")))
        .insert_header(("x-echo-xfp", get("x-forwarded-proto")))
        .insert_header(("x-echo-xfh", get("x-forwarded-host")))
        .insert_header(("x-echo-cookie", get("cookie")))
        .insert_header(("x-echo-te", get("transfer-encoding")))
        .insert_header(("x-echo-cl", get("content-length")))
        .insert_header(("x-echo-names", names.join(",")))
        .insert_header((
            "x-echo-port",
            req.app_config().local_addr().port().to_string(),
        ));
    match req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(len) => resp.body(SizedStream::new(len, body)),
        None => resp.streaming(body),
    }
}

/// WebSocket echo: every message (fragments too) comes back as it came.
/// Offers of the `chat` subprotocol are accepted; the text `close-me` makes
/// the server close with code 4002; a close from the caller is echoed.
async fn ws_echo(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    let (mut resp, mut session, stream) = actix_ws::handle(&req, body)?;
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if offered.split(',').any(|p| p.trim() == "chat") {
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static("chat"),
        );
    }
    let mut stream = stream.max_frame_size(4 << 20);
    let control = req
        .app_data::<web::Data<Control>>()
        .map(|c| c.clone().into_inner());
    actix_rt::spawn(async move {
        use actix_ws::Message;
        // Counts this connection while it is open, whichever way it ends.
        let _open = control.map(SocketCount::new);
        while let Some(Ok(msg)) = stream.next().await {
            let ok = match msg {
                Message::Text(t) if &*t == "close-me" => {
                    let reason = actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Other(4002),
                        description: Some("asked to".into()),
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
                Message::Text(t) => session.text(t).await,
                Message::Binary(b) => session.binary(b).await,
                Message::Continuation(item) => session.continuation(item).await,
                Message::Ping(p) => session.pong(&p).await,
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                Message::Pong(_) | Message::Nop => Ok(()),
            };
            if ok.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

struct SocketCount(Arc<Control>);

impl SocketCount {
    fn new(control: Arc<Control>) -> Self {
        control.sockets.fetch_add(1, Ordering::SeqCst);
        SocketCount(control)
    }
}

impl Drop for SocketCount {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn ws_refuse() -> HttpResponse {
    HttpResponse::Forbidden()
        .insert_header(("x-refused", "yes"))
        .body("forbidden here")
}

/// Sends `n` binary messages of 64 KiB as fast as the connection takes them.
async fn ws_flood(
    req: HttpRequest,
    body: web::Payload,
    n: web::Path<u64>,
) -> Result<HttpResponse, actix_web::Error> {
    let (resp, mut session, _stream) = actix_ws::handle(&req, body)?;
    let n = n.into_inner();
    actix_rt::spawn(async move {
        let msg = Bytes::from(vec![0x5a; 64 * 1024]);
        for _ in 0..n {
            if session.binary(msg.clone()).await.is_err() {
                return;
            }
        }
        let _ = session.close(None).await;
    });
    Ok(resp)
}

/// Server-sent events: one now, the next each time the test releases one.
async fn sse(control: web::Data<Control>) -> HttpResponse {
    let control = control.into_inner();
    let body = stream::unfold(0u32, move |i| {
        let control = control.clone();
        async move {
            if i == 3 {
                return None;
            }
            if i > 0 {
                control.release.notified().await;
            }
            Some((
                Ok::<_, actix_web::Error>(Bytes::from(format!("data: event {i}\n\n"))),
                i + 1,
            ))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}

/// An event stream that sends one comment and then nothing, ever.
async fn sse_quiet() -> HttpResponse {
    let body = stream::once(async { Ok::<_, actix_web::Error>(Bytes::from_static(b": hi\n\n")) })
        .chain(stream::pending());
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}
