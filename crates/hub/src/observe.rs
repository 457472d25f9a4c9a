//! Watching the hub from outside (the Socket.IO Admin UI): a read-only
//! view of a connection ([`ConnView`]) and an [`Observer`] told of
//! connects, disconnects, joins, leaves, renames and transport upgrades.
//!
//! Nothing here is on the message path: an observer is told of membership
//! changes only, and only when one is installed
//! ([`Hub::set_observer`](crate::Hub::set_observer), once).
//!
//! In a cluster the observers of the nodes talk to each other through the
//! adapter: what one gives to
//! [`Hub::tell_other_nodes`](crate::Hub::tell_other_nodes) (an opaque
//! payload) reaches the others' [`Observer::told_by_other_node`].

use std::sync::Arc;

use crate::event::{ConnId, Event};

/// A connection as an observer sees it: a copy, taken under the hub's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnView {
    /// Its id in this process.
    pub id: ConnId,
    /// Its namespace.
    pub nsp: Arc<str>,
    /// Its client id (Socket.IO: the socket id).
    pub client: Arc<str>,
    /// Its display name.
    pub name: Arc<str>,
    /// Its user id, when identified.
    pub user: Option<Arc<str>>,
    /// Its transport's name (`tcp`, `websocket`, `polling`).
    pub transport: &'static str,
    /// The protocol it speaks, one of [`PROTOCOLS`](crate::PROTOCOLS)
    /// (`tcp`, `ws`, `socketio`).
    pub protocol: &'static str,
    /// The rooms it is in (not its personal room).
    pub rooms: Vec<Arc<str>>,
    /// When it registered, in ms since the Unix epoch.
    pub since: u64,
}

/// Told of changes of membership. Called with hub locks held: an observer
/// must not call back into the hub; it should queue what it is told.
pub trait Observer: Send + Sync + 'static {
    /// A connection registered.
    fn connected(&self, conn: &ConnView);
    /// A connection unregistered; `reason` is why its transport closed
    /// (`None`: it left its namespace on its own).
    fn disconnected(&self, nsp: &str, client: &str, reason: Option<&str>);
    /// A connection joined a room.
    fn joined(&self, nsp: &str, room: &str, client: &str);
    /// A connection left a room (or was taken out of it when it went).
    fn left(&self, nsp: &str, room: &str, client: &str);
    /// A connection was renamed or changed transport (an Engine.IO
    /// upgrade); `conn` is as it is now.
    fn updated(&self, _conn: &ConnView) {}
    /// A payload the observer of another node of the cluster sent
    /// ([`Hub::tell_other_nodes`](crate::Hub::tell_other_nodes)). Called
    /// by the adapter's receiving task, without hub locks, but it should
    /// still only queue it.
    fn told_by_other_node(&self, _payload: &[u8]) {}
    /// Whether it wants to hear of every broadcast's receivers
    /// ([`sent`](Self::sent)); asked once per broadcast, so it must be
    /// cheap (an atomic load). False by default.
    fn wants_sent(&self) -> bool {
        false
    }
    /// A broadcast `event` was queued to the connections `to` (only while
    /// [`wants_sent`](Self::wants_sent)). Called with the room's lock
    /// held: it must only queue.
    fn sent(&self, _event: &Event<'_>, _to: &[ConnId]) {}
}
