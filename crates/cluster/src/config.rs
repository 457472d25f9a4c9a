//! [`ClusterConfig`], the adapter's settings: a leaf type every other module
//! may read without importing anything of the adapter.

use std::time::Duration;

/// How broadcasts travel between the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Redis pub/sub, as `@socket.io/redis-adapter` (the default): nothing
    /// is kept.
    #[default]
    PubSub,
    /// One Redis stream, as `@socket.io/redis-streams-adapter` 0.3: every
    /// node reads the same log, and connection-state recovery works across
    /// nodes (sessions kept in Redis).
    Streams,
}

/// Settings of the Redis adapter.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]` (user and password in the URL if needed).
    pub url: String,
    /// Key prefix shared by every server of the cluster. Defaults to
    /// `socket.io`, as the Node.js adapter's.
    pub prefix: String,
    /// Namespaces that answer cluster requests (`who`, `fetchSockets`).
    /// Broadcasts of every namespace are forwarded regardless.
    pub namespaces: Vec<String>,
    /// How long `who` waits for the other nodes. Defaults to 1 s.
    pub request_timeout: Duration,
    /// How often a node says it is alive. A volna node silent for three
    /// periods is forgotten: its members get `leave` presence events.
    /// Defaults to 2 s.
    pub heartbeat: Duration,
    /// Cross-node events queued for publishing at most; more are dropped.
    pub queue: usize,
    /// This node's name in its heartbeats (the server API's `info`).
    /// Defaults to `volna`.
    pub node_name: String,
    /// Pub/sub or streams.
    pub mode: Mode,
    /// Streams mode: entries the stream keeps, about (`MAXLEN ~`).
    /// Defaults to 10 000, as the Node.js adapter.
    pub stream_max_len: usize,
    /// Streams mode: the key prefix of recovery sessions. Defaults to
    /// `sio:session:`, as the Node.js adapter. (The stream is named
    /// [`prefix`](Self::prefix).)
    pub session_prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "socket.io".into(),
            namespaces: vec!["/".into()],
            request_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(2),
            queue: 65_536,
            node_name: "volna".into(),
            mode: Mode::PubSub,
            stream_max_len: 10_000,
            session_prefix: "sio:session:".into(),
        }
    }
}
