//! What volna sends each hook and how it reads the answers.
//!
//! | hook | volna POSTs | the backend's `result` |
//! |---|---|---|
//! | connect | `{client, transport, protocol, remote_addr, name?, data, headers}` | `{user, name?, info?, rooms?}` |
//! | rpc | `{client, user, transport, event, method, room?, data, attachments?}` | `{data?}` |
//! | publish | `{client, user, transport, room, channel, event?, data, attachments?}` | `{data?}` (replaces the data) |
//!
//! `method` (= `event`) and `channel` (= `room`) are there so a backend
//! written for Centrifugo's proxy reads them under its names. Binary parts of
//! a client's data are `{"_placeholder": true, "num": N}` in `data` and
//! base64 strings in `attachments`.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};
use volna_hub::Data;

/// A backend's answer to a hook.
#[derive(Debug, Clone, PartialEq)]
pub enum HookAnswer {
    /// `{"result": …}`: go ahead, with what the hook says.
    Result(Json),
    /// `{"error": {"code", "message"}}`: refuse, with this message.
    Error {
        /// The backend's code.
        code: u32,
        /// The backend's message, for the client.
        message: String,
    },
    /// `{"disconnect": {"code", "reason"}}`: refuse and disconnect.
    Disconnect {
        /// The close code (3000–4999).
        code: u16,
        /// Why, for the client.
        reason: String,
    },
}

impl HookAnswer {
    /// Reads an answer; `Err` says why it is none.
    pub(super) fn parse(body: &[u8]) -> Result<HookAnswer, String> {
        let v: Json = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            let code = e.get("code").and_then(Json::as_u64).unwrap_or(0);
            let message = e
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("refused by the backend");
            return Ok(HookAnswer::Error {
                code: u32::try_from(code).unwrap_or(u32::MAX),
                message: message.to_string(),
            });
        }
        if let Some(d) = v.get("disconnect").filter(|d| !d.is_null()) {
            let code = d
                .get("code")
                .and_then(Json::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (3000..=4999).contains(c))
                .unwrap_or(4403);
            let reason = d
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or("disconnected by the backend");
            return Ok(HookAnswer::Disconnect {
                code,
                reason: reason.to_string(),
            });
        }
        match v.get("result") {
            Some(r) if r.is_object() || r.is_null() => Ok(HookAnswer::Result(r.clone())),
            Some(_) => Err("`result` is not an object".into()),
            None => Err("none of `result`, `error` or `disconnect`".into()),
        }
    }
}

/// What a connect hook's `result` grants: who the client is.
#[derive(Debug, Clone, Default)]
pub struct ConnectGrant {
    /// The user id; empty: anonymous.
    pub user: Option<Arc<str>>,
    /// The display name to take.
    pub name: Option<String>,
    /// Public JSON shown beside the user.
    pub info: Option<Arc<RawValue>>,
    /// Rooms the client joins at once.
    pub rooms: Vec<String>,
}

impl ConnectGrant {
    /// Reads a connect hook's `result`.
    pub fn from_result(result: &Json) -> ConnectGrant {
        let text = |key: &str| {
            result
                .get(key)
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
        };
        ConnectGrant {
            user: text("user").map(Arc::from),
            name: text("name").map(str::to_owned),
            info: result
                .get("info")
                .filter(|i| !i.is_null())
                .and_then(|i| serde_json::value::to_raw_value(i).ok())
                .map(Arc::from),
            rooms: result
                .get("rooms")
                .or_else(|| result.get("channels"))
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The body of a connect hook call.
pub fn connect_body(
    client: &str,
    transport: &str,
    protocol: &str,
    remote_addr: Option<std::net::SocketAddr>,
    name: Option<&str>,
    data: Json,
    headers: Map<String, Json>,
) -> Json {
    let mut body = json!({
        "client": client,
        "transport": transport,
        "protocol": protocol,
        "remote_addr": remote_addr.map(|a| a.to_string()),
        "data": data,
        "headers": headers,
    });
    if let Some(name) = name {
        body["name"] = Json::from(name);
    }
    body
}

/// The client a hook call is about.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Its client id.
    pub client: &'a str,
    /// Its user id; empty when anonymous.
    pub user: &'a str,
    /// Its transport's name.
    pub transport: &'a str,
}

/// The body of an rpc hook call.
pub fn rpc_body(caller: Caller<'_>, event: &str, room: Option<&str>, data: &Data) -> Json {
    caller_body(
        caller,
        json!({"event": event, "method": event, "room": room}),
        data,
    )
}

/// The body of a publish hook call.
pub fn publish_body(caller: Caller<'_>, room: &str, event: Option<&str>, data: &Data) -> Json {
    caller_body(
        caller,
        json!({"room": room, "channel": room, "event": event}),
        data,
    )
}

/// The body of a subscribe hook call: who wants to join which room (in
/// Centrifugo's subscribe proxy terms, the room is the `channel`).
pub fn subscribe_body(caller: Caller<'_>, room: &str) -> Json {
    let mut body = json!({"room": room, "channel": room});
    body["client"] = Json::from(caller.client);
    body["user"] = Json::from(caller.user);
    body["transport"] = Json::from(caller.transport);
    body
}

/// `fields` with the caller and the data added.
fn caller_body(caller: Caller<'_>, mut fields: Json, data: &Data) -> Json {
    fields["client"] = Json::from(caller.client);
    fields["user"] = Json::from(caller.user);
    fields["transport"] = Json::from(caller.transport);
    put_data(&mut fields, data);
    fields
}

fn put_data(body: &mut Json, data: &Data) {
    body["data"] = serde_json::from_str(data.json.get()).unwrap_or(Json::Null);
    if !data.attachments.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD;
        body["attachments"] = data.attachments.iter().map(|a| b64.encode(a)).collect();
    }
}

/// The `data` of a `result`, if it has one: what an rpc hook answers the
/// client, or what a publish hook puts in place of the client's data.
pub fn result_data(result: &Json) -> Option<Data> {
    let data = result.get("data")?;
    Some(Data {
        json: serde_json::value::to_raw_value(data).ok()?,
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_in_the_proxy_shapes() {
        assert_eq!(
            HookAnswer::parse(br#"{"result":{"user":"42"}}"#),
            Ok(HookAnswer::Result(json!({"user": "42"})))
        );
        assert_eq!(
            HookAnswer::parse(br#"{"error":{"code":1000,"message":"no"}}"#),
            Ok(HookAnswer::Error {
                code: 1000,
                message: "no".into()
            })
        );
        assert_eq!(
            HookAnswer::parse(br#"{"disconnect":{"code":4500,"reason":"banned"}}"#),
            Ok(HookAnswer::Disconnect {
                code: 4500,
                reason: "banned".into()
            })
        );
        for garbage in [&b"<html>"[..], b"[]", b"{}", br#"{"result":3}"#] {
            assert!(HookAnswer::parse(garbage).is_err(), "{garbage:?}");
        }
        let grant = ConnectGrant::from_result(
            &json!({"user": "42", "name": "ann", "info": {"role": "admin"}, "rooms": ["a", "b"]}),
        );
        assert_eq!(grant.user.as_deref(), Some("42"));
        assert_eq!(grant.name.as_deref(), Some("ann"));
        assert_eq!(grant.info.unwrap().get(), r#"{"role":"admin"}"#);
        assert_eq!(grant.rooms, vec!["a", "b"]);
    }
}
