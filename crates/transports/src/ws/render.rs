//! Everything `/ws` writes, as JSON text frames: the hub's events
//! ([`JsonCodec`], rendered once per broadcast), replies and errors.

use std::fmt::Write as _;
use std::sync::Arc;

use volna_hub::{CloseReason, Codec, Event, Frame, MemberInfo, Message};
use volna_protocols::json::{json_string, push_json_string};

use super::WsConfig;
use crate::app::{Outcome, Reply};

/// A JSON object written field by field. Keys are static ASCII names that
/// need no escaping.
pub(super) struct Obj {
    s: String,
    first: bool,
}

impl Obj {
    pub(super) fn with_capacity(cap: usize) -> Obj {
        let mut s = String::with_capacity(cap);
        s.push('{');
        Obj { s, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.s.push(',');
        }
        self.first = false;
        self.s.push('"');
        self.s.push_str(k);
        self.s.push_str("\":");
        &mut self.s
    }

    pub(super) fn str(mut self, k: &str, v: &str) -> Obj {
        push_json_string(self.key(k), v);
        self
    }

    pub(super) fn opt_str(self, k: &str, v: Option<&str>) -> Obj {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    pub(super) fn num(mut self, k: &str, v: u64) -> Obj {
        let _ = write!(self.key(k), "{v}");
        self
    }

    pub(super) fn bool(mut self, k: &str, v: bool) -> Obj {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    /// A value that is already valid JSON text.
    pub(super) fn raw(mut self, k: &str, v: &str) -> Obj {
        self.key(k).push_str(v);
        self
    }

    pub(super) fn finish(mut self) -> String {
        self.s.push('}');
        self.s
    }
}

fn member_json(out: &mut String, m: &MemberInfo) {
    let _ = write!(out, "{{\"id\":{},\"name\":", m.id);
    push_json_string(out, &m.name);
    out.push('}');
}

fn members_json(members: &[MemberInfo]) -> String {
    let mut s = String::with_capacity(2 + members.len() * 32);
    s.push('[');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        member_json(&mut s, m);
    }
    s.push(']');
    s
}

/// The `{"type":"message",…}` object of a hub message. Its attachments, if
/// any, are announced by `"attachments":N` and follow as binary frames.
pub(super) fn message_json(m: &Message) -> String {
    let mut from = String::with_capacity(32 + m.from.name.len());
    member_json(&mut from, &m.from);
    let mut o = Obj::with_capacity(112 + m.room.len() + from.len() + m.data.json.get().len()).str(
        "type",
        if m.event.is_some() {
            "event"
        } else {
            "message"
        },
    );
    if let Some(event) = &m.event {
        o = o.str("event", event);
    }
    o = o
        .str("room", &m.room)
        .num("offset", m.offset)
        .num("ts", m.ts)
        .raw("from", &from)
        .raw("data", m.data.json.get());
    if let Some(log) = m.cluster_offset.get() {
        // Its place in the cluster's shared log: a join `since: {log}`
        // resumes from it on any node.
        o = o.str("log", log);
    }
    if !m.data.attachments.is_empty() {
        o = o.num("attachments", m.data.attachments.len() as u64);
    }
    o.finish()
}

/// Encodes hub events for `/ws` clients. Stateless: one key for every
/// connection, so a broadcast is rendered once for all of them.
pub struct JsonCodec;

impl JsonCodec {
    const KEY: u64 = u64::from_be_bytes(*b"ws-json\0");
}

impl Codec for JsonCodec {
    fn protocol(&self) -> &'static str {
        "ws"
    }

    fn key(&self) -> u64 {
        Self::KEY
    }

    fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>) {
        match event {
            Event::Message(m) => {
                out.push(Frame::text(message_json(m)));
                out.extend(m.data.attachments.iter().cloned().map(Frame::Binary));
            }
            Event::Presence(p) => {
                let s = Obj::with_capacity(96 + p.room.len() + p.member.name.len())
                    .str("type", "presence")
                    .str("room", &p.room)
                    .str("event", p.kind.as_str())
                    .num("id", p.member.id)
                    .str("name", &p.member.name)
                    .num("members", p.members as u64)
                    .finish();
                out.push(Frame::text(s));
            }
            Event::Emit(e) => {
                // An event from another server (see docs/cluster.md).
                let mut o = Obj::with_capacity(64 + e.event.len() + e.args.json.get().len())
                    .str("type", "event");
                if let Some(room) = &e.room {
                    o = o.str("room", room);
                }
                o = o.str("event", &e.event).raw("args", e.args.json.get());
                if !e.args.attachments.is_empty() {
                    o = o.num("attachments", e.args.attachments.len() as u64);
                }
                out.push(Frame::text(o.finish()));
                out.extend(e.args.attachments.iter().cloned().map(Frame::Binary));
            }
        }
    }
}

pub(super) fn reply(id: Option<&str>, op: &str) -> Obj {
    Obj::with_capacity(128)
        .str("type", "reply")
        .raw("id", id.unwrap_or("null"))
        .bool("ok", true)
        .str("op", op)
}

pub(super) fn error_json(
    id: Option<&str>,
    op: Option<&str>,
    code: &str,
    message: &str,
    fatal: bool,
) -> String {
    let mut o = Obj::with_capacity(96 + message.len())
        .str("type", "error")
        .raw("id", id.unwrap_or("null"))
        .bool("ok", false);
    if let Some(op) = op {
        o = o.str("op", op);
    }
    o = o.str("code", code).str("message", message);
    if fatal {
        o = o.bool("fatal", true);
    }
    o.finish()
}

/// The frames of a reply: the reply (or error) object, then its binary
/// attachments.
pub(super) fn render(
    id: Option<&str>,
    op: &'static str,
    outcome: Outcome,
    cfg: &WsConfig,
    in_cluster: bool,
) -> Vec<Frame> {
    let reply_value = match outcome {
        Ok(r) => r,
        Err(e) => {
            let mut text = error_json(id, Some(op), e.code, &e.message, false);
            if let Some(code) = e.backend_code {
                // `…}` → `…,"backend_code":N}`
                text.pop();
                let _ = write!(text, ",\"backend_code\":{code}}}");
            }
            return vec![Frame::text(text)];
        }
    };
    let text = match reply_value {
        Reply::Nick { name } => reply(id, op).str("name", &name).finish(),
        Reply::Answered { event, data } => reply(id, op)
            .str("event", &event)
            .raw("data", data.json.get())
            .finish(),
        Reply::Identified { user, name } => {
            let user = user.map_or_else(|| "null".to_string(), |u| json_string(&u));
            reply(id, op).raw("user", &user).str("name", &name).finish()
        }
        Reply::Join(info) => reply(id, op)
            .str("room", &info.room)
            .raw("members", &members_json(&info.members))
            .num("count", info.count as u64)
            .bool("already", info.already)
            .num("offset", info.offset)
            .str("epoch", &info.epoch)
            .num("missed", info.missed as u64)
            .opt_str("log", info.log.as_deref())
            .finish(),
        Reply::Leave { room, members } => reply(id, op)
            .str("room", &room)
            .num("members", members as u64)
            .finish(),
        Reply::Published(m) => reply(id, op)
            .str("room", &m.room)
            .num("offset", m.offset)
            .num("ts", m.ts)
            .finish(),
        Reply::Echo(data) => {
            let mut o = reply(id, op).raw("data", data.json.get());
            if !data.attachments.is_empty() {
                o = o.num("attachments", data.attachments.len() as u64);
            }
            let mut frames = Vec::with_capacity(1 + data.attachments.len());
            frames.push(Frame::text(o.finish()));
            frames.extend(data.attachments.into_iter().map(Frame::Binary));
            return frames;
        }
        Reply::Who { room, who } => {
            let mut members = String::from("[");
            for (i, m) in who.members.iter().enumerate() {
                if i > 0 {
                    members.push(',');
                }
                match m.id {
                    Some(id) => {
                        let _ = write!(members, "{{\"id\":{id},\"name\":");
                    }
                    None => members.push_str("{\"id\":null,\"name\":"),
                }
                push_json_string(&mut members, &m.name);
                members.push('}');
            }
            members.push(']');
            let mut o = reply(id, op).str("room", &room).raw("members", &members);
            if in_cluster {
                o = o.bool("partial", who.partial);
            }
            o.finish()
        }
        Reply::Rooms(rooms) => {
            let mut list = String::from("[");
            for (i, r) in rooms.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                // `room`/`count` as every transport names them; `name` and
                // `members` as /ws always did.
                list.push_str(
                    &Obj::with_capacity(48 + 2 * r.name.len())
                        .str("room", &r.name)
                        .num("count", r.members as u64)
                        .str("name", &r.name)
                        .num("members", r.members as u64)
                        .finish(),
                );
            }
            list.push(']');
            reply(id, op).raw("rooms", &list).finish()
        }
        Reply::History { room, messages } => return history_frames(id, op, &room, &messages, cfg),
    };
    vec![Frame::text(text)]
}

/// A history reply: the newest messages that fit in half the outgoing
/// queue, so asking for history never makes the asker a slow consumer.
pub(super) fn history_frames(
    id: Option<&str>,
    op: &'static str,
    room: &str,
    msgs: &[Arc<Message>],
    cfg: &WsConfig,
) -> Vec<Frame> {
    let budget_bytes = cfg.outbox.max_bytes / 2;
    let budget_frames = cfg.outbox.max_frames / 2;
    let (mut bytes, mut frames) = (256, 1);
    let mut encoded = Vec::with_capacity(msgs.len());
    for m in msgs.iter().rev() {
        let json = message_json(m);
        bytes += json.len() + 1 + m.data.attachment_bytes();
        frames += m.data.attachments.len();
        if bytes > budget_bytes || frames > budget_frames {
            break;
        }
        encoded.push((json, m));
    }
    let truncated = encoded.len() < msgs.len();
    let mut list = String::with_capacity(bytes);
    list.push('[');
    let mut bins = Vec::new();
    for (i, (json, m)) in encoded.iter().rev().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(json);
        bins.extend(m.data.attachments.iter().cloned().map(Frame::Binary));
    }
    list.push(']');
    let mut o = reply(id, op).str("room", room).raw("messages", &list);
    if !bins.is_empty() {
        o = o.num("attachments", bins.len() as u64);
    }
    if truncated {
        o = o.bool("truncated", true);
    }
    let mut out = Vec::with_capacity(1 + bins.len());
    out.push(Frame::text(o.finish()));
    out.extend(bins);
    out
}

/// The close code and reason the server sends when it closes for `reason`,
/// plus the error frame that goes before it; `None` when no close frame is
/// due (the client left, or the socket is gone).
pub(super) fn close_for(reason: &CloseReason) -> Option<(u16, String, Option<String>)> {
    let error = match reason {
        CloseReason::ClientQuit | CloseReason::TransportClosed => return None,
        CloseReason::SlowConsumer { .. } => Some("slow-consumer"),
        CloseReason::Timeout => Some("timeout"),
        CloseReason::Disconnected { .. } => Some("disconnected"),
        CloseReason::ServerShutdown
        | CloseReason::ServerRestart
        | CloseReason::ProtocolError(_) => None,
    };
    let code = crate::close::websocket_close_code(reason);
    let full = reason.to_string();
    let error = error.map(|c| error_json(None, None, c, &full, true));
    Some((code, truncate_reason(full), error))
}

/// Close reasons are limited to 123 bytes.
pub(super) fn truncate_reason(mut s: String) -> String {
    if s.len() > 123 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let (code, why, error) = close_for(&CloseReason::SlowConsumer {
            frames: 1024,
            bytes: 4 << 20,
        })
        .unwrap();
        assert_eq!(code, 1008);
        assert!(why.len() <= 123 && why.starts_with("slow-consumer"));
        assert!(error.unwrap().contains("\"code\":\"slow-consumer\""));
        assert_eq!(close_for(&CloseReason::ServerShutdown).unwrap().0, 1001);
        assert!(close_for(&CloseReason::TransportClosed).is_none());
    }
}
