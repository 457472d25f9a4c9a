//! The packet model: [`Packet`], its [`PacketKind`], the view of an event
//! payload ([`DecodedEvent`]) and the protocol's constants. Decoding lives in
//! `decode.rs`, encoding in `encode.rs`.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

/// The Socket.IO protocol revision implemented here.
pub const PROTOCOL_VERSION: u8 = 5;

/// The main namespace.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Attachment limit used by [`BinaryAssembler::new`](super::BinaryAssembler::new) (the reference
/// parser's default `maxAttachments`).
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// Deepest array/object nesting accepted in a payload: the recursion limit
/// of `serde_json`, so every accepted payload can be parsed into a
/// [`serde_json::Value`] later.
pub const MAX_DEPTH: usize = 127;

/// Event names that must not be used on the wire; the reference parser
/// rejects EVENT packets carrying them.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether `name` is one of the [`RESERVED_EVENTS`].
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// The kind of a Socket.IO packet, with its wire id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketKind {
    /// `0`: connect to a namespace, or the server's acceptance.
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: acknowledgement of an event.
    Ack = 3,
    /// `4`: the server refuses a namespace connection.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

impl PacketKind {
    /// The numeric wire id (`0`..=`6`).
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The ASCII digit written on the wire.
    pub const fn as_byte(self) -> u8 {
        b'0' + self as u8
    }

    /// The wire digit as a `char`.
    pub const fn as_char(self) -> char {
        self.as_byte() as char
    }

    /// Parses the ASCII digit written on the wire.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'0' => Some(Self::Connect),
            b'1' => Some(Self::Disconnect),
            b'2' => Some(Self::Event),
            b'3' => Some(Self::Ack),
            b'4' => Some(Self::ConnectError),
            b'5' => Some(Self::BinaryEvent),
            b'6' => Some(Self::BinaryAck),
            _ => None,
        }
    }

    /// Whether this kind announces binary attachments.
    pub const fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// Whether this kind may carry an acknowledgement id.
    pub const fn allows_id(self) -> bool {
        matches!(
            self,
            Self::Event | Self::Ack | Self::BinaryEvent | Self::BinaryAck
        )
    }
}

impl TryFrom<u8> for PacketKind {
    type Error = u8;

    /// Converts a numeric id (`0`..=`6`, not the ASCII digit).
    fn try_from(id: u8) -> Result<Self, u8> {
        match id {
            0..=6 => Self::from_byte(b'0' + id).ok_or(id),
            _ => Err(id),
        }
    }
}

impl fmt::Display for PacketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        })
    }
}

/// One Socket.IO packet.
///
/// The payload is kept as raw JSON text rather than a [`serde_json::Value`]:
/// the server mostly validates, routes and re-broadcasts payloads it never
/// inspects, so keeping the text avoids building (and later re-serializing) a
/// tree of allocations per packet. [`Packet::event`] and
/// [`Packet::array_items`] give borrowed access to the array elements, and
/// the text can be parsed into any type on demand.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Packet kind.
    pub kind: PacketKind,
    /// Namespace; starts with `/`, [`DEFAULT_NAMESPACE`] when absent on the
    /// wire. Must not contain `,` for the encoding to decode back.
    pub nsp: String,
    /// Acknowledgement id.
    pub id: Option<u64>,
    /// JSON payload (binary attachments replaced by placeholders).
    pub data: Option<Box<RawValue>>,
    /// Number of binary attachments announced; only meaningful (and only
    /// encoded) for binary kinds, 0 otherwise after decoding.
    pub attachments: usize,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.nsp == other.nsp
            && self.id == other.id
            && self.attachments == other.attachments
            && self.data_str() == other.data_str()
    }
}

impl Eq for Packet {}

/// A decoded event: its name and the arguments after it.
#[derive(Debug, Clone)]
pub struct DecodedEvent<'a> {
    /// The event name; a numeric name is given as its JSON text.
    pub name: Cow<'a, str>,
    /// The raw JSON arguments (placeholders included for binary events).
    pub args: Vec<&'a RawValue>,
}

impl Packet {
    /// A packet of `kind` in namespace `nsp`, with no id, payload or
    /// attachments.
    pub fn new(kind: PacketKind, nsp: impl Into<String>) -> Self {
        Self {
            kind,
            nsp: nsp.into(),
            id: None,
            data: None,
            attachments: 0,
        }
    }

    /// Sets the acknowledgement id.
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the JSON payload.
    pub fn with_data(mut self, data: Box<RawValue>) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the announced attachment count.
    pub fn with_attachments(mut self, attachments: usize) -> Self {
        self.attachments = attachments;
        self
    }

    /// The payload's JSON text, if any.
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_deref().map(RawValue::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::testing::{dec, raw};
    use crate::socketio::Error;

    #[test]
    fn kinds() {
        for id in 0..=6u8 {
            let k = PacketKind::try_from(id).unwrap();
            assert_eq!(k.id(), id);
            assert_eq!(PacketKind::from_byte(k.as_byte()), Some(k));
        }
        assert_eq!(PacketKind::try_from(7), Err(7));
        assert!(PacketKind::BinaryAck.is_binary());
        assert!(!PacketKind::Ack.is_binary());
        assert_eq!(PacketKind::ConnectError.to_string(), "CONNECT_ERROR");
    }

    #[test]
    fn builders_and_accessors() {
        let p = Packet::new(PacketKind::BinaryAck, "/x")
            .with_id(4)
            .with_data(raw("[{\"_placeholder\":true,\"num\":0}]"))
            .with_attachments(1);
        assert_eq!(p.encode(), r#"61-/x,4[{"_placeholder":true,"num":0}]"#);
        assert_eq!(dec(&p.encode()), p);
        assert_eq!(p.event_name(), None);
        assert_eq!(p.array_items().unwrap().len(), 1);
        assert!(p.event().is_err());
        let c = Packet::new(PacketKind::Connect, "/");
        assert!(matches!(c.array_items(), Err(Error::MissingPayload(_))));
    }
}
