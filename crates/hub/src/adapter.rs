//! The seam between the hub and a cluster of nodes (see `docs/cluster.md`).
//!
//! A hub without an [`Adapter`] is a single in-memory node: nothing here
//! costs anything. With one (set once with [`Hub::set_adapter`]), every room
//! broadcast the hub *originates* (a publish, a join or leave presence) is
//! handed to [`Adapter::forward`] right after its local delivery, while the
//! room's lock is still held, so the adapter sees a room's events in the
//! order local members saw them. Events that arrive from other nodes are
//! given to [`Hub::deliver_remote`], which delivers them to local members
//! only and never forwards them again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::event::{ConnId, Emit, MemberInfo, Message, Presence};
use crate::hub::Session;
use crate::identity::{ClientInfo, Identity};

/// A boxed future, as [`Adapter`] methods return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A room broadcast originated by this node, for the adapter to forward.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A message a local member published.
    Message(Arc<Message>),
    /// A local member joined or left a room.
    Presence(Arc<Presence>),
}

/// Members of a room on the other nodes, as [`Adapter::who`] finds them.
#[derive(Debug, Clone, Default)]
pub struct RemoteMembers {
    /// Their display names (or, for sockets of non-volna servers, their
    /// `data.name` or socket id).
    pub names: Vec<Arc<str>>,
    /// The same members as the server API lists them: client id (a socket
    /// id), user (`data.user`) and name.
    pub clients: Vec<ClientInfo>,
    /// The same members as the other servers described them in their
    /// answers to `fetchSockets` (`id`, `rooms`, `data`, `handshake`).
    pub sockets: Vec<serde_json::Value>,
    /// True when some node did not answer in time.
    pub partial: bool,
}

/// One member in the answer of [`Hub::who_cluster`](crate::Hub::who_cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoMember {
    /// The connection id, for members on this node; `None` on other nodes
    /// (their ids are theirs, not comparable with ours).
    pub id: Option<ConnId>,
    /// The display name.
    pub name: Arc<str>,
}

/// The answer of [`Hub::who_cluster`](crate::Hub::who_cluster).
#[derive(Debug, Clone)]
pub struct ClusterWho {
    /// Every member, local and remote, sorted by name.
    pub members: Vec<WhoMember>,
    /// True when some node did not answer in time: the list may be short.
    pub partial: bool,
}

impl ClusterWho {
    /// Merges this node's members of a room (`None`: no such room here) with
    /// what the other nodes answered (`None`: single node). `None` when
    /// nobody anywhere is in the room.
    pub fn merge(local: Option<Vec<MemberInfo>>, remote: Option<RemoteMembers>) -> Option<Self> {
        let known_here = local.is_some();
        let mut members: Vec<WhoMember> = local
            .unwrap_or_default()
            .into_iter()
            .map(|m| WhoMember {
                id: Some(m.id),
                name: m.name,
            })
            .collect();
        let mut partial = false;
        if let Some(remote) = remote {
            partial = remote.partial;
            members.extend(
                remote
                    .names
                    .into_iter()
                    .map(|name| WhoMember { id: None, name }),
            );
        }
        if !known_here && members.is_empty() && !partial {
            return None;
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Some(ClusterWho { members, partial })
    }
}

/// A volna node as the server API's `info` lists it: its last heartbeat's
/// figures for the other nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Unique id of the node (its cluster id).
    pub uid: String,
    /// Its human name.
    pub name: String,
    /// Its volna version.
    pub version: String,
    /// Connections.
    pub num_clients: usize,
    /// Distinct identified users.
    pub num_users: usize,
    /// Rooms.
    pub num_channels: usize,
    /// Seconds since it started.
    pub uptime: u64,
}

/// Something a restored session missed, as the cluster's log has it.
#[derive(Debug, Clone)]
pub enum Missed {
    /// A message (volna's own, from any node).
    Message(Arc<Message>),
    /// Any other event (e.g. a Node.js server's `io.to(room).emit`).
    Emit(Arc<Emit>),
}

/// A session kept in the cluster, given back by
/// [`Adapter::restore_session`].
pub struct Restored {
    /// Who it was: its client id is the socket id it gets back.
    pub identity: Identity,
    /// Its display name.
    pub name: Option<Arc<str>>,
    /// The rooms it was in.
    pub rooms: Vec<Arc<str>>,
    /// What those rooms had since its offset, oldest first.
    pub missed: Vec<Missed>,
    /// To call once the socket is back in its rooms: until then the
    /// adapter holds back what it delivers from the log, so nothing is
    /// missed or given twice in between.
    pub release: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("identity", &self.identity)
            .field("rooms", &self.rooms)
            .field("missed", &self.missed.len())
            .finish()
    }
}

/// Connects a hub to other nodes.
pub trait Adapter: Send + Sync + 'static {
    /// Called once per room broadcast this node originates, after its local
    /// delivery and with the room's lock held: must not block (queue it).
    fn forward(&self, event: Outgoing);

    /// The members of `room` on the other nodes.
    fn who(&self, nsp: &str, room: &str) -> BoxFuture<RemoteMembers>;

    /// How many members `room` of `nsp` has on the other nodes, as their
    /// presence events told (exact while each node's part of the room is
    /// within the presence limit, at least that limit beyond): the hub
    /// announces joins and leaves only while the whole room is small.
    /// Must not block. 0 (the default): none known.
    fn remote_members(&self, _nsp: &str, _room: &str) -> usize {
        0
    }

    /// Every socket of namespace `nsp` on the other servers (Socket.IO's
    /// `fetchSockets()`), in [`RemoteMembers::sockets`].
    fn fetch_sockets(&self, _nsp: &str) -> BoxFuture<RemoteMembers> {
        Box::pin(async { RemoteMembers::default() })
    }

    /// Sends `payload` (opaque here) to the hub observers of the other
    /// volna nodes, which get it through
    /// [`Hub::observe_other_node`](crate::Hub::observe_other_node);
    /// must not block (queue it). Lost while the cluster is unreachable.
    fn to_other_observers(&self, _payload: Vec<u8>) {}

    /// Asks the other nodes to disconnect the members of `targets` (rooms,
    /// or personal rooms: a client id, `#user`) in namespace `nsp`, with
    /// `code` and `reason` (the server API's `disconnect`).
    fn disconnect(&self, _nsp: &str, _targets: Vec<String>, _code: u16, _reason: String) {}

    /// The other nodes, as their last heartbeats described them.
    fn nodes(&self) -> Vec<NodeInfo> {
        Vec::new()
    }

    /// Figures for `/health`.
    fn health(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// A message the recovery log keeps, published here: an adapter with a
    /// shared log (the Redis stream) may take it over entirely, returning
    /// true: it then appends it to the log and delivers it to this node's
    /// members (but `except`) through [`Hub::deliver_logged`] once the log
    /// has given it its place, so every node delivers in the log's order.
    /// Called with the room's lock held: must not block. False (the
    /// default): the hub delivers it now and [`forward`](Self::forward)s it.
    ///
    /// [`Hub::deliver_logged`]: crate::Hub::deliver_logged
    fn defer_logged(&self, _msg: &Arc<Message>, _except: Option<ConnId>) -> bool {
        false
    }

    /// A connection gone abnormally whose session the hub keeps under
    /// `pid`: an adapter with a shared store keeps it there too, so the
    /// client can come back on another node.
    fn keep_session(&self, _pid: &str, _session: &Session) {}

    /// Whether `offset` is a position in this adapter's shared log, so a
    /// session is restored through [`restore_session`](Self::restore_session).
    fn owns_offset(&self, _offset: &str) -> bool {
        false
    }

    /// The place in the shared log up to which this node has delivered
    /// everything (`None` without a shared log): a joiner gets all that
    /// comes after it.
    fn log_position(&self) -> Option<Arc<str>> {
        None
    }

    /// What `room` of `nsp` had in the shared log after `log`, up to
    /// [`log_position`](Self::log_position); `None` when the log no longer
    /// holds `log`. The [`Restored`] names the room and no identity; its
    /// `release` must be called once the client is in the room.
    fn room_since(&self, _nsp: &str, _room: &str, _log: &str) -> BoxFuture<Option<Restored>> {
        Box::pin(async { None })
    }

    /// Takes the session kept under `pid` from the shared store, with what
    /// its rooms of `nsp` had after `offset`; `None` when there is no such
    /// session or the log no longer reaches back there.
    fn restore_session(
        &self,
        _nsp: &str,
        _pid: &str,
        _offset: &str,
    ) -> BoxFuture<Option<Restored>> {
        Box::pin(async { None })
    }
}
