//! The wire format of `@socket.io/redis-streams-adapter` 0.3 (with
//! `socket.io-adapter` 2.5's cluster messages), sans-IO, written from the
//! protocol as its public source and a capture of its traffic describe it:
//!
//! - one stream (default name `socket.io`); each entry has the fields
//!   `uid`, `nsp`, `type` (a decimal string) and `data`: JSON text, or,
//!   when the payload holds binary, the base64 of its msgpack (binary as
//!   `bin`); readers tell them apart by a leading `{`;
//! - a broadcast is type 3 with data `{packet: {type: 2, data: [event,
//!   ...args]}, opts: {rooms, except, flags}}` (no `nsp` in the packet, no
//!   offset); its entry id is the offset Socket.IO clients are shown;
//! - a connection-state-recovery session is the base64 of the msgpack
//!   map `{sid, pid, rooms, data}` (`rooms` with the socket's own id),
//!   stored with the window as its expiry.
//!
//! volna adds one field to the entries it appends, `vseq`: its own number
//! for a message it will deliver locally when it reads it back. Node.js
//! readers ignore fields they do not know.

use std::sync::Arc;

use base64::Engine as _;
use rmpv::Value;
use serde_json::value::RawValue;
use volna_hub::{Identity, Outgoing, Session};

use crate::wire::{
    decode_packet, map_get, msgpack_to_json, outgoing_packet, s, strings, RemoteBroadcast,
    RemoteEvent, WireError,
};

/// The cluster message types that travel in the stream.
pub mod kind {
    /// A broadcast without acknowledgements.
    pub const BROADCAST: u64 = 3;
    /// `socketsJoin()`.
    pub const SOCKETS_JOIN: u64 = 4;
    /// `socketsLeave()`.
    pub const SOCKETS_LEAVE: u64 = 5;
    /// `disconnectSockets()`.
    pub const DISCONNECT_SOCKETS: u64 = 6;
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn has_binary(v: &Value) -> bool {
    match v {
        Value::Binary(_) => true,
        Value::Array(items) => items.iter().any(has_binary),
        Value::Map(map) => map.iter().any(|(_, v)| has_binary(v)),
        _ => false,
    }
}

/// A `data` field: JSON text, or base64 msgpack when `value` holds binary.
fn data_field(value: &Value) -> String {
    if has_binary(value) {
        B64.encode(crate::wire::encode(value))
    } else {
        let mut json = String::with_capacity(128);
        msgpack_to_json(value, &mut json, &mut Vec::new());
        json
    }
}

/// Reads a `data` field back.
fn read_data_field(data: &[u8]) -> Result<Value, WireError> {
    if data.first() == Some(&b'{') {
        return serde_json::from_slice(data).map_err(|e| WireError::Msgpack(e.to_string()));
    }
    let bytes = B64
        .decode(data)
        .map_err(|_| WireError::Shape("data is neither JSON nor base64"))?;
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| WireError::Msgpack(e.to_string()))
}

/// A hub broadcast as a stream entry's namespace and `data` field (type
/// [`kind::BROADCAST`]).
pub fn broadcast_entry(event: &Outgoing) -> (Arc<str>, String) {
    let (nsp, _room, packet, opts) = outgoing_packet(event);
    let data = Value::Map(vec![(s("packet"), packet), (s("opts"), opts)]);
    (nsp, data_field(&data))
}

/// One entry read from the stream.
#[derive(Debug)]
pub struct StreamEntry {
    /// Its id, `<ms>-<n>`: the offset of what it carries.
    pub id: Arc<str>,
    /// The writer's id.
    pub uid: String,
    /// Its namespace.
    pub nsp: Arc<str>,
    /// Its message type ([`kind`]).
    pub kind: u64,
    /// Its payload, when it has one.
    pub data: Option<Value>,
    /// volna's `vseq`, on the entries a volna node appended for itself.
    pub vseq: Option<u64>,
}

/// Reads an entry from its id and its field/value pairs.
pub fn parse_entry(id: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<StreamEntry, WireError> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    };
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let nsp = get("nsp").ok_or(WireError::Shape("no nsp"))?;
    let kind = get("type")
        .and_then(|t| std::str::from_utf8(t).ok()?.parse().ok())
        .ok_or(WireError::Shape("no type"))?;
    let data = get("data").map(read_data_field).transpose()?;
    Ok(StreamEntry {
        id: Arc::from(id),
        uid: get("uid").map(text).unwrap_or_default(),
        nsp: Arc::from(text(nsp)),
        kind,
        data,
        vseq: get("vseq").and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()),
    })
}

/// Whether a Socket.IO client is shown `id` as an offset: the reference's
/// test (`addOffsetIfNecessary`): an event without an ack id, and no
/// volatile flag.
fn takes_offset(packet: &[(Value, Value)], opts: &[(Value, Value)]) -> bool {
    let volatile = map_get(opts, "flags")
        .and_then(Value::as_map)
        .is_some_and(|flags| map_get(flags, "volatile").is_some());
    map_get(packet, "id").is_none() && !volatile
}

/// The broadcast a type-3 entry carries, as a hub event; with `offsets`,
/// the entry's id is its offset where the reference would add one.
pub fn entry_broadcast(entry: &StreamEntry, offsets: bool) -> Result<RemoteBroadcast, WireError> {
    if entry.kind != kind::BROADCAST {
        return Err(WireError::Shape("not a broadcast"));
    }
    let map = entry
        .data
        .as_ref()
        .and_then(Value::as_map)
        .ok_or(WireError::Shape("no data"))?;
    let packet = map_get(map, "packet")
        .and_then(Value::as_map)
        .ok_or(WireError::Shape("no packet"))?;
    let opts: &[(Value, Value)] = map_get(map, "opts")
        .and_then(Value::as_map)
        .map_or(&[], |m| m);
    let rooms = strings(map_get(opts, "rooms"));
    let except = strings(map_get(opts, "except"));
    let offset = (offsets && takes_offset(packet, opts)).then(|| entry.id.clone());
    let event = match decode_packet(packet, &rooms)? {
        RemoteEvent::Message(mut m) => {
            m.nsp = entry.nsp.clone();
            if let Some(offset) = offset {
                let _ = m.cluster_offset.set(offset);
            }
            RemoteEvent::Message(m)
        }
        RemoteEvent::Presence(mut p) => {
            p.nsp = entry.nsp.clone();
            RemoteEvent::Presence(p)
        }
        RemoteEvent::Emit(mut e) => {
            e.nsp = entry.nsp.clone();
            e.cluster_offset = offset;
            RemoteEvent::Emit(e)
        }
    };
    Ok(RemoteBroadcast {
        uid: entry.uid.clone(),
        nsp: entry.nsp.clone(),
        rooms,
        except,
        event,
    })
}

/// Whether a session in `rooms` gets a broadcast to `to` but `except` (the
/// reference's `shouldIncludePacket`).
pub fn reaches(rooms: &[Arc<str>], sid: &str, to: &[String], except: &[String]) -> bool {
    let has = |r: &String| &**r == sid || rooms.iter().any(|x| **x == **r);
    (to.is_empty() || to.iter().any(has)) && !except.iter().any(has)
}

/// Whether `offset` has the shape of a stream entry id.
pub fn is_entry_id(offset: &str) -> bool {
    match offset.split_once('-') {
        Some((ms, n)) => {
            !ms.is_empty()
                && !n.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// A session as the reference stores it: base64 msgpack of `{sid, pid,
/// rooms, data}`; `data` holds what the socket is (`name`, and `user`,
/// `info`, `exp` when it has them), as a Node.js server's `socket.data`.
pub fn encode_session(pid: &str, session: &Session) -> Option<String> {
    let sid = session.identity.client.as_deref()?;
    let mut rooms = vec![s(sid)];
    rooms.extend(session.rooms.iter().map(|r| s(r)));
    let mut data = vec![(s("name"), s(&session.name))];
    if let Some(user) = &session.identity.user {
        data.push((s("user"), s(user)));
    }
    if let Some(info) = &session.identity.info {
        data.push((s("info"), crate::wire::json_to_msgpack(info.get(), &[])));
    }
    if let Some(exp) = session.identity.expires {
        data.push((s("exp"), Value::from(exp)));
    }
    let value = Value::Map(vec![
        (s("sid"), s(sid)),
        (s("pid"), s(pid)),
        (s("rooms"), Value::Array(rooms)),
        (s("data"), Value::Map(data)),
    ]);
    Some(B64.encode(crate::wire::encode(&value)))
}

/// A session read back: who it was, its name and its rooms (its own id
/// left out: that is its personal room here).
#[derive(Debug)]
pub struct StoredSession {
    /// Its identity (client id = the socket id).
    pub identity: Identity,
    /// Its display name, if it had one (`data.name`).
    pub name: Option<Arc<str>>,
    /// The rooms it was in.
    pub rooms: Vec<Arc<str>>,
}

/// Reads a session stored by [`encode_session`] or a Node.js server.
pub fn decode_session(stored: &[u8]) -> Result<StoredSession, WireError> {
    let bytes = B64
        .decode(stored)
        .map_err(|_| WireError::Shape("session is not base64"))?;
    let value =
        rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| WireError::Msgpack(e.to_string()))?;
    let map = value
        .as_map()
        .ok_or(WireError::Shape("session is not a map"))?;
    let sid = map_get(map, "sid")
        .and_then(Value::as_str)
        .ok_or(WireError::Shape("session without sid"))?;
    let rooms = strings(map_get(map, "rooms"))
        .into_iter()
        .filter(|r| r != sid)
        .map(Arc::from)
        .collect();
    let data: &[(Value, Value)] = map_get(map, "data")
        .and_then(Value::as_map)
        .map_or(&[], |m| m);
    let text = |key| {
        map_get(data, key)
            .and_then(Value::as_str)
            .map(Arc::<str>::from)
    };
    let info = map_get(data, "info").and_then(|v| {
        let mut json = String::new();
        msgpack_to_json(v, &mut json, &mut Vec::new());
        RawValue::from_string(json).ok().map(Arc::from)
    });
    Ok(StoredSession {
        identity: Identity {
            client: Some(Arc::from(sid)),
            user: text("user"),
            info,
            transport: "websocket",
            expires: map_get(data, "exp").and_then(Value::as_u64),
            rooms: None,
        },
        name: text("name"),
        rooms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use volna_hub::{Data, MemberInfo, Message};

    fn entry(data: String, vseq: Option<u64>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut f = vec![
            (b"uid".to_vec(), b"abc".to_vec()),
            (b"nsp".to_vec(), b"/".to_vec()),
            (b"type".to_vec(), b"3".to_vec()),
            (b"data".to_vec(), data.into_bytes()),
        ];
        if let Some(v) = vseq {
            f.push((b"vseq".to_vec(), v.to_string().into_bytes()));
        }
        f
    }

    fn message(data: Data) -> Arc<Message> {
        Arc::new(Message {
            nsp: Arc::from("/"),
            room: Arc::from("lobby"),
            offset: 4,
            ts: 77,
            from: MemberInfo {
                id: 9,
                name: Arc::from("ann"),
            },
            data,
            event: None,
            seq: 1,
            cluster_offset: Default::default(),
        })
    }

    #[test]
    fn a_text_message_is_json_and_comes_back_with_its_offset() {
        let (nsp, data) = broadcast_entry(&Outgoing::Message(message(Data::text("hi"))));
        assert_eq!(&*nsp, "/");
        assert!(data.starts_with(r#"{"packet":{"type":2,"data":["message",{"room":"lobby""#));
        assert!(data.ends_with(r#""opts":{"rooms":["lobby"],"except":[],"flags":{}}}"#));
        let e = parse_entry("17-3", &entry(data, Some(5))).unwrap();
        assert_eq!((e.kind, e.vseq, &*e.id), (3, Some(5), "17-3"));
        let b = entry_broadcast(&e, true).unwrap();
        assert_eq!(b.rooms, vec!["lobby"]);
        let RemoteEvent::Message(m) = b.event else {
            panic!("not a message")
        };
        assert_eq!(m.data.as_text().as_deref(), Some("hi"));
        assert_eq!(m.cluster_offset.get().map(|o| &**o), Some("17-3"));
        let b = entry_broadcast(&e, false).unwrap();
        let RemoteEvent::Message(m) = b.event else {
            panic!("not a message")
        };
        assert!(m.cluster_offset.get().is_none());
    }

    #[test]
    fn binary_goes_as_base64_msgpack_and_node_entries_read() {
        let data = Data {
            json: RawValue::from_string(r#"[{"_placeholder":true,"num":0}]"#.into()).unwrap(),
            attachments: vec![Bytes::from_static(&[1, 2, 3])],
        };
        let (_, field) = broadcast_entry(&Outgoing::Message(message(data)));
        assert!(!field.starts_with('{'));
        let e = parse_entry("1-0", &entry(field, None)).unwrap();
        let RemoteEvent::Message(m) = entry_broadcast(&e, true).unwrap().event else {
            panic!("not a message")
        };
        assert_eq!(m.data.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
        // As a Node.js server writes `io.to("room1").except("room2").emit("bin", <3 bytes>)`.
        let node = "gqZwYWNrZXSCpHR5cGUCpGRhdGGSo2JpbsQDAQIDpG9wdHODpXJvb21zkaVyb29tMaZleGNlcHSRpXJvb20ypWZsYWdzgA==";
        let e = parse_entry("2-0", &entry(node.into(), None)).unwrap();
        let b = entry_broadcast(&e, true).unwrap();
        assert_eq!(
            (b.rooms.clone(), b.except.clone()),
            (vec!["room1".to_string()], vec!["room2".to_string()])
        );
        let RemoteEvent::Emit(emit) = b.event else {
            panic!("not an emit")
        };
        assert_eq!(&*emit.event, "bin");
        assert_eq!(emit.args.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
        assert_eq!(emit.cluster_offset.as_deref(), Some("2-0"));
        // Volatile events take no offset.
        let vol = r#"{"packet":{"type":2,"data":["vol",1]},"opts":{"rooms":[],"except":[],"flags":{"volatile":true}}}"#;
        let e = parse_entry("3-0", &entry(vol.into(), None)).unwrap();
        let RemoteEvent::Emit(emit) = entry_broadcast(&e, true).unwrap().event else {
            panic!("not an emit")
        };
        assert_eq!(emit.cluster_offset, None);
    }

    #[test]
    fn sessions_round_trip_and_node_sessions_read() {
        let session = Session {
            nsp: Arc::from("/"),
            identity: Identity {
                client: Some(Arc::from("sid1")),
                user: Some(Arc::from("u1")),
                info: Some(Arc::from(
                    RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
                )),
                transport: "websocket",
                expires: Some(99),
                rooms: None,
            },
            name: Arc::from("ann"),
            rooms: vec![Arc::from("r1")],
            connected_at: 0,
            gone: std::time::Instant::now(),
        };
        let stored = encode_session("pid1", &session).unwrap();
        let back = decode_session(stored.as_bytes()).unwrap();
        assert_eq!(back.identity.client.as_deref(), Some("sid1"));
        assert_eq!(back.identity.user.as_deref(), Some("u1"));
        assert_eq!(back.identity.info.unwrap().get(), r#"{"a":1}"#);
        assert_eq!(back.identity.expires, Some(99));
        assert_eq!(back.name.as_deref(), Some("ann"));
        assert_eq!(back.rooms, vec![Arc::<str>::from("r1")]);
        // {sid:"ImuactygVdAVck5xAAAA", pid:…, rooms:[sid,"room1"], data:{}}, from Node.js.
        let node = serde_json::json!({"sid":"S","pid":"P","rooms":["S","room1"],"data":{}});
        let value: Value = serde_json::from_value(node).unwrap();
        let stored = B64.encode(crate::wire::encode(&value));
        let back = decode_session(stored.as_bytes()).unwrap();
        assert_eq!(back.rooms, vec![Arc::<str>::from("room1")]);
        assert_eq!(back.name, None);
        assert!(reaches(&back.rooms, "S", &["room1".into()], &[]));
        assert!(reaches(&back.rooms, "S", &["S".into()], &[]));
        assert!(reaches(&back.rooms, "S", &[], &[]));
        assert!(!reaches(&back.rooms, "S", &[], &["room1".into()]));
        assert!(!reaches(&back.rooms, "S", &["other".into()], &[]));
        assert!(is_entry_id("1796609250980-0") && !is_entry_id("v1-3") && !is_entry_id("12"));
    }
}
