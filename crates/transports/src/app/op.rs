//! The operations a client can ask for, whatever its transport.

use std::sync::Arc;

use bytes::Bytes;
use volna_hub::Data;

use super::AppError;

/// One operation, decoded from a TCP line, a `/ws` request or a Socket.IO
/// event. Every field is already checked for its type; what only the hub
/// can check (does the room exist, is the name free) is checked when the
/// operation is applied ([`Op::apply`](super::Op::apply)).
///
/// | op        | TCP line            | `/ws` request                              | Socket.IO event                   |
/// |-----------|---------------------|--------------------------------------------|-----------------------------------|
/// | `Nick`    | `/nick NAME`        | `{"op":"nick","name"}`                     | `nick(name)`                      |
/// | `Join`    | `/join ROOM`        | `{"op":"join","room"}`                     | `join(room)`                      |
/// | `Leave`   | `/leave [ROOM]`     | `{"op":"leave","room"}`                    | `leave(room)`                     |
/// | `Message` | a line, `/msg R T`  | `{"op":"message","room","data","self"?}`   | `message({room, data})`           |
/// | `Echo`    | `/echo TEXT`        | `{"op":"echo","data"}`                     | `echo(...args)`                   |
/// | `Who`     | `/who [ROOM]`       | `{"op":"who","room"}`                      | `who(room)`                       |
/// | `Rooms`   | `/rooms`            | `{"op":"rooms"}`                           | `rooms()`                         |
/// | `History` | `/history [N]`      | `{"op":"history","room","limit"?}`         | `history(room, n?)`               |
/// | `Image`   | —  (text only)      | `{"op":"image","room","name"}` + 1 binary  | `image({room, name, data: <bin>})`|
/// | `Emit`    | `/emit EVENT JSON`  | `{"op":"emit","event","room","data"}`      | `EVENT({room, data})`             |
/// | `Auth`    | `/auth TOKEN`       | `{"op":"auth","token"?,...}`               | (the CONNECT `auth` object)       |
///
/// The full table, with replies and error codes, is `docs/operations.md`.
#[derive(Debug)]
pub enum Op {
    /// Take a new display name.
    Nick {
        /// The name asked for.
        name: String,
    },
    /// Join (or create) a room.
    Join {
        /// The room.
        room: String,
        /// Resume it from here: the messages after it come first (or the
        /// join is refused `unrecoverable`).
        since: Option<volna_hub::Since>,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Publish to a room the sender is in.
    Message {
        /// The room.
        room: String,
        /// The body, attachments included.
        data: Data,
        /// Whether the sender receives its own message too.
        include_self: bool,
    },
    /// Answer the data back.
    Echo {
        /// What to answer.
        data: Data,
    },
    /// The members of a room (on every node, in a cluster).
    Who {
        /// The room.
        room: String,
    },
    /// Every room with its member count.
    Rooms,
    /// The last messages of a room.
    History {
        /// The room.
        room: String,
        /// At most this many, newest last.
        limit: usize,
    },
    /// Publish the application's own event to a room the sender is in:
    /// relayed, numbered and kept like a message, under its own name.
    Emit {
        /// The event's name, checked by [`event_name`].
        event: Arc<str>,
        /// The room.
        room: String,
        /// The body, attachments included.
        data: Data,
        /// Whether the sender receives its own event too.
        include_self: bool,
    },
    /// Sign in (again) through the connect hook: the backend says who the
    /// connection is now.
    Auth {
        /// What the client sent (`{"token": …}` from TCP; the `/ws`
        /// request without its `op` and `id`).
        data: serde_json::Value,
    },
    /// Share an image: a thumbnail is made on the worker pool and published.
    Image {
        /// The room.
        room: String,
        /// The file name shown to others (cleaned before use).
        name: String,
        /// The image file's bytes.
        bytes: Bytes,
    },
}

impl Op {
    /// The operation's name, as every transport spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Nick { .. } => "nick",
            Op::Join { .. } => "join",
            Op::Leave { .. } => "leave",
            Op::Message { .. } => "message",
            Op::Echo { .. } => "echo",
            Op::Who { .. } => "who",
            Op::Rooms => "rooms",
            Op::History { .. } => "history",
            Op::Image { .. } => "image",
            Op::Emit { .. } => "emit",
            Op::Auth { .. } => "auth",
        }
    }
}

/// Longest name of an application's own event, in bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// Names an application's own event cannot take: the operations and what
/// the server sends on its own (`/ws` frame types, presence); the names
/// Socket.IO reserves ([`volna_protocols::socketio::RESERVED_EVENTS`]) are
/// refused too.
pub const RESERVED_EVENTS: &[&str] = &[
    "nick", "join", "leave", "message", "echo", "who", "rooms", "history", "image", "emit", "auth",
    "presence", "event", "error", "reply", "welcome",
];

/// Checks the name of an application's own event: 1 to [`MAX_EVENT_NAME`]
/// bytes, no whitespace or control characters (a TCP line could not carry
/// it), not one of [`RESERVED_EVENTS`].
pub fn event_name(name: &str) -> Result<Arc<str>, AppError> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(AppError::new(
            "bad-event",
            format!("an event name must be 1 to {MAX_EVENT_NAME} bytes"),
        ));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::new(
            "bad-event",
            "an event name must not hold spaces or control characters",
        ));
    }
    if RESERVED_EVENTS.contains(&name) || volna_protocols::socketio::is_reserved_event(name) {
        return Err(AppError::new(
            "reserved-event",
            format!("{name:?} is reserved; pick another event name"),
        ));
    }
    Ok(Arc::from(name))
}

/// Most messages one `history` request returns.
pub const MAX_HISTORY: usize = 10_000;
