//! Bodies whose bytes look like HTTP heads (the server's own 400 among
//! them) cross the tunnel unchanged both ways, and a head the HTTP service
//! refuses is answered, in turn, with what was wrong.

mod support;

use awc::http::{Method, StatusCode};
use bytes::Bytes;
use futures_util::stream;
use support::*;
/// The empty 400 the HTTP service writes for a head it cannot parse, and a
/// head it would refuse.
const LOOKS_LIKE_HEADS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n\
    GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";

/// `len` bytes of 1 KiB units that each begin with [`LOOKS_LIKE_HEADS`].
fn lookalike(len: usize) -> Vec<u8> {
    let mut unit = LOOKS_LIKE_HEADS.to_vec();
    unit.extend(pattern(1024 - unit.len()));
    unit.iter().copied().cycle().take(len).collect()
}

/// The first offset at which `got` differs from `want`, if any.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i))
}

#[actix_rt::test]
async fn a_sized_body_of_lookalike_heads_arrives_unchanged_both_ways() {
    let t = Tunnel::start().await;
    let body = Bytes::from(lookalike(4 << 20));
    for round in 0..10 {
        let mut resp = t
            .request(Method::POST, "/echo")
            .send_body(body.clone())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        let got = resp.body().limit(8 << 20).await.unwrap();
        assert_eq!(first_difference(&got, &body), None, "round {round}");
    }
}

#[actix_rt::test]
async fn lookalike_heads_split_across_writes_arrive_unchanged() {
    let t = Tunnel::start().await;
    let body = lookalike(1 << 20);
    // Pieces of 1000 and 7 bytes: unit starts fall inside pieces and
    // across them, on the way in and (echoed as they come) on the way out.
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in [1000, 7].into_iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size).min(body.len());
        pieces.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &body[at..end],
        )));
        at = end;
    }
    let mut resp = t
        .request(Method::POST, "/echo")
        .send_stream(stream::iter(pieces))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.body().limit(2 << 20).await.unwrap();
    assert_eq!(first_difference(&got, &body), None);
}

/// A head and a body of `len` lookalike bytes for the test host.
fn post(len: usize, chunked: bool) -> (Vec<u8>, Vec<u8>) {
    let body = lookalike(len);
    let mut out = format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\n").into_bytes();
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for piece in body.chunks(333) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
        out.extend_from_slice(&body);
    }
    (out, body)
}

#[actix_rt::test]
async fn a_refused_head_is_answered_after_the_requests_before_it() {
    let t = Tunnel::start().await;
    let (first, first_body) = post(3000, false);
    let (second, second_body) = post(2500, true);
    let mut request = [first, second].concat();
    request
        .extend_from_slice(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: b\r\n\r\n").as_bytes());
    request.extend_from_slice(format!("GET /never HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let answer = raw_bytes(t.server.addr(), &request).await;

    // Two echoes, whole, in order, then the refusal, then the end.
    let mut rest = &answer[..];
    for want in [&first_body, &second_body] {
        let (status, head, body) = next_answer(&mut rest);
        assert_eq!(status, 200, "{head}");
        assert_eq!(first_difference(&body, want), None, "{head}");
    }
    let (status, head, body) = next_answer(&mut rest);
    assert_eq!(status, 400, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, b"the request has more than one Host field\n");
    // Nothing after the refused head was answered.
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(rest));
}

/// A head that has not ended after 128 KiB.
fn too_large() -> String {
    let start = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX: ");
    format!("{start}{}", "a".repeat(128 * 1024 - start.len()))
}

/// Takes the next answer off `rest`: its status, head and (de-chunked) body.
fn next_answer(rest: &mut &[u8]) -> (u16, String, Vec<u8>) {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(rest).expect("a response head") {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => panic!("cut: {}", String::from_utf8_lossy(rest)),
    };
    let status = response.code.expect("a status");
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let head = String::from_utf8_lossy(&rest[..len]).into_owned();
    let length = field("content-length").map(|v| v.parse::<usize>().expect("a length"));
    let chunked = field("transfer-encoding").is_some();
    *rest = &rest[len..];
    let body = match (length, chunked) {
        (Some(n), false) => {
            let body = rest[..n].to_vec();
            *rest = &rest[n..];
            body
        }
        (None, true) => dechunk(rest),
        _ => panic!("unexpected framing: {head}"),
    };
    (status, head, body)
}

/// Decodes a chunked body off `rest`.
fn dechunk(rest: &mut &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(rest).expect("a chunk size") {
            httparse::Status::Complete(found) => found,
            httparse::Status::Partial => panic!("a cut chunk size"),
        };
        *rest = &rest[used..];
        let size = size as usize;
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        *rest = &rest[size + 2..];
        if size == 0 {
            return body;
        }
    }
}

#[actix_rt::test]
async fn each_refusal_says_what_was_wrong() {
    let t = Tunnel::start().await;
    let cases: [(String, u16, &str); 6] = [
        (
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nBad Name: x\r\n\r\n"),
            400,
            "a header name holds a character",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX: a\0b\r\n\r\n"),
            400,
            "a header value holds a control character",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400,
            "more than one Content-Length",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"),
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            format!("BURROW-REFUSED /8 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
            400,
            "is reserved",
        ),
        (
            // Exactly as much as the server reads before it gives up, so
            // that none is left unread when it closes.
            too_large(),
            431,
            "larger than 128 KiB",
        ),
    ];
    for (request, want_status, words) in cases {
        let answer = raw_bytes(t.server.addr(), request.as_bytes()).await;
        let mut rest = &answer[..];
        let (status, head, body) = next_answer(&mut rest);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, want_status, "{head}{body}");
        assert!(body.contains(words), "{head}{body}");
        assert!(rest.is_empty());
    }
}
