//! One WebSocket connection to the server: the handshake here, frame
//! dispatch and the stream table in [`dispatch`], and the writer that owns
//! the socket's sending half in [`writer`].

mod dispatch;
mod read;
mod writer;

use std::{rc::Rc, sync::Arc, time::Duration};

use awc::ws;
use burrow_common::{
    batch,
    connection::writer::write_loop,
    flow::PathState,
    protocol::{TunnelRequest, DEFAULT_PING_SECS, MAX_MESSAGE_SIZE, SILENT_PINGS},
    DecodeError, Frame, Hello, HelloAck, Outbox, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use thiserror::Error;

use crate::{
    config::ClientConfig, forward::ForwardContext, local_io::SocketHandle, shutdown::Shutdown,
};

/// Longest wait for the server's answer to the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which the server is considered gone: three of its ping
/// intervals (the one its handshake answer names, or the default), so a
/// healthy connection is never this quiet.
fn server_silence(ping_secs: Option<u32>) -> Duration {
    let ping = ping_secs.unwrap_or(DEFAULT_PING_SECS);
    Duration::from_secs(u64::from(ping) * u64::from(SILENT_PINGS))
}

/// How a connection ended.
#[derive(Debug, Error)]
pub enum ConnError {
    /// The server could not be reached or refused the WebSocket upgrade.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// Server URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server refused the handshake or a tunnel.
    #[error("server refused the tunnel: {reason}")]
    Refused {
        /// The server's reasons.
        reason: String,
        /// Whether the refusal may clear by itself.
        retry: bool,
    },
    /// The connection was up and has been lost.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection landed on a server worker another connection of the
    /// client already covers; it is opened again to land on another.
    #[error("server worker {0} is already covered; reconnecting")]
    WorkerTaken(u32),
    /// The client asked the server to drain the connection (idle, or
    /// shutting down), and the server closed it once nothing was left on it.
    #[error("the connection was drained and closed")]
    Drained,
    /// The server said it was shutting down, finished the streams open on
    /// the connection, and closed it.
    #[error("the server shut down")]
    ServerLeft,
}

type Ws = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// What a connection reports to the client it belongs to: the first
/// connection and the extra ones of the pool play different roles.
pub trait Role {
    /// The server accepted the tunnels on the connection; `ack` is its
    /// answer (the connections it suggests, the worker serving this one).
    /// `false` asks for the connection to be dropped and opened again (it
    /// landed on a server worker another connection already covers).
    fn registered(&self, ack: &HelloAck) -> bool;
    /// The registered connection has ended.
    fn ended(&self);
    /// How long the connection may carry no request before it asks the
    /// server to drain and close it; `None` (the default) never.
    fn drain_when_idle(&self) -> Option<Duration> {
        None
    }
    /// The server opened a stream on the connection, which now has
    /// `_open` streams open.
    fn stream_opened(&self, _open: usize) {}
    /// The connection measured its round trip to the server anew.
    fn round_trip(&self, _rtt: Duration) {}
}

/// Connects, registers the tunnels as client `instance` and serves streams
/// until the connection ends, telling `role` when it is registered and
/// when it ends. Once `shutdown` is requested, the connection asks the
/// server to drain it and ends when the server has.
pub async fn serve(
    config: &ClientConfig,
    ctx: Rc<ForwardContext>,
    instance: &str,
    role: Rc<dyn Role>,
    shutdown: &Shutdown,
) -> Result<(), ConnError> {
    let (framed, mut socket) = connect(config, &ctx).await?;
    let (mut sink, mut stream) = framed.split();
    let asked = tokio::time::Instant::now();
    send_hello(&mut sink, config, instance).await?;
    let (ack, early) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_ack(&mut stream))
        .await
        .map_err(|_| ConnError::Lost("no handshake answer in time".into()))??;
    // The handshake is the first round trip measured (with the server's
    // registration in it: a little long, never short).
    let path = Arc::new(PathState::new());
    path.sample(asked.elapsed());
    socket.fit(&path);
    let ack = check_ack(ack)?;
    remember_names(config, &ack);
    if !role.registered(&ack) {
        return Err(ConnError::WorkerTaken(ack.worker.unwrap_or_default()));
    }
    let (outbox, out_rx) = Outbox::new();
    let writer = actix_rt::spawn(write_loop(writer::Socket(sink), out_rx));
    // Only a server that says it honours `Drain` is asked to drain.
    let drain_after = if ack.drain {
        role.drain_when_idle()
    } else {
        None
    };
    let silence = server_silence(ack.ping_secs);
    let mut conn =
        dispatch::Dispatcher::new(outbox, ctx, role, drain_after, ack.drain, silence, path);
    conn.socket = socket;
    let result = match conn.dispatch_early(early) {
        Ok(()) => conn.read_loop(&mut stream, shutdown).await,
        Err(e) => Err(e),
    };
    conn.close();
    writer.abort();
    result
}

/// The socket under the WebSocket to the server. On a long path it holds
/// few unsent bytes ([`burrow_common::outbox::keep_unsent_low`]), so that a
/// small answer does not wait behind a download's megabytes in the
/// kernel. On a short one it keeps the system's default: there the bound
/// would cost a fast download about 5 % and save a wait of a millisecond
/// or two (docs/PERFORMANCE.md, "No bufferbloat").
#[derive(Debug, Default)]
pub(super) struct TunnelSocket {
    handle: SocketHandle,
    bounded: bool,
}

impl TunnelSocket {
    fn new(handle: SocketHandle) -> Self {
        TunnelSocket {
            handle,
            bounded: false,
        }
    }

    /// Bounds the socket once `path` is found long.
    pub(super) fn fit(&mut self, path: &PathState) {
        if !self.bounded && path.is_long() {
            self.handle.keep_unsent_low();
            self.bounded = true;
        }
    }
}

/// The WebSocket to the server's control endpoint: the one that answered
/// last, or, when it cannot be reached, the next `server` lists.
async fn connect(
    config: &ClientConfig,
    ctx: &ForwardContext,
) -> Result<(Ws, TunnelSocket), ConnError> {
    let mut failed = None;
    for (index, url) in config.servers.in_turn() {
        let (client, socket) = ctx
            .local
            .connector()
            .control_client(config.server_tls.clone());
        let opened = client
            .ws(url.as_str())
            .max_frame_size(MAX_MESSAGE_SIZE)
            .connect()
            .await;
        match opened.map_err(|e| upgrade_failure(url, e)) {
            Ok((_, framed)) => {
                config.servers.answered(index);
                return Ok((framed, TunnelSocket::new(socket.take())));
            }
            Err(e @ ConnError::Connect { .. }) => {
                log::debug!("{e}");
                failed = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(failed.unwrap_or(ConnError::Connect {
        url: config.server.as_str().to_owned(),
        detail: "no server to connect to".into(),
    }))
}

/// Why the WebSocket to the server did not open. A server that answers
/// with a status other than 101 is not going to change its mind, unless
/// the status says it is temporarily unavailable (a proxy in front of a
/// restarting server); nor is one that speaks another scheme than the URL.
fn upgrade_failure(server: &crate::url::ServerUrl, e: awc::error::WsClientError) -> ConnError {
    use awc::error::WsClientError::InvalidResponseStatus;
    let url = server.as_str().to_owned();
    let refused = |reason: String| ConnError::Refused {
        reason,
        retry: false,
    };
    let secure = server.is_secure();
    match e {
        InvalidResponseStatus(status) if !matches!(status.as_u16(), 502..=504) => {
            let path = server.path();
            // A burrow-server's HTTPS port answers plain HTTP with 400.
            let hint = match (secure, status.as_u16()) {
                (false, 400) => "; if that port speaks HTTPS, use wss://",
                _ => "",
            };
            refused(format!(
                "{url} answered {status} instead of opening a WebSocket: is it a \
                 burrow-server, and is `{path}` its control path (by default \
                 /_burrow/connect, as in ws://HOST:PORT/_burrow/connect)?{hint}"
            ))
        }
        InvalidResponseStatus(status) => ConnError::Connect {
            url,
            detail: format!("it answered {status}, unavailable for now"),
        },
        e => match scheme_mismatch(&e, secure) {
            Some(why) => refused(format!("{url}: {why}")),
            None => ConnError::Connect {
                url,
                detail: e.to_string(),
            },
        },
    }
}

/// What is wrong when the failure says the server and the URL disagree:
/// an untrusted certificate, or another scheme than the URL's.
fn scheme_mismatch(e: &awc::error::WsClientError, secure: bool) -> Option<String> {
    use awc::error::{ConnectError, SendRequestError, WsClientError};
    match e {
        WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(io))) => {
            if let Some(why) = crate::tls::certificate_problem(io) {
                return Some(format!(
                    "it presented a certificate this client does not trust: {why}"
                ));
            }
            crate::tls::plain_server(io).then(|| {
                "it speaks plain HTTP, not TLS, on that port: use ws:// (or http://)".into()
            })
        }
        // TLS bytes where an HTTP answer should be.
        WsClientError::SendRequest(SendRequestError::Response(
            actix_http::error::ParseError::Version,
        )) if !secure => Some(
            "it did not answer in plain HTTP; if it speaks HTTPS on that port, use wss://".into(),
        ),
        _ => None,
    }
}

async fn send_hello(
    sink: &mut futures_util::stream::SplitSink<Ws, ws::Message>,
    config: &ClientConfig,
    instance: &str,
) -> Result<(), ConnError> {
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        tunnels: config
            .tunnels
            .iter()
            .enumerate()
            .map(|(i, t)| TunnelRequest {
                host: config.host_of(i),
                token: t.token.clone(),
                access: t.access.clone(),
            })
            .collect(),
        instance: Some(instance.to_owned()),
    });
    let hello = hello
        .encode()
        .map_err(|e| ConnError::Protocol(e.to_string()))?;
    sink.send(ws::Message::Binary(hello))
        .await
        .map_err(|e| ConnError::Lost(e.to_string()))
}

/// The handshake answer, and the frames that shared its message (the
/// server may batch the first requests with it).
async fn read_ack(
    stream: &mut futures_util::stream::SplitStream<Ws>,
) -> Result<(HelloAck, batch::Unpacked), ConnError> {
    while let Some(item) = stream.next().await {
        match item.map_err(|e| ConnError::Lost(e.to_string()))? {
            ws::Frame::Binary(msg) => {
                let protocol = |e: DecodeError| ConnError::Protocol(e.to_string());
                let mut frames = batch::unpack(msg).map_err(protocol)?;
                let first = frames.next().unwrap_or(Err(DecodeError::TooShort(0)));
                return match Frame::decode(first.map_err(protocol)?) {
                    Ok(Frame::HelloAck(ack)) => Ok((ack, frames)),
                    Ok(other) => Err(ConnError::Protocol(format!(
                        "expected the handshake answer, got a {} frame",
                        other.name()
                    ))),
                    Err(e) => Err(protocol(e)),
                };
            }
            ws::Frame::Close(reason) => {
                let why = close_reason(reason);
                return Err(ConnError::Lost(format!(
                    "server closed the connection: {why}"
                )));
            }
            _ => {}
        }
    }
    Err(ConnError::Lost(
        "server closed the connection during the handshake".into(),
    ))
}

/// The text of a close frame's reason, for logs.
fn close_reason(reason: Option<ws::CloseReason>) -> String {
    reason
        .and_then(|r| r.description)
        .unwrap_or_else(|| "no reason given".into())
}

/// Keeps the names the server gave the tunnels that asked for none.
fn remember_names(config: &ClientConfig, ack: &HelloAck) {
    for (i, (tunnel, verdict)) in config.tunnels.iter().zip(&ack.tunnels).enumerate() {
        if tunnel.host.is_empty() && verdict.accepted {
            config.given.set(i, verdict.host.clone());
        }
    }
}

fn check_ack(ack: HelloAck) -> Result<HelloAck, ConnError> {
    if let Some(error) = ack.error {
        return Err(ConnError::Refused {
            reason: error,
            retry: false,
        });
    }
    let refused: Vec<_> = ack.tunnels.iter().filter(|v| !v.accepted).collect();
    if refused.is_empty() {
        return Ok(ack);
    }
    let reason = refused
        .iter()
        .map(|v| {
            let why = v.reason.as_deref().unwrap_or("refused");
            match v.host.as_str() {
                "" => format!("a random name: {why}"),
                host => format!("{host}: {why}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(ConnError::Refused {
        reason,
        retry: refused.iter().all(|v| v.retry),
    })
}

#[cfg(test)]
mod tests;
