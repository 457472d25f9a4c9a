//! Connections as the Admin UI sees them: every hub connection (Socket.IO
//! sockets of every namespace, `/ws` and TCP clients alike) serialized as
//! the reference's `SerializedSocket`, and the hub [`Observer`] that turns
//! connects, disconnects, joins, leaves and renames into `socket_connected`,
//! `socket_disconnected`, `room_joined`, `room_left` and `socket_updated`
//! (its `data`, as the reference sends when `socket.data` changes).
//!
//! The observer is called under hub locks, so it only queues a [`Note`]
//! (when an admin socket follows this node at all); a task
//! (`super::Admin::relay`) renders the notes and emits them to the admin
//! sockets, here and on the other nodes of a cluster. Sockets of other
//! nodes come from their `fetchSockets` answers ([`serialize_remote`]).

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use volna_hub::{ConnView, Observer};
use volna_protocols::line::Timestamp;

use super::Panel;

/// Notes that may wait for the task; more are dropped (the UI catches up
/// with `all_sockets` when it reconnects).
const NOTES_QUEUED: usize = 65_536;

/// A date as JavaScript's `JSON.stringify(new Date())` writes it.
pub fn date(ms: u64) -> Value {
    Value::String(Timestamp(ms).to_string())
}

/// How the socket list should name a connection's transport.
fn transport(conn: &ConnView) -> &'static str {
    conn.transport
}

/// The synthetic handshake of a connection: what the reference shows of
/// the HTTP request that opened it. volna keeps no request headers per
/// connection, so `headers` is empty and `address` unknown; `url` says
/// which endpoint it came through.
fn handshake(conn: &ConnView, socketio_path: &str) -> Value {
    let (url, query) = match conn.protocol {
        "socketio" => (
            format!("{socketio_path}?EIO=4&transport={}", conn.transport),
            json!({"EIO": "4", "transport": conn.transport}),
        ),
        "ws" => ("/ws".to_string(), json!({})),
        "tcp" => ("tcp".to_string(), json!({})),
        other => (other.to_string(), json!({})),
    };
    json!({
        "address": "",
        "headers": {},
        "time": Timestamp(conn.since).to_string(),
        "issued": conn.since,
        "url": url,
        "query": query,
        "secure": false,
        "xdomain": false,
        "auth": {},
    })
}

/// A connection's `data`: its display name, protocol and user (if
/// identified).
fn data(conn: &ConnView) -> Value {
    let mut data = json!({ "name": &*conn.name, "protocol": conn.protocol });
    if let Some(user) = &conn.user {
        data["user"] = Value::String(user.to_string());
    }
    data
}

/// A connection as the reference's `SerializedSocket`: `id` is the client
/// id (a Socket.IO socket's id), `clientId` the same (one socket per
/// connection and namespace here), `rooms` starts with the connection's own
/// room, as Socket.IO's `socket.rooms`.
pub fn serialize(conn: &ConnView, socketio_path: &str) -> Value {
    let mut rooms: Vec<&str> = vec![&conn.client];
    rooms.extend(conn.rooms.iter().map(|r| &**r));
    json!({
        "id": &*conn.client,
        "clientId": &*conn.client,
        "transport": transport(conn),
        "nsp": &*conn.nsp,
        "data": data(conn),
        "handshake": handshake(conn, socketio_path),
        "rooms": rooms,
    })
}

/// A socket of another server, as its answer to `fetchSockets` describes
/// it (see `volna_cluster`'s answer: `data._admin` holds its client id and
/// transport, as the reference keeps them), serialized as
/// [`serialize`] does for this node's.
pub fn serialize_remote(socket: &Value, nsp: &str) -> Value {
    let id = socket.get("id").cloned().unwrap_or(Value::Null);
    let admin = socket.pointer("/data/_admin");
    let mut data = socket.get("data").cloned().unwrap_or_else(|| json!({}));
    if let Some(fields) = data.as_object_mut() {
        fields.remove("_admin");
        fields.remove("volna");
        if fields.get("user").and_then(Value::as_str) == Some("") {
            fields.remove("user");
        }
    }
    json!({
        "id": id,
        "clientId": admin.and_then(|a| a.get("clientId")).cloned().unwrap_or_else(|| id.clone()),
        "transport": admin.and_then(|a| a.get("transport")).cloned().unwrap_or(Value::Null),
        "nsp": nsp,
        "data": data,
        "handshake": socket.get("handshake").cloned().unwrap_or_else(|| json!({})),
        "rooms": socket.get("rooms").cloned().unwrap_or_else(|| json!([])),
    })
}

/// One change the observer saw, with when.
#[derive(Debug)]
pub enum Note {
    /// A connection registered.
    Connected(ConnView, u64),
    /// A connection was renamed or upgraded to WebSocket.
    Updated(ConnView),
    /// A connection went (namespace, client id, reason).
    Disconnected(Arc<str>, Arc<str>, String, u64),
    /// A connection joined a room (namespace, room, client id).
    Joined(Arc<str>, Arc<str>, Arc<str>, u64),
    /// A connection left a room (namespace, room, client id).
    Left(Arc<str>, Arc<str>, Arc<str>, u64),
    /// What the Admin UI of another node of the cluster sent
    /// (`super::Admin::told_by_other_node` reads it).
    Remote(Vec<u8>),
    /// A broadcast was queued to these connections: its event and
    /// arguments as a Socket.IO client gets them (development mode).
    Sent(Value, Vec<volna_hub::ConnId>, u64),
}

impl Note {
    /// The event and its arguments, as the reference emits them (`None`
    /// for a [`Note::Remote`], which is no event of this node's).
    pub fn render(&self, socketio_path: &str) -> Option<(&'static str, Vec<Value>)> {
        Some(match self {
            Note::Connected(conn, ts) => (
                "socket_connected",
                vec![serialize(conn, socketio_path), date(*ts)],
            ),
            Note::Updated(conn) => (
                "socket_updated",
                vec![json!({
                    "id": &*conn.client,
                    "nsp": &*conn.nsp,
                    "transport": transport(conn),
                    "data": data(conn),
                })],
            ),
            Note::Disconnected(nsp, id, reason, ts) => (
                "socket_disconnected",
                vec![json!(&**nsp), json!(&**id), json!(reason), date(*ts)],
            ),
            Note::Joined(nsp, room, id, ts) => (
                "room_joined",
                vec![json!(&**nsp), json!(&**room), json!(&**id), date(*ts)],
            ),
            Note::Left(nsp, room, id, ts) => (
                "room_left",
                vec![json!(&**nsp), json!(&**room), json!(&**id), date(*ts)],
            ),
            Note::Remote(_) | Note::Sent(..) => return None,
        })
    }
}

/// The hub observer: queues notes while an admin socket is connected here
/// or (in a cluster) to another node following this one, and what the
/// other nodes' Admin UIs send.
pub struct Notes {
    panel: Arc<Panel>,
    tx: mpsc::Sender<Note>,
    /// Development mode: broadcasts are listed too (`event_sent`).
    development: bool,
}

impl Notes {
    /// The observer and the receiving end its task reads.
    pub fn new(panel: Arc<Panel>, development: bool) -> (Notes, mpsc::Receiver<Note>) {
        let (tx, rx) = mpsc::channel(NOTES_QUEUED);
        (
            Notes {
                panel,
                tx,
                development,
            },
            rx,
        )
    }

    fn note(&self, note: impl FnOnce(u64) -> Note) {
        if self.panel.is_followed() {
            let _ = self.tx.try_send(note(volna_hub::now_ms()));
        }
    }
}

/// The socket.io reason of a close, as the UI lists it.
fn reason_text(reason: Option<&str>) -> String {
    reason.unwrap_or("client namespace disconnect").to_string()
}

impl Observer for Notes {
    fn connected(&self, conn: &ConnView) {
        self.note(|ts| Note::Connected(conn.clone(), ts));
    }

    fn updated(&self, conn: &ConnView) {
        self.note(|_| Note::Updated(conn.clone()));
    }

    fn disconnected(&self, nsp: &str, client: &str, reason: Option<&str>) {
        if nsp == super::NAMESPACE {
            self.panel.forget(client);
        }
        self.note(|ts| Note::Disconnected(nsp.into(), client.into(), reason_text(reason), ts));
    }

    fn joined(&self, nsp: &str, room: &str, client: &str) {
        self.note(|ts| Note::Joined(nsp.into(), room.into(), client.into(), ts));
    }

    fn left(&self, nsp: &str, room: &str, client: &str) {
        self.note(|ts| Note::Left(nsp.into(), room.into(), client.into(), ts));
    }

    fn told_by_other_node(&self, payload: &[u8]) {
        let _ = self.tx.try_send(Note::Remote(payload.to_vec()));
    }

    fn wants_sent(&self) -> bool {
        self.development && self.panel.is_followed()
    }

    fn sent(&self, event: &volna_hub::Event<'_>, to: &[volna_hub::ConnId]) {
        // As a Socket.IO client gets it: the packet's JSON array.
        let mut frames = Vec::new();
        volna_hub::Codec::encode(&crate::socketio::SioCodec::new("/"), event, &mut frames);
        let args = frames
            .first()
            .and_then(|f| match f {
                volna_hub::Frame::Text(t) => std::str::from_utf8(t).ok(),
                volna_hub::Frame::Binary(_) => None,
            })
            .and_then(|t| t.find('[').map(|i| &t[i..]))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or(Value::Null);
        let _ = self
            .tx
            .try_send(Note::Sent(args, to.to_vec(), volna_hub::now_ms()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(protocol: &'static str, transport: &'static str) -> ConnView {
        ConnView {
            id: 3,
            nsp: Arc::from("/"),
            client: Arc::from("abc"),
            name: Arc::from("ann"),
            user: None,
            transport,
            protocol,
            rooms: vec![Arc::from("lobby")],
            since: 1_764_065_472_345,
        }
    }

    #[test]
    fn sockets_serialize_as_the_reference() {
        let v = serialize(&view("socketio", "polling"), "/socket.io/");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["clientId"], "abc");
        assert_eq!(v["transport"], "polling");
        assert_eq!(v["nsp"], "/");
        assert_eq!(v["rooms"], json!(["abc", "lobby"]));
        assert_eq!(v["data"], json!({"name": "ann", "protocol": "socketio"}));
        let h = &v["handshake"];
        for key in [
            "address", "headers", "time", "issued", "url", "query", "secure", "xdomain", "auth",
        ] {
            assert!(h.get(key).is_some(), "handshake.{key}");
        }
        assert_eq!(h["issued"], 1_764_065_472_345u64);
        assert_eq!(h["time"], "2025-11-25T10:11:12.345Z");
        assert_eq!(h["url"], "/socket.io/?EIO=4&transport=polling");
        let tcp = serialize(&view("tcp", "tcp"), "/socket.io/");
        assert_eq!(tcp["transport"], "tcp");
        assert_eq!(tcp["handshake"]["url"], "tcp");
    }

    #[test]
    fn notes_render_as_the_reference_events() {
        let (event, args) = Note::Joined("/".into(), "lobby".into(), "abc".into(), 0)
            .render("/")
            .unwrap();
        assert_eq!(event, "room_joined");
        assert_eq!(
            Value::Array(args),
            json!(["/", "lobby", "abc", "1970-01-01T00:00:00.000Z"])
        );
        let (event, args) =
            Note::Disconnected("/".into(), "abc".into(), "transport close".into(), 0)
                .render("/")
                .unwrap();
        assert_eq!(event, "socket_disconnected");
        assert_eq!(args[2], "transport close");
        let (event, args) = Note::Connected(view("ws", "websocket"), 5)
            .render("/")
            .unwrap();
        assert_eq!(event, "socket_connected");
        assert_eq!(args[0]["handshake"]["url"], "/ws");
        assert_eq!(args.len(), 2);
        assert!(Note::Remote(b"{}".to_vec()).render("/").is_none());
        let (event, args) = Note::Updated(view("socketio", "websocket"))
            .render("/")
            .unwrap();
        assert_eq!(event, "socket_updated");
        assert_eq!(
            args[0],
            json!({"id": "abc", "nsp": "/", "transport": "websocket",
                   "data": {"name": "ann", "protocol": "socketio"}})
        );
    }

    #[test]
    fn sockets_of_other_nodes_serialize_as_the_reference() {
        let answer = json!({
            "id": "xyz",
            "handshake": {"issued": 5},
            "rooms": ["xyz", "lobby"],
            "data": {"name": "bob", "user": "", "protocol": "socketio", "volna": true,
                     "_admin": {"clientId": "xyz", "transport": "polling"}},
        });
        let v = serialize_remote(&answer, "/");
        assert_eq!(v["id"], "xyz");
        assert_eq!(v["clientId"], "xyz");
        assert_eq!(v["transport"], "polling");
        assert_eq!(v["nsp"], "/");
        assert_eq!(v["rooms"], json!(["xyz", "lobby"]));
        assert_eq!(v["data"], json!({"name": "bob", "protocol": "socketio"}));
        assert_eq!(v["handshake"]["issued"], 5);
    }
}
