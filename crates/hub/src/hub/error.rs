//! [`HubError`]: why a hub operation was refused.

use volna_protocols::line::NameError;

/// Why a hub operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("you are not in room {0}")]
    NotMember(String),
    #[error("no room named {0}")]
    NoSuchRoom(String),
    #[error("the name {0} is taken")]
    NameTaken(String),
    #[error("{0}")]
    BadName(#[from] NameError),
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
            HubError::Gone => "gone",
        }
    }
}
