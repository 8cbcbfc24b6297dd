//! What a running client reports to the program embedding it, and why it
//! stops for good.

use thiserror::Error;

/// Progress reports of a running client, for embedding and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted every tunnel; requests may now arrive.
    Registered {
        /// The hosts now served.
        hosts: Vec<String>,
    },
    /// The connection ended; the client will reconnect.
    Disconnected {
        /// Why it ended.
        reason: String,
    },
    /// The round trip to the server, as the first connection measured it
    /// (at each of the server's heartbeats).
    RoundTrip(std::time::Duration),
}

/// Why the client stopped for good.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused a tunnel (bad token, unknown host, version): trying
    /// again would not help.
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached before the tunnels were ever
    /// registered, and the client was asked to stop then
    /// ([`crate::Options::stop_if_unreachable`]).
    #[error("{0}")]
    Unreachable(String),
}
