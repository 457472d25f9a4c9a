//! The state the adapter's tasks and its hub handle share ([`Shared`]), and
//! the leaf types it holds: the publish queue's item ([`Out`]) and a cluster
//! request awaiting replies ([`Pending`]). Of the adapter's modules this
//! imports only the leaves [`crate::config`], [`crate::counters`] and
//! [`crate::wire`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::RngExt;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use volna_hub::{ClientInfo, ConnId, Message, NodeInfo, Outgoing, Restored};

use crate::config::ClusterConfig;
use crate::counters::{bump, Counters};
use crate::wire::Channels;

/// What the publish loop (`publish.rs`) sends to Redis.
pub(crate) enum Out {
    /// A broadcast this node originated, encoded when published.
    Event(Outgoing),
    /// A ready payload: heartbeats, answers to requests.
    Raw { channel: String, payload: Vec<u8> },
    /// Streams mode: a message of this node's that the stream orders
    /// (in [`Shared::deferred`] under `vseq` until read back).
    Logged { vseq: u64, msg: Arc<Message> },
    /// Streams mode: a recovery session to keep for the window.
    Session { key: String, value: String },
}

/// Streams mode: a message of this node's waiting to be read back from the
/// stream, then delivered here.
pub(crate) struct Deferred {
    pub(crate) msg: Arc<Message>,
    pub(crate) except: Option<ConnId>,
    pub(crate) since: Instant,
}

/// What a [`RestoreRequest`] restores.
pub(crate) enum Restore {
    /// The Socket.IO session kept under this `pid`, and its rooms.
    Session { pid: String },
    /// One room (a join `since: {log}`).
    Room { room: String },
}

/// Streams mode: a Socket.IO recovery the stream reader answers between
/// two reads (`streams.rs`).
pub(crate) struct RestoreRequest {
    pub(crate) nsp: String,
    /// A Socket.IO session (`pid`), or one room a client resumes.
    pub(crate) what: Restore,
    pub(crate) offset: String,
    pub(crate) reply: oneshot::Sender<Option<Restored>>,
    pub(crate) since: Instant,
}

/// A cluster `who` this node asked (`requests.rs`), keyed by request id in
/// [`Shared::pending`] until the answers are in or the timeout passed.
pub(crate) struct Pending {
    /// Answers awaited: the other subscribers of the request channel.
    pub(crate) expected: usize,
    pub(crate) got: usize,
    /// Member names gathered from the answers so far.
    pub(crate) names: Vec<Arc<str>>,
    /// The same members with their client ids and users.
    pub(crate) clients: Vec<ClientInfo>,
    /// The answers' sockets as they came.
    pub(crate) sockets: Vec<serde_json::Value>,
    /// Fired when `got` reaches `expected`.
    pub(crate) done: Option<oneshot::Sender<()>>,
}

/// One node's adapter state, shared by its tasks and its hub handle.
pub(crate) struct Shared {
    /// This node's id in the cluster.
    pub(crate) uid: String,
    pub(crate) config: ClusterConfig,
    /// The channels of each namespace of [`ClusterConfig::namespaces`].
    pub(crate) channels: HashMap<String, Channels>,
    /// Where volna nodes publish their heartbeats (`nodes.rs`).
    pub(crate) heartbeat_channel: String,
    /// Where the hub observers of volna nodes talk
    /// ([`wire::observers_channel`](crate::wire::observers_channel)).
    pub(crate) observers_channel: String,
    pub(crate) counters: Counters,
    /// Both connections answered the last probe and are subscribed.
    pub(crate) up: AtomicBool,
    /// The subscriptions are in place (made once; the subscribed connection
    /// renews them after a reconnect).
    pub(crate) subscribed: AtomicBool,
    /// This node's cluster requests awaiting replies, by request id.
    pub(crate) pending: Mutex<HashMap<String, Pending>>,
    /// The publishing connection (also used for requests).
    pub(crate) publisher: ConnectionManager,
    /// The publish queue.
    pub(crate) tx: mpsc::Sender<Out>,
    /// The other volna nodes as their last heartbeats described them.
    pub(crate) node_infos: Mutex<HashMap<String, NodeInfo>>,
    /// When this node joined.
    pub(crate) started: Instant,
    /// Streams mode: this node's messages waiting to be read back, by
    /// `vseq`.
    pub(crate) deferred: Mutex<HashMap<u64, Deferred>>,
    /// The next `vseq`.
    pub(crate) next_vseq: std::sync::atomic::AtomicU64,
    /// Streams mode: recoveries for the stream reader.
    pub(crate) restores: mpsc::Sender<RestoreRequest>,
    /// Streams mode with recovery on: deliveries carry their place in the
    /// stream.
    pub(crate) offsets: bool,
    /// The id of the last entry the stream reader delivered.
    pub(crate) position: Mutex<Option<Arc<str>>>,
    /// Members of each room on the other volna nodes, by namespace and
    /// room, as their presence events told (kept by `nodes.rs`).
    pub(crate) remote_counts: Mutex<RemoteCounts>,
}

/// Members on the other volna nodes, by namespace, then room.
pub(crate) type RemoteCounts = HashMap<Arc<str>, HashMap<Arc<str>, usize>>;

impl Shared {
    /// Notes that Redis is unreachable (counted and logged once per outage).
    pub(crate) fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            bump(&self.counters.redis_outages);
            tracing::warn!(
                node = %self.uid,
                error = %why,
                "redis unreachable: serving local clients only, cross-node events are dropped until it is back"
            );
        }
    }
}

/// A random alphanumeric id (node ids, request ids).
pub(crate) fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
