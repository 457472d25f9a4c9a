//! [`ClusterConfig`], the adapter's settings: a leaf type every other module
//! may read without importing anything of the adapter.

use std::time::Duration;

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
        }
    }
}
