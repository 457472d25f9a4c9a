//! The wire format of `@socket.io/redis-adapter` (classic, pub/sub) and
//! `@socket.io/redis-emitter`, written from the protocol as the adapter's
//! public source describes it:
//!
//! - broadcast channel `<prefix>#<nsp>#` (or `<prefix>#<nsp>#<room>#` when
//!   sent to exactly one room), message = msgpack
//!   `[uid, {type: 2, data: [event, ...args], nsp}, {rooms, except, flags}]`,
//!   binary arguments as msgpack `bin`;
//! - request channel `<prefix>-request#<nsp>#`, response channel
//!   `<prefix>-response#<nsp>#` (and `…#<uid>#`), JSON objects (msgpack
//!   accepted too) `{uid, requestId, type, opts}` / `{requestId, …}`.
//!
//! volna's own `message` and `presence` events travel as the Socket.IO
//! events volna's Socket.IO clients see, so a Node.js server in the cluster
//! forwards them to its sockets unchanged, and a volna node turns them back
//! into full hub [`Message`]s and [`Presence`]s.
//!
//! JSON text is written with `volna_protocols::json`: strings escaped as
//! `JSON.stringify` does, and placeholders built by its `placeholder`, so
//! the placeholder shape is defined once for every wire format of volna.

use std::sync::Arc;

use bytes::Bytes;
use rmpv::Value;
use serde_json::value::RawValue;
use volna_hub::{Data, Emit, MemberInfo, Message, Outgoing, Presence, PresenceKind};
use volna_protocols::json::{placeholder, push_json_string};

/// Socket.IO's EVENT and BINARY_EVENT packet types.
const EVENT: u64 = 2;
const BINARY_EVENT: u64 = 5;

/// Request types of the adapter's request channel (the `type` field of a
/// request, and of the answer to a [`BROADCAST`](request::BROADCAST)).
/// A subset of the adapter's `RequestType` numbers: those volna sends,
/// answers or names.
pub mod request {
    /// `allSockets()`: the socket ids in some rooms.
    pub const SOCKETS: u64 = 0;
    /// `allRooms()`: every room of the namespace.
    pub const ALL_ROOMS: u64 = 1;
    /// `disconnectSockets()`: disconnect the sockets in some rooms.
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// `fetchSockets()`: the sockets in some rooms, minus those in others,
    /// with their rooms and `data` (volna's cluster-wide `who` uses it).
    pub const REMOTE_FETCH: u64 = 5;
    /// `serverSideEmit()`: an event for the other servers themselves.
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// A broadcast that expects acknowledgements.
    pub const BROADCAST: u64 = 7;
    /// The answer to a [`BROADCAST`]: how many clients will acknowledge.
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
}

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub struct Channels {
    /// `<prefix>#<nsp>#`
    pub broadcast: String,
    /// `<prefix>-request#<nsp>#`
    pub request: String,
    /// `<prefix>-response#<nsp>#`
    pub response: String,
}

impl Channels {
    /// The channels of namespace `nsp` under the key prefix `prefix`
    /// ([`ClusterConfig::prefix`](crate::ClusterConfig::prefix), `socket.io` by default).
    pub fn new(prefix: &str, nsp: &str) -> Channels {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
        }
    }

    /// Where a broadcast to `rooms` is published.
    pub fn for_rooms(&self, rooms: &[&str]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }
}

/// Where the hub observers of volna nodes (the Admin UI) talk to each
/// other: `<prefix>-volna#admin#`, volna's own channel, which Node.js
/// servers neither subscribe to nor match with their `<prefix>#*` pattern.
pub fn observers_channel(prefix: &str) -> String {
    format!("{prefix}-volna#admin#")
}

/// A payload for the other nodes' observers, as published: the sender's
/// node id, a newline, the payload.
pub fn encode_observers(uid: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(uid.len() + 1 + payload.len());
    out.extend_from_slice(uid.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Reads what [`encode_observers`] wrote: the sender's node id and the
/// payload.
pub fn decode_observers(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let at = bytes.iter().position(|b| *b == b'\n')?;
    let uid = std::str::from_utf8(&bytes[..at]).ok()?;
    Some((uid, &bytes[at + 1..]))
}

/// A broadcast received from another server.
#[derive(Debug)]
pub struct RemoteBroadcast {
    /// The sender's node id (`emitter` for the Redis emitter).
    pub uid: String,
    /// The namespace (`/` when the packet names none).
    pub nsp: Arc<str>,
    /// Rooms to deliver to; empty means the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms whose members must not receive it.
    pub except: Vec<String>,
    /// What it carries.
    pub event: RemoteEvent,
}

/// What a received broadcast carries.
#[derive(Debug)]
pub enum RemoteEvent {
    /// A volna `message` event, turned back into a hub message.
    Message(Message),
    /// A volna `presence` event, turned back into a hub presence.
    Presence(Presence),
    /// Any other event, e.g. from a Node.js server or the Redis emitter.
    Emit(Emit),
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The bytes are not msgpack; holds the decoder's message.
    #[error("invalid msgpack: {0}")]
    Msgpack(String),
    /// Valid msgpack, but not the adapter's message shape; says which part
    /// is missing or wrong.
    #[error("unexpected shape: {0}")]
    Shape(&'static str),
}

pub(crate) fn s(v: &str) -> Value {
    Value::String(v.into())
}

pub(crate) fn map_get<'v>(map: &'v [(Value, Value)], key: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// JSON text (with Socket.IO placeholders) to msgpack, the placeholders
/// replaced by their attachments as `bin`. Map order is kept.
///
/// The text is parsed straight into an [`rmpv::Value`] tree, not a
/// `serde_json::Value` (whose maps would sort their keys), so the
/// placeholders are found by a walk over msgpack values here rather than
/// by `volna_protocols::json`'s walks, which read `serde_json` trees.
pub fn json_to_msgpack(json: &str, attachments: &[Bytes]) -> Value {
    let mut value: Value = serde_json::from_str(json).unwrap_or(Value::Nil);
    if !attachments.is_empty() {
        fill_placeholders(&mut value, attachments);
    }
    value
}

/// The `num` of a placeholder in msgpack form (`_placeholder: true`,
/// integer `num`); `None` for any other map, a malformed placeholder
/// included, which is then kept as an ordinary map.
fn placeholder_num(map: &[(Value, Value)]) -> Option<usize> {
    if map_get(map, "_placeholder") == Some(&Value::Boolean(true)) {
        map_get(map, "num")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    } else {
        None
    }
}

/// Replaces each placeholder whose attachment exists by that attachment as
/// `bin` (see [`json_to_msgpack`] for why this walks msgpack values).
fn fill_placeholders(value: &mut Value, attachments: &[Bytes]) {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| fill_placeholders(v, attachments)),
        Value::Map(map) => match placeholder_num(map) {
            Some(n) if n < attachments.len() => *value = Value::Binary(attachments[n].to_vec()),
            _ => map
                .iter_mut()
                .for_each(|(_, v)| fill_placeholders(v, attachments)),
        },
        _ => {}
    }
}

/// Msgpack to JSON text; `bin` values become placeholders numbered in
/// document order and their bytes are appended to `attachments`.
pub fn msgpack_to_json(value: &Value, out: &mut String, attachments: &mut Vec<Bytes>) {
    use std::fmt::Write as _;
    match value {
        Value::Nil | Value::Ext(..) => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(n) = i.as_i64() {
                let _ = write!(out, "{n}");
            }
        }
        Value::F32(f) => push_float(out, f64::from(*f)),
        Value::F64(f) => push_float(out, *f),
        Value::String(st) => match st.as_str() {
            Some(text) => push_json_string(out, text),
            None => push_json_string(out, &String::from_utf8_lossy(st.as_bytes())),
        },
        Value::Binary(b) => {
            out.push_str(placeholder(attachments.len()).get());
            attachments.push(Bytes::copy_from_slice(b));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                msgpack_to_json(v, out, attachments);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k.as_str() {
                    Some(key) => push_json_string(out, key),
                    None => {
                        // JSON keys are strings: write other keys as text.
                        let mut tmp = String::new();
                        msgpack_to_json(k, &mut tmp, &mut Vec::new());
                        push_json_string(out, tmp.trim_matches('"'));
                    }
                }
                out.push(':');
                msgpack_to_json(v, out, attachments);
            }
            out.push('}');
        }
    }
}

fn push_float(out: &mut String, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

pub(crate) fn to_data(value: &Value) -> Data {
    let mut json = String::new();
    let mut attachments = Vec::new();
    msgpack_to_json(value, &mut json, &mut attachments);
    Data {
        json: RawValue::from_string(json).expect("msgpack_to_json writes valid JSON"),
        attachments,
    }
}

pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    rmpv::encode::write_value(&mut buf, value).expect("writing to a Vec cannot fail");
    buf
}

/// Encodes a hub broadcast as the adapter's message. Returns the room it
/// targets (for the channel name) and the payload.
pub fn encode_outgoing(uid: &str, event: &Outgoing) -> (Arc<str>, Arc<str>, Vec<u8>) {
    let (nsp, room, packet, opts) = outgoing_packet(event);
    let mut packet = packet;
    if let Value::Map(fields) = &mut packet {
        fields.push((s("nsp"), s(&nsp)));
    }
    let msg = Value::Array(vec![s(uid), packet, opts]);
    (nsp, room, encode(&msg))
}

/// A hub broadcast as a Socket.IO packet `{type: 2, data: [event, arg]}`
/// (the event volna's Socket.IO clients see) and the broadcast options
/// `{rooms: [room], except: [], flags: {}}`, with its namespace and room.
pub fn outgoing_packet(event: &Outgoing) -> (Arc<str>, Arc<str>, Value, Value) {
    let (nsp, room, name, arg) = match event {
        Outgoing::Message(m) => {
            let arg = Value::Map(vec![
                (s("room"), s(&m.room)),
                (s("from"), s(&m.from.name)),
                (s("id"), Value::from(m.from.id)),
                (s("offset"), Value::from(m.offset)),
                (s("ts"), Value::from(m.ts)),
                (
                    s("data"),
                    json_to_msgpack(m.data.json.get(), &m.data.attachments),
                ),
            ]);
            let mut arg = arg;
            if let (Some(event), Value::Map(fields)) = (&m.event, &mut arg) {
                // As volna's Socket.IO clients see it: the envelope says
                // which event it is.
                fields.push((s("event"), s(event)));
            }
            let name = m.event.as_deref().unwrap_or("message");
            (m.nsp.clone(), m.room.clone(), name, arg)
        }
        Outgoing::Presence(p) => {
            let arg = Value::Map(vec![
                (s("room"), s(&p.room)),
                (s("name"), s(&p.member.name)),
                (s("id"), Value::from(p.member.id)),
                (s("event"), s(p.kind.as_str())),
                (s("members"), Value::from(p.members as u64)),
            ]);
            (p.nsp.clone(), p.room.clone(), "presence", arg)
        }
    };
    let packet = Value::Map(vec![
        (s("type"), Value::from(EVENT)),
        (s("data"), Value::Array(vec![s(name), arg])),
    ]);
    let opts = Value::Map(vec![
        (s("rooms"), Value::Array(vec![s(&room)])),
        (s("except"), Value::Array(Vec::new())),
        (s("flags"), Value::Map(Vec::new())),
    ]);
    (nsp, room, packet, opts)
}

pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(st) => st.as_str().map(str::to_string),
                    // Socket.IO rooms may be numbers.
                    Value::Integer(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads an adapter broadcast: `[uid, packet, opts]`.
pub fn decode_broadcast(bytes: &[u8]) -> Result<RemoteBroadcast, WireError> {
    let value =
        rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| WireError::Msgpack(e.to_string()))?;
    let items = value.as_array().ok_or(WireError::Shape("not an array"))?;
    let uid = match items.first() {
        Some(Value::String(u)) => u.as_str().unwrap_or_default().to_string(),
        _ => return Err(WireError::Shape("no uid")),
    };
    let packet = items
        .get(1)
        .and_then(Value::as_map)
        .ok_or(WireError::Shape("no packet"))?;
    let opts: &[(Value, Value)] = items.get(2).and_then(Value::as_map).map_or(&[], |m| m);
    let rooms = strings(map_get(opts, "rooms"));
    let except = strings(map_get(opts, "except"));
    let event = decode_packet(packet, &rooms)?;
    let nsp: Arc<str> = match map_get(packet, "nsp").and_then(Value::as_str) {
        Some(n) => Arc::from(n),
        None => Arc::from("/"),
    };
    let event = match event {
        RemoteEvent::Message(mut m) => {
            m.nsp = nsp.clone();
            RemoteEvent::Message(m)
        }
        RemoteEvent::Presence(mut p) => {
            p.nsp = nsp.clone();
            RemoteEvent::Presence(p)
        }
        RemoteEvent::Emit(mut e) => {
            e.nsp = nsp.clone();
            RemoteEvent::Emit(e)
        }
    };
    Ok(RemoteBroadcast {
        uid,
        nsp,
        rooms,
        except,
        event,
    })
}

/// A Socket.IO packet `{type, data: [event, ...args], nsp}` as a hub event.
pub fn decode_packet(
    packet: &[(Value, Value)],
    rooms: &[String],
) -> Result<RemoteEvent, WireError> {
    let kind = map_get(packet, "type").and_then(Value::as_u64);
    if kind != Some(EVENT) && kind != Some(BINARY_EVENT) {
        return Err(WireError::Shape("not an event packet"));
    }
    let data = map_get(packet, "data")
        .and_then(Value::as_array)
        .ok_or(WireError::Shape("no data"))?;
    let name = data
        .first()
        .and_then(Value::as_str)
        .ok_or(WireError::Shape("no event name"))?;
    let args = &data[1..];
    let nsp: Arc<str> = Arc::from("/");
    if let [Value::Map(arg)] = args {
        match name {
            "presence" => {
                if let Some(p) = as_presence(arg, &nsp) {
                    return Ok(RemoteEvent::Presence(p));
                }
            }
            // `message`, or an application's own event in the message
            // envelope (what a volna node sends for `emit`).
            _ => {
                if let Some(mut m) = as_message(arg, &nsp) {
                    if name != "message" {
                        m.event = Some(Arc::from(name));
                    }
                    return Ok(RemoteEvent::Message(m));
                }
            }
        }
    }
    let room = match rooms {
        [room] => Some(Arc::from(room.as_str())),
        _ => None,
    };
    Ok(RemoteEvent::Emit(Emit {
        nsp,
        room,
        event: Arc::from(name),
        args: to_data(&Value::Array(args.to_vec())),
        cluster_offset: None,
    }))
}

fn as_message(arg: &[(Value, Value)], nsp: &Arc<str>) -> Option<Message> {
    let room = map_get(arg, "room")?.as_str()?;
    let from = map_get(arg, "from")?.as_str()?;
    let id = map_get(arg, "id")?.as_u64()?;
    let offset = map_get(arg, "offset")?.as_u64()?;
    let ts = map_get(arg, "ts")?.as_u64()?;
    let data = map_get(arg, "data")?;
    Some(Message {
        nsp: nsp.clone(),
        room: Arc::from(room),
        offset,
        ts,
        from: MemberInfo {
            id,
            name: Arc::from(from),
        },
        data: to_data(data),
        event: None,
        seq: 0,
        cluster_offset: Default::default(),
    })
}

fn as_presence(arg: &[(Value, Value)], nsp: &Arc<str>) -> Option<Presence> {
    let room = map_get(arg, "room")?.as_str()?;
    let name = map_get(arg, "name")?.as_str()?;
    let id = map_get(arg, "id")?.as_u64()?;
    let kind = match map_get(arg, "event")?.as_str()? {
        "join" => PresenceKind::Joined,
        "leave" => PresenceKind::Left,
        _ => return None,
    };
    let members = map_get(arg, "members")?.as_u64()? as usize;
    Some(Presence {
        nsp: nsp.clone(),
        room: Arc::from(room),
        member: MemberInfo {
            id,
            name: Arc::from(name),
        },
        kind,
        members,
    })
}

/// Reads a request or response: JSON when it starts with `{`, else msgpack
/// (as the adapter does). Msgpack is returned as JSON with placeholders.
pub fn decode_control(bytes: &[u8]) -> Option<(serde_json::Value, Vec<Bytes>)> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).ok().map(|v| (v, Vec::new()));
    }
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    let mut json = String::new();
    let mut attachments = Vec::new();
    msgpack_to_json(&value, &mut json, &mut attachments);
    serde_json::from_str(&json).ok().map(|v| (v, attachments))
}

/// Reads the `packet` of a BROADCAST request (msgpack) as a hub event.
pub fn decode_request_packet(bytes: &[u8]) -> Option<(Vec<String>, Vec<String>, RemoteEvent)> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    let map = value.as_map()?;
    let packet = map_get(map, "packet")?.as_map()?;
    let opts: &[(Value, Value)] = map_get(map, "opts")
        .and_then(Value::as_map)
        .map_or(&[], |m| m);
    let rooms = strings(map_get(opts, "rooms"));
    let except = strings(map_get(opts, "except"));
    let event = decode_packet(packet, &rooms).ok()?;
    Some((rooms, except, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_payloads_carry_their_sender() {
        let bytes = encode_observers("node1", b"{\"a\":\"x\\ny\"}");
        assert_eq!(
            decode_observers(&bytes),
            Some(("node1", &b"{\"a\":\"x\\ny\"}"[..]))
        );
        assert_eq!(decode_observers(b"no newline"), None);
        assert_eq!(observers_channel("socket.io"), "socket.io-volna#admin#");
    }

    #[test]
    fn message_round_trips_with_binary_and_key_order() {
        let msg = Arc::new(Message {
            nsp: Arc::from("/"),
            room: Arc::from("lobby"),
            offset: 7,
            ts: 1234,
            from: MemberInfo {
                id: 3,
                name: Arc::from("ann"),
            },
            data: Data {
                json: RawValue::from_string(
                    r#"{"z":1,"a":[true,null,1.5,-2,"x"],"img":{"_placeholder":true,"num":0}}"#
                        .into(),
                )
                .unwrap(),
                attachments: vec![Bytes::from_static(&[0, 1, 2])],
            },
            event: None,
            seq: 0,
            cluster_offset: Default::default(),
        });
        let (nsp, room, bytes) = encode_outgoing("abc", &Outgoing::Message(msg.clone()));
        assert_eq!((&*nsp, &*room), ("/", "lobby"));
        let inc = decode_broadcast(&bytes).unwrap();
        assert_eq!(inc.uid, "abc");
        assert_eq!(inc.rooms, vec!["lobby"]);
        let RemoteEvent::Message(m) = inc.event else {
            panic!("not a message")
        };
        assert_eq!(
            (m.offset, m.ts, m.from.id, &*m.from.name),
            (7, 1234, 3, "ann")
        );
        assert_eq!(m.data.json.get(), msg.data.json.get());
        assert_eq!(m.data.attachments, msg.data.attachments);
    }

    #[test]
    fn custom_events_travel_under_their_own_name() {
        let msg = Arc::new(Message {
            nsp: Arc::from("/"),
            room: Arc::from("doc:1"),
            offset: 2,
            ts: 99,
            from: MemberInfo {
                id: 5,
                name: Arc::from("bo"),
            },
            data: Data::text("x"),
            event: Some(Arc::from("cursor")),
            seq: 0,
            cluster_offset: Default::default(),
        });
        let (_, _, bytes) = encode_outgoing("n1", &Outgoing::Message(msg));
        let RemoteEvent::Message(m) = decode_broadcast(&bytes).unwrap().event else {
            panic!("not a message")
        };
        assert_eq!(m.event.as_deref(), Some("cursor"));
        assert_eq!((m.offset, &*m.room), (2, "doc:1"));
    }

    #[test]
    fn presence_round_trips() {
        let p = Arc::new(Presence {
            nsp: Arc::from("/"),
            room: Arc::from("r"),
            member: MemberInfo {
                id: 9,
                name: Arc::from("bo"),
            },
            kind: PresenceKind::Left,
            members: 2,
        });
        let (_, _, bytes) = encode_outgoing("n1", &Outgoing::Presence(p));
        let RemoteEvent::Presence(q) = decode_broadcast(&bytes).unwrap().event else {
            panic!("not presence")
        };
        assert_eq!(
            (&*q.room, &*q.member.name, q.kind, q.members),
            ("r", "bo", PresenceKind::Left, 2)
        );
    }

    /// What `emitter.to("news").emit("headline", {title: "hi"}, Buffer)`
    /// publishes (hand-built msgpack, as notepack writes it).
    #[test]
    fn emitter_packet_becomes_an_emit() {
        let msg = Value::Array(vec![
            s("emitter"),
            Value::Map(vec![
                (s("type"), Value::from(2)),
                (
                    s("data"),
                    Value::Array(vec![
                        s("headline"),
                        Value::Map(vec![(s("title"), s("hi"))]),
                        Value::Binary(vec![9, 9]),
                    ]),
                ),
                (s("nsp"), s("/")),
            ]),
            Value::Map(vec![
                (s("rooms"), Value::Array(vec![s("news")])),
                (s("except"), Value::Array(vec![])),
                (s("flags"), Value::Map(vec![])),
            ]),
        ]);
        let inc = decode_broadcast(&encode(&msg)).unwrap();
        let RemoteEvent::Emit(e) = inc.event else {
            panic!("not an emit")
        };
        assert_eq!(&*e.event, "headline");
        assert_eq!(e.room.as_deref(), Some("news"));
        assert_eq!(
            e.args.json.get(),
            r#"[{"title":"hi"},{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(e.args.attachments, vec![Bytes::from_static(&[9, 9])]);
    }

    /// Strings are written as `JSON.stringify` writes them (what the Node.js
    /// adapter and emitter produce and parse): `"` and `\\` escaped, the
    /// control characters as `\n`-style or lowercase `\u00xx` escapes, and
    /// everything else (DEL, non-ASCII, U+2028) as is.
    #[test]
    fn strings_are_escaped_as_json_stringify_does() {
        let text = "say \"hi\" \\ / \u{0}\u{1}\u{1f} \n\r\t\u{8}\u{c} \u{7f} é ✓ 🎉 \u{2028}";
        let escaped = concat!(
            r#""say \"hi\" \\ / \u0000\u0001\u001f \n\r\t\b\f "#,
            "\u{7f} é ✓ 🎉 \u{2028}\"",
        );
        let value = Value::Map(vec![(s(text), s(text))]);
        let mut out = String::new();
        msgpack_to_json(&value, &mut out, &mut Vec::new());
        assert_eq!(out, format!("{{{escaped}:{escaped}}}"));
        // The same text serde_json (the previous escaper) writes.
        assert_eq!(escaped, serde_json::to_string(text).unwrap());
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back[text], text);
    }

    #[test]
    fn bin_becomes_the_shared_placeholder() {
        let value = Value::Array(vec![Value::Binary(vec![1]), Value::Binary(vec![2])]);
        let mut out = String::new();
        let mut attachments = Vec::new();
        msgpack_to_json(&value, &mut out, &mut attachments);
        assert_eq!(
            out,
            format!("[{},{}]", placeholder(0).get(), placeholder(1).get())
        );
        assert_eq!(
            attachments,
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
        // And back: the placeholders are filled with their attachments.
        assert_eq!(json_to_msgpack(&out, &attachments), value);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\xc1", b"\x93\x01\x02\x03", b"\x91\xa1x", b"{}"] {
            assert!(decode_broadcast(bytes).is_err());
        }
        assert!(decode_control(b"{not json").is_none());
    }
}
