//! Socket.IO protocol v5 packets (the version carried by Engine.IO v4).
//!
//! Each Socket.IO packet travels as the data of one Engine.IO `message`
//! packet, so on the wire it is prefixed by `4`. Its text form is
//!
//! ```text
//! <kind>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
//! ```
//!
//! | kind          | id | payload                                        |
//! |---------------|----|------------------------------------------------|
//! | CONNECT       | 0  | optional object (auth, or `{"sid":..}` reply) |
//! | DISCONNECT    | 1  | none                                           |
//! | EVENT         | 2  | array: event name (string or number), args     |
//! | ACK           | 3  | array of arguments (possibly empty)            |
//! | CONNECT_ERROR | 4  | object (`{"message":..}`) or string            |
//! | BINARY_EVENT  | 5  | like EVENT, with binary placeholders           |
//! | BINARY_ACK    | 6  | like ACK, with binary placeholders             |
//!
//! The namespace is written only when it is not the main namespace `/`, and is
//! then followed by a comma. Binary kinds announce how many binary
//! attachments follow (each in its own Engine.IO binary packet); inside the
//! JSON each one is replaced by `{"_placeholder":true,"num":N}`.
//! [`BinaryAssembler`] collects the attachments of one packet.
//!
//! ```
//! use volna_protocols::socketio::{encode_event, Packet, PacketKind};
//! use serde_json::value::RawValue;
//!
//! let p = Packet::decode(r#"2/admin,12["chat","hi"]"#).unwrap();
//! assert_eq!(p.kind, PacketKind::Event);
//! assert_eq!(p.nsp, "/admin");
//! assert_eq!(p.id, Some(12));
//! assert_eq!(p.event_name().as_deref(), Some("chat"));
//! assert_eq!(p.encode(), r#"2/admin,12["chat","hi"]"#);
//!
//! let arg = RawValue::from_string("\"hi\"".to_owned()).unwrap();
//! assert_eq!(encode_event("/", None, "chat", &[arg], 0), r#"2["chat","hi"]"#);
//! ```
//!
//! In memory, a packet's payload is kept as raw JSON text
//! ([`serde_json::value::RawValue`]), placeholders included; attachments
//! travel alongside as [`Bytes`](bytes::Bytes).
//!
//! ## Layout
//! - `packet.rs`: [`Packet`], [`PacketKind`], [`DecodedEvent`] and the
//!   protocol constants.
//! - `error.rs`: [`Error`].
//! - `decode.rs`: [`Packet::decode`] and the payload accessors.
//! - `encode.rs`: [`Packet::encode`] and the `write_*` / `encode_*` fast
//!   paths.
//! - `binary.rs`: placeholder validation and [`BinaryAssembler`].

mod binary;
mod decode;
mod encode;
mod error;
mod packet;
#[cfg(test)]
mod testing;

pub use binary::{
    count_placeholders, validate_placeholders, validate_placeholders_raw, BinaryAssembler,
};
pub use encode::{
    encode_ack, encode_connect, encode_connect_error, encode_disconnect, encode_event, write_ack,
    write_connect, write_connect_error, write_connect_error_with_data, write_connect_with_pid,
    write_disconnect, write_event,
};
pub use error::Error;
pub use packet::{
    is_reserved_event, DecodedEvent, Packet, PacketKind, DEFAULT_MAX_ATTACHMENTS,
    DEFAULT_NAMESPACE, MAX_DEPTH, PROTOCOL_VERSION, RESERVED_EVENTS,
};
