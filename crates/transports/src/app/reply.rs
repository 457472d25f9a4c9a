//! What an applied operation answers, before any transport renders it.

use std::sync::Arc;

use volna_hub::{ClusterWho, Data, HubError, JoinInfo, Message, RoomInfo};

use crate::images::ShareError;

/// The answer to an [`Op`](super::Op) that succeeded.
#[derive(Debug)]
pub enum Reply {
    /// The name now held (may carry a `-2` suffix).
    Nick {
        /// The name.
        name: Arc<str>,
    },
    /// The room joined, its members and size.
    Join(JoinInfo),
    /// The room left and how many members it still has.
    Leave {
        /// The room.
        room: String,
        /// Its members after the leave.
        members: usize,
    },
    /// A message (or an image) was published: its room, offset and time.
    Published(Arc<Message>),
    /// The data, answered back.
    Echo(Data),
    /// The members of a room.
    Who {
        /// The room.
        room: String,
        /// Its members (local ones with ids), and whether some node did not
        /// answer in time.
        who: ClusterWho,
    },
    /// Every room of the namespace.
    Rooms(Vec<RoomInfo>),
    /// The backend's answer to an event its rpc hook handles.
    Answered {
        /// The event.
        event: Arc<str>,
        /// What the backend answered (`null` when it gave no `data`).
        data: Data,
    },
    /// Signed in through the connect hook: who the connection is now.
    Identified {
        /// The user; `None`: anonymous.
        user: Option<Arc<str>>,
        /// The display name it holds.
        name: Arc<str>,
    },
    /// The last messages of a room, oldest first.
    History {
        /// The room.
        room: String,
        /// The messages as they were delivered.
        messages: Vec<Arc<Message>>,
    },
}

/// Why an operation was refused: a stable code and a sentence for people.
/// Every transport shows both (TCP `error CODE text`, `/ws`
/// `{"type":"error","code","message"}`, Socket.IO `{ok:false, code, error}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// Short and stable, e.g. `no-such-room`.
    pub code: &'static str,
    /// What went wrong, in words.
    pub message: String,
    /// The backend's own code, when its hook refused (`backend_code` on
    /// Socket.IO and `/ws`).
    pub backend_code: Option<u32>,
}

impl AppError {
    /// An error with its own code.
    pub fn new(code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            backend_code: None,
        }
    }

    /// A request that is malformed for its operation (missing or mistyped
    /// field).
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new("bad-request", message)
    }
}

impl From<HubError> for AppError {
    fn from(e: HubError) -> Self {
        AppError::new(e.code(), e.to_string())
    }
}

impl From<ShareError> for AppError {
    fn from(e: ShareError) -> Self {
        AppError::new(e.code(), e.to_string())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
