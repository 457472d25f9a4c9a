//! The default application `volna serve` gives Socket.IO clients: every
//! operation of [`crate::app`] as an event (the table is in
//! `docs/operations.md`).
//!
//! | event                          | ack                                                   |
//! |--------------------------------|-------------------------------------------------------|
//! | `join(room)`                   | `{ok, room, members:[names], count, already}`         |
//! | `leave(room)`                  | `{ok, room, members}` (members left in the room)      |
//! | `message({room, data})`        | `{ok, room, offset, ts}`; every member of `room` (the sender too) gets a `message` event |
//! | `echo(...args)`                | the same arguments, binary included                   |
//! | `who(room)`                    | `{ok, room, members:[names]}` (+ `partial` in a cluster) |
//! | `rooms()`                      | `{ok, rooms:[{room, count}]}`                         |
//! | `history(room, n?)`            | `{ok, room, messages:[message events as delivered]}`  |
//! | `image({room, name, data})`    | `{ok, room, offset, ts}` once the thumbnail is shared |
//! | `nick(name)`                   | `{ok, name}`                                          |
//! | any other `EVENT({room, data})`| `{ok, room, offset, ts}`; every member of `room` gets `EVENT` with the `message` envelope (+ `event`) |
//!
//! Failures are acknowledged `{ok:false, error, code}` and counted; an
//! event name that is reserved (`connect`, `presence`, …; see
//! [`app::RESERVED_EVENTS`]) is refused with `reserved-event`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use volna_hub::{Data, Message};
use volna_protocols::json;

use super::application::{Answer, Application, EventCall, SocketRef};
use super::codec::write_message_object;
use crate::app::{self, AppError, Applied, Context, Op, Outcome, Reply};

/// Messages `history` returns when given no count.
const HISTORY_DEFAULT: usize = 20;

/// The chat: namespace `/` only.
pub struct Chat {
    /// The hub and image service operations are applied with.
    pub app: Context,
}

impl Application for Chat {
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == volna_protocols::socketio::DEFAULT_NAMESPACE
    }

    fn on_event(&self, socket: &SocketRef<'_>, event: EventCall<'_>) {
        let ack = event.ack;
        let op = match decode(&event) {
            Ok(op) => op,
            Err(e) => {
                app::count_bad_input(&self.app.hub);
                if let Some(id) = ack {
                    render(socket, Err(e)).send(socket.outbox(), socket.nsp(), id);
                }
                return;
            }
        };
        match op.apply(socket.conn(), &self.app) {
            Applied::Now(outcome) => {
                if let Some(id) = ack {
                    render(socket, outcome).send(socket.outbox(), socket.nsp(), id);
                }
            }
            Applied::Later(answer) => {
                let in_cluster = self.app.hub.adapter().is_some();
                socket.ack_later(
                    ack,
                    Box::pin(async move { render_reply(answer.await, in_cluster) }),
                );
            }
        }
    }
}

/// The first argument, read as a `T`; refused as "`<event>` needs `what`".
fn first_arg<T: serde::de::DeserializeOwned>(
    event: &EventCall<'_>,
    what: &str,
) -> Result<T, AppError> {
    event
        .args
        .first()
        .and_then(|a| serde_json::from_str::<T>(a.get()).ok())
        .ok_or_else(|| AppError::bad_request(format!("{} needs {what}", event.name)))
}

/// The first argument as a string.
fn string_arg(event: &EventCall<'_>, what: &str) -> Result<String, AppError> {
    first_arg(event, what)
}

#[derive(Deserialize)]
struct MessageArg {
    room: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ImageArg {
    room: String,
    #[serde(default)]
    name: Option<String>,
    data: Value,
}

/// Decodes an event into an operation; an event the chat does not know is
/// the application's own ([`Op::Emit`]).
fn decode(event: &EventCall<'_>) -> Result<Op, AppError> {
    let op = match event.name {
        "join" => Op::Join {
            room: string_arg(event, "a room name")?,
            // `join(room, {since: {offset, epoch}})` resumes the room; in a
            // cluster with a shared log, `{since: {log}}` on any node.
            since: match event.args.get(1) {
                None => None,
                Some(opts) => {
                    #[derive(Deserialize)]
                    struct Opts {
                        since: Option<volna_hub::Since>,
                    }
                    let opts: Opts = serde_json::from_str(opts.get()).map_err(|_| {
                        AppError::bad_request(
                            "join's options are {since: {offset, epoch}} or {since: {log}}"
                                .to_string(),
                        )
                    })?;
                    opts.since
                }
            },
        },
        "leave" => Op::Leave {
            room: string_arg(event, "a room name")?,
        },
        "who" => Op::Who {
            room: string_arg(event, "a room name")?,
        },
        "nick" => Op::Nick {
            name: string_arg(event, "a name")?,
        },
        "rooms" => Op::Rooms,
        // A fresh token before the one given at connect expires.
        "refresh" => Op::Auth {
            data: serde_json::json!({ "token": string_arg(event, "a token")? }),
        },
        "history" => {
            let room = string_arg(event, "a room name")?;
            let limit = match event.args.get(1) {
                None => HISTORY_DEFAULT,
                Some(n) if n.get() == "null" => HISTORY_DEFAULT,
                Some(n) => serde_json::from_str::<u64>(n.get()).map_err(|_| {
                    AppError::bad_request("history's count must be a non-negative integer")
                })? as usize,
            };
            Op::History { room, limit }
        }
        "echo" => {
            // Every argument comes back: carried as one JSON array.
            let mut json = String::from("[");
            for (i, a) in event.args.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push_str(a.get());
            }
            json.push(']');
            Op::Echo {
                data: Data {
                    json: RawValue::from_string(json).expect("arguments are valid JSON"),
                    attachments: event.attachments.clone(),
                },
            }
        }
        "message" => {
            let (room, data) = room_and_data(event)?;
            Op::Message {
                room,
                data,
                include_self: true,
            }
        }
        "image" => {
            let arg: ImageArg = first_arg(event, "{room, name, data: <binary>}")?;
            let bytes = arg
                .data
                .as_object()
                .and_then(|map| json::placeholder_num(map).ok().flatten())
                .and_then(|n| event.attachments.get(n as usize))
                .cloned()
                .ok_or_else(|| {
                    AppError::bad_request("image's data must be the image file as binary")
                })?;
            Op::Image {
                room: arg.room,
                name: arg.name.unwrap_or_else(|| "image".into()),
                bytes,
            }
        }
        other => {
            // The application's own event: `name({room, data})`.
            let event_name = app::event_name(other)?;
            let (room, data) = room_and_data(event)?;
            Op::Emit {
                event: event_name,
                room,
                data,
                include_self: true,
            }
        }
    };
    Ok(op)
}

/// The `{room, data}` first argument of `message` and of the
/// application's own events, attachments included (`data` defaults to
/// `null`).
fn room_and_data(event: &EventCall<'_>) -> Result<(String, Data), AppError> {
    let arg: MessageArg = first_arg(event, "{room, data}")?;
    let json = arg
        .data
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
    let data = take_attachments(json, &event.attachments).map_err(AppError::bad_request)?;
    Ok((arg.room, data))
}

/// The ack of an outcome.
fn render(socket: &SocketRef<'_>, outcome: Outcome) -> Answer {
    render_reply(outcome, socket.conn().hub().adapter().is_some())
}

fn render_reply(outcome: Outcome, in_cluster: bool) -> Answer {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(e) => {
            let mut answer = json!({"ok": false, "error": e.message, "code": e.code});
            if let Some(code) = e.backend_code {
                answer["backend_code"] = code.into();
            }
            return Answer::value(&answer);
        }
    };
    let value = match reply {
        Reply::Nick { name } => json!({"ok": true, "name": &*name}),
        Reply::Join(info) => {
            let names: Vec<&str> = info.members.iter().map(|m| &*m.name).collect();
            let mut v = json!({"ok": true, "room": &*info.room, "members": names, "count": info.count, "already": info.already, "offset": info.offset, "epoch": &*info.epoch, "missed": info.missed});
            if let Some(log) = &info.log {
                // In a cluster with a shared log: where `since: {log}` resumes.
                v["log"] = (**log).into();
            }
            v
        }
        Reply::Leave { room, members } => json!({"ok": true, "room": room, "members": members}),
        Reply::Published(m) => {
            json!({"ok": true, "room": &*m.room, "offset": m.offset, "ts": m.ts})
        }
        Reply::Echo(data) => {
            let args: Vec<Box<RawValue>> =
                serde_json::from_str(data.json.get()).expect("echo carries a JSON array");
            return Answer {
                args,
                attachments: data.attachments,
            };
        }
        Reply::Who { room, who } => {
            let names: Vec<&str> = who.members.iter().map(|m| &*m.name).collect();
            if in_cluster {
                json!({"ok": true, "room": room, "members": names, "partial": who.partial})
            } else {
                json!({"ok": true, "room": room, "members": names})
            }
        }
        Reply::Rooms(rooms) => {
            let list: Vec<Value> = rooms
                .iter()
                .map(|r| json!({"room": &*r.name, "count": r.members}))
                .collect();
            json!({"ok": true, "rooms": list})
        }
        Reply::History { room, messages } => return history_answer(&room, &messages),
        Reply::Answered { event, data } => {
            let data: Value = serde_json::from_str(data.json.get()).unwrap_or(Value::Null);
            json!({"ok": true, "event": &*event, "data": data})
        }
        Reply::Identified { user, name } => {
            json!({"ok": true, "user": user.as_deref(), "name": &*name})
        }
    };
    Answer::value(&value)
}

/// `{ok, room, messages: [...]}` with each message as a `message` event
/// carries it; their attachments follow in order, placeholders renumbered.
fn history_answer(room: &str, messages: &[std::sync::Arc<Message>]) -> Answer {
    let mut s = String::from("{\"ok\":true,\"room\":");
    json::push_json_string(&mut s, room);
    s.push_str(",\"messages\":[");
    let mut attachments = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let data = shift_placeholders(&m.data, attachments.len());
        write_message_object(&mut s, m, &data);
        attachments.extend(m.data.attachments.iter().cloned());
    }
    s.push_str("]}");
    Answer {
        args: vec![RawValue::from_string(s).expect("history JSON is valid")],
        attachments,
    }
}

/// Gives `json` the attachments its placeholders reference, numbered from 0
/// in the order they were referenced. The JSON is kept byte for byte when
/// its placeholders already are `0..n`.
pub(super) fn take_attachments(json: Box<RawValue>, all: &[Bytes]) -> Result<Data, String> {
    if all.is_empty() || !json::may_hold_placeholders(json.get()) {
        return Ok(Data {
            json,
            attachments: Vec::new(),
        });
    }
    let mut value: Value =
        serde_json::from_str(json.get()).map_err(|e| format!("invalid data: {e}"))?;
    let nums = json::placeholders(&value)
        .map_err(|_| "a placeholder's num must be a non-negative integer".to_string())?;
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
    json::renumber_placeholders(&mut value, |n| map[&n]);
    let json = serde_json::value::to_raw_value(&value).map_err(|e| format!("invalid data: {e}"))?;
    Ok(Data { json, attachments })
}

/// The JSON of `data` with every placeholder's `num` raised by `base`.
fn shift_placeholders(data: &Data, base: usize) -> std::borrow::Cow<'_, str> {
    if base == 0 || data.attachments.is_empty() {
        return data.json.get().into();
    }
    let Ok(mut value) = serde_json::from_str::<Value>(data.json.get()) else {
        return data.json.get().into();
    };
    json::renumber_placeholders(&mut value, |n| n + base as u64);
    value.to_string().into()
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
