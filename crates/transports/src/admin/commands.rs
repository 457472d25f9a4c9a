//! What the Admin UI asks of the server, as the reference's
//! `ClientEvents` (Socket.IO v4 flavour: a filter names a room or a socket
//! id, none means the whole namespace):
//!
//! - `emit(nsp, filter, event, ...args)`: the event goes to those
//!   connections through the hub, so each transport renders it (Socket.IO
//!   verbatim, `/ws` and TCP as a server event);
//! - `join(nsp, room, filter?)`, `leave(nsp, room, filter?)`;
//! - `_disconnect(nsp, close, filter?)`: each connection is told goodbye in
//!   its own terms (Socket.IO: DISCONNECT, `io server disconnect`) and
//!   closed. `close` is accepted either way: a volna socket's connection is
//!   closed with it (its Engine.IO session's other namespaces too).
//!
//! In read-only mode every command is ignored.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use volna_hub::{CloseReason, Data, Emit, Hub};

/// The close code `/ws` and TCP clients are given (`4000`–`4999` are the
/// application's), with the reason.
pub const DISCONNECTED_BY_ADMIN: u16 = 4410;

/// One command from the UI, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `emit(nsp, filter, event, ...args)`; `args` is a JSON array.
    Emit {
        /// The namespace.
        nsp: String,
        /// A room or socket id; `None`: every socket of the namespace.
        filter: Option<String>,
        /// The event name.
        event: String,
        /// The arguments, as one JSON array.
        args: String,
    },
    /// `join(nsp, room, filter?)`.
    Join {
        /// The namespace.
        nsp: String,
        /// The room to join.
        room: String,
        /// Who joins.
        filter: Option<String>,
    },
    /// `leave(nsp, room, filter?)`.
    Leave {
        /// The namespace.
        nsp: String,
        /// The room to leave.
        room: String,
        /// Who leaves.
        filter: Option<String>,
    },
    /// `_disconnect(nsp, close, filter?)`.
    Disconnect {
        /// The namespace.
        nsp: String,
        /// The reference's `close` (the whole connection, not only the
        /// namespace).
        close: bool,
        /// Who goes.
        filter: Option<String>,
    },
}

fn arg<T: DeserializeOwned>(args: &[&RawValue], i: usize) -> Option<T> {
    args.get(i).and_then(|a| serde_json::from_str(a.get()).ok())
}

/// An optional filter: absent, `null` or empty is none.
fn filter(args: &[&RawValue], i: usize) -> Option<String> {
    arg::<Option<String>>(args, i)
        .flatten()
        .filter(|f| !f.is_empty())
}

impl Command {
    /// Decodes event `name` with `args`; `None` for anything else or
    /// malformed arguments.
    pub fn decode(name: &str, args: &[&RawValue]) -> Option<Command> {
        let nsp: String = arg(args, 0)?;
        Some(match name {
            "emit" => {
                let rest: Vec<&str> = args.iter().skip(3).map(|a| a.get()).collect();
                Command::Emit {
                    nsp,
                    filter: filter(args, 1),
                    event: arg(args, 2)?,
                    args: format!("[{}]", rest.join(",")),
                }
            }
            "join" => Command::Join {
                nsp,
                room: arg(args, 1)?,
                filter: filter(args, 2),
            },
            "leave" => Command::Leave {
                nsp,
                room: arg(args, 1)?,
                filter: filter(args, 2),
            },
            "_disconnect" => Command::Disconnect {
                nsp,
                close: arg(args, 1).unwrap_or(false),
                filter: filter(args, 2),
            },
            _ => return None,
        })
    }

    /// Applies the command on this node. Returns how many connections it
    /// reached.
    pub fn apply(self, hub: &Hub, attachments: Vec<Bytes>) -> usize {
        match self {
            Command::Emit {
                nsp,
                filter,
                event,
                args,
            } => {
                let Ok(json) = RawValue::from_string(args) else {
                    return 0;
                };
                let emit = Emit {
                    nsp: Arc::from(nsp),
                    room: filter.as_deref().map(Arc::from),
                    event: Arc::from(event),
                    args: Data { json, attachments },
                    cluster_offset: None,
                };
                hub.emit_to(filter.as_deref(), &emit)
            }
            Command::Join { nsp, room, filter } => hub
                .targets(&nsp, filter.as_deref())
                .into_iter()
                .filter(|id| hub.join_approved(*id, &room, None).is_ok())
                .count(),
            Command::Leave { nsp, room, filter } => hub
                .targets(&nsp, filter.as_deref())
                .into_iter()
                .filter(|id| hub.leave_as(*id, &room))
                .count(),
            Command::Disconnect { nsp, filter, .. } => {
                let ids = hub.targets(&nsp, filter.as_deref());
                hub.disconnect_ids(
                    &ids,
                    CloseReason::Disconnected {
                        code: DISCONNECTED_BY_ADMIN,
                        reason: "disconnected from the admin UI".into(),
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(values: &[&str]) -> Vec<Box<RawValue>> {
        values
            .iter()
            .map(|v| RawValue::from_string(v.to_string()).unwrap())
            .collect()
    }

    fn decode(name: &str, values: &[&str]) -> Option<Command> {
        let owned = raw(values);
        let args: Vec<&RawValue> = owned.iter().map(|a| &**a).collect();
        Command::decode(name, &args)
    }

    #[test]
    fn commands_decode_as_the_ui_sends_them() {
        assert_eq!(
            decode(
                "emit",
                &[r#""/""#, r#""lobby""#, r#""news""#, "1", r#"{"a":2}"#]
            ),
            Some(Command::Emit {
                nsp: "/".into(),
                filter: Some("lobby".into()),
                event: "news".into(),
                args: r#"[1,{"a":2}]"#.into(),
            })
        );
        assert_eq!(
            decode("emit", &[r#""/""#, "null", r#""ping""#]),
            Some(Command::Emit {
                nsp: "/".into(),
                filter: None,
                event: "ping".into(),
                args: "[]".into(),
            })
        );
        assert_eq!(
            decode("join", &[r#""/""#, r#""vip""#, r#""abc""#]),
            Some(Command::Join {
                nsp: "/".into(),
                room: "vip".into(),
                filter: Some("abc".into()),
            })
        );
        assert_eq!(
            decode("leave", &[r#""/""#, r#""vip""#]),
            Some(Command::Leave {
                nsp: "/".into(),
                room: "vip".into(),
                filter: None,
            })
        );
        assert_eq!(
            decode("_disconnect", &[r#""/""#, "false", r#""abc""#]),
            Some(Command::Disconnect {
                nsp: "/".into(),
                close: false,
                filter: Some("abc".into()),
            })
        );
        assert_eq!(decode("join", &[r#""/""#]), None);
        assert_eq!(decode("drop_tables", &[r#""/""#]), None);
        assert_eq!(decode("emit", &["3"]), None);
    }
}
