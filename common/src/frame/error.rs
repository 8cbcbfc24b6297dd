//! Why a frame could not be encoded or decoded.

use thiserror::Error;

use crate::protocol::{MAX_DATA_PAYLOAD, MAX_INLINE_BODY};

/// Why a frame could not be encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// A head field or the whole head is larger than the protocol allows.
    #[error("{0} is too large to send")]
    TooLarge(&'static str),
    /// A `Data` frame carries more than [`MAX_DATA_PAYLOAD`] bytes.
    #[error("data frame of {0} bytes exceeds the {MAX_DATA_PAYLOAD}-byte limit")]
    DataTooLarge(usize),
}

/// Why a received message is not a valid frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("frame of {0} bytes is shorter than the 5-byte header")]
    TooShort(usize),
    /// A frame kind this version does not know.
    #[error("unknown frame kind {0:#04x} (is the peer running a newer burrow?)")]
    UnknownKind(u8),
    /// The payload ended before a field was complete.
    #[error("{kind} frame truncated while reading {field}")]
    Truncated {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// Bytes left over after the last field.
    #[error("{0} frame has {1} unexpected trailing bytes")]
    Trailing(&'static str, usize),
    /// A text field is not UTF-8.
    #[error("{kind} frame field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A handshake payload is not the expected JSON.
    #[error("invalid {kind} payload: {detail}")]
    InvalidJson {
        /// Frame kind being decoded.
        kind: &'static str,
        /// What serde reported.
        detail: String,
    },
    /// A stream frame on stream 0, or a connection frame on another stream.
    #[error("{kind} frame on wrong stream id {stream}")]
    WrongStream {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Stream id found.
        stream: u32,
    },
    /// A `Data` payload over the limit.
    #[error("data frame of {0} bytes exceeds the {MAX_DATA_PAYLOAD}-byte limit")]
    DataTooLarge(usize),
    /// An inline response body over the limit.
    #[error("inline body of {0} bytes exceeds the {MAX_INLINE_BODY}-byte limit")]
    InlineBodyTooLarge(usize),
    /// A `Window` frame granting nothing.
    #[error("window frame with zero increment")]
    ZeroWindow,
    /// A `RequestHead` whose credit flag is set and whose credit is zero.
    #[error("request head with a credit of zero")]
    ZeroCredit,
    /// An unknown flag bit is set.
    #[error("{kind} frame has unknown flags {flags:#04x}")]
    UnknownFlags {
        /// Frame kind being decoded.
        kind: &'static str,
        /// Flags byte found.
        flags: u8,
    },
}
