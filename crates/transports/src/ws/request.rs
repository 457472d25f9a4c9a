//! `/ws` requests: one JSON text frame each, decoded straight into an
//! [`Op`](crate::app::Op), every field checked on its own so an error says
//! which one is wrong; binary frames that follow are attached by
//! [`with_parts`].

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use volna_hub::Data;
use volna_protocols::json;

use super::WsConfig;
use crate::app::{self, Op};

/// Every op the protocol knows.
const OPS: &[&str] = &[
    "nick", "join", "leave", "message", "echo", "who", "rooms", "history", "image", "emit", "auth",
    "refresh",
];

/// A request's fields as raw JSON, checked one by one afterwards so errors
/// can say which field is wrong. Unknown fields are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    attachments: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow, rename = "self")]
    include_self: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
}

/// A parsed request. `id` is the raw JSON of the client's id (a number or a
/// string), echoed back in the reply.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) id: Option<String>,
    pub(super) op: &'static str,
    /// The operation, without its binary parts yet (see [`with_parts`]).
    pub(super) action: Op,
    pub(super) attachments: usize,
}

/// A refused request.
#[derive(Debug)]
pub(super) struct ReqError {
    pub(super) id: Option<String>,
    pub(super) op: Option<&'static str>,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// Binary frames the request announced, to be skipped so the connection
    /// stays in step.
    pub(super) skip: usize,
}

/// The first cheap look at a value's JSON type.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

pub(super) fn parse_request(text: &str, cfg: &WsConfig) -> Result<Request, ReqError> {
    let err = |id: Option<String>, op, code, message: String| ReqError {
        id,
        op,
        code,
        message,
        skip: 0,
    };
    if let Err(e) = serde_json::from_str::<&RawValue>(text) {
        return Err(err(None, None, "bad-json", format!("malformed JSON: {e}")));
    }
    let env: Envelope<'_> = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) => {
            let message = if text.trim_start().starts_with('{') {
                format!("invalid request: {e}")
            } else {
                "a request must be a JSON object such as {\"op\":\"join\",\"room\":\"lobby\",\"id\":1}"
                    .to_string()
            };
            return Err(err(None, None, "bad-request", message));
        }
    };
    let id = match env.id {
        None => None,
        Some(raw) => match json_kind(raw) {
            "a string" | "a number" => Some(raw.get().to_string()),
            other => {
                return Err(err(
                    None,
                    None,
                    "bad-request",
                    format!("id must be a number or a string, not {other}"),
                ))
            }
        },
    };
    let Some(op_raw) = env.op else {
        return Err(err(
            id,
            None,
            "bad-request",
            format!("missing field op (one of {})", OPS.join(", ")),
        ));
    };
    let op_name: String = match serde_json::from_str(op_raw.get()) {
        Ok(s) => s,
        Err(_) => {
            return Err(err(
                id,
                None,
                "bad-request",
                format!("op must be a string, not {}", json_kind(op_raw)),
            ))
        }
    };
    let Some(op) = OPS.iter().copied().find(|o| *o == op_name) else {
        let mut shown = op_name;
        if shown.len() > 64 {
            let mut cut = 64;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        return Err(err(
            id,
            None,
            "unknown-op",
            format!("unknown op {shown:?}; known ops: {}", OPS.join(", ")),
        ));
    };

    // From here on, errors name the op and skip announced attachments.
    let attachments = match env.attachments {
        None => 0,
        Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
            Ok(n) if n as usize <= cfg.max_attachments => n as usize,
            Ok(n) => {
                return Err(ReqError {
                    id,
                    op: Some(op),
                    code: "too-many-attachments",
                    message: format!(
                        "{n} attachments announced; at most {} are allowed",
                        cfg.max_attachments
                    ),
                    // Too many to skip reliably: treat the frames that follow
                    // as unexpected.
                    skip: 0,
                });
            }
            Err(_) => {
                return Err(err(
                    id,
                    Some(op),
                    "bad-request",
                    format!(
                        "attachments must be a non-negative integer, not {}",
                        json_kind(raw)
                    ),
                ))
            }
        },
    };
    let bad = |id: Option<String>, message: String| ReqError {
        id,
        op: Some(op),
        code: "bad-request",
        message,
        skip: attachments,
    };
    let string_field = |id: &Option<String>, field: &str, raw: Option<&RawValue>| {
        let Some(raw) = raw else {
            return Err(bad(
                id.clone(),
                format!("{op} needs a string field {field}"),
            ));
        };
        serde_json::from_str::<String>(raw.get()).map_err(|_| {
            bad(
                id.clone(),
                format!("{field} must be a string, not {}", json_kind(raw)),
            )
        })
    };
    if attachments > 0 && !matches!(op, "message" | "emit" | "echo" | "image") {
        return Err(bad(id, format!("{op} takes no attachments")));
    }
    if op == "image" && attachments != 1 {
        return Err(bad(
            id,
            "image needs \"attachments\":1 followed by one binary frame with the image bytes"
                .into(),
        ));
    }
    let action = match op {
        "nick" => Op::Nick {
            name: string_field(&id, "name", env.name)?,
        },
        "join" => Op::Join {
            room: string_field(&id, "room", env.room)?,
            since: match env.since {
                None => None,
                Some(raw) => {
                    let since: volna_hub::Since =
                        serde_json::from_str(raw.get()).map_err(|_| {
                            bad(
                                id.clone(),
                                "since must be {\"offset\": N, \"epoch\": \"…\"} (epoch optional), or {\"log\": \"…\"}"
                                    .into(),
                            )
                        })?;
                    Some(since)
                }
            },
        },
        "leave" => Op::Leave {
            room: string_field(&id, "room", env.room)?,
        },
        "who" => Op::Who {
            room: string_field(&id, "room", env.room)?,
        },
        "rooms" => Op::Rooms,
        "auth" | "refresh" => {
            // Everything but `op` and `id` goes to the token check and the
            // connect hook; `refresh` is a fresh token before one expires.
            let mut data: serde_json::Value =
                serde_json::from_str(text).expect("checked as JSON above");
            if let Some(fields) = data.as_object_mut() {
                fields.remove("op");
                fields.remove("id");
            }
            Op::Auth { data }
        }
        "history" => {
            let room = string_field(&id, "room", env.room)?;
            let limit = match env.limit {
                None => cfg.history_default,
                Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                    Ok(n) => n.min(10_000) as usize,
                    Err(_) => {
                        return Err(bad(
                            id,
                            format!(
                                "limit must be a non-negative integer, not {}",
                                json_kind(raw)
                            ),
                        ))
                    }
                },
            };
            Op::History { room, limit }
        }
        "message" | "emit" => {
            let event = match op {
                "emit" => {
                    let name = string_field(&id, "event", env.event)?;
                    Some(app::event_name(&name).map_err(|e| ReqError {
                        code: e.code,
                        ..bad(id.clone(), e.message)
                    })?)
                }
                _ => None,
            };
            let room = string_field(&id, "room", env.room)?;
            let Some(data) = env.data else {
                return Err(bad(id, format!("{op} needs a field data (any JSON value)")));
            };
            if let Err(why) = check_placeholders(data, attachments) {
                return Err(ReqError {
                    code: "bad-placeholder",
                    ..bad(id, why)
                });
            }
            let include_self = match env.include_self {
                None => true,
                Some(raw) => match raw.get() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(
                            id,
                            format!("self must be a boolean, not {}", json_kind(raw)),
                        ))
                    }
                },
            };
            let data = Data {
                json: data.to_owned(),
                attachments: Vec::new(),
            };
            match event {
                Some(event) => Op::Emit {
                    event,
                    room,
                    data,
                    include_self,
                },
                None => Op::Message {
                    room,
                    data,
                    include_self,
                },
            }
        }
        "echo" => {
            let data = env
                .data
                .map(|d| d.to_owned())
                .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
            if let Err(why) = check_placeholders(&data, attachments) {
                return Err(ReqError {
                    code: "bad-placeholder",
                    ..bad(id, why)
                });
            }
            Op::Echo {
                data: Data {
                    json: data,
                    attachments: Vec::new(),
                },
            }
        }
        "image" => {
            let room = string_field(&id, "room", env.room)?;
            let name = match env.name {
                None => "image".to_string(),
                Some(raw) => string_field(&id, "name", Some(raw))?,
            };
            Op::Image {
                room,
                name,
                bytes: Bytes::new(),
            }
        }
        _ => unreachable!("every op in OPS is handled"),
    };
    Ok(Request {
        id,
        op,
        action,
        attachments,
    })
}

/// Checks that every `{"_placeholder":true,"num":i}` in `data` points at
/// one of the `n` announced attachments, as a Socket.IO receiver requires.
fn check_placeholders(data: &RawValue, n: usize) -> Result<(), String> {
    let raw = data.get();
    if n == 0 && !json::may_hold_placeholders(raw) {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("data could not be read: {e}"))?;
    let invalid = || {
        if n == 0 {
            "data holds a binary placeholder but the request announced no attachments".to_string()
        } else {
            format!("a placeholder's num must be an integer below {n} (the attachments announced)")
        }
    };
    // An invalid num and one out of range get the same answer.
    json::for_each_placeholder(&value, |i| {
        if (i as usize) < n {
            Ok(())
        } else {
            Err(json::InvalidPlaceholder)
        }
    })
    .map_err(|_| invalid())
}

/// Gives a decoded operation the binary frames that followed its request.
pub(super) fn with_parts(op: Op, parts: Vec<Bytes>) -> Op {
    match op {
        Op::Message {
            room,
            data,
            include_self,
        } => Op::Message {
            room,
            data: Data {
                json: data.json,
                attachments: parts,
            },
            include_self,
        },
        Op::Emit {
            event,
            room,
            data,
            include_self,
        } => Op::Emit {
            event,
            room,
            data: Data {
                json: data.json,
                attachments: parts,
            },
            include_self,
        },
        Op::Echo { data } => Op::Echo {
            data: Data {
                json: data.json,
                attachments: parts,
            },
        },
        Op::Image { room, name, .. } => Op::Image {
            room,
            name,
            bytes: parts.into_iter().next().unwrap_or_default(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_reports_field_errors() {
        let cfg = WsConfig::default();
        let r = parse_request(r#"{"op":"join","room":"lobby","id":7}"#, &cfg).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert!(matches!(r.action, Op::Join { ref room, .. } if room == "lobby"));
        let e = parse_request("{nope", &cfg).unwrap_err();
        assert_eq!(e.code, "bad-json");
        let e = parse_request("[1]", &cfg).unwrap_err();
        assert_eq!(e.code, "bad-request");
        let e = parse_request(r#"{"op":"dance","id":"x"}"#, &cfg).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("unknown-op", Some("\"x\"")));
        let e = parse_request(r#"{"op":"join","room":5,"id":1}"#, &cfg).unwrap_err();
        assert_eq!(e.code, "bad-request");
        assert!(e.message.contains("room must be a string"), "{}", e.message);
        let e = parse_request(
            r#"{"op":"message","room":"r","attachments":2,"data":{"_placeholder":true,"num":2}}"#,
            &cfg,
        )
        .unwrap_err();
        assert_eq!((e.code, e.skip), ("bad-placeholder", 2));
        let e = parse_request(
            r#"{"op":"message","room":"r","data":[{"_placeholder":true,"num":0}]}"#,
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.code, "bad-placeholder");
        let r = parse_request(
            r#"{"op":"message","room":"r","attachments":1,"data":{"img":{"_placeholder":true,"num":0}}}"#,
            &cfg,
        )
        .unwrap();
        assert_eq!(r.attachments, 1);
    }
}
