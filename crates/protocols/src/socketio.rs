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
//! travel alongside as [`Bytes`].

use std::borrow::{Borrow, Cow};
use std::fmt::{self, Write as _};

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::push_json_string;
use crate::json::{self, for_each_placeholder, InvalidPlaceholder};

/// The Socket.IO protocol revision implemented here.
pub const PROTOCOL_VERSION: u8 = 5;

/// The main namespace.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Attachment limit used by [`BinaryAssembler::new`] (the reference
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
    /// [`BinaryAssembler::finish`] before every attachment arrived.
    #[error("binary packet incomplete: {received} of {expected} attachments")]
    Incomplete {
        /// Attachments received.
        received: usize,
        /// Attachments announced.
        expected: usize,
    },
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

    /// Decodes one packet from the data of an Engine.IO message.
    ///
    /// Follows the reference parser (socket.io-parser v4), a little more
    /// strictly: numbers must be plain ASCII digits without overflow, an ack
    /// id is only accepted on EVENT/ACK kinds, and EVENT/ACK payloads are
    /// mandatory. Binary packets must then go through [`BinaryAssembler`],
    /// which checks the attachment count and placeholders.
    pub fn decode(text: &str) -> Result<Packet, Error> {
        let b = text.as_bytes();
        let Some(&first) = b.first() else {
            return Err(Error::Empty);
        };
        let Some(kind) = PacketKind::from_byte(first) else {
            let c = text.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(Error::UnknownKind(c));
        };
        let mut i = 1;

        let mut attachments = 0;
        if kind.is_binary() {
            let digits = count_digits(&b[i..]);
            if digits == 0 || b.get(i + digits) != Some(&b'-') {
                return Err(Error::IllegalAttachments);
            }
            attachments = parse_decimal(&b[i..i + digits])
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(Error::IllegalAttachments)?;
            i += digits + 1;
        }

        let nsp = if b.get(i) == Some(&b'/') {
            match memchr::memchr(b',', &b[i..]) {
                Some(len) => {
                    let nsp = &text[i..i + len];
                    i += len + 1;
                    nsp
                }
                None => {
                    let nsp = &text[i..];
                    i = b.len();
                    nsp
                }
            }
        } else {
            DEFAULT_NAMESPACE
        };

        let digits = count_digits(&b[i..]);
        let id = if digits > 0 {
            if !kind.allows_id() {
                return Err(Error::UnexpectedId(kind));
            }
            let id = parse_decimal(&b[i..i + digits]).ok_or(Error::InvalidId)?;
            i += digits;
            Some(id)
        } else {
            None
        };

        // Every index used above sits next to an ASCII byte.
        let rest = &text[i..];
        let data = if rest.is_empty() {
            None
        } else if kind == PacketKind::Disconnect {
            return Err(Error::UnexpectedPayload(kind));
        } else {
            let raw: Box<RawValue> = serde_json::from_str(rest).map_err(Error::InvalidJson)?;
            if nesting_depth(raw.get()) > MAX_DEPTH {
                return Err(Error::TooDeep);
            }
            Some(raw)
        };
        validate_payload(kind, data.as_deref())?;

        Ok(Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments,
        })
    }

    /// Encodes the packet in canonical form.
    pub fn encode(&self) -> String {
        let mut out =
            String::with_capacity(8 + self.nsp.len() + self.data_str().map_or(0, str::len));
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (e.g. after an Engine.IO `4`).
    pub fn encode_into(&self, out: &mut String) {
        write_header(out, self.kind, self.attachments, &self.nsp, self.id);
        if let Some(data) = self.data_str() {
            out.push_str(data);
        }
    }

    /// The event name of an EVENT or BINARY_EVENT packet with a valid
    /// payload; a numeric name is given as its JSON text.
    pub fn event_name(&self) -> Option<Cow<'_, str>> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        match array_head(self.data_str()?) {
            Head::Str(token) => unescape_token(token).ok(),
            Head::Num(token) => Some(Cow::Borrowed(token)),
            Head::Empty | Head::Other => None,
        }
    }

    /// The raw elements of an array payload (EVENT, ACK and binary kinds).
    pub fn array_items(&self) -> Result<Vec<&RawValue>, Error> {
        let data = self.data_str().ok_or(Error::MissingPayload(self.kind))?;
        if !data.starts_with('[') {
            return Err(Error::InvalidPayload(self.kind));
        }
        serde_json::from_str(data).map_err(Error::InvalidJson)
    }

    /// Splits an EVENT or BINARY_EVENT payload into name and arguments.
    pub fn event(&self) -> Result<DecodedEvent<'_>, Error> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return Err(Error::InvalidPayload(self.kind));
        }
        let name = self.event_name().ok_or(Error::InvalidPayload(self.kind))?;
        let mut args = self.array_items()?;
        args.remove(0);
        Ok(DecodedEvent { name, args })
    }
}

/// Deepest array/object nesting in valid JSON text.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &c in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Number of leading ASCII digits.
fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Parses ASCII digits; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Checks the payload's presence and shape for `kind`.
fn validate_payload(kind: PacketKind, data: Option<&RawValue>) -> Result<(), Error> {
    let Some(data) = data else {
        return match kind {
            PacketKind::Event
            | PacketKind::Ack
            | PacketKind::BinaryEvent
            | PacketKind::BinaryAck => Err(Error::MissingPayload(kind)),
            _ => Ok(()),
        };
    };
    // `data` is valid JSON without surrounding whitespace, so its first byte
    // tells its type.
    let json = data.get();
    let first = json.as_bytes().first().copied();
    let ok = match kind {
        PacketKind::Connect => first == Some(b'{'),
        PacketKind::Disconnect => false,
        PacketKind::ConnectError => matches!(first, Some(b'{' | b'"')),
        PacketKind::Ack | PacketKind::BinaryAck => first == Some(b'['),
        PacketKind::Event | PacketKind::BinaryEvent => {
            if first != Some(b'[') {
                return Err(Error::InvalidPayload(kind));
            }
            match array_head(json) {
                Head::Num(_) => true,
                Head::Str(token) => {
                    let name = unescape_token(token)?;
                    if is_reserved_event(&name) {
                        return Err(Error::ReservedEvent(name.into_owned()));
                    }
                    true
                }
                Head::Empty | Head::Other => false,
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPayload(kind))
    }
}

/// The first element of a JSON array.
enum Head<'a> {
    /// A string token, quotes included.
    Str(&'a str),
    /// A number token.
    Num(&'a str),
    /// The array is empty.
    Empty,
    /// Anything else (or not an array).
    Other,
}

/// Lexes the first element of `json`, which must be valid JSON text.
fn array_head(json: &str) -> Head<'_> {
    let b = json.as_bytes();
    if b.first() != Some(&b'[') {
        return Head::Other;
    }
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = 1 + b[1..].iter().take_while(|c| is_ws(c)).count();
    match b.get(start) {
        Some(b']') => Head::Empty,
        Some(b'"') => {
            let mut j = start + 1;
            loop {
                match b.get(j) {
                    Some(b'\\') => j += 2,
                    Some(b'"') => return Head::Str(&json[start..=j]),
                    Some(_) => j += 1,
                    None => return Head::Other,
                }
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            let len = b[start..]
                .iter()
                .take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .count();
            Head::Num(&json[start..start + len])
        }
        _ => Head::Other,
    }
}

/// Unescapes a JSON string token (quotes included), borrowing when possible.
fn unescape_token(token: &str) -> Result<Cow<'_, str>, Error> {
    if token.len() >= 2 && !token.contains('\\') {
        Ok(Cow::Borrowed(&token[1..token.len() - 1]))
    } else {
        serde_json::from_str::<String>(token)
            .map(Cow::Owned)
            .map_err(Error::InvalidJson)
    }
}

/// Writes `<kind>[<attachments>-][<nsp>,][<id>]`.
fn write_header(
    out: &mut String,
    kind: PacketKind,
    attachments: usize,
    nsp: &str,
    id: Option<u64>,
) {
    out.push(kind.as_char());
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if !nsp.is_empty() && nsp != DEFAULT_NAMESPACE {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

fn write_array<A: Borrow<RawValue>>(out: &mut String, head: Option<&str>, args: &[A]) {
    out.push('[');
    let mut first = true;
    if let Some(name) = head {
        push_json_string(out, name);
        first = false;
    }
    for arg in args {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(arg.borrow().get());
    }
    out.push(']');
}

/// Appends an event packet: `2[<nsp>,][<id>]["event",args...]`, or
/// `5<attachments>-...` when `attachments > 0` (the arguments must then hold
/// the placeholders). Builds the text directly, without a JSON tree.
pub fn write_event<A: Borrow<RawValue>>(
    out: &mut String,
    nsp: &str,
    id: Option<u64>,
    event: &str,
    args: &[A],
    attachments: usize,
) {
    let kind = if attachments > 0 {
        PacketKind::BinaryEvent
    } else {
        PacketKind::Event
    };
    write_header(out, kind, attachments, nsp, id);
    write_array(out, Some(event), args);
}

/// Encodes an event packet (see [`write_event`]).
///
/// ```
/// use volna_protocols::socketio::encode_event;
/// use serde_json::value::RawValue;
///
/// let one = RawValue::from_string("1".to_owned()).unwrap();
/// assert_eq!(encode_event("/", None, "hello", &[&*one], 0), r#"2["hello",1]"#);
/// assert_eq!(encode_event("/chat", Some(7), "hi", &[&*one], 0), r#"2/chat,7["hi",1]"#);
/// ```
pub fn encode_event<A: Borrow<RawValue>>(
    nsp: &str,
    id: Option<u64>,
    event: &str,
    args: &[A],
    attachments: usize,
) -> String {
    let mut out = String::with_capacity(
        16 + nsp.len()
            + event.len()
            + args
                .iter()
                .map(|a| a.borrow().get().len() + 1)
                .sum::<usize>(),
    );
    write_event(&mut out, nsp, id, event, args, attachments);
    out
}

/// Appends an acknowledgement: `3[<nsp>,]<id>[args...]`, or
/// `6<attachments>-...` when `attachments > 0`.
pub fn write_ack<A: Borrow<RawValue>>(
    out: &mut String,
    nsp: &str,
    id: u64,
    args: &[A],
    attachments: usize,
) {
    let kind = if attachments > 0 {
        PacketKind::BinaryAck
    } else {
        PacketKind::Ack
    };
    write_header(out, kind, attachments, nsp, Some(id));
    write_array(out, None, args);
}

/// Encodes an acknowledgement (see [`write_ack`]).
pub fn encode_ack<A: Borrow<RawValue>>(
    nsp: &str,
    id: u64,
    args: &[A],
    attachments: usize,
) -> String {
    let mut out = String::with_capacity(
        16 + nsp.len()
            + args
                .iter()
                .map(|a| a.borrow().get().len() + 1)
                .sum::<usize>(),
    );
    write_ack(&mut out, nsp, id, args, attachments);
    out
}

/// Appends the server's namespace acceptance: `0[<nsp>,]{"sid":"<sid>"}`.
pub fn write_connect(out: &mut String, nsp: &str, sid: &str) {
    write_header(out, PacketKind::Connect, 0, nsp, None);
    out.push_str("{\"sid\":");
    push_json_string(out, sid);
    out.push('}');
}

/// Encodes the server's namespace acceptance, e.g.
/// `0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}`.
pub fn encode_connect(nsp: &str, sid: &str) -> String {
    let mut out = String::with_capacity(16 + nsp.len() + sid.len());
    write_connect(&mut out, nsp, sid);
    out
}

/// Appends a namespace refusal: `4[<nsp>,]{"message":"<message>"}`.
pub fn write_connect_error(out: &mut String, nsp: &str, message: &str) {
    write_header(out, PacketKind::ConnectError, 0, nsp, None);
    out.push_str("{\"message\":");
    push_json_string(out, message);
    out.push('}');
}

/// Encodes a namespace refusal, e.g. `4/nsp,{"message":"Invalid namespace"}`.
pub fn encode_connect_error(nsp: &str, message: &str) -> String {
    let mut out = String::with_capacity(20 + nsp.len() + message.len());
    write_connect_error(&mut out, nsp, message);
    out
}

/// Appends a disconnection: `1` or `1<nsp>,`.
pub fn write_disconnect(out: &mut String, nsp: &str) {
    write_header(out, PacketKind::Disconnect, 0, nsp, None);
}

/// Encodes a disconnection: `1` or `1<nsp>,`.
pub fn encode_disconnect(nsp: &str) -> String {
    let mut out = String::with_capacity(2 + nsp.len());
    write_disconnect(&mut out, nsp);
    out
}

/// Counts the `{"_placeholder":true,"num":N}` objects in `value`.
///
/// Fails with [`Error::InvalidPlaceholder`] on a placeholder whose `num` is
/// not a non-negative integer.
pub fn count_placeholders(value: &Value) -> Result<usize, Error> {
    let mut count = 0;
    for_each_placeholder(value, |_| {
        count += 1;
        Ok::<(), Error>(())
    })?;
    Ok(count)
}

/// Checks that the placeholders in `value` reference attachments
/// `0..attachments`, each exactly once.
pub fn validate_placeholders(value: &Value, attachments: usize) -> Result<(), Error> {
    let mut seen = vec![false; attachments];
    let mut found = 0usize;
    for_each_placeholder(value, |num| {
        let slot = usize::try_from(num)
            .ok()
            .and_then(|n| seen.get_mut(n))
            .ok_or(Error::InvalidPlaceholder)?;
        if std::mem::replace(slot, true) {
            return Err(Error::PlaceholderMismatch {
                expected: attachments,
            });
        }
        found += 1;
        Ok::<(), Error>(())
    })?;
    if found == attachments {
        Ok(())
    } else {
        Err(Error::PlaceholderMismatch {
            expected: attachments,
        })
    }
}

/// [`validate_placeholders`] on raw JSON text.
pub fn validate_placeholders_raw(data: &RawValue, attachments: usize) -> Result<(), Error> {
    // Fast path: no placeholder key can be present (not even escaped).
    let text = data.get();
    if !json::may_hold_placeholders(text) {
        return if attachments == 0 {
            Ok(())
        } else {
            Err(Error::PlaceholderMismatch {
                expected: attachments,
            })
        };
    }
    let value: Value = serde_json::from_str(data.get()).map_err(Error::InvalidJson)?;
    validate_placeholders(&value, attachments)
}

impl From<InvalidPlaceholder> for Error {
    fn from(_: InvalidPlaceholder) -> Self {
        Error::InvalidPlaceholder
    }
}

/// Collects the binary attachments that follow a BINARY_EVENT or
/// BINARY_ACK packet.
///
/// ```
/// use bytes::Bytes;
/// use volna_protocols::socketio::{BinaryAssembler, Packet};
///
/// let p = Packet::decode(r#"51-["baz",{"_placeholder":true,"num":0}]"#).unwrap();
/// let mut asm = BinaryAssembler::new(p).unwrap();
/// assert!(!asm.is_complete());
/// assert!(asm.push(Bytes::from_static(&[1, 2, 3, 4])).unwrap());
/// let (packet, attachments) = asm.finish().unwrap();
/// assert_eq!(packet.attachments, 1);
/// assert_eq!(attachments, vec![Bytes::from_static(&[1, 2, 3, 4])]);
/// ```
#[derive(Debug, Clone)]
pub struct BinaryAssembler {
    packet: Packet,
    buffers: Vec<Bytes>,
}

impl BinaryAssembler {
    /// Starts assembling `packet`, allowing at most
    /// [`DEFAULT_MAX_ATTACHMENTS`] attachments.
    pub fn new(packet: Packet) -> Result<Self, Error> {
        Self::with_max_attachments(packet, DEFAULT_MAX_ATTACHMENTS)
    }

    /// Starts assembling `packet`, allowing at most `max` attachments.
    ///
    /// Fails unless the packet is of a binary kind, announces at most `max`
    /// attachments, and its placeholders reference each attachment exactly
    /// once. A packet announcing 0 attachments is complete at once.
    pub fn with_max_attachments(packet: Packet, max: usize) -> Result<Self, Error> {
        if !packet.kind.is_binary() {
            return Err(Error::NotBinary(packet.kind));
        }
        if packet.attachments > max {
            return Err(Error::TooManyAttachments {
                count: packet.attachments,
                max,
            });
        }
        match packet.data.as_deref() {
            Some(data) => validate_placeholders_raw(data, packet.attachments)?,
            None if packet.attachments == 0 => {}
            None => {
                return Err(Error::PlaceholderMismatch {
                    expected: packet.attachments,
                })
            }
        }
        let buffers = Vec::with_capacity(packet.attachments);
        Ok(Self { packet, buffers })
    }

    /// The packet being assembled.
    pub fn packet(&self) -> &Packet {
        &self.packet
    }

    /// Attachments announced.
    pub fn expected(&self) -> usize {
        self.packet.attachments
    }

    /// Attachments received so far.
    pub fn received(&self) -> usize {
        self.buffers.len()
    }

    /// Whether every attachment has arrived.
    pub fn is_complete(&self) -> bool {
        self.buffers.len() == self.packet.attachments
    }

    /// Adds the next attachment; returns whether the packet is now complete.
    /// Fails if every announced attachment was already received.
    pub fn push(&mut self, attachment: Bytes) -> Result<bool, Error> {
        if self.is_complete() {
            return Err(Error::UnexpectedAttachment);
        }
        self.buffers.push(attachment);
        Ok(self.is_complete())
    }

    /// The packet (placeholders kept in its payload) and its attachments,
    /// indexed by placeholder `num`. Fails if some are still missing.
    pub fn finish(self) -> Result<(Packet, Vec<Bytes>), Error> {
        if !self.is_complete() {
            return Err(Error::Incomplete {
                received: self.buffers.len(),
                expected: self.packet.attachments,
            });
        }
        Ok((self.packet, self.buffers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::placeholder;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn dec(s: &str) -> Packet {
        Packet::decode(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
    }

    fn err(s: &str) -> Error {
        match Packet::decode(s) {
            Ok(p) => panic!("{s:?} decoded to {p:?}"),
            Err(e) => e,
        }
    }

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
    fn connect_vectors() {
        let p = dec("0");
        assert_eq!(p, Packet::new(PacketKind::Connect, "/"));
        assert_eq!(p.encode(), "0");

        let s = r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.id, None);
        assert_eq!(p.data_str(), Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#));
        assert_eq!(p.encode(), s);
        assert_eq!(encode_connect("/admin", "oSO0OpakMV_3jnilAAAA"), s);
        assert_eq!(
            encode_connect("/", "wZX3oN0bSVIhsaknAAAI"),
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );

        let p = dec("0/admin,");
        assert_eq!(p.nsp, "/admin");
        assert!(p.data.is_none());
        let p = dec("0/admin");
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.encode(), "0/admin,");
        let p = dec(r#"0{"token":"123"}"#);
        assert_eq!(p.nsp, "/");
        assert_eq!(p.data_str(), Some(r#"{"token":"123"}"#));
    }

    #[test]
    fn connect_errors() {
        assert!(matches!(
            err("0[]"),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(
            err("0\"x\""),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(
            err("0null"),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(err("0{"), Error::InvalidJson(_)));
        assert!(matches!(err("0{}x"), Error::InvalidJson(_)));
        assert!(matches!(
            err("01{}"),
            Error::UnexpectedId(PacketKind::Connect)
        ));
    }

    #[test]
    fn connect_error_vectors() {
        let s = r#"4{"message":"Not authorized"}"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::ConnectError);
        assert_eq!(p.encode(), s);
        assert_eq!(encode_connect_error("/", "Not authorized"), s);
        assert_eq!(
            encode_connect_error("/nsp", "Invalid namespace"),
            r#"4/nsp,{"message":"Invalid namespace"}"#
        );
        assert_eq!(dec(r#"4"legacy""#).data_str(), Some(r#""legacy""#));
        assert!(dec("4").data.is_none());
        assert!(matches!(err("4[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("41"), Error::UnexpectedId(_)));
    }

    #[test]
    fn disconnect_vectors() {
        assert_eq!(dec("1"), Packet::new(PacketKind::Disconnect, "/"));
        assert_eq!(
            dec("1/admin,"),
            Packet::new(PacketKind::Disconnect, "/admin")
        );
        assert_eq!(encode_disconnect("/admin"), "1/admin,");
        assert_eq!(encode_disconnect("/"), "1");
        assert!(matches!(err("1{}"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("1/admin,[]"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("1/admin,x"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("12"), Error::UnexpectedId(_)));
    }

    #[test]
    fn event_vectors() {
        let p = dec(r#"2["foo"]"#);
        assert_eq!(p.kind, PacketKind::Event);
        assert_eq!(p.nsp, "/");
        assert_eq!(p.event_name().as_deref(), Some("foo"));
        assert_eq!(p.encode(), r#"2["foo"]"#);

        let p = dec(r#"2["hello",1]"#);
        let ev = p.event().unwrap();
        assert_eq!(ev.name, "hello");
        assert_eq!(ev.args.len(), 1);
        assert_eq!(ev.args[0].get(), "1");

        let p = dec(r#"2/admin,["bar"]"#);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.encode(), r#"2/admin,["bar"]"#);

        let p = dec(r#"212["foo"]"#);
        assert_eq!(p.id, Some(12));
        assert_eq!(p.encode(), r#"212["foo"]"#);

        let p = dec(r#"2/admin,1["tellme"]"#);
        assert_eq!((p.nsp.as_str(), p.id), ("/admin", Some(1)));

        // Numeric event names are accepted, as by the reference parser.
        let p = dec("2[42,\"x\"]");
        assert_eq!(p.event_name().as_deref(), Some("42"));
        assert_eq!(p.event().unwrap().args.len(), 1);

        // Escaped names are unescaped; whitespace is tolerated like JSON.parse.
        let p = dec(r#"2[ "a\"b\u00e9" , {"k" : [1]} ] "#);
        assert_eq!(p.event_name().as_deref(), Some("a\"bé"));
        assert_eq!(p.data_str(), Some(r#"[ "a\"b\u00e9" , {"k" : [1]} ]"#));
        let ev = p.event().unwrap();
        assert_eq!(ev.args[0].get(), r#"{"k" : [1]}"#);

        // Large ids up to u64::MAX.
        assert_eq!(dec(r#"218446744073709551615["a"]"#).id, Some(u64::MAX));
    }

    #[test]
    fn event_errors() {
        assert!(matches!(err("2"), Error::MissingPayload(PacketKind::Event)));
        assert!(matches!(err("2/admin,"), Error::MissingPayload(_)));
        assert!(matches!(err("212"), Error::MissingPayload(_)));
        assert!(matches!(err("2[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2{}"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[{}]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[null]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[[\"a\"]]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2\"foo\""), Error::InvalidPayload(_)));
        assert!(matches!(err("2[\"foo\""), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"foo\"]]"), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"foo\"]x"), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"a\",]"), Error::InvalidJson(_)));
        assert!(matches!(err("2x[\"a\"]"), Error::InvalidJson(_)));
        assert!(matches!(
            err(r#"218446744073709551616["a"]"#),
            Error::InvalidId
        ));
        for name in RESERVED_EVENTS {
            let e = err(&format!("2[\"{name}\",1]"));
            assert!(matches!(e, Error::ReservedEvent(n) if n == name));
        }
        // Reserved names are caught even when escaped.
        assert!(matches!(
            err(r#"2["\u0063onnect"]"#),
            Error::ReservedEvent(_)
        ));
    }

    #[test]
    fn ack_vectors() {
        let s = r#"3/admin,13["bar"]"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::Ack);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.id, Some(13));
        assert_eq!(p.encode(), s);
        assert_eq!(encode_ack("/admin", 13, &[raw(r#""bar""#)], 0), s);

        let p = dec("312[]");
        assert_eq!(p.id, Some(12));
        assert!(p.array_items().unwrap().is_empty());
        assert_eq!(encode_ack::<&RawValue>("/", 12, &[], 0), "312[]");

        // An ack without id is syntactically valid (the reference accepts it).
        assert_eq!(dec("3[]").id, None);
        assert!(matches!(err("3"), Error::MissingPayload(PacketKind::Ack)));
        assert!(matches!(err("3{}"), Error::InvalidPayload(_)));
        assert!(matches!(err("31\"x\""), Error::InvalidPayload(_)));
    }

    #[test]
    fn binary_vectors() {
        let s = r#"51-["baz",{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.attachments, 1);
        assert_eq!(p.event_name().as_deref(), Some("baz"));
        assert_eq!(p.encode(), s);

        let s = r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let p = dec(s);
        assert_eq!((p.attachments, p.nsp.as_str()), (2, "/admin"));
        assert_eq!(p.encode(), s);

        let s = r#"61-15["bar",{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryAck, 1, Some(15))
        );
        assert_eq!(p.encode(), s);

        let s = r#"61-/admin,1[{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(
            (p.attachments, p.nsp.as_str(), p.id),
            (1, "/admin", Some(1))
        );
        assert_eq!(p.encode(), s);

        // `452-/chat,` style: the Engine.IO `4` stripped, then `52-/chat,...`.
        let p =
            dec(r#"52-/chat,["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#);
        assert_eq!((p.attachments, p.nsp.as_str()), (2, "/chat"));

        let p = dec(r#"50-["a"]"#);
        assert_eq!(p.attachments, 0);

        let ph = [placeholder(0), placeholder(1)];
        assert_eq!(
            encode_event("/chat", Some(3), "up", &ph, 2),
            r#"52-/chat,3["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            encode_ack("/", 15, &ph[..1], 1),
            r#"61-15[{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn binary_errors() {
        for s in [
            "5[\"a\"]",
            "5-[\"a\"]",
            "5a-[\"a\"]",
            "51[\"a\"]",
            "5",
            "51",
            "6+1-[]",
            "5 1-[\"a\"]",
            "599999999999999999999999-[\"a\"]",
        ] {
            assert!(matches!(err(s), Error::IllegalAttachments), "{s}");
        }
        assert!(matches!(err("51-"), Error::MissingPayload(_)));
        assert!(matches!(err("51-[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("61-{}"), Error::InvalidPayload(_)));
    }

    #[test]
    fn generic_errors() {
        assert!(matches!(err(""), Error::Empty));
        assert!(matches!(err("7"), Error::UnknownKind('7')));
        assert!(matches!(err("a"), Error::UnknownKind('a')));
        assert!(matches!(err("é"), Error::UnknownKind('é')));
        assert!(matches!(err("2/a,b[\"x\"]"), Error::InvalidJson(_)));
        // Deep nesting is refused instead of being passed on.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(err(&deep), Error::TooDeep));
        // The limit matches serde_json's, so accepted payloads parse as Value.
        for d in 120..135 {
            let s = format!("3{}{}", "[".repeat(d), "]".repeat(d));
            let value_ok = serde_json::from_str::<Value>(&s[1..]).is_ok();
            assert_eq!(Packet::decode(&s).is_ok(), value_ok, "depth {d}");
        }
        assert_eq!(nesting_depth(r#"["[[[\"{", {"a": [1]}]"#), 3);
    }

    #[test]
    fn nsp_edge_cases() {
        // Namespace without trailing comma runs to the end.
        assert_eq!(dec("1/a/b").nsp, "/a/b");
        // An explicit main namespace decodes to "/" and encodes without it.
        let p = dec("2/,[\"x\"]");
        assert_eq!(p.nsp, "/");
        assert_eq!(p.encode(), "2[\"x\"]");
        // Non-ASCII namespaces.
        let p = dec("2/ü,5[\"x\"]");
        assert_eq!((p.nsp.as_str(), p.id), ("/ü", Some(5)));
        assert_eq!(p.encode(), "2/ü,5[\"x\"]");
    }

    #[test]
    fn fast_path_encoders() {
        let one = raw("1");
        let obj = raw(r#"{"a":[true,null]}"#);
        assert_eq!(
            encode_event("/", None, "hello", &[&*one], 0),
            r#"2["hello",1]"#
        );
        assert_eq!(
            encode_event::<&RawValue>("/", None, "e", &[], 0),
            r#"2["e"]"#
        );
        assert_eq!(
            encode_event("/admin", Some(9), "x", &[one.clone(), obj.clone()], 0),
            r#"2/admin,9["x",1,{"a":[true,null]}]"#
        );
        let name = "q\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é\u{2028}";
        let s = encode_event("/", None, name, &[&*one], 0);
        let p = dec(&s);
        assert_eq!(p.event_name().as_deref(), Some(name));
        assert_eq!(
            s,
            "2[\"q\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001fé\u{2028}\",1]"
        );
        let mut out = String::from("4");
        write_event(&mut out, "/", None, "m", &[&*one], 0);
        assert_eq!(out, r#"42["m",1]"#);
        assert_eq!(encode_connect("/", "a\"b"), r#"0{"sid":"a\"b"}"#);
    }

    #[test]
    fn placeholders() {
        let v: Value = serde_json::from_str(
            r#"["a",{"_placeholder":true,"num":1},{"x":[{"_placeholder":true,"num":0}]},{"_placeholder":false,"num":7}]"#,
        )
        .unwrap();
        assert_eq!(count_placeholders(&v).unwrap(), 2);
        validate_placeholders(&v, 2).unwrap();
        assert!(matches!(
            validate_placeholders(&v, 3),
            Err(Error::PlaceholderMismatch { expected: 3 })
        ));
        assert!(matches!(
            validate_placeholders(&v, 1),
            Err(Error::InvalidPlaceholder)
        ));

        let dup: Value = serde_json::from_str(
            r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
        )
        .unwrap();
        assert_eq!(count_placeholders(&dup).unwrap(), 2);
        assert!(matches!(
            validate_placeholders(&dup, 2),
            Err(Error::PlaceholderMismatch { .. })
        ));

        for bad in [
            r#"[{"_placeholder":true}]"#,
            r#"[{"_placeholder":true,"num":-1}]"#,
            r#"[{"_placeholder":true,"num":0.5}]"#,
            r#"[{"_placeholder":true,"num":"0"}]"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(
                matches!(count_placeholders(&v), Err(Error::InvalidPlaceholder)),
                "{bad}"
            );
        }
        assert_eq!(placeholder(3).get(), r#"{"_placeholder":true,"num":3}"#);
        validate_placeholders_raw(&raw(r#"["a"]"#), 0).unwrap();
        assert!(validate_placeholders_raw(&raw(r#"["a"]"#), 1).is_err());
    }

    #[test]
    fn assembler() {
        let p =
            dec(r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        let mut asm = BinaryAssembler::new(p.clone()).unwrap();
        assert_eq!((asm.expected(), asm.received()), (2, 0));
        assert_eq!(asm.packet(), &p);
        assert!(!asm.push(Bytes::from_static(&[1, 2])).unwrap());
        let early = asm.clone().finish();
        assert!(matches!(
            early,
            Err(Error::Incomplete {
                received: 1,
                expected: 2
            })
        ));
        assert!(asm.push(Bytes::from_static(&[3, 4])).unwrap());
        assert!(matches!(
            asm.clone().push(Bytes::new()),
            Err(Error::UnexpectedAttachment)
        ));
        let (packet, bufs) = asm.finish().unwrap();
        assert_eq!(packet, p);
        assert_eq!(
            bufs,
            vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]
        );

        // Zero attachments: complete at once.
        let asm = BinaryAssembler::new(dec(r#"50-["a"]"#)).unwrap();
        assert!(asm.is_complete());
        assert!(asm.finish().unwrap().1.is_empty());

        // Mismatches.
        let e = BinaryAssembler::new(dec(r#"52-["a",{"_placeholder":true,"num":0}]"#));
        assert!(matches!(e, Err(Error::PlaceholderMismatch { expected: 2 })));
        let e = BinaryAssembler::new(dec(r#"51-["a",{"_placeholder":true,"num":1}]"#));
        assert!(matches!(e, Err(Error::InvalidPlaceholder)));
        let e = BinaryAssembler::new(dec(r#"51-["a"]"#));
        assert!(matches!(e, Err(Error::PlaceholderMismatch { expected: 1 })));
        let e = BinaryAssembler::new(dec(r#"2["a"]"#));
        assert!(matches!(e, Err(Error::NotBinary(PacketKind::Event))));
        let many = format!(
            "511-[\"a\",{}]",
            (0..11)
                .map(|n| placeholder(n).get().to_owned())
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = BinaryAssembler::new(dec(&many));
        assert!(matches!(
            e,
            Err(Error::TooManyAttachments { count: 11, max: 10 })
        ));
        BinaryAssembler::with_max_attachments(dec(&many), 11).unwrap();
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
