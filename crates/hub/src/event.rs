//! What the hub broadcasts, and how transports encode it.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::outbox::Frame;

/// A connection's id, unique for the life of the process.
pub type ConnId = u64;

/// Who a member is, as other members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its connection id on the node that holds it.
    pub id: ConnId,
    /// Its display name, unique in its namespace on that node.
    pub name: Arc<str>,
}

/// The body of a message: any JSON value, plus binary attachments.
///
/// Text typed in a TCP client is the JSON string `"text"`. A Socket.IO
/// client's `data` is kept as the raw JSON it sent, with its binary parts
/// replaced by `{"_placeholder":true,"num":N}` objects indexing
/// [`Data::attachments`], exactly as the Socket.IO protocol carries them, so
/// it reaches other Socket.IO clients unchanged.
#[derive(Debug, Clone)]
pub struct Data {
    /// The JSON value as raw text, placeholders included.
    pub json: Box<RawValue>,
    /// The binary parts, indexed by placeholder `num`.
    pub attachments: Vec<Bytes>,
}

impl Data {
    /// A plain text message.
    pub fn text(text: &str) -> Data {
        let json = serde_json::to_string(text).expect("a string always serializes");
        Data {
            json: RawValue::from_string(json).expect("serde_json wrote valid JSON"),
            attachments: Vec::new(),
        }
    }

    /// The text, if the JSON is a plain string.
    pub fn as_text(&self) -> Option<String> {
        let raw = self.json.get();
        if raw.starts_with('"') {
            serde_json::from_str(raw).ok()
        } else {
            None
        }
    }

    /// Total bytes of the attachments.
    pub fn attachment_bytes(&self) -> usize {
        self.attachments.iter().map(Bytes::len).sum()
    }
}

/// A message published to a room.
#[derive(Debug, Clone)]
pub struct Message {
    /// The namespace of the room.
    pub nsp: Arc<str>,
    /// The room it was published to.
    pub room: Arc<str>,
    /// Position in the room: 1 for its first message, then increasing by one.
    pub offset: u64,
    /// Server time of publication, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The member who published it.
    pub from: MemberInfo,
    /// Its body.
    pub data: Data,
    /// The name of the application's own event it carries (`cursor`,
    /// `stroke`, …); `None` for an ordinary `message`. Either way it takes
    /// the room's next offset and is kept in the history.
    pub event: Option<Arc<str>>,
    /// Its place in this node's recovery log (Socket.IO connection-state
    /// recovery, [`HubConfig::recovery`](crate::HubConfig::recovery)); 0
    /// when it is not logged.
    pub seq: u64,
    /// Its place in the cluster's shared log, once it has one: the Redis
    /// stream entry id (`1796609250980-0`) in the cluster's streams mode.
    /// Socket.IO clients are shown it as the offset instead of [`seq`]'s,
    /// so that they can recover on any node, volna or Node.js.
    ///
    /// [`seq`]: Message::seq
    pub cluster_offset: std::sync::OnceLock<Arc<str>>,
}

/// Whether a member arrived or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// The member joined the room.
    Joined,
    /// The member left the room (or disconnected).
    Left,
}

impl PresenceKind {
    /// `join` or `leave`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceKind::Joined => "join",
            PresenceKind::Left => "leave",
        }
    }
}

/// A member joined or left a room.
#[derive(Debug, Clone)]
pub struct Presence {
    /// The namespace of the room.
    pub nsp: Arc<str>,
    /// The room joined or left.
    pub room: Arc<str>,
    /// Who arrived or left.
    pub member: MemberInfo,
    /// Which of the two.
    pub kind: PresenceKind,
    /// Members in the room after the change.
    pub members: usize,
}

/// Anything the hub delivers to many connections at once.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A message published to a room.
    Message(&'a Message),
    /// A member joined or left a room.
    Presence(&'a Presence),
    /// An event from another server, delivered verbatim (see
    /// [`crate::Emit`]).
    Emit(&'a Emit),
}

/// Turns hub events into the frames of one wire format.
///
/// Implemented by each transport. The hub calls [`Codec::encode`] once per
/// distinct [`Codec::key`] for every broadcast and gives the resulting frames
/// (cheap `Bytes` clones) to every receiver using that key.
pub trait Codec: Send + Sync + 'static {
    /// Connections whose codecs return the same key must produce identical
    /// frames for the same event.
    fn key(&self) -> u64;

    /// Appends the frames for `event` to `out`. May append nothing when the
    /// format has no representation for the event.
    fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>);

    /// The protocol it speaks, one of [`PROTOCOLS`](crate::stats::PROTOCOLS)
    /// (`tcp`, `ws`, `socketio`), for the counters.
    fn protocol(&self) -> &'static str {
        "other"
    }

    /// Appends what the connection is told before the server closes it on
    /// purpose (a disconnect from the server API), where the format says
    /// more than its close does: Socket.IO's DISCONNECT packet, which keeps
    /// the client from reconnecting. Nothing by default.
    fn goodbye(&self, _reason: &crate::outbox::CloseReason, _out: &mut Vec<Frame>) {}
}

/// An event from another server that is not one of volna's own kinds, e.g.
/// `io.to("room").emit("news", x)` on a Node.js Socket.IO server. Socket.IO
/// clients receive it verbatim; the other transports render it generically.
#[derive(Debug, Clone)]
pub struct Emit {
    /// The namespace it was sent in.
    pub nsp: Arc<str>,
    /// The room it was sent to, when exactly one (for display only).
    pub room: Option<Arc<str>>,
    /// The event name.
    pub event: Arc<str>,
    /// The arguments: `json` is a JSON array whose binary parts are
    /// Socket.IO placeholders indexing `attachments`.
    pub args: Data,
    /// Its place in the cluster's shared log (see
    /// [`Message::cluster_offset`]), when it came through one: Socket.IO
    /// clients get it as the last argument.
    pub cluster_offset: Option<Arc<str>>,
}
