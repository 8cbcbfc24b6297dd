//! Protocol messages and constants.
//!
//! The byte layout of every frame is in `docs/PROTOCOL.md`; this module holds
//! the typed values those frames carry.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{access::AccessRules, token::Token};

/// Version of the wire protocol. A peer speaking another version is refused
/// during the handshake with a message saying which side to upgrade.
pub const PROTOCOL_VERSION: u32 = 7;

/// The WebSocket path a server takes clients on unless configured otherwise.
pub const DEFAULT_CONTROL_PATH: &str = "/_burrow/connect";

/// Largest body payload carried by one `Data` frame. Larger chunks are split.
pub const MAX_DATA_PAYLOAD: usize = 64 * 1024;

/// Largest WebSocket message either side sends or accepts. Both ends configure
/// their WebSocket codecs with this limit (the libraries default to 64 KiB,
/// which a full `Data` frame plus its header would exceed).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Largest encoded request or response head. Larger heads are refused with
/// 431 (request) or 502 (response) rather than sent.
pub const MAX_HEAD_SIZE: usize = MAX_MESSAGE_SIZE - 16;

/// Largest body a `ResponseHead` may carry inline (see [`ResponseHead::body`]).
pub const MAX_INLINE_BODY: usize = 16 * 1024;

/// Credit each stream starts with, in each direction, in bytes.
pub const INITIAL_WINDOW: u32 = 512 * 1024;

/// Ping intervals without a message after which either end takes the
/// other for gone (a half-open connection: a laptop that slept, a link
/// that froze).
pub const SILENT_PINGS: u32 = 3;

/// The server's ping interval, in seconds, when its `HelloAck` names none.
pub const DEFAULT_PING_SECS: u32 = 15;

/// Stream id reserved for connection-level frames (the handshake).
pub const CONNECTION_STREAM: u32 = 0;

/// First message of a connection, sent by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u32,
    /// The tunnels the client asks for.
    pub tunnels: Vec<TunnelRequest>,
    /// Identifies the client process across its connections. A client may
    /// open several connections with the same instance and tunnels: the
    /// server then spreads each host's requests over all of them (a pool).
    /// A connection from another instance is refused a host that is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// One tunnel the client wants to serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRequest {
    /// Public host name, without port.
    pub host: String,
    /// Secret that authorises the client to serve `host`.
    pub token: Token,
    /// Who may call the tunnel; the server refuses other callers.
    #[serde(default, skip_serializing_if = "AccessRules::is_empty")]
    pub access: AccessRules,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The protocol version the server speaks.
    pub version: u32,
    /// One verdict per requested tunnel, in the order asked. Empty when the
    /// whole handshake was refused (see `error`).
    pub tunnels: Vec<TunnelVerdict>,
    /// Set when the handshake as a whole was refused (for example a version
    /// mismatch); the server closes the connection after sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many connections the server suggests a client open: its worker
    /// threads. A request is handed to a connection on the worker that
    /// accepted it when there is one, so a pool of this size keeps every
    /// request on one thread of the server. Absent means one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Which of those workers serves this connection (0-based). A client
    /// holding several connections uses it to cover every worker once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// Which server node the worker belongs to: an id of the server
    /// process, so that a client whose connections land on different nodes
    /// behind one address tells their workers apart. Absent means one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `true` when the server honours a `Drain` frame on this connection
    /// (the client may then close connections it no longer needs without
    /// losing a request). Absent means `false`: never send one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
    /// How often the server pings this connection, in seconds; the client
    /// takes three of these without a word as the server gone. Absent
    /// means 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_secs: Option<u32>,
}

/// Whether one requested tunnel was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelVerdict {
    /// The host this verdict is about.
    pub host: String,
    /// `true` when the client now serves `host`.
    pub accepted: bool,
    /// Why the tunnel was refused; absent when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `true` when the refusal may clear by itself (the host is held by
    /// another live connection, perhaps this client's own previous one), so
    /// the client should retry later; refusals without it are final.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// Ordered list of header fields; names are lower-case ASCII, values raw bytes.
pub type HeaderList = Vec<(Bytes, Bytes)>;

/// The head of a proxied request, sent by the server to open a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The tunnel host the request was routed by (lower case, no port).
    pub host: String,
    /// HTTP method, as sent by the caller.
    pub method: String,
    /// Path and query exactly as sent by the caller, percent-encoding intact.
    pub uri: String,
    /// Header fields, hop-by-hop ones already removed.
    pub headers: HeaderList,
    /// `true` when no body follows (no `Data` and no `End` frame).
    pub end_stream: bool,
    /// `true` for a WebSocket upgrade: if the local service answers 101, the
    /// stream's `Data` frames carry the raw upgraded connection both ways.
    pub upgrade: bool,
    /// Credit beyond [`INITIAL_WINDOW`] the server gives this request's
    /// body from what the client promised ahead of any stream (a `Window`
    /// on stream 0), so that the body starts at the path's rate. 0 for
    /// none; only on a stream with a body.
    pub credit: u32,
}

/// The head of the local service's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
    /// Header fields, hop-by-hop ones already removed.
    pub headers: HeaderList,
    /// `true` when no body follows (no `Data` and no `End` frame).
    pub end_stream: bool,
    /// The whole body, carried in the head frame itself (at most
    /// [`MAX_INLINE_BODY`] bytes; only with `end_stream`). Small answers of
    /// known length thus cross the tunnel in one frame.
    pub body: Option<Bytes>,
}

/// Why a stream was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetCode {
    /// The side that opened or was reading the stream is no longer interested
    /// (the caller went away).
    Cancel,
    /// The local service could not be reached (connection refused, DNS).
    LocalUnreachable,
    /// The local service failed after the request was sent, or cut its
    /// response body short.
    LocalError,
    /// The local service did not answer in time.
    LocalTimeout,
    /// The client has no tunnel for the request's host.
    UnknownTunnel,
    /// The peer broke the protocol on this stream (bad head, credit overrun).
    ProtocolError,
    /// The request could not be forwarded as received (invalid method, URI
    /// or header for the local service).
    BadRequest,
    /// A code this version does not know; kept so it can be reported.
    Other(u8),
}

impl ResetCode {
    /// The code's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            ResetCode::Cancel => 0,
            ResetCode::LocalUnreachable => 1,
            ResetCode::LocalError => 2,
            ResetCode::LocalTimeout => 3,
            ResetCode::UnknownTunnel => 4,
            ResetCode::ProtocolError => 5,
            ResetCode::BadRequest => 6,
            ResetCode::Other(b) => b,
        }
    }

    /// The code for a byte read from the wire.
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => ResetCode::Cancel,
            1 => ResetCode::LocalUnreachable,
            2 => ResetCode::LocalError,
            3 => ResetCode::LocalTimeout,
            4 => ResetCode::UnknownTunnel,
            5 => ResetCode::ProtocolError,
            6 => ResetCode::BadRequest,
            other => ResetCode::Other(other),
        }
    }
}

impl std::fmt::Display for ResetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetCode::Cancel => f.write_str("cancelled"),
            ResetCode::LocalUnreachable => f.write_str("local service unreachable"),
            ResetCode::LocalError => f.write_str("local service error"),
            ResetCode::LocalTimeout => f.write_str("local service timed out"),
            ResetCode::UnknownTunnel => f.write_str("no such tunnel on the client"),
            ResetCode::ProtocolError => f.write_str("protocol error"),
            ResetCode::BadRequest => f.write_str("request not forwardable"),
            ResetCode::Other(b) => write!(f, "reset code {b}"),
        }
    }
}
