//! Writing packets: [`Packet::encode`] for a packet in memory, and the
//! `write_*` / `encode_*` fast paths that build the common server packets
//! (events, acks, namespace replies) straight from their parts.

use std::borrow::Borrow;
use std::fmt::Write as _;

use serde_json::value::RawValue;

use super::packet::{Packet, PacketKind, DEFAULT_NAMESPACE};
use crate::json::push_json_string;

impl Packet {
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
    write_connect_with_pid(out, nsp, sid, None);
}

/// [`write_connect`] with the private session id of connection-state
/// recovery: `0[<nsp>,]{"sid":"<sid>","pid":"<pid>"}`.
pub fn write_connect_with_pid(out: &mut String, nsp: &str, sid: &str, pid: Option<&str>) {
    write_header(out, PacketKind::Connect, 0, nsp, None);
    out.push_str("{\"sid\":");
    push_json_string(out, sid);
    if let Some(pid) = pid {
        out.push_str(",\"pid\":");
        push_json_string(out, pid);
    }
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

/// Appends a refusal with data, as a Node middleware's `next(err)` sends
/// `err.data`: `4[<nsp>,]{"message":…,"data":<data>}` (`data` is JSON text).
pub fn write_connect_error_with_data(out: &mut String, nsp: &str, message: &str, data: &str) {
    write_header(out, PacketKind::ConnectError, 0, nsp, None);
    out.push_str("{\"message\":");
    push_json_string(out, message);
    out.push_str(",\"data\":");
    out.push_str(data);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::testing::{dec, raw};

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
}
