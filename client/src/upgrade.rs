//! WebSocket upgrades: the local connection is a plain TCP stream on which
//! the caller's handshake is written as it came (an HTTP client library
//! would replace `Sec-WebSocket-Key`), and after a 101 the bytes of both
//! directions are relayed as they are, under the stream's flow control.

use std::time::Duration;

use burrow_common::{
    flow::RecvBody,
    headers::{find, strip_hop_by_hop, strip_hop_by_hop_for_upgrade},
    protocol::{HeaderList, RequestHead, ResponseHead},
    ResetCode,
};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{stream, Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    config::TunnelConfig,
    forward::{pump_local, send_head, Back, Failure},
};

/// Largest response head accepted from the local service.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read size for the local connection.
const READ_CHUNK: usize = 64 * 1024;

/// Performs the caller's upgrade against the local service of `tunnel`
/// and, after a 101, relays bytes until either side closes.
pub async fn relay(
    head: RequestHead,
    caller: RecvBody,
    tunnel: &TunnelConfig,
    connect_timeout: Duration,
    back: Back<'_>,
) -> Result<(), Failure> {
    let local = tunnel.local.as_str();
    let base = &tunnel.local_url;
    let unreachable = |e: String| {
        Failure(
            ResetCode::LocalUnreachable,
            format!("cannot connect to {local}: {e}"),
        )
    };
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(base.socket()))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();

    wr.write_all(&request_bytes(&head, base.prefix()))
        .await
        .map_err(|e| Failure(ResetCode::LocalError, format!("writing to {local}: {e}")))?;

    let (status, mut headers, rest) = read_response_head(&mut rd, local).await?;
    let head = |headers, end_stream| ResponseHead {
        status,
        headers,
        end_stream,
        body: None,
    };
    if status == 101 {
        strip_hop_by_hop_for_upgrade(&mut headers);
        send_head(back, head(headers, false))?;
        let from_local = stream::once(async move { Ok::<_, std::io::Error>(rest) })
            .filter(|r| std::future::ready(!matches!(r, Ok(b) if b.is_empty())))
            .chain(read_stream(rd));
        let to_local = async move {
            let mut caller = std::pin::pin!(caller);
            while let Some(Ok(bytes)) = caller.next().await {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // The caller closed its side (or left): pass the close on.
            let _ = wr.shutdown().await;
        };
        let from_local = pump_local(back, from_local, local);
        let mut from_local = std::pin::pin!(from_local);
        let mut to_local = std::pin::pin!(to_local);
        // The local side closing ends the stream; the caller closing only
        // ends its direction, and the local service answers with its close.
        return tokio::select! {
            r = &mut from_local => r,
            _ = &mut to_local => from_local.await,
        };
    }

    // A refusal (403, 404, 426...): an ordinary response with a body, framed
    // by Content-Length, by chunked encoding, or by the connection closing.
    let chunked = find(&headers, b"transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"));
    strip_hop_by_hop(&mut headers);
    let length = find(&headers, b"content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let end_stream = length == Some(0) || status == 204 || status == 304 || status < 200;
    send_head(back, head(headers, end_stream))?;
    drop(caller);
    if end_stream {
        return Ok(());
    }
    let body = stream::once(async move { Ok::<_, std::io::Error>(rest) }).chain(read_stream(rd));
    if chunked {
        pump_local(back, dechunk(body), local).await
    } else if let Some(n) = length {
        pump_local(back, limit(body, n), local).await
    } else {
        pump_local(back, body, local).await
    }
}

/// The request head as HTTP/1.1 bytes, headers in the order received.
fn request_bytes(head: &RequestHead, prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(head.uri.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads and parses the response head; returns the bytes read past it.
async fn read_response_head(
    rd: &mut (impl AsyncRead + Unpin),
    local: &str,
) -> Result<(u16, HeaderList, Bytes), Failure> {
    let failed = |what: String| Failure(ResetCode::LocalError, format!("{local}: {what}"));
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = rd
            .read_buf(&mut buf)
            .await
            .map_err(|e| failed(format!("reading the response: {e}")))?;
        if n == 0 {
            return Err(failed("closed the connection without a response".into()));
        }
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(502);
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            Bytes::copy_from_slice(h.name.to_ascii_lowercase().as_bytes()),
                            Bytes::copy_from_slice(h.value),
                        )
                    })
                    .collect();
                buf.advance(len);
                return Ok((status, headers, buf.freeze()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(failed("response head too large".into())),
            Err(e) => return Err(failed(format!("invalid response head: {e}"))),
        }
    }
}

/// The bytes of a reader as a stream of chunks, ending at EOF.
fn read_stream(rd: impl AsyncRead + Unpin) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    stream::unfold(Some(rd), |rd| async move {
        let mut rd = rd?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match rd.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(rd))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// At most `n` bytes of `body`.
fn limit(
    body: impl Stream<Item = Result<Bytes, std::io::Error>>,
    n: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let mut left = n;
    body.take_while(move |_| std::future::ready(left > 0))
        .map(move |r| {
            r.map(|mut b| {
                if b.len() as u64 > left {
                    b.truncate(left as usize);
                }
                left -= b.len() as u64;
                b
            })
        })
}

#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    Crlf,
    Done,
}

/// Decodes a chunked body (trailers are dropped).
fn dechunk(
    body: impl Stream<Item = Result<Bytes, std::io::Error>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    stream::unfold(
        (Box::pin(body), BytesMut::new(), Chunk::Size),
        move |(mut body, mut buf, mut phase)| async move {
            loop {
                match phase {
                    Chunk::Done => return None,
                    Chunk::Size => match httparse::parse_chunk_size(&buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buf.advance(used);
                            phase = if size == 0 {
                                Chunk::Done
                            } else {
                                Chunk::Data(size)
                            };
                            continue;
                        }
                        Ok(httparse::Status::Partial) => {}
                        Err(_) => {
                            let e = invalid("invalid chunk size");
                            return Some((Err(e), (body, buf, Chunk::Done)));
                        }
                    },
                    Chunk::Data(left) if !buf.is_empty() => {
                        let n = left.min(buf.len() as u64);
                        let out = buf.split_to(n as usize).freeze();
                        phase = if n == left {
                            Chunk::Crlf
                        } else {
                            Chunk::Data(left - n)
                        };
                        return Some((Ok(out), (body, buf, phase)));
                    }
                    Chunk::Crlf if buf.len() >= 2 => {
                        buf.advance(2);
                        phase = Chunk::Size;
                        continue;
                    }
                    Chunk::Data(_) | Chunk::Crlf => {}
                }
                match body.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => return Some((Err(e), (body, buf, Chunk::Done))),
                    None => {
                        let e = invalid("connection closed inside a chunked body");
                        return Some((Err(e), (body, buf, Chunk::Done)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let v: Vec<_> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        stream::iter(v)
    }

    #[tokio::test]
    async fn dechunk_handles_split_input() {
        let body = chunks(&[b"5\r\nhel", b"lo\r", b"\n6;ext=1\r\n world\r\n0\r\n\r\n"]);
        let out: Vec<_> = dechunk(body).collect().await;
        let text: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        assert_eq!(text, b"hello world");
    }

    #[tokio::test]
    async fn dechunk_reports_truncation_and_garbage() {
        let out: Vec<_> = dechunk(chunks(&[b"5\r\nhel"])).collect().await;
        assert!(out.last().unwrap().is_err());
        let out: Vec<_> = dechunk(chunks(&[b"zz\r\n"])).collect().await;
        assert!(out[0].is_err());
    }

    #[tokio::test]
    async fn limit_cuts_at_the_length() {
        let out: Vec<_> = limit(chunks(&[b"abc", b"defgh", b"ij"]), 5).collect().await;
        let text: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        assert_eq!(text, b"abcde");
    }

    #[test]
    fn request_head_is_written_in_order() {
        let head = RequestHead {
            host: "h".into(),
            method: "GET".into(),
            uri: "/ws?x=%2F".into(),
            headers: vec![
                (
                    Bytes::from_static(b"host"),
                    Bytes::from_static(b"demo.localhost"),
                ),
                (
                    Bytes::from_static(b"upgrade"),
                    Bytes::from_static(b"websocket"),
                ),
            ],
            end_stream: false,
            upgrade: true,
        };
        assert_eq!(
            request_bytes(&head, "/app"),
            b"GET /app/ws?x=%2F HTTP/1.1\r\nhost: demo.localhost\r\nupgrade: websocket\r\n\r\n"
        );
    }
}
