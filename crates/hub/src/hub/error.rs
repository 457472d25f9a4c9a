//! [`HubError`]: why a hub operation was refused.

use volna_protocols::line::NameError;

/// Why a hub operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The connection is not a member of the room (named) it tried to
    /// publish to or leave.
    #[error("you are not in room {0}")]
    NotMember(String),
    /// The room (named) does not exist: nobody is in it.
    #[error("no room named {0}")]
    NoSuchRoom(String),
    /// Another connection of the namespace already has this display name.
    #[error("the name {0} is taken")]
    NameTaken(String),
    /// The room or display name breaks the naming rule
    /// ([`validate_name`](volna_protocols::line::validate_name)).
    #[error("{0}")]
    BadName(#[from] NameError),
    /// The room (named) has as many members as its policy allows.
    #[error("room {0} is full")]
    RoomFull(String),
    /// The room's policy does not let clients publish to it.
    #[error("only the server publishes to room {0}")]
    PublishForbidden(String),
    /// The room's policy does not relay this event (name, room).
    #[error("room {1} does not take the event {0}")]
    EventNotAllowed(String, String),
    /// Rooms starting with `#` are users' personal rooms: only the server
    /// sends to them.
    #[error("room {0} is a personal room: only the server sends to it")]
    ReservedRoom(String),
    /// The server API named neither a room nor a connection that exists.
    #[error("nothing named {0} here")]
    NoSuchTarget(String),
    /// What the connection may not do (why).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The connection is in as many rooms as allowed.
    #[error("you are in {0} rooms, the most a connection may join; leave one first")]
    TooManyRooms(usize),
    /// A join asked to resume a room (named) from a point its kept
    /// messages no longer reach back to (or another life of the room).
    #[error("the messages of room {0} since then are no longer kept: join it afresh and read its history")]
    Unrecoverable(String),
    /// The connection was already unregistered.
    #[error("the connection is closed")]
    Gone,
}

impl HubError {
    /// A short, stable code, e.g. `not-member`.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NotMember(_) => "not-member",
            HubError::NoSuchRoom(_) => "no-such-room",
            HubError::NameTaken(_) => "name-taken",
            HubError::BadName(_) => "bad-name",
            HubError::RoomFull(_) => "room-full",
            HubError::PublishForbidden(_) => "publish-forbidden",
            HubError::EventNotAllowed(..) => "event-not-allowed",
            HubError::ReservedRoom(_) => "reserved-room",
            HubError::NoSuchTarget(_) => "no-such-target",
            HubError::Forbidden(_) => "forbidden",
            HubError::TooManyRooms(_) => "too-many-rooms",
            HubError::Unrecoverable(_) => "unrecoverable",
            HubError::Gone => "gone",
        }
    }
}
