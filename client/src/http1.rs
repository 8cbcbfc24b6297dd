//! Raw HTTP/1.1 on a byte stream, for WebSocket upgrades: the request head
//! written as received, the response head parsed, and a response body read
//! as its framing says (length, chunked, or until the connection closes).

use burrow_common::{http1::ChunkedDecoder, protocol::HeaderList};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{stream, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted from the local service.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read size for the local connection.
const READ_CHUNK: usize = 64 * 1024;

/// A request head as HTTP/1.1 bytes: `method`, then `prefix` and `uri` as
/// the target, then the fields in the order given.
pub fn request_bytes(method: &str, prefix: &str, uri: &str, headers: &HeaderList) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(uri.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A parsed response head and the bytes read past it.
pub struct ResponseStart {
    /// The status code.
    pub status: u16,
    /// The fields, names lower-cased.
    pub headers: HeaderList,
    /// Body (or upgraded) bytes that arrived with the head.
    pub rest: Bytes,
}

impl ResponseStart {
    /// The fields as borrowed name and value pairs.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (&n[..], &v[..]))
    }
}

/// Reads and parses a response head; the error says what was wrong.
pub async fn read_response_head(
    rd: &mut (impl AsyncRead + Unpin),
) -> Result<ResponseStart, String> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = rd
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return Err("closed the connection without a response".into());
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
                let rest = buf.freeze();
                return Ok(ResponseStart {
                    status,
                    headers,
                    rest,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err("response head too large".into()),
            Err(e) => return Err(format!("invalid response head: {e}")),
        }
    }
}

/// `rest`, then the bytes of a reader as a stream of chunks, ending at EOF.
pub fn read_stream(
    rest: Bytes,
    rd: impl AsyncRead + Unpin,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let first = (!rest.is_empty()).then_some(Ok(rest));
    stream::iter(first).chain(stream::unfold(Some(rd), |rd| async move {
        let mut rd = rd?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match rd.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(rd))),
            Err(e) => Some((Err(e), None)),
        }
    }))
}

/// At most `n` bytes of `body`.
pub fn limit(
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

/// Decodes a chunked body (trailers are dropped).
pub fn dechunk(
    body: impl Stream<Item = Result<Bytes, std::io::Error>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    stream::unfold(
        Some((Box::pin(body), BytesMut::new(), ChunkedDecoder::default())),
        move |state| async move {
            let (mut body, mut buf, mut decoder) = state?;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(piece)) => return Some((Ok(piece), Some((body, buf, decoder)))),
                    Ok(None) if decoder.is_done() => return None,
                    Ok(None) => {}
                    Err(e) => return Some((Err(invalid(e.to_string())), None)),
                }
                match body.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        let e = invalid("connection closed inside a chunked body".into());
                        return Some((Err(e), None));
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
        let headers = vec![
            (
                Bytes::from_static(b"host"),
                Bytes::from_static(b"demo.localhost"),
            ),
            (
                Bytes::from_static(b"upgrade"),
                Bytes::from_static(b"websocket"),
            ),
        ];
        assert_eq!(
            request_bytes("GET", "/app", "/ws?x=%2F", &headers),
            b"GET /app/ws?x=%2F HTTP/1.1\r\nhost: demo.localhost\r\nupgrade: websocket\r\n\r\n"
        );
    }
}
