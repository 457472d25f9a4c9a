//! Who a connection is beyond its display name: the client id the server
//! API reaches it by, the user it belongs to, and the public information
//! shown beside it.

use std::sync::Arc;

use serde_json::value::RawValue;

/// A connection's identity, given when it registers
/// ([`Hub::register_as`](crate::Hub::register_as)).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The client id (Socket.IO: the socket id). `None`: the hub makes
    /// one, unique across restarts and nodes.
    pub client: Option<Arc<str>>,
    /// The user id, from a connect hook or a token. `None`: anonymous.
    pub user: Option<Arc<str>>,
    /// Public JSON about the user (`conn_info` in the server API).
    pub info: Option<Arc<RawValue>>,
    /// The transport's name (`tcp`, `websocket`, `socketio`), for hooks
    /// and listings.
    pub transport: &'static str,
    /// When its credentials expire, in seconds since the Unix epoch (a
    /// token's `exp`).
    pub expires: Option<u64>,
    /// The room patterns (globs) it may join; `None`: any room.
    pub rooms: Option<Arc<[String]>>,
}

/// A connection as the server API lists it (presence, `info`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Its client id.
    pub client: Arc<str>,
    /// Its user id; empty when anonymous.
    pub user: Arc<str>,
    /// Its display name.
    pub name: Arc<str>,
    /// Its public JSON, if any.
    pub info: Option<Arc<RawValue>>,
}

/// The prefix of a user's personal room: `#alice` reaches every connection
/// of user `alice`. Clients cannot join rooms with this prefix.
pub const USER_ROOM_PREFIX: char = '#';

/// The display name of messages the server publishes itself (the server
/// API); no connection may take it.
pub const SERVER_NAME: &str = "server";
