//! End-to-end HTTP semantics through a real server, client and local service.

mod support;

use std::time::{Duration, Instant};

use awc::http::{Method, StatusCode};
use bytes::Bytes;
use futures_util::{future::join_all, stream, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header<'a>(resp: &'a awc::ClientResponse<impl Sized>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Sends raw bytes to `addr` and reads the whole answer (the request must
/// ask for `Connection: close`).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&raw_bytes(addr, request).await).into_owned()
}

#[actix_rt::test]
async fn method_path_query_and_forwarded_headers() {
    let t = Tunnel::start().await;
    let mut resp = t
        .request(Method::PATCH, "/a%20b/c%2Fd?q=%2F&x=1&x=2")
        .insert_header(("x-forwarded-for", "10.1.2.3"))
        .send_body("hi")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-echo-method"), "PATCH");
    assert_eq!(header(&resp, "x-echo-uri"), "/a%20b/c%2Fd?q=%2F&x=1&x=2");
    assert_eq!(header(&resp, "x-echo-host"), HOST);
    assert_eq!(header(&resp, "x-echo-xff"), "10.1.2.3, 127.0.0.1");
    assert_eq!(header(&resp, "x-echo-xfp"), "http");
    assert_eq!(header(&resp, "x-echo-xfh"), HOST);
    assert_eq!(header(&resp, "x-echo-cl"), "2");
    assert_eq!(resp.body().await.unwrap(), Bytes::from_static(b"hi"));

    // A request without a body reaches the local service without one.
    let resp = t.get("/plain").send().await.unwrap();
    assert_eq!(header(&resp, "x-echo-method"), "GET");
    assert_eq!(header(&resp, "x-echo-cl"), "");
    assert_eq!(header(&resp, "x-echo-te"), "");
}

#[actix_rt::test]
async fn host_routing_ignores_port_and_case_but_not_forwarded_host() {
    let t = Tunnel::start().await;
    let port = t.server.addr().port();
    let resp = caller()
        .get(format!("{}/x", t.public()))
        .insert_header(("host", format!("DEMO.Localhost:{port}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "x-echo-xfh"),
        format!("DEMO.Localhost:{port}")
    );

    // X-Forwarded-Host and Forwarded are the caller's words: they must not
    // route to a tunnel the Host does not name.
    let mut resp = caller()
        .get(format!("{}/x", t.public()))
        .insert_header(("host", "other.localhost"))
        .insert_header(("x-forwarded-host", HOST))
        .insert_header(("forwarded", format!("host={HOST}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = resp.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("other.localhost"));

    // The absolute-form target's authority is the host.
    let answer = raw(
        t.server.addr(),
        format!("GET http://{HOST}/abs?x=1 HTTP/1.1\r\nHost: other.localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-echo-uri: /abs?x=1"), "{answer}");
    assert!(
        answer.contains(&format!("x-echo-host: {HOST}\r\n")),
        "{answer}"
    );
}

#[actix_rt::test]
async fn unknown_and_missing_host() {
    let t = Tunnel::start().await;
    let mut resp = caller()
        .get(format!("{}/", t.public()))
        .insert_header(("host", "nobody.localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = resp.body().await.unwrap();
    assert_eq!(
        &body[..],
        b"no tunnel is registered for host nobody.localhost\n"
    );

    let answer = raw(t.server.addr(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");

    let answer = raw(
        t.server.addr(),
        format!("OPTIONS * HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("request target `*` is not forwarded"),
        "{answer}"
    );
}

#[actix_rt::test]
async fn status_codes_cookies_and_bodiless_answers() {
    let t = Tunnel::start().await;
    for code in [201u16, 404, 418, 500, 503] {
        let mut resp = t.get(&format!("/status/{code}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(
            resp.body().await.unwrap(),
            format!("status {code}").as_bytes()
        );
    }
    let resp = t.get("/cookies").send().await.unwrap();
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);

    let head = raw(
        t.server.addr(),
        format!("HEAD /bytes/1234 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1234\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "HEAD answer must carry no body: {head:?}"
    );

    for code in [204, 304] {
        let answer = raw(
            t.server.addr(),
            format!("GET /status/{code} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {code}")), "{answer}");
        assert!(
            answer.ends_with("\r\n\r\n"),
            "no body for {code}: {answer:?}"
        );
        assert!(!answer.contains("transfer-encoding"), "{answer}");
        if code == 304 {
            assert!(answer.contains("etag: \"v1\""), "{answer}");
        }
    }
    assert_eq!(t.server_streams().await, 0);
}

#[actix_rt::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let t = Tunnel::start().await;
    let answer = raw(
        t.server.addr(),
        format!(
            "GET /hop HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, x-private\r\nX-Private: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
             Upgrade: h2c\r\nCookie: a=1\r\nCookie: b=2\r\nX-Kept: yes\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let names = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-echo-names: "))
        .unwrap_or_default()
        .to_owned();
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !names.split(',').any(|n| n == gone),
            "{gone} forwarded: {names}"
        );
    }
    assert!(names.split(',').any(|n| n == "x-kept"), "{names}");
    assert!(
        answer.contains("x-echo-cookie: a=1 | b=2") || answer.contains("x-echo-cookie: a=1; b=2"),
        "{answer}"
    );
}

/// The names of the fields the local service received, from its echo.
fn echoed_names(answer: &str) -> Vec<String> {
    let names = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-echo-names: "));
    names
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect()
}

#[actix_rt::test]
async fn no_date_is_added_on_the_way_with_or_without_a_body() {
    let t = Tunnel::start().await;
    // The body looks like the end of a head with a `date` line: only the
    // head's own last line may be taken for one.
    let bodies = ["", "date: Wed, 02 Dec 2026 00:22:19 GMT\r\n\r\n"];
    for body in bodies {
        let request = format!(
            "POST /d HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = raw(t.server.addr(), request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let names = echoed_names(&answer);
        assert!(!names.iter().any(|n| n == "date"), "{names:?}");
        assert!(answer.ends_with(body), "{answer}");
    }
    let get = format!("GET /d HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let names = echoed_names(&raw(t.server.addr(), get.as_bytes()).await);
    assert!(names.iter().any(|n| n == "host"), "{names:?}");
    assert!(!names.iter().any(|n| n == "date"), "{names:?}");
}

#[actix_rt::test]
async fn binary_upload_and_download_are_byte_exact() {
    let t = Tunnel::start().await;
    // 1 MiB binary upload with Content-Length, echoed back.
    let up = Bytes::from(pattern(1024 * 1024));
    let mut resp = t
        .request(Method::POST, "/echo")
        .send_body(up.clone())
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-echo-cl"), "1048576");
    assert_eq!(header(&resp, "content-length"), "1048576");
    assert_eq!(resp.body().limit(8 << 20).await.unwrap(), up);

    // 5 MB upload: many frames, each within the WebSocket frame limit.
    let five = Bytes::from(pattern(5_000_000));
    let mut resp = t
        .request(Method::POST, "/sum")
        .send_body(five)
        .await
        .unwrap();
    let body = resp.body().await.unwrap();
    assert!(body.starts_with(b"5000000 "), "{body:?}");
    assert!(body.ends_with(b" true"), "{body:?}");

    // 10 MiB download, sized.
    let n = 10 * 1024 * 1024;
    let mut resp = t.get(&format!("/bytes/{n}")).send().await.unwrap();
    assert_eq!(header(&resp, "content-length"), n.to_string());
    let body = resp.body().limit(n + 1).await.unwrap();
    assert_eq!(body.len(), n);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern_byte(i as u64)));
    assert_eq!(t.server_streams().await, 0);
}

#[actix_rt::test]
async fn chunked_bodies_both_ways() {
    let t = Tunnel::start().await;
    // Upload without a length: chunked to the server, streamed through.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..50)
        .map(|i| Ok(Bytes::from(vec![i as u8; 10_000])))
        .collect();
    let mut resp = t
        .request(Method::PUT, "/echo")
        .send_stream(stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-echo-cl"), "");
    assert_eq!(header(&resp, "x-echo-te"), "chunked");
    let body = resp.body().limit(1 << 20).await.unwrap();
    assert_eq!(body.len(), 500_000);
    assert!(body
        .chunks(10_000)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == i as u8)));

    // Download without a length stays chunked.
    let mut resp = t.get("/chunked/300000").send().await.unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(header(&resp, "transfer-encoding"), "chunked");
    let body = resp.body().limit(1 << 20).await.unwrap();
    assert_eq!(body.to_vec(), pattern(300_000));
}

#[actix_rt::test]
async fn slow_chunked_response_streams_first_chunk_early() {
    let t = Tunnel::start().await;
    let mut resp = t.get("/slow").send().await.unwrap();
    // The local service holds back its last chunk until released, so this
    // read can only succeed if the first chunk was streamed on its own.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.next())
        .await
        .expect("first chunk before the last is sent")
        .expect("a chunk")
        .expect("ok chunk");
    assert_eq!(&first[..], b"first;");
    t.upstream.control.release.notify_one();
    let rest = resp.body().await.unwrap();
    assert_eq!(&rest[..], b"last");
}

#[actix_rt::test]
async fn many_concurrent_requests_get_their_own_answers() {
    let t = Tunnel::start().await;
    let calls = (0..300).map(|i| {
        let req = t.get(&format!("/id/{i}"));
        async move {
            let mut resp = req.send().await.expect("response");
            let id = header(&resp, "x-id").to_owned();
            let body = resp.body().await.expect("body");
            (i, id, body)
        }
    });
    let results = join_all(calls).await;
    assert_eq!(results.len(), 300);
    for (i, id, body) in results {
        assert_eq!(id, i.to_string());
        assert_eq!(body, format!("id-{i}").as_bytes());
    }
    assert_eq!(
        t.upstream
            .control
            .hits
            .load(std::sync::atomic::Ordering::Relaxed),
        300
    );
}

#[actix_rt::test]
async fn parallel_slow_requests_are_not_serialized() {
    let t = Tunnel::start().await;
    let start = Instant::now();
    let calls = (0..20).map(|_| {
        let req = t.get("/sleep/1000");
        async move { req.send().await.expect("response").status() }
    });
    let statuses = join_all(calls).await;
    let took = start.elapsed();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    // One at a time would take 20 s; concurrently they take about 1 s.
    assert!(
        took < Duration::from_secs(8),
        "20 x 1 s requests took {took:?}"
    );
    println!("20 parallel 1-second requests took {took:?}");
}

#[actix_rt::test]
async fn local_service_down_is_502() {
    let t = Tunnel::start().await;
    t.upstream.stop().await;
    let mut resp = t.get("/anything").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = String::from_utf8_lossy(&resp.body().await.unwrap()).into_owned();
    assert!(body.contains("unreachable"), "{body}");
    assert!(body.contains(&t.upstream.addr.to_string()), "{body}");
}

#[actix_rt::test]
async fn no_response_head_in_time_is_504() {
    let t = Tunnel::start_with(server_config("request_timeout_secs = 1")).await;
    let mut resp = t.get("/sleep/5000").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = String::from_utf8_lossy(&resp.body().await.unwrap()).into_owned();
    assert!(body.contains("did not answer within 1 s"), "{body}");
    // The abandoned stream is cancelled on both ends.
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await
    );
}

#[actix_rt::test]
async fn caller_leaving_cancels_the_stream() {
    let t = Tunnel::start().await;
    let mut s = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    s.write_all(format!("GET /slow HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first;") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(t.server_streams().await, 1);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.server_streams().await == 0
        })
        .await,
        "stream left behind after the caller went away"
    );
}

#[actix_rt::test]
async fn one_client_serves_several_hosts_each_to_its_own_service() {
    let first = upstream::Upstream::start();
    let second = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let config = client_config_text(&format!(
        "server = \"ws://{}/_burrow/connect\"\n\
         [[tunnels]]\nhost = \"{HOST}\"\ntoken = \"{TOKEN}\"\nlocal = \"{}\"\n\
         [[tunnels]]\nhost = \"other.localhost\"\ntoken = \"other-token\"\nlocal = \"{}/echo-prefix\"\n",
        server.addr(),
        first.url(),
        second.url()
    ));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = actix_rt::spawn(run_client(config, tx));
    wait_registered(&mut events).await;
    for (host, upstream, uri) in [
        (HOST, &first, "/where"),
        ("other.localhost", &second, "/echo-prefix/where"),
    ] {
        let resp = caller()
            .get(format!("http://{}/where", server.addr()))
            .insert_header(("host", host))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "x-echo-host"), host);
        // The local service's path prefix is kept in front of the caller's path.
        assert_eq!(header(&resp, "x-echo-uri"), uri);
        assert_eq!(
            header(&resp, "x-echo-port"),
            upstream.addr.port().to_string()
        );
    }
}

#[actix_rt::test]
async fn client_side_local_timeout_is_504_too() {
    let upstream = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let toml = client_toml(server.addr(), &upstream.url(), TOKEN).replace(
        "max_reconnect_delay_secs = 1",
        "max_reconnect_delay_secs = 1\nlocal_timeout_secs = 1",
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = actix_rt::spawn(run_client(client_config_text(&toml), tx));
    wait_registered(&mut events).await;
    let mut resp = caller()
        .get(format!("http://{}/sleep/5000", server.addr()))
        .insert_header(("host", HOST))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = String::from_utf8_lossy(&resp.body().await.unwrap()).into_owned();
    assert!(body.contains("timed out"), "{body}");
}
