//! A WebSocket upgrade for a host held through another node: the request
//! head goes to that node's internal listener on a connection of its own,
//! and once it answers `101 Switching Protocols` the connection's bytes
//! are relayed both ways as they are (the caller's WebSocket frames pass
//! through untouched, as through the tunnel). Any other answer (the local
//! service refusing the upgrade, the node's own errors) is given to the
//! caller as it came.

use std::io;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use burrow_common::{
    headers::is_hop_by_hop,
    http1::{parse_content_length, ChunkedDecoder},
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{each_field, Forwarding, Relay};
use crate::{cluster::SECRET_HEADER, error::ProxyError};

/// Largest response head from another node.
const MAX_HEAD: usize = 64 << 10;
/// Largest body of a refused upgrade (an error page).
const MAX_REFUSAL: usize = 1 << 20;
/// Most header fields in that head.
const MAX_FIELDS: usize = 128;

/// A node's answer head.
struct Head {
    status: StatusCode,
    fields: Vec<(header::HeaderName, header::HeaderValue)>,
}

impl Relay {
    /// Forwards the upgrade to the node at `url` (`http://host:port`).
    pub(super) async fn upgrade(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        how: &Forwarding<'_>,
        url: &str,
    ) -> Result<HttpResponse, ProxyError> {
        let unreachable = |e: io::Error| {
            log::debug!(
                "cluster: {url} did not take an upgrade for {}: {e}",
                how.host
            );
            self.cluster.forget(how.host);
            ProxyError::NodeUnreachable(how.host.to_owned())
        };
        let addr = url.strip_prefix("http://").unwrap_or(url);
        let mut tcp = TcpStream::connect(addr).await.map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let head = request_head(req, how, self.cluster.secret().expose());
        tcp.write_all(&head).await.map_err(unreachable)?;
        let (answer, rest) = read_head(&mut tcp).await.map_err(unreachable)?;
        match answer.status {
            StatusCode::SWITCHING_PROTOCOLS => Ok(switched(answer, rest, tcp, payload)),
            _ => refused(answer, rest, tcp).await.map_err(unreachable),
        }
    }
}

/// The upgrade request's head as the other node takes it.
fn request_head(req: &HttpRequest, how: &Forwarding<'_>, secret: &str) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut head = format!("{} {target} HTTP/1.1\r\n", req.method()).into_bytes();
    each_field(req, how, |name, value| {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    });
    head.extend_from_slice(format!("{SECRET_HEADER}: {secret}\r\n\r\n").as_bytes());
    head
}

/// Reads a response head; answers it and the bytes read past it.
async fn read_head(tcp: &mut TcpStream) -> io::Result<(Head, BytesMut)> {
    let mut buf = BytesMut::with_capacity(8 << 10);
    loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Response::new(&mut fields);
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        match parsed.parse(&buf).map_err(|e| invalid(&e.to_string()))? {
            httparse::Status::Complete(used) => {
                let status = parsed.code.and_then(|c| StatusCode::from_u16(c).ok());
                let status = status.ok_or_else(|| invalid("bad status"))?;
                let fields = parsed
                    .headers
                    .iter()
                    .filter_map(|f| {
                        let name = header::HeaderName::from_bytes(f.name.as_bytes()).ok()?;
                        Some((name, header::HeaderValue::from_bytes(f.value).ok()?))
                    })
                    .collect();
                let rest = buf.split_off(used);
                return Ok((Head { status, fields }, rest));
            }
            httparse::Status::Partial if buf.len() > MAX_HEAD => {
                return Err(invalid("response head too large"))
            }
            httparse::Status::Partial => {}
        }
    }
}

/// The caller's `101`, the connection's bytes relayed both ways.
fn switched(answer: Head, rest: BytesMut, tcp: TcpStream, payload: web::Payload) -> HttpResponse {
    let mut builder = HttpResponse::build(answer.status);
    let mut protocol = header::HeaderValue::from_static("websocket");
    for (name, value) in answer.fields {
        if name == header::UPGRADE {
            protocol = value;
        } else if !is_hop_by_hop(name.as_str().as_bytes()) {
            builder.append_header((name, value));
        }
    }
    let (read, mut write) = tcp.into_split();
    actix_web::rt::spawn(async move {
        let mut payload = payload;
        while let Some(Ok(chunk)) = payload.next().await {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    builder.upgrade(protocol).streaming(bytes_of(read, rest))
}

/// `rest`, then what `read` brings until it ends.
fn bytes_of(
    read: impl AsyncRead + Unpin + 'static,
    rest: BytesMut,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::unfold((read, rest), |(mut read, mut buf)| async move {
        if buf.is_empty() {
            buf.reserve(16 << 10);
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        let out = buf.split().freeze();
        Some((Ok(out), (read, buf)))
    })
}

/// The node's answer other than `101`, read whole (an error page).
async fn refused(answer: Head, mut buf: BytesMut, mut tcp: TcpStream) -> io::Result<HttpResponse> {
    let get = |name| answer.fields.iter().find(|(n, _)| *n == name);
    let chunked = get(header::TRANSFER_ENCODING).is_some();
    let length = get(header::CONTENT_LENGTH).and_then(|(_, v)| parse_content_length(v.as_bytes()));
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    loop {
        if chunked {
            while let Some(piece) = decoder.decode(&mut buf).map_err(io::Error::other)? {
                body.extend_from_slice(&piece);
            }
        } else {
            body.extend_from_slice(&buf.split());
        }
        let whole = match (chunked, length) {
            (true, _) => decoder.is_done(),
            (false, Some(len)) => body.len() as u64 >= len,
            (false, None) => true,
        };
        if whole || body.len() > MAX_REFUSAL {
            break;
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let mut builder = HttpResponse::build(answer.status);
    for (name, value) in answer.fields {
        if name != header::CONTENT_LENGTH && !is_hop_by_hop(name.as_str().as_bytes()) {
            builder.append_header((name, value));
        }
    }
    Ok(builder.body(body))
}
