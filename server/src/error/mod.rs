//! The one place where failures meet the people who caused them: proxy
//! failures become HTTP statuses ([`ProxyError`]), registration failures
//! become the reasons a client is told ([`RegisterError`]).

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use burrow_common::ResetCode;
use thiserror::Error;

use crate::caller_io::HeadProblem;

/// `Retry-After` for a tunnel whose client is away or a server that is
/// restarting: a client reconnects within a few seconds.
const RETRY_AFTER_RECONNECT: u64 = 5;

/// Which side of the tunnel a failure is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller: a request that cannot be forwarded, or a caller that
    /// may not call.
    Caller,
    /// This server, by its limits or its state (busy, draining).
    Server,
    /// The tunnel: its client is away, or broke the protocol.
    Tunnel,
    /// The local service behind the client.
    Local,
}

/// Why a public request could not be answered by the local service.
/// Each variant records which side failed: the caller, the tunnel, or the
/// local service behind the client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The caller's request head is one the HTTP service refuses.
    #[error("{0}")]
    BadHead(HeadProblem),
    /// The caller sent no usable Host (caller's fault).
    #[error("request has no valid Host header")]
    MissingHost,
    /// No client serves this host.
    #[error("no tunnel is registered for host {0}")]
    UnknownHost(String),
    /// The client's connection went away before or while answering.
    #[error("the tunnel for {0} closed before the response was complete")]
    TunnelGone(String),
    /// The client could not connect to its local service.
    #[error("the local service for {host} is unreachable: {detail}")]
    LocalUnreachable {
        /// Public host.
        host: String,
        /// What the client reported.
        detail: String,
    },
    /// The local service failed after the request was sent.
    #[error("the local service for {host} failed: {detail}")]
    LocalError {
        /// Public host.
        host: String,
        /// What the client reported.
        detail: String,
    },
    /// No response head within the configured time.
    #[error("the local service for {host} did not answer within {secs} s")]
    Timeout {
        /// Public host.
        host: String,
        /// The configured limit.
        secs: u64,
    },
    /// The client gave up waiting for its local service.
    #[error("the local service for {host} timed out: {detail}")]
    LocalTimeout {
        /// Public host.
        host: String,
        /// What the client reported.
        detail: String,
    },
    /// The request head does not fit in one frame.
    #[error("request header fields too large to forward")]
    HeadTooLarge,
    /// The caller asked to upgrade to a protocol the tunnel cannot relay.
    #[error("upgrading to {0:?} is not supported; only WebSocket upgrades are relayed")]
    UpgradeUnsupported(String),
    /// The request cannot be forwarded as sent.
    #[error("request cannot be forwarded: {0}")]
    BadRequest(String),
    /// The tunnel (or the server) does not let the caller's address in.
    #[error("{0} does not accept requests from this address")]
    Forbidden(String),
    /// The request body is larger than the server forwards.
    #[error("the request body is larger than this server forwards ({0} bytes)")]
    BodyTooLarge(u64),
    /// The tunnel has as many requests in flight as it may.
    #[error("{host} has {max} requests in flight, the most it may; try again shortly")]
    Busy {
        /// Public host.
        host: String,
        /// The limit.
        max: usize,
    },
    /// The tunnel has used its requests for now.
    #[error(
        "{host} is receiving more requests than this server allows; try again in {retry_after} s"
    )]
    RateLimited {
        /// Public host.
        host: String,
        /// Seconds until a request would be let through.
        retry_after: u64,
    },
    /// The host's client is reconnecting, and did not come back in time
    /// (or too many requests wait for it already).
    #[error("the tunnel for {0} is reconnecting; try again shortly")]
    Reconnecting(String),
    /// The server is shutting down and takes no new request.
    #[error("this server is restarting; try again shortly")]
    ShuttingDown,
    /// The tunnel asks for credentials the caller did not give.
    #[error("{0} asks for a user name and password")]
    Unauthorized(String),
    /// The node holding the host's tunnel (in a cluster) did not take the
    /// request.
    #[error("the server node holding the tunnel for {0} cannot be reached; try again shortly")]
    NodeUnreachable(String),
    /// A request on a node's internal listener without the cluster's secret.
    #[error("this listener takes requests from the cluster's own nodes only")]
    NotFromCluster,
    /// The client broke the protocol on this stream.
    #[error("the tunnel for {host} answered with an invalid response: {detail}")]
    BadResponse {
        /// Public host.
        host: String,
        /// What was wrong.
        detail: String,
    },
}

impl ProxyError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadHead(_)
            | ProxyError::MissingHost
            | ProxyError::UnknownHost(_)
            | ProxyError::HeadTooLarge
            | ProxyError::UpgradeUnsupported(_)
            | ProxyError::BadRequest(_)
            | ProxyError::Forbidden(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::NotFromCluster
            | ProxyError::Unauthorized(_) => Side::Caller,
            ProxyError::Busy { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::ShuttingDown
            | ProxyError::NodeUnreachable(_) => Side::Server,
            ProxyError::TunnelGone(_)
            | ProxyError::Reconnecting(_)
            | ProxyError::BadResponse { .. } => Side::Tunnel,
            ProxyError::LocalUnreachable { .. }
            | ProxyError::LocalError { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::LocalTimeout { .. } => Side::Local,
        }
    }

    /// In how many seconds the same request may get through, when waiting
    /// helps (sent as `Retry-After`); `None` when it does not.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::Busy { .. } => Some(1),
            ProxyError::Reconnecting(_)
            | ProxyError::ShuttingDown
            | ProxyError::NodeUnreachable(_) => Some(RETRY_AFTER_RECONNECT),
            ProxyError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// `true` when the caller's connection closes after the answer: the
    /// server is going away; the caller may still be sending a body that is
    /// not read; nothing after a refused head is read; an upgrade that did
    /// not happen (rather than the `Connection: upgrade` actix would echo).
    pub fn closes(&self) -> bool {
        matches!(
            self,
            ProxyError::ShuttingDown
                | ProxyError::BodyTooLarge(_)
                | ProxyError::BadHead(_)
                | ProxyError::UpgradeUnsupported(_)
        )
    }

    /// How loud the failure is in the server's log. What callers and local
    /// services do is routine (debug, so nobody can flood the logs); a
    /// client that breaks the protocol is worth a warning.
    pub fn log_level(&self) -> log::Level {
        match self {
            ProxyError::BadResponse { .. } => log::Level::Warn,
            _ => log::Level::Debug,
        }
    }

    /// The reason counted in `burrow_refusals_total` when the server turned
    /// the request away itself (see [`crate::metrics::REQUEST_REFUSALS`]);
    /// `None` for failures of the tunnel or the local service.
    pub fn refusal(&self) -> Option<&'static str> {
        Some(match self {
            ProxyError::BadHead(_) => "bad_head",
            ProxyError::MissingHost => "missing_host",
            ProxyError::UnknownHost(_) => "unknown_host",
            ProxyError::BadRequest(_) | ProxyError::UpgradeUnsupported(_) => "bad_request",
            ProxyError::Unauthorized(_) => "unauthorized",
            ProxyError::Forbidden(_) | ProxyError::NotFromCluster => "forbidden",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::HeadTooLarge => "head_too_large",
            ProxyError::Busy { .. } => "busy",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::Reconnecting(_) => "reconnecting",
            ProxyError::ShuttingDown => "shutting_down",
            _ => return None,
        })
    }

    /// The error for a stream the client reset before the response head.
    pub fn from_reset(host: &str, code: ResetCode, reason: String) -> Self {
        let host = host.to_owned();
        let detail = if reason.is_empty() {
            code.to_string()
        } else {
            reason
        };
        match code {
            ResetCode::LocalUnreachable => ProxyError::LocalUnreachable { host, detail },
            ResetCode::LocalTimeout => ProxyError::LocalTimeout { host, detail },
            ResetCode::BadRequest => ProxyError::BadRequest(detail),
            ResetCode::UnknownTunnel | ResetCode::Cancel => ProxyError::TunnelGone(host),
            ResetCode::ProtocolError => ProxyError::BadResponse { host, detail },
            ResetCode::LocalError | ResetCode::Other(_) => ProxyError::LocalError { host, detail },
        }
    }
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match self {
            ProxyError::BadHead(HeadProblem::TooLarge) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProxyError::MissingHost | ProxyError::BadRequest(_) | ProxyError::BadHead(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::Forbidden(_) | ProxyError::NotFromCluster => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Busy { .. } | ProxyError::Reconnecting(_) | ProxyError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::TunnelGone(_)
            | ProxyError::LocalUnreachable { .. }
            | ProxyError::LocalError { .. }
            | ProxyError::BadResponse { .. }
            | ProxyError::NodeUnreachable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } | ProxyError::LocalTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UpgradeUnsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        log::log!(self.log_level(), "proxy error ({:?}): {self}", self.side());
        let mut response = HttpResponse::build(self.status_code());
        if self.closes() {
            response.force_close();
        }
        if let Some(secs) = self.retry_after() {
            response.insert_header(("retry-after", secs.to_string()));
        }
        if let ProxyError::Unauthorized(host) = self {
            let challenge = format!("Basic realm=\"{host}\", charset=\"UTF-8\"");
            response.insert_header(("www-authenticate", challenge));
        }
        response
            .content_type("text/plain; charset=utf-8")
            .insert_header(("x-burrow-error", "1"))
            .body(format!("{self}\n"))
    }
}

/// Why the registry refused a host to a client. Each variant is one
/// reason the client is told and one level it is logged at.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The name asked for is not a host name.
    #[error("`{0}` is not a valid host name")]
    InvalidHost(String),
    /// The server has no such host in its configuration.
    #[error("host {0} is not configured on this server")]
    NotConfigured(String),
    /// The token does not match the host's.
    #[error("invalid token for host {0}")]
    BadToken(String),
    /// Another client holds the host.
    #[error("host {0} is already served by another client")]
    HeldByAnotherClient(String),
    /// The client asked for a random name, and no entry offers them to its
    /// token.
    #[error("this server offers no random host names to this token; ask for a host")]
    NoRandomNames,
    /// The client's address made too many refused registrations lately.
    #[error("too many refused registrations from this address; try again in {0} s")]
    TooManyFailures(u64),
    /// The entry's token holds as many hosts as it may.
    #[error("host {0} is refused: its token already holds {1} hosts, the most this server allows")]
    TooManyTunnels(String, usize),
    /// The tunnel's rules for callers are not valid.
    #[error("the access rules for host {0} are not valid: {1}")]
    BadRules(String, String),
    /// The registry is not running (the server is stopping).
    #[error("the server is shutting down")]
    Unavailable,
    /// The cluster's host directory (Redis) cannot be reached: no node
    /// can tell whether another client holds the host.
    #[error("host {0} cannot be registered now: the cluster's host directory is unreachable")]
    DirectoryDown(String),
}

impl RegisterError {
    /// `true` for a refusal a stranger guessing tokens or names gets,
    /// counted against its address.
    pub fn is_guess(&self) -> bool {
        matches!(
            self,
            RegisterError::InvalidHost(_)
                | RegisterError::NotConfigured(_)
                | RegisterError::BadToken(_)
                | RegisterError::NoRandomNames
        )
    }

    /// `true` when the refusal may clear by itself, so the client should
    /// retry: the host's holder may be this client's own previous
    /// connection, not yet seen to drop; a stopping server is replaced.
    pub fn retry(&self) -> bool {
        matches!(
            self,
            RegisterError::HeldByAnotherClient(_)
                | RegisterError::Unavailable
                | RegisterError::DirectoryDown(_)
                | RegisterError::TooManyFailures(_)
        )
    }

    /// The reason counted in `burrow_refusals_total` (see
    /// [`crate::metrics::REGISTRATION_REFUSALS`]).
    pub fn refusal(&self) -> &'static str {
        match self {
            RegisterError::InvalidHost(_) => "invalid_host",
            RegisterError::NotConfigured(_) => "not_configured",
            RegisterError::BadToken(_) => "bad_token",
            RegisterError::HeldByAnotherClient(_) => "held_by_another_client",
            RegisterError::NoRandomNames => "no_random_names",
            RegisterError::TooManyFailures(_) => "too_many_failures",
            RegisterError::TooManyTunnels(..) => "too_many_tunnels",
            RegisterError::BadRules(..)
            | RegisterError::Unavailable
            | RegisterError::DirectoryDown(_) => "other",
        }
    }

    /// How loud the refusal is in the server's log: anyone who can reach
    /// the control path can cause the first three, so they stay quiet.
    pub fn log_level(&self) -> log::Level {
        match self {
            RegisterError::InvalidHost(_)
            | RegisterError::NotConfigured(_)
            | RegisterError::BadToken(_)
            | RegisterError::BadRules(..)
            | RegisterError::NoRandomNames => log::Level::Debug,
            RegisterError::TooManyTunnels(..) => log::Level::Info,
            RegisterError::TooManyFailures(_) => log::Level::Debug,
            RegisterError::HeldByAnotherClient(_)
            | RegisterError::Unavailable
            | RegisterError::DirectoryDown(_) => log::Level::Info,
        }
    }
}

#[cfg(test)]
mod tests;
