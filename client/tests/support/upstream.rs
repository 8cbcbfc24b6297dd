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
}

pub struct Upstream {
    pub addr: std::net::SocketAddr,
    pub control: Arc<Control>,
    handle: actix_web::dev::ServerHandle,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
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
async fn sum(mut body: web::Payload) -> HttpResponse {
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
        .insert_header(("x-echo-names", names.join(",")));
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
