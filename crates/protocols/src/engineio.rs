//! Engine.IO protocol v4 packets and HTTP long-polling payloads.
//!
//! An Engine.IO packet is a one-digit packet type followed by optional data:
//!
//! | type    | id | data                                   |
//! |---------|----|----------------------------------------|
//! | open    | 0  | handshake JSON (see [`OpenInfo`])      |
//! | close   | 1  | none                                   |
//! | ping    | 2  | optional text, `probe` during upgrades |
//! | pong    | 3  | optional text, echoes the ping's data  |
//! | message | 4  | the application's text                 |
//! | upgrade | 5  | none                                   |
//! | noop    | 6  | none                                   |
//!
//! Over WebSocket each packet travels in its own frame: text frames carry the
//! encoded form above (`4hello`), binary frames carry a binary message as is.
//!
//! Over HTTP long-polling several packets are concatenated into one *payload*,
//! separated by the record separator `\x1e`. Binary messages are written as
//! `b` followed by their standard base64 encoding:
//!
//! ```
//! use bytes::Bytes;
//! use volna_protocols::engineio::{decode_payload, encode_payload, Packet};
//!
//! let packets = decode_payload(b"4hello\x1e2\x1ebAQIDBA==", 1_000_000).unwrap();
//! assert_eq!(
//!     packets,
//!     vec![
//!         Packet::Message(Bytes::from_static(b"hello")),
//!         Packet::Ping(None),
//!         Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
//!     ]
//! );
//!
//! let mut body = Vec::new();
//! encode_payload(&packets, &mut body);
//! assert_eq!(body, b"4hello\x1e2\x1ebAQIDBA==");
//! ```
//!
//! The format assumes the separator never occurs inside a text packet: a text
//! message containing `\x1e` cannot be carried over long-polling intact (the
//! peer would split it). This is a limitation of the protocol itself.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The Engine.IO protocol revision implemented here (the `EIO` query value).
pub const PROTOCOL_VERSION: u8 = 4;

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Prefix of a base64-encoded binary packet inside a long-polling payload.
pub const BINARY_PREFIX: u8 = b'b';

/// Standard alphabet; accepts input with or without `=` padding, as Node's
/// `Buffer.from(s, "base64")` does in the reference implementation.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors produced while decoding Engine.IO packets and payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A packet (or a payload record) had no bytes at all, not even a type.
    #[error("empty packet")]
    EmptyPacket,
    /// The first character is not a known packet type (`0`..=`6`) nor `b`.
    #[error("unknown packet type {0:?}")]
    UnknownPacketType(char),
    /// A `b`-prefixed record is not valid base64.
    #[error("invalid base64 in binary packet: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
    /// A long-polling payload is not valid UTF-8.
    #[error("payload is not valid UTF-8: {0}")]
    InvalidUtf8(#[from] std::str::Utf8Error),
    /// A long-polling payload is larger than the configured maximum.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload in bytes.
        len: usize,
        /// The configured maximum in bytes.
        max: usize,
    },
}

/// The type of an Engine.IO packet, with its wire id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: handshake, sent by the server.
    Open = 0,
    /// `1`: the transport can be closed.
    Close = 1,
    /// `2`: heartbeat request (sent by the server in v4) or upgrade probe.
    Ping = 2,
    /// `3`: heartbeat answer or probe answer.
    Pong = 3,
    /// `4`: application data.
    Message = 4,
    /// `5`: completes a transport upgrade.
    Upgrade = 5,
    /// `6`: no operation, used to end a pending poll during upgrades.
    Noop = 6,
}

impl PacketType {
    /// The numeric wire id (`0`..=`6`).
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The ASCII digit written on the wire (`b'0'`..=`b'6'`).
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
            b'0' => Some(Self::Open),
            b'1' => Some(Self::Close),
            b'2' => Some(Self::Ping),
            b'3' => Some(Self::Pong),
            b'4' => Some(Self::Message),
            b'5' => Some(Self::Upgrade),
            b'6' => Some(Self::Noop),
            _ => None,
        }
    }
}

impl TryFrom<u8> for PacketType {
    type Error = u8;

    /// Converts a numeric id (`0`..=`6`, not the ASCII digit).
    fn try_from(id: u8) -> Result<Self, u8> {
        match id {
            0..=6 => Self::from_byte(b'0' + id).ok_or(id),
            _ => Err(id),
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Open => "open",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Message => "message",
            Self::Upgrade => "upgrade",
            Self::Noop => "noop",
        };
        f.write_str(name)
    }
}

/// One decoded Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Packet {
    /// Handshake; holds the raw JSON text (see [`OpenInfo`]), possibly empty.
    Open(String),
    /// Close the transport. Any data after the type is ignored.
    Close,
    /// Ping with optional data (`probe` during upgrades). Empty data is `None`.
    Ping(Option<String>),
    /// Pong with optional data. Empty data is `None`.
    Pong(Option<String>),
    /// Text message. The bytes are UTF-8 whenever the packet came from a
    /// decoder; kept as [`Bytes`] so one message can be shared cheaply.
    Message(Bytes),
    /// Binary message (a WebSocket binary frame, or `b<base64>` when polling).
    Binary(Bytes),
    /// Completes a transport upgrade. Any data after the type is ignored.
    Upgrade,
    /// No operation. Any data after the type is ignored.
    Noop,
}

impl Packet {
    /// The packet's type; a binary message is of type [`PacketType::Message`].
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) | Self::Binary(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// Builds a text message packet from a string.
    pub fn message(text: impl Into<String>) -> Self {
        Self::Message(Bytes::from(text.into()))
    }

    /// Decodes a WebSocket text frame or one record of a polling payload.
    ///
    /// A leading `b` denotes a base64 binary message, as in the reference
    /// parser. Data after `close`, `upgrade` and `noop` is ignored.
    pub fn decode_text(text: &str) -> Result<Packet, Error> {
        decode_record(text, |s| Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Like [`Packet::decode_text`], but a text message shares `text`'s
    /// storage instead of copying it. Fails if `text` is not UTF-8.
    pub fn decode_text_shared(text: Bytes) -> Result<Packet, Error> {
        let s = std::str::from_utf8(&text)?;
        decode_record(s, |part| text.slice_ref(part.as_bytes()))
    }

    /// Decodes a WebSocket binary frame, which is always a binary message.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Binary(data)
    }

    /// Appends the text encoding of this packet to `out`.
    ///
    /// A [`Packet::Binary`] is written in its polling form, `b<base64>`
    /// (over WebSocket, send its bytes in a binary frame instead). A
    /// [`Packet::Message`] holding invalid UTF-8 (only possible when built by
    /// hand) is written lossily.
    pub fn encode_text(&self, out: &mut String) {
        match self {
            Self::Message(data) => {
                out.push('4');
                match std::str::from_utf8(data) {
                    Ok(s) => out.push_str(s),
                    Err(_) => out.push_str(&String::from_utf8_lossy(data)),
                }
            }
            Self::Binary(data) => {
                out.push(BINARY_PREFIX as char);
                STANDARD.encode_string(data, out);
            }
            other => {
                out.push(other.packet_type().as_char());
                if let Some(s) = other.text_data() {
                    out.push_str(s);
                }
            }
        }
    }

    /// Returns the text encoding of this packet (see [`Packet::encode_text`]).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.encode_text(&mut out);
        out
    }

    /// Appends the text encoding of this packet to a byte buffer, without
    /// UTF-8 checks on message data.
    pub fn encode_text_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Self::Message(data) => {
                out.push(b'4');
                out.extend_from_slice(data);
            }
            Self::Binary(data) => push_base64_record(out, data),
            other => {
                out.push(other.packet_type().as_byte());
                if let Some(s) = other.text_data() {
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    /// The text data of open/ping/pong packets.
    fn text_data(&self) -> Option<&str> {
        match self {
            Self::Open(s) => Some(s),
            Self::Ping(Some(s)) | Self::Pong(Some(s)) => Some(s),
            _ => None,
        }
    }

    fn encoded_len_hint(&self) -> usize {
        1 + match self {
            Self::Message(d) => d.len(),
            Self::Binary(d) => d.len().div_ceil(3) * 4,
            other => other.text_data().map_or(0, str::len),
        }
    }
}

/// Decodes one text record; `share` turns a message's text into [`Bytes`].
fn decode_record(text: &str, share: impl FnOnce(&str) -> Bytes) -> Result<Packet, Error> {
    let Some(&first) = text.as_bytes().first() else {
        return Err(Error::EmptyPacket);
    };
    if first == BINARY_PREFIX {
        let data = BASE64_LENIENT.decode(&text[1..])?;
        return Ok(Packet::Binary(Bytes::from(data)));
    }
    let Some(ty) = PacketType::from_byte(first) else {
        // `first` may start a multi-byte character; report the whole char.
        let c = text.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
        return Err(Error::UnknownPacketType(c));
    };
    // `first` is ASCII, so index 1 is a char boundary.
    let rest = &text[1..];
    let opt = || (!rest.is_empty()).then(|| rest.to_owned());
    Ok(match ty {
        PacketType::Open => Packet::Open(rest.to_owned()),
        PacketType::Close => Packet::Close,
        PacketType::Ping => Packet::Ping(opt()),
        PacketType::Pong => Packet::Pong(opt()),
        PacketType::Message => Packet::Message(share(rest)),
        PacketType::Upgrade => Packet::Upgrade,
        PacketType::Noop => Packet::Noop,
    })
}

/// The handshake data carried by the `open` packet.
///
/// Serialized with camelCase keys:
/// `{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (e.g. `["websocket"]`).
    pub upgrades: Vec<String>,
    /// Interval between server pings, in milliseconds.
    pub ping_interval: u64,
    /// How long to wait for a pong, in milliseconds.
    pub ping_timeout: u64,
    /// Maximum bytes per payload the client should send.
    pub max_payload: u64,
}

impl OpenInfo {
    /// The handshake as JSON text.
    pub fn to_json(&self) -> String {
        // Only strings and integers: serialization cannot fail.
        serde_json::to_string(self).expect("OpenInfo always serializes")
    }

    /// The encoded open packet: `0{"sid":...}`.
    pub fn to_packet_string(&self) -> String {
        let mut out = String::from("0");
        out.push_str(&self.to_json());
        out
    }

    /// The open packet.
    pub fn to_packet(&self) -> Packet {
        Packet::Open(self.to_json())
    }
}

/// Decodes an HTTP long-polling request body into packets.
///
/// Records are separated by `\x1e`; a record starting with `b` is a base64
/// binary message. Text messages are copied; see [`decode_payload_shared`]
/// for a zero-copy variant.
///
/// Fails if the body is longer than `max_payload` bytes, is not UTF-8, or if
/// any record is empty, has an unknown type, or holds invalid base64.
pub fn decode_payload(body: &[u8], max_payload: usize) -> Result<Vec<Packet>, Error> {
    let text = check_payload(body, max_payload)?;
    split_records(text)
        .map(|rec| decode_record(rec, |s| Bytes::copy_from_slice(s.as_bytes())))
        .collect()
}

/// Like [`decode_payload`], but text messages share `body`'s storage.
pub fn decode_payload_shared(body: Bytes, max_payload: usize) -> Result<Vec<Packet>, Error> {
    let text = check_payload(&body, max_payload)?;
    split_records(text)
        .map(|rec| decode_record(rec, |s| body.slice_ref(s.as_bytes())))
        .collect()
}

fn check_payload(body: &[u8], max_payload: usize) -> Result<&str, Error> {
    if body.len() > max_payload {
        return Err(Error::PayloadTooLarge {
            len: body.len(),
            max: max_payload,
        });
    }
    // 0x1e never occurs inside a multi-byte UTF-8 sequence, so validating the
    // whole body once makes every record valid UTF-8 too.
    Ok(std::str::from_utf8(body)?)
}

fn split_records(text: &str) -> impl Iterator<Item = &str> {
    // `str::split` on an ASCII char is memchr-accelerated.
    text.split(SEPARATOR as char)
}

/// Appends packets to a long-polling payload in `out`.
///
/// Packets are joined with `\x1e`; if `out` already holds data, a separator
/// is written first so the result stays a valid payload. Binary messages are
/// written as `b` + standard base64 with padding.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>, out: &mut Vec<u8>) {
    for packet in packets {
        if !out.is_empty() {
            out.push(SEPARATOR);
        }
        packet.encode_text_bytes(out);
    }
}

fn push_base64_record(out: &mut Vec<u8>, data: &[u8]) {
    out.push(BINARY_PREFIX);
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let written = STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("buffer sized for padded base64");
    out.truncate(start + written);
}

/// Builds a long-polling response body from packets, most of which a server
/// has already encoded once and shares between many sessions.
///
/// ```
/// use volna_protocols::engineio::PayloadWriter;
///
/// let mut w = PayloadWriter::new();
/// w.push_encoded(b"42[\"hi\"]"); // a pre-encoded text packet
/// w.push_message(b"2[\"hey\"]"); // message data, `4` is prepended
/// w.push_binary(&[1, 2, 3, 4]);
/// assert_eq!(w.as_bytes(), b"42[\"hi\"]\x1e42[\"hey\"]\x1ebAQIDBA==");
/// assert_eq!(w.packet_count(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PayloadWriter {
    buf: Vec<u8>,
    count: usize,
}

impl PayloadWriter {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty payload with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    fn separate(&mut self) {
        if !self.buf.is_empty() {
            self.buf.push(SEPARATOR);
        }
        self.count += 1;
    }

    /// Appends an already-encoded text packet, e.g. `4hello` or `3probe`.
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        self.separate();
        self.buf.extend_from_slice(encoded);
    }

    /// Appends a text message given its data (without the `4` type).
    pub fn push_message(&mut self, data: &[u8]) {
        self.separate();
        self.buf.push(PacketType::Message.as_byte());
        self.buf.extend_from_slice(data);
    }

    /// Appends a binary message as `b<base64>`.
    pub fn push_binary(&mut self, data: &[u8]) {
        self.separate();
        push_base64_record(&mut self.buf, data);
    }

    /// Appends any packet.
    pub fn push_packet(&mut self, packet: &Packet) {
        self.separate();
        packet.encode_text_bytes(&mut self.buf);
    }

    /// Size in bytes of the payload so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many packets have been pushed.
    pub fn packet_count(&self) -> usize {
        self.count
    }

    /// Size the payload would have after pushing a record of `record_len`
    /// bytes (e.g. to respect a maximum payload size).
    pub fn len_after(&self, record_len: usize) -> usize {
        self.buf.len() + usize::from(!self.buf.is_empty()) + record_len
    }

    /// The payload so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The finished payload.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The finished payload as shareable [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &'static str) -> Packet {
        Packet::Message(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn packet_type_ids() {
        for id in 0..=6u8 {
            let ty = PacketType::try_from(id).unwrap();
            assert_eq!(ty.id(), id);
            assert_eq!(PacketType::from_byte(ty.as_byte()), Some(ty));
        }
        assert_eq!(PacketType::try_from(7), Err(7));
        assert_eq!(PacketType::from_byte(b'7'), None);
        assert_eq!(PacketType::Message.as_char(), '4');
        assert_eq!(PacketType::Noop.to_string(), "noop");
    }

    #[test]
    fn decode_text_vectors() {
        assert_eq!(Packet::decode_text("4hello").unwrap(), msg("hello"));
        assert_eq!(
            Packet::decode_text("4HelloWorld").unwrap(),
            msg("HelloWorld")
        );
        assert_eq!(Packet::decode_text("4").unwrap(), msg(""));
        assert_eq!(Packet::decode_text("4€€€").unwrap(), msg("€€€"));
        assert_eq!(
            Packet::decode_text("2probe").unwrap(),
            Packet::Ping(Some("probe".into()))
        );
        assert_eq!(
            Packet::decode_text("3probe").unwrap(),
            Packet::Pong(Some("probe".into()))
        );
        assert_eq!(Packet::decode_text("2").unwrap(), Packet::Ping(None));
        assert_eq!(Packet::decode_text("3").unwrap(), Packet::Pong(None));
        assert_eq!(Packet::decode_text("1").unwrap(), Packet::Close);
        assert_eq!(Packet::decode_text("5").unwrap(), Packet::Upgrade);
        assert_eq!(Packet::decode_text("6").unwrap(), Packet::Noop);
        // Data after close/upgrade/noop is ignored, as in the reference parser.
        assert_eq!(Packet::decode_text("1junk").unwrap(), Packet::Close);
        assert_eq!(
            Packet::decode_text("0{\"sid\":\"abc\"}").unwrap(),
            Packet::Open("{\"sid\":\"abc\"}".into())
        );
        assert_eq!(
            Packet::decode_text("bAQIDBA==").unwrap(),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
        assert_eq!(
            Packet::decode_text("bAQID").unwrap(),
            Packet::Binary(Bytes::from_static(&[1, 2, 3]))
        );
        assert_eq!(
            Packet::decode_text("b").unwrap(),
            Packet::Binary(Bytes::new())
        );
    }

    #[test]
    fn decode_text_errors() {
        assert_eq!(Packet::decode_text(""), Err(Error::EmptyPacket));
        assert_eq!(Packet::decode_text("7"), Err(Error::UnknownPacketType('7')));
        assert_eq!(
            Packet::decode_text("x4"),
            Err(Error::UnknownPacketType('x'))
        );
        assert_eq!(Packet::decode_text("€"), Err(Error::UnknownPacketType('€')));
        assert!(matches!(
            Packet::decode_text("b!!!"),
            Err(Error::InvalidBase64(_))
        ));
        assert!(matches!(
            Packet::decode_text("bAQIDB"),
            Err(Error::InvalidBase64(_))
        ));
    }

    #[test]
    fn base64_padding_is_optional_on_input() {
        assert_eq!(
            Packet::decode_text("bAQIDBA").unwrap(),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
    }

    #[test]
    fn decode_text_shared_and_binary() {
        let frame = Bytes::from_static(b"4hello");
        let p = Packet::decode_text_shared(frame.clone()).unwrap();
        let Packet::Message(data) = p else {
            panic!("expected message")
        };
        assert_eq!(&data[..], b"hello");
        assert_eq!(data.as_ptr(), frame[1..].as_ptr(), "shares storage");
        assert!(matches!(
            Packet::decode_text_shared(Bytes::from_static(b"4\xff")),
            Err(Error::InvalidUtf8(_))
        ));
        let bin = Bytes::from_static(&[0, 1, 2]);
        assert_eq!(Packet::decode_binary(bin.clone()), Packet::Binary(bin));
    }

    #[test]
    fn encode_text_vectors() {
        assert_eq!(msg("hello").to_text(), "4hello");
        assert_eq!(Packet::Ping(Some("probe".into())).to_text(), "2probe");
        assert_eq!(Packet::Pong(Some("probe".into())).to_text(), "3probe");
        assert_eq!(Packet::Ping(None).to_text(), "2");
        assert_eq!(Packet::Pong(None).to_text(), "3");
        assert_eq!(Packet::Close.to_text(), "1");
        assert_eq!(Packet::Upgrade.to_text(), "5");
        assert_eq!(Packet::Noop.to_text(), "6");
        assert_eq!(Packet::Open("{}".into()).to_text(), "0{}");
        assert_eq!(
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])).to_text(),
            "bAQIDBA=="
        );
        assert_eq!(Packet::message("x").to_text(), "4x");
        assert_eq!(
            Packet::Message(Bytes::from_static(b"a\xffb")).to_text(),
            "4a\u{fffd}b"
        );
    }

    #[test]
    fn open_info_json() {
        let info = OpenInfo {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 5000,
            max_payload: 1_000_000,
        };
        let expected = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
        assert_eq!(info.to_packet_string(), expected);
        assert_eq!(info.to_packet().to_text(), expected);
        let Packet::Open(json) = Packet::decode_text(expected).unwrap() else {
            panic!("expected open")
        };
        assert_eq!(serde_json::from_str::<OpenInfo>(&json).unwrap(), info);
    }

    #[test]
    fn decode_payload_vectors() {
        assert_eq!(
            decode_payload(b"4hello\x1e4world", 100).unwrap(),
            vec![msg("hello"), msg("world")]
        );
        assert_eq!(
            decode_payload(b"4hello\x1e2\x1e4world", 100).unwrap(),
            vec![msg("hello"), Packet::Ping(None), msg("world")]
        );
        assert_eq!(
            decode_payload(b"4hello\x1ebAQIDBA==", 100).unwrap(),
            vec![
                msg("hello"),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
            ]
        );
        assert_eq!(
            decode_payload("4hello\x1e4€€€".as_bytes(), 100).unwrap(),
            vec![msg("hello"), msg("€€€")]
        );
        assert_eq!(
            decode_payload(b"42[\"hello\"]\x1e42[\"world\"]", 100).unwrap(),
            vec![msg("2[\"hello\"]"), msg("2[\"world\"]")]
        );
        assert_eq!(decode_payload(b"6", 1).unwrap(), vec![Packet::Noop]);
    }

    #[test]
    fn decode_payload_errors() {
        assert_eq!(decode_payload(b"", 10), Err(Error::EmptyPacket));
        assert_eq!(decode_payload(b"4a\x1e", 10), Err(Error::EmptyPacket));
        assert_eq!(decode_payload(b"\x1e4a", 10), Err(Error::EmptyPacket));
        assert_eq!(decode_payload(b"4a\x1e\x1e4b", 10), Err(Error::EmptyPacket));
        assert_eq!(
            decode_payload(b"4a\x1e9b", 10),
            Err(Error::UnknownPacketType('9'))
        );
        assert!(matches!(
            decode_payload(b"4a\x1eb***", 10),
            Err(Error::InvalidBase64(_))
        ));
        assert!(matches!(
            decode_payload(b"4\xc3\x28", 10),
            Err(Error::InvalidUtf8(_))
        ));
        assert_eq!(
            decode_payload(b"4hello", 5),
            Err(Error::PayloadTooLarge { len: 6, max: 5 })
        );
        assert!(decode_payload(b"4hello", 6).is_ok());
    }

    #[test]
    fn decode_payload_shared_shares() {
        let body = Bytes::from_static(b"4hello\x1e4world\x1ebAQ==");
        let packets = decode_payload_shared(body.clone(), 100).unwrap();
        assert_eq!(
            packets,
            vec![
                msg("hello"),
                msg("world"),
                Packet::Binary(Bytes::from_static(&[1]))
            ]
        );
        let Packet::Message(world) = &packets[1] else {
            panic!()
        };
        assert_eq!(world.as_ptr(), body[8..].as_ptr());
        assert!(matches!(
            decode_payload_shared(body, 3),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn encode_payload_vectors() {
        let mut out = Vec::new();
        encode_payload(&[msg("hello"), msg("€€€")], &mut out);
        assert_eq!(out, "4hello\x1e4€€€".as_bytes());

        let mut out = Vec::new();
        let packets = [msg("hello"), Packet::Binary(Bytes::from_static(&[1, 2, 3]))];
        encode_payload(&packets, &mut out);
        assert_eq!(out, b"4hello\x1ebAQID");

        let mut out = Vec::new();
        encode_payload(
            &[
                Packet::Ping(Some("probe".into())),
                msg("hello"),
                Packet::Close,
            ],
            &mut out,
        );
        assert_eq!(out, b"2probe\x1e4hello\x1e1");

        // Appending to an existing payload inserts a separator.
        encode_payload(&[Packet::Noop], &mut out);
        assert_eq!(out, b"2probe\x1e4hello\x1e1\x1e6");

        let mut out = Vec::new();
        encode_payload(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn payload_writer() {
        let mut w = PayloadWriter::with_capacity(64);
        assert!(w.is_empty());
        assert_eq!(w.len_after(6), 6);
        w.push_encoded(b"4hello");
        assert_eq!(w.len_after(6), 13);
        w.push_binary(&[1, 2, 3, 4]);
        w.push_message(b"world");
        w.push_packet(&Packet::Ping(None));
        w.push_binary(&[]);
        assert_eq!(w.packet_count(), 5);
        assert_eq!(w.len(), w.as_bytes().len());
        let body = w.into_bytes();
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e4world\x1e2\x1eb");
        assert_eq!(
            decode_payload(&body, 1000).unwrap(),
            vec![
                msg("hello"),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                msg("world"),
                Packet::Ping(None),
                Packet::Binary(Bytes::new()),
            ]
        );
    }

    #[test]
    fn base64_record_sizes() {
        for n in 0..10usize {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut out = Vec::new();
            push_base64_record(&mut out, &data);
            let text = std::str::from_utf8(&out).unwrap();
            assert_eq!(
                Packet::decode_text(text).unwrap(),
                Packet::Binary(Bytes::from(data))
            );
        }
    }
}
