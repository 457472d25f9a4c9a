//! Hub events as Socket.IO packets.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use volna_hub::{CloseReason, Codec, Event, Frame, Message};
use volna_protocols::json::push_json_string;
use volna_protocols::socketio::DEFAULT_NAMESPACE;

/// Encodes hub events for the Socket.IO sockets of one namespace.
///
/// A message becomes the Engine.IO text frame
/// `42[<nsp>,]["message",{"room":..,"from":..,"id":..,"offset":..,"ts":..,"data":<data>}]`
/// (`45N-...` followed by N binary frames when the data has attachments), a
/// presence change `42[<nsp>,]["presence",{"room":..,"name":..,"id":..,"event":"join"|"leave","members":N}]`.
/// Every socket of a namespace shares the key, so a broadcast is encoded once
/// per namespace.
#[derive(Debug, Clone)]
pub struct SioCodec {
    nsp: Arc<str>,
    key: u64,
}

impl SioCodec {
    /// The codec of namespace `nsp`.
    pub fn new(nsp: &str) -> SioCodec {
        // FNV-1a of "sio:" + nsp: stable and distinct from other transports.
        let mut key: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"sio:".iter().chain(nsp.as_bytes()) {
            key ^= u64::from(*b);
            key = key.wrapping_mul(0x0100_0000_01b3);
        }
        SioCodec {
            nsp: Arc::from(nsp),
            key,
        }
    }

    /// Writes `4` + the packet header (`2` or `5N-`, then `<nsp>,`).
    fn header(&self, out: &mut String, attachments: usize) {
        out.push('4');
        if attachments > 0 {
            let _ = write!(out, "5{attachments}-");
        } else {
            out.push('2');
        }
        if &*self.nsp != DEFAULT_NAMESPACE {
            out.push_str(&self.nsp);
            out.push(',');
        }
    }
}

/// `{"room":..,"from":..,"id":..,"offset":..,"ts":..,"data":<data>}`: a
/// message as the `message` event carries it, with `data` given as JSON
/// text (its own, or with placeholders renumbered to sit among others).
pub(super) fn write_message_object(s: &mut String, m: &Message, data: &str) {
    s.push_str("{\"room\":");
    push_json_string(s, &m.room);
    s.push_str(",\"from\":");
    push_json_string(s, &m.from.name);
    let _ = write!(
        s,
        ",\"id\":{},\"offset\":{},\"ts\":{},\"data\":",
        m.from.id, m.offset, m.ts
    );
    s.push_str(data);
    if let Some(event) = &m.event {
        // Lets a history entry say which event it was.
        s.push_str(",\"event\":");
        push_json_string(s, event);
    }
    s.push('}');
}

impl Codec for SioCodec {
    fn protocol(&self) -> &'static str {
        "socketio"
    }

    fn key(&self) -> u64 {
        self.key
    }

    fn goodbye(&self, _reason: &CloseReason, out: &mut Vec<Frame>) {
        // `41[<nsp>,]`: DISCONNECT, so the client does not reconnect
        // (socket.io-client: reason "io server disconnect").
        let mut s = String::from("41");
        if &*self.nsp != DEFAULT_NAMESPACE {
            s.push_str(&self.nsp);
            s.push(',');
        }
        out.push(Frame::Text(Bytes::from(s)));
    }

    fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>) {
        match event {
            Event::Message(m) => {
                let data = m.data.json.get();
                let mut s =
                    String::with_capacity(96 + m.room.len() + m.from.name.len() + data.len());
                self.header(&mut s, m.data.attachments.len());
                s.push('[');
                push_json_string(&mut s, m.event.as_deref().unwrap_or("message"));
                s.push(',');
                write_message_object(&mut s, m, data);
                // Connection-state recovery: the offset a client names
                // when it comes back, as the last argument: the cluster's
                // when the message has one, else this node's.
                if let Some(offset) = m.cluster_offset.get() {
                    s.push(',');
                    push_json_string(&mut s, offset);
                } else if m.seq != 0 {
                    s.push(',');
                    push_json_string(&mut s, &volna_hub::recovery_offset(m.seq));
                }
                s.push(']');
                out.push(Frame::Text(Bytes::from(s)));
                out.extend(m.data.attachments.iter().cloned().map(Frame::Binary));
            }
            Event::Presence(p) => {
                let mut s = String::with_capacity(96 + p.room.len() + p.member.name.len());
                self.header(&mut s, 0);
                s.push_str("[\"presence\",{\"room\":");
                push_json_string(&mut s, &p.room);
                s.push_str(",\"name\":");
                push_json_string(&mut s, &p.member.name);
                let _ = write!(
                    s,
                    ",\"id\":{},\"event\":\"{}\",\"members\":{}}}]",
                    p.member.id,
                    p.kind.as_str(),
                    p.members
                );
                out.push(Frame::Text(Bytes::from(s)));
            }
            Event::Emit(e) => {
                // An event from another server (docs/cluster.md): sent as
                // it was emitted, `["event", ...args]`.
                let args = e.args.json.get().trim();
                let inner = args
                    .strip_prefix('[')
                    .and_then(|a| a.strip_suffix(']'))
                    .unwrap_or("")
                    .trim();
                let mut s = String::with_capacity(16 + e.event.len() + inner.len());
                self.header(&mut s, e.args.attachments.len());
                s.push('[');
                push_json_string(&mut s, &e.event);
                if !inner.is_empty() {
                    s.push(',');
                    s.push_str(inner);
                }
                if let Some(offset) = &e.cluster_offset {
                    s.push(',');
                    push_json_string(&mut s, offset);
                }
                s.push(']');
                out.push(Frame::Text(Bytes::from(s)));
                out.extend(e.args.attachments.iter().cloned().map(Frame::Binary));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use volna_hub::{Data, MemberInfo, Message, Presence, PresenceKind};

    fn text(f: &Frame) -> &str {
        std::str::from_utf8(f.bytes()).unwrap()
    }

    #[test]
    fn message_and_presence() {
        let codec = SioCodec::new("/");
        assert_ne!(codec.key(), SioCodec::new("/chat").key());
        let msg = Message {
            nsp: Arc::from("/"),
            room: Arc::from("lobby"),
            offset: 3,
            ts: 1000,
            from: MemberInfo {
                id: 7,
                name: Arc::from("ann"),
            },
            data: Data {
                json: RawValue::from_string(r#"{"a":{"_placeholder":true,"num":0}}"#.into())
                    .unwrap(),
                attachments: vec![Bytes::from_static(&[1, 2])],
            },
            event: None,
            seq: 0,
            cluster_offset: Default::default(),
        };
        let mut out = Vec::new();
        codec.encode(&Event::Message(&msg), &mut out);
        assert_eq!(
            text(&out[0]),
            r#"451-["message",{"room":"lobby","from":"ann","id":7,"offset":3,"ts":1000,"data":{"a":{"_placeholder":true,"num":0}}}]"#
        );
        assert_eq!(out[1], Frame::Binary(Bytes::from_static(&[1, 2])));
        let p = Presence {
            nsp: Arc::from("/chat"),
            room: Arc::from("r"),
            member: MemberInfo {
                id: 2,
                name: Arc::from("bo"),
            },
            kind: PresenceKind::Left,
            members: 1,
        };
        let mut out = Vec::new();
        SioCodec::new("/chat").encode(&Event::Presence(&p), &mut out);
        assert_eq!(
            text(&out[0]),
            r#"42/chat,["presence",{"room":"r","name":"bo","id":2,"event":"leave","members":1}]"#
        );
    }
}
