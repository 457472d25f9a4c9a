//! [`FileConfig`]: the optional TOML settings file of `volna serve`, key by
//! key (the module documentation of [`super`] shows one); resolved with the
//! flags in `mod.rs`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AdminMode, Profile};

/// The optional settings file. Every key means what the [`ServeArgs`]
/// flag of the same name means (`tcp_addr` is `--tcp-addr`), and a flag
/// or its variable beats the key. Unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// TCP line protocol address.
    pub tcp_addr: Option<String>,
    /// HTTP address.
    pub http_addr: Option<String>,
    /// Log filter.
    pub log: Option<String>,
    /// Longest TCP line, in bytes (at least 16).
    pub max_line: Option<usize>,
    /// Most frames queued per connection.
    pub queue_frames: Option<usize>,
    /// Most bytes queued per connection.
    pub queue_bytes: Option<usize>,
    /// Messages kept per room.
    pub history: Option<usize>,
    /// Bytes all histories may hold together.
    pub history_max_bytes: Option<usize>,
    /// Socket.IO connection-state recovery.
    pub recovery: Option<bool>,
    /// Recovery window in ms.
    pub max_disconnection_ms: Option<u64>,
    /// How long SIGTERM's drain spreads the clients' reconnects, in ms.
    pub drain_ms: Option<u64>,
    /// `default` or `conformance`.
    pub profile: Option<Profile>,
    /// Engine.IO ping interval, in ms.
    pub ping_interval_ms: Option<u64>,
    /// Engine.IO pong timeout, in ms.
    pub ping_timeout_ms: Option<u64>,
    /// Largest Engine.IO polling payload or WebSocket message, in bytes.
    pub max_payload: Option<usize>,
    /// Time a Socket.IO client has to join a namespace, in ms.
    pub connect_timeout_ms: Option<u64>,
    /// HTTP path of Socket.IO.
    pub socketio_path: Option<String>,
    /// Browser origins besides volna's own that may connect.
    pub allowed_origins: Option<Vec<String>>,
    /// The former name of `allowed_origins`.
    pub cors_origins: Option<Vec<String>>,
    /// WebSocket broadcast coalescing, in ms (0: off).
    pub coalesce_ms: Option<u64>,
    /// Thumbnail worker threads.
    pub image_workers: Option<usize>,
    /// Image jobs that may wait for a worker.
    pub image_queue: Option<usize>,
    /// Largest image upload, in bytes.
    pub image_max_bytes: Option<usize>,
    /// Most pixels an image may declare.
    pub image_max_pixels: Option<u64>,
    /// Redis URL of the cluster.
    pub redis: Option<String>,
    /// Redis key prefix of the cluster.
    pub redis_prefix: Option<String>,
    /// `pubsub` or `streams`.
    pub redis_mode: Option<String>,
    /// Streams mode: key prefix of recovery sessions.
    pub redis_session_prefix: Option<String>,
    /// Streams mode: entries the stream keeps, about.
    pub redis_stream_max_len: Option<usize>,
    /// Folder of an application's pages, served under `/app/`.
    pub static_dir: Option<PathBuf>,
    /// Key of the server API.
    pub api_key: Option<String>,
    /// Largest server API request, in bytes.
    pub api_max_body: Option<usize>,
    /// This node's name in the server API's `info`.
    pub node_name: Option<String>,
    /// The Admin UI's login name (turns namespace `/admin` on).
    pub admin_username: Option<String>,
    /// The bcrypt hash of the Admin UI's password.
    pub admin_password_hash: Option<String>,
    /// The Admin UI only watches.
    pub admin_read_only: Option<bool>,
    /// `production` (the default) or `development`.
    pub admin_mode: Option<AdminMode>,
    /// URL of the connect hook.
    pub connect_hook_url: Option<String>,
    /// URL of the rpc hook.
    pub rpc_hook_url: Option<String>,
    /// URL of the publish hook.
    pub publish_hook_url: Option<String>,
    /// URL of the subscribe hook.
    pub subscribe_hook_url: Option<String>,
    /// Time a hook call may take, in ms.
    pub hook_timeout_ms: Option<u64>,
    /// Hook calls in flight per hook at most.
    pub hook_max_in_flight: Option<usize>,
    /// HMAC secret of clients' tokens.
    pub jwt_secret: Option<String>,
    /// PEM public key file of clients' tokens.
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file or URL of clients' tokens.
    pub jwks: Option<String>,
    /// Roots for an https JWKS URL.
    pub jwks_ca: Option<PathBuf>,
    /// Accepted token audiences.
    pub jwt_audience: Option<Vec<String>>,
    /// Accepted token issuers.
    pub jwt_issuer: Option<Vec<String>>,
    /// Whether anonymous clients are admitted.
    pub anonymous: Option<bool>,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: Option<usize>,
    /// Answers one connection may wait for at once.
    pub max_pending_per_connection: Option<u32>,
    /// Time a client has to send an HTTP request head, in ms.
    pub http_header_timeout_ms: Option<u64>,
    /// Largest HTTP request head, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Time a TCP client has to send its first line, in ms (0: forever).
    pub tcp_first_line_timeout_ms: Option<u64>,
    /// Connections open at once per client address (0: no limit).
    pub max_connections_per_ip: Option<u32>,
    /// New connections per second per client address (0: no limit).
    pub connections_per_ip_per_second: Option<f64>,
    /// Whether loopback addresses are limited too.
    pub limit_loopback: Option<bool>,
    /// Reverse proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Requests per connection and second (0: no limit).
    pub messages_per_second: Option<f64>,
    /// Requests a connection may make at once above that rate.
    pub messages_burst: Option<u32>,
    /// Room policies (`[[rooms]]` tables; see [`crate::rooms`]).
    pub rooms: Option<Vec<crate::rooms::RoomTable>>,
}

impl FileConfig {
    /// Reads and parses a TOML settings file.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}
