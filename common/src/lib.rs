//! Shared pieces of the burrow HTTP tunnel: the wire protocol spoken between
//! `burrow-server` and the `burrow` client, the header rules both apply, and
//! per-stream flow control.
//!
//! # Layout
//! - [`protocol`]: the handshake messages, request and response heads, reset
//!   codes, and the protocol constants (version, window, frame limits).
//! - [`batch`]: several small frames in one WebSocket message.
//! - [`config`]: configuration errors, TOML parsing and secret tokens
//!   shared by both binaries.
//! - [`connection`]: the core of one connection, the same at both ends:
//!   received messages into frames, control frames answered, the writer.
//! - [`frame`]: encoding and decoding of the binary frames carried in
//!   WebSocket binary messages.
//! - [`headers`]: hop-by-hop header stripping and `X-Forwarded-*` rules.
//! - [`http1`]: HTTP/1.1 framing: bodiless statuses, `Content-Length`,
//!   chunked decoding.
//! - [`fragments`]: reassembly of fragmented WebSocket messages.
//! - [`flow`]: send credit, receive accounting, and the body pump that moves
//!   a byte stream onto the tunnel under flow control.
//! - [`outbox`]: the queue of encoded frames waiting for a WebSocket writer.
//! - [`stream_map`]: tables keyed by stream id.
//! - [`token`]: secrets that never print.
//! - [`queue`]: the small unbounded queue behind the outbox and each
//!   stream's events.
//!
//! Nothing here knows about actix-web: both binaries map these types onto
//! their HTTP stacks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod batch;
pub mod config;
pub mod connection;
pub mod flow;
pub mod fragments;
pub mod frame;
pub mod headers;
pub mod http1;
pub mod outbox;
pub mod protocol;
pub mod queue;
pub mod stream_map;
pub mod token;
pub mod wire;

pub use frame::{DecodeError, Frame};
pub use outbox::Outbox;
pub use protocol::{
    Hello, HelloAck, RequestHead, ResetCode, ResponseHead, TunnelRequest, TunnelVerdict,
    PROTOCOL_VERSION,
};
pub use token::Token;
