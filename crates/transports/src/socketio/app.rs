//! The default application `volna serve` gives Socket.IO clients.
//!
//! | event                  | ack                                          |
//! |------------------------|----------------------------------------------|
//! | `join(room)`           | `{ok:true, room, members:[names]}`           |
//! | `leave(room)`          | `{ok:true, room}`                            |
//! | `message({room,data})` | `{ok:true, room, offset, ts}`; every member of `room` (the sender too) gets a `message` event |
//! | `echo(...args)`        | the same arguments, binary included          |
//! | `who(room)`            | `{ok:true, room, members:[names]}`           |
//! | `nick(name)`           | `{ok:true, name}`                            |
//!
//! Failures are acknowledged `{ok:false, error, code}`; an unknown event is
//! counted as bad input and acknowledged `{ok:false, error:"unknown event"}`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use volna_hub::{Conn, Data, Hub, HubError};

/// One event call.
pub(super) struct Call<'a> {
    pub conn: &'a Conn,
    pub hub: &'a Hub,
    pub args: &'a [&'a RawValue],
    pub attachments: &'a [Bytes],
}

/// What to answer.
pub(super) enum Outcome {
    /// Acknowledge with this value (if an ack was requested).
    Reply(Value),
    /// Acknowledge with the call's own arguments and attachments.
    Echo,
    /// Acknowledge with this value once it is ready (cluster-wide `who`).
    Later(volna_hub::BoxFuture<Value>),
    /// Not an event of the application.
    Unknown,
}

fn failure(error: impl Into<String>, code: &str) -> Outcome {
    Outcome::Reply(json!({"ok": false, "error": error.into(), "code": code}))
}

fn hub_failure(e: HubError) -> Outcome {
    failure(e.to_string(), e.code())
}

/// The first argument as a string.
fn string_arg(call: &Call<'_>) -> Option<String> {
    let first = call.args.first()?;
    serde_json::from_str::<String>(first.get()).ok()
}

fn names(members: &[volna_hub::MemberInfo]) -> Vec<&str> {
    members.iter().map(|m| &*m.name).collect()
}

/// Runs event `name`.
pub(super) fn handle(name: &str, call: Call<'_>) -> Outcome {
    match name {
        "echo" => Outcome::Echo,
        "join" => {
            let Some(room) = string_arg(&call) else {
                return failure("join needs a room name", "bad-args");
            };
            match call.conn.join(&room) {
                Ok(info) => Outcome::Reply(
                    json!({"ok": true, "room": &*info.room, "members": names(&info.members), "count": info.count}),
                ),
                Err(e) => hub_failure(e),
            }
        }
        "leave" => {
            let Some(room) = string_arg(&call) else {
                return failure("leave needs a room name", "bad-args");
            };
            match call.conn.leave(&room) {
                Ok(_) => Outcome::Reply(json!({"ok": true, "room": room})),
                Err(e) => hub_failure(e),
            }
        }
        "who" => {
            let Some(room) = string_arg(&call) else {
                return failure("who needs a room name", "bad-args");
            };
            if call.hub.adapter().is_some() {
                // In a cluster: ask the other nodes too (docs/cluster.md).
                let hub = call.hub.clone();
                let nsp = call.conn.nsp().clone();
                return Outcome::Later(Box::pin(async move {
                    match hub.who_cluster(&nsp, &room).await {
                        Some(who) => {
                            let names: Vec<&str> = who.names.iter().map(|n| &**n).collect();
                            json!({"ok": true, "room": room, "members": names, "partial": who.partial})
                        }
                        None => {
                            let e = HubError::NoSuchRoom(room);
                            json!({"ok": false, "error": e.to_string(), "code": e.code()})
                        }
                    }
                }));
            }
            match call.hub.who(call.conn.nsp(), &room) {
                Some(members) => {
                    Outcome::Reply(json!({"ok": true, "room": room, "members": names(&members)}))
                }
                None => hub_failure(HubError::NoSuchRoom(room)),
            }
        }
        "nick" => {
            let Some(name) = string_arg(&call) else {
                return failure("nick needs a name", "bad-args");
            };
            match call.conn.set_name(&name) {
                Ok(name) => Outcome::Reply(json!({"ok": true, "name": &*name})),
                Err(e) => hub_failure(e),
            }
        }
        "message" => message(&call),
        _ => Outcome::Unknown,
    }
}

#[derive(Deserialize)]
struct MessageArg {
    room: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

fn message(call: &Call<'_>) -> Outcome {
    let Some(arg) = call
        .args
        .first()
        .and_then(|a| serde_json::from_str::<MessageArg>(a.get()).ok())
    else {
        return failure("message needs {room, data}", "bad-args");
    };
    let json = arg
        .data
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
    let data = match take_attachments(json, call.attachments) {
        Ok(data) => data,
        Err(why) => return failure(why, "bad-args"),
    };
    match call.conn.publish(&arg.room, data, true) {
        Ok(msg) => Outcome::Reply(
            json!({"ok": true, "room": &*msg.room, "offset": msg.offset, "ts": msg.ts}),
        ),
        Err(e) => hub_failure(e),
    }
}

/// Gives `json` the attachments its placeholders reference, numbered from 0
/// in the order they were referenced. The JSON is kept byte for byte when
/// its placeholders already are `0..n`.
pub(super) fn take_attachments(json: Box<RawValue>, all: &[Bytes]) -> Result<Data, String> {
    if all.is_empty() || !json.get().contains("_placeholder") {
        return Ok(Data {
            json,
            attachments: Vec::new(),
        });
    }
    let mut value: Value =
        serde_json::from_str(json.get()).map_err(|e| format!("invalid data: {e}"))?;
    let mut nums = Vec::new();
    collect_placeholders(&value, &mut nums);
    if nums.iter().any(|&n| n >= all.len() as u64) {
        return Err("placeholder references a missing attachment".into());
    }
    let mut sorted = nums.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let dense = sorted.iter().enumerate().all(|(i, &n)| i as u64 == n);
    if dense && sorted.len() == nums.len() {
        return Ok(Data {
            json,
            attachments: all[..nums.len()].to_vec(),
        });
    }
    // Renumber in document order.
    let mut map = BTreeMap::new();
    let mut attachments = Vec::new();
    for &n in &nums {
        map.entry(n).or_insert_with(|| {
            attachments.push(all[n as usize].clone());
            attachments.len() as u64 - 1
        });
    }
    renumber(&mut value, &map);
    let json = serde_json::value::to_raw_value(&value).map_err(|e| format!("invalid data: {e}"))?;
    Ok(Data { json, attachments })
}

fn placeholder_num(map: &serde_json::Map<String, Value>) -> Option<u64> {
    if map.get("_placeholder") == Some(&Value::Bool(true)) {
        map.get("num").and_then(Value::as_u64)
    } else {
        None
    }
}

fn collect_placeholders(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_placeholders(v, out)),
        Value::Object(map) => match placeholder_num(map) {
            Some(n) => out.push(n),
            None => map.values().for_each(|v| collect_placeholders(v, out)),
        },
        _ => {}
    }
}

fn renumber(value: &mut Value, map: &BTreeMap<u64, u64>) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| renumber(v, map)),
        Value::Object(obj) => match placeholder_num(obj) {
            Some(n) => {
                if let Some(&new) = map.get(&n) {
                    obj.insert("num".into(), Value::from(new));
                }
            }
            None => obj.values_mut().for_each(|v| renumber(v, map)),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn attachments_kept_or_renumbered() {
        let all = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let d = take_attachments(raw(r#""text""#), &all).unwrap();
        assert!(d.attachments.is_empty());
        let d = take_attachments(raw(r#"{"x":{"_placeholder":true,"num":0}}"#), &all).unwrap();
        assert_eq!(d.json.get(), r#"{"x":{"_placeholder":true,"num":0}}"#);
        assert_eq!(d.attachments, vec![Bytes::from_static(b"a")]);
        let d = take_attachments(raw(r#"[{"_placeholder":true,"num":1}]"#), &all).unwrap();
        assert_eq!(d.json.get(), r#"[{"_placeholder":true,"num":0}]"#);
        assert_eq!(d.attachments, vec![Bytes::from_static(b"b")]);
        assert!(take_attachments(raw(r#"[{"_placeholder":true,"num":5}]"#), &all).is_err());
    }
}
