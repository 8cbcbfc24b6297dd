//! The callers' HTTP/1.1, written out by hand over one connection per
//! exchange. An answer is complete only when its framing says so: all of
//! its Content-Length, or its last chunk. (awc ends a body quietly at the
//! connection's end, so a cut answer would look like a short success.)

use std::{io, net::SocketAddr};

use burrow_common::http1::{parse_content_length, status_has_no_body, ChunkedDecoder};
use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{traffic::Problem, HOST};

/// Largest answer head read.
const HEAD_LIMIT: usize = 64 << 10;
/// Largest answer body read.
const BODY_LIMIT: usize = 16 << 20;

/// A request body: none, whole with Content-Length, or chunked in these
/// pieces.
pub enum Body<'a> {
    None,
    Sized(&'a [u8]),
    Chunked(Vec<&'a [u8]>),
}

/// A complete answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `method path` to the server at `public` for the tunnel's host, and the
/// answer, read to the end its framing gives.
pub async fn exchange(
    public: SocketAddr,
    method: &str,
    path: &str,
    body: Body<'_>,
) -> Result<Answer, Problem> {
    let mut s = TcpStream::connect(public)
        .await
        .map_err(|e| io_problem("connect", e))?;
    let _ = s.set_nodelay(true);
    let framing = match &body {
        Body::None => String::new(),
        Body::Sized(b) => format!("Content-Length: {}\r\n", b.len()),
        Body::Chunked(_) => "Transfer-Encoding: chunked\r\n".into(),
    };
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n{framing}\r\n");
    send(&mut s, head.as_bytes(), body)
        .await
        .map_err(|e| io_problem("send", e))?;
    let mut buf = BytesMut::with_capacity(16 << 10);
    let (status, length, chunked) = read_head(&mut s, &mut buf).await?;
    let body = if status_has_no_body(status) || method == "HEAD" {
        Vec::new()
    } else if chunked {
        read_chunked(&mut s, buf).await?
    } else if let Some(len) = length {
        read_sized(&mut s, buf, len).await?
    } else {
        // Delimited by the connection's end: complete by definition.
        read_to_end(&mut s, buf).await?
    };
    Ok(Answer { status, body })
}

async fn send(s: &mut TcpStream, head: &[u8], body: Body<'_>) -> io::Result<()> {
    s.write_all(head).await?;
    match body {
        Body::None => {}
        Body::Sized(b) => s.write_all(b).await?,
        Body::Chunked(pieces) => {
            for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                s.write_all(piece).await?;
                s.write_all(b"\r\n").await?;
            }
            s.write_all(b"0\r\n\r\n").await?;
        }
    }
    s.flush().await
}

/// Reads more into `buf`; `false` at the connection's end.
async fn more(s: &mut TcpStream, buf: &mut BytesMut) -> Result<bool, Problem> {
    buf.reserve(32 << 10);
    let n = s
        .read_buf(buf)
        .await
        .map_err(|e| io_problem("receive", e))?;
    Ok(n > 0)
}

/// The status, Content-Length and whether the body is chunked; `buf` is
/// left holding what followed the head.
async fn read_head(
    s: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<(u16, Option<u64>, bool), Problem> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut answer = httparse::Response::new(&mut fields);
        match answer.parse(buf) {
            Ok(httparse::Status::Complete(used)) => {
                let status = answer.code.unwrap_or(0);
                let field = |name: &str| {
                    answer
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value)
                };
                let length = field("content-length").and_then(parse_content_length);
                let chunked = field("transfer-encoding").is_some_and(|v| {
                    String::from_utf8_lossy(v)
                        .to_ascii_lowercase()
                        .contains("chunked")
                });
                let _ = buf.split_to(used);
                return Ok((status, length, chunked));
            }
            Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => {}
            Ok(httparse::Status::Partial) => {
                return Err(Problem::other("bad answer", "head too large".into()))
            }
            Err(e) => return Err(Problem::other("bad answer", format!("head: {e}"))),
        }
        if !more(s, buf).await? {
            return Err(Problem::other(
                "connection closed",
                format!("closed before a whole answer head ({} bytes)", buf.len()),
            ));
        }
    }
}

async fn read_sized(s: &mut TcpStream, mut buf: BytesMut, len: u64) -> Result<Vec<u8>, Problem> {
    if len > BODY_LIMIT as u64 {
        return Err(Problem::other(
            "bad answer",
            format!("{len} bytes declared"),
        ));
    }
    while (buf.len() as u64) < len {
        if !more(s, &mut buf).await? {
            return Err(Problem::other(
                "body cut short",
                format!("{} of {len} bytes, then the connection closed", buf.len()),
            ));
        }
    }
    buf.truncate(len as usize);
    Ok(buf.to_vec())
}

async fn read_chunked(s: &mut TcpStream, mut buf: BytesMut) -> Result<Vec<u8>, Problem> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    loop {
        while let Some(piece) = decoder
            .decode(&mut buf)
            .map_err(|e| Problem::other("bad answer", format!("chunked body: {e}")))?
        {
            body.extend_from_slice(&piece);
        }
        if decoder.is_done() {
            return Ok(body);
        }
        if body.len() > BODY_LIMIT {
            return Err(Problem::other("bad answer", "body too large".into()));
        }
        if !more(s, &mut buf).await? {
            return Err(Problem::other(
                "body cut short",
                format!(
                    "chunked body closed after {} bytes without its last chunk",
                    body.len()
                ),
            ));
        }
    }
}

async fn read_to_end(s: &mut TcpStream, mut buf: BytesMut) -> Result<Vec<u8>, Problem> {
    while buf.len() <= BODY_LIMIT {
        if !more(s, &mut buf).await? {
            return Ok(buf.to_vec());
        }
    }
    Err(Problem::other("bad answer", "body too large".into()))
}

/// An I/O error, labelled by its kind.
fn io_problem(stage: &str, e: io::Error) -> Problem {
    let label = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::BrokenPipe => "broken pipe",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::TimedOut => "timeout",
        _ => return Problem::error(stage, e),
    };
    Problem::other(label, format!("{stage}: {e}"))
}
