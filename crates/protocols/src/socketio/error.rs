//! [`Error`]: why a packet failed to decode or its attachments failed to
//! assemble.

use super::packet::{PacketKind, MAX_DEPTH};
use crate::json::InvalidPlaceholder;

/// Errors produced while decoding Socket.IO packets and assembling binary
/// packets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The packet text is empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet kind `0`..=`6`.
    #[error("unknown packet type {0:?}")]
    UnknownKind(char),
    /// A binary packet lacks a valid `<digits>-` attachment count.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// The acknowledgement id does not fit in a `u64`.
    #[error("invalid acknowledgement id")]
    InvalidId,
    /// An acknowledgement id on a packet kind that cannot carry one.
    #[error("{0} packet cannot carry an acknowledgement id")]
    UnexpectedId(PacketKind),
    /// The payload is mandatory for this kind but absent.
    #[error("{0} packet requires a payload")]
    MissingPayload(PacketKind),
    /// A payload on a kind that must not carry one.
    #[error("{0} packet cannot carry a payload")]
    UnexpectedPayload(PacketKind),
    /// The payload is not valid JSON (or trailing characters follow it).
    #[error("invalid JSON payload: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The payload nests arrays/objects deeper than [`MAX_DEPTH`].
    #[error("payload nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The payload is valid JSON of the wrong shape for this kind.
    #[error("invalid payload for {0} packet")]
    InvalidPayload(PacketKind),
    /// An EVENT uses a reserved event name.
    #[error("reserved event name {0:?}")]
    ReservedEvent(String),
    /// The packet announces more attachments than allowed.
    #[error("too many attachments: {count} (max {max})")]
    TooManyAttachments {
        /// Announced attachments.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A `{"_placeholder":true,..}` object without a valid `num`, or with a
    /// `num` not below the announced attachment count.
    #[error("invalid attachment placeholder")]
    InvalidPlaceholder,
    /// Placeholders do not reference every attachment exactly once.
    #[error("placeholders do not match the {expected} announced attachments")]
    PlaceholderMismatch {
        /// Announced attachments.
        expected: usize,
    },
    /// A binary-only operation on a non-binary packet kind.
    #[error("{0} packet carries no binary attachments")]
    NotBinary(PacketKind),
    /// More attachments were pushed than the packet announced.
    #[error("unexpected binary attachment")]
    UnexpectedAttachment,
    /// [`BinaryAssembler::finish`](super::BinaryAssembler::finish) before every attachment arrived.
    #[error("binary packet incomplete: {received} of {expected} attachments")]
    Incomplete {
        /// Attachments received.
        received: usize,
        /// Attachments announced.
        expected: usize,
    },
}

impl From<InvalidPlaceholder> for Error {
    fn from(_: InvalidPlaceholder) -> Self {
        Error::InvalidPlaceholder
    }
}
