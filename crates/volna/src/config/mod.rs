//! Configuration: built-in defaults, then an optional TOML file, then
//! environment variables and command-line flags (clap reads both; a flag
//! beats its variable).
//!
//! ```toml
//! # volna.toml — every key is optional
//! tcp_addr = "127.0.0.1:7000"
//! http_addr = "127.0.0.1:3000"
//! log = "info"
//! max_line = 4096
//! queue_frames = 1024
//! queue_bytes = 4194304
//! history = 100
//! history_max_bytes = 268435456  # all rooms' histories together; the least recently published lose theirs first
//! profile = "default"          # or "conformance" (see below)
//! ping_interval_ms = 25000     # Engine.IO heartbeat
//! ping_timeout_ms = 20000
//! max_payload = 1000000        # bytes per polling payload / WebSocket message
//! connect_timeout_ms = 45000   # time to join a Socket.IO namespace
//! socketio_path = "/socket.io/"
//! allowed_origins = []         # browser pages of other origins that may connect, e.g. ["https://example.com"] or ["*"]
//! coalesce_ms = 15             # hold broadcasts to a busy WebSocket client for up to this long (0: off)
//! image_workers = 4            # thumbnail threads (default: the number of CPUs)
//! image_queue = 64             # image jobs that may wait for a worker
//! image_max_bytes = 8388608
//! image_max_pixels = 40000000
//! redis = "redis://127.0.0.1:6379"  # join a cluster (docs/cluster.md); unset: single node
//! redis_prefix = "socket.io"   # key prefix shared with the Node.js redis adapter
//! redis_mode = "pubsub"        # or "streams": one Redis stream, recovery across nodes (docs/recovery.md)
//! redis_session_prefix = "sio:session:"  # streams mode: where recovery sessions are kept
//! redis_stream_max_len = 10000 # streams mode: entries the stream keeps (how far back recovery reaches)
//! static_dir = "public"        # an application's pages, served under /app/ (relative to this file)
//! api_key = "secret"           # turns on the server API, POST /api/<method> (docs/applications.md)
//! api_max_body = 1048576       # largest server API request, in bytes
//! node_name = "eu-1"           # this node's name in the server API's `info`
//! connect_hook_url = "http://127.0.0.1:8000/volna/connect"  # backend hooks (docs/applications.md)
//! rpc_hook_url = "http://127.0.0.1:8000/volna/rpc"
//! publish_hook_url = "http://127.0.0.1:8000/volna/publish"
//! subscribe_hook_url = "http://127.0.0.1:8000/volna/subscribe"  # asked before joins into rooms with join = "hook"
//! hook_timeout_ms = 1000
//! hook_max_in_flight = 256
//! jwt_secret = "…"             # clients' JWTs: an HMAC secret, or jwt_public_key = "key.pem", or jwks = "keys.json"
//! jwks = "https://auth.example.com/.well-known/jwks.json"  # or a file; jwks_ca = "roots.pem" for a private CA
//! jwt_audience = ["volna"]     # checked when set; jwt_issuer likewise
//! anonymous = true             # false: only signed-in users (docs/security.md)
//! max_rooms_per_connection = 128
//! recovery = true              # Socket.IO connection-state recovery (docs/recovery.md); max_disconnection_ms = 120000
//! drain_ms = 2000              # SIGTERM: clients told to reconnect elsewhere over this long, then exit
//! max_pending_per_connection = 64  # answers one connection may wait for at once (hooks, images, cluster queries)
//! messages_per_second = 500    # per connection, every request; messages_burst = 1000
//! http_header_timeout_ms = 10000  # slow-loris: time to send a request head; max_header_bytes = 65536
//! tcp_first_line_timeout_ms = 120000  # a TCP client silent this long after connecting is closed
//! max_connections_per_ip = 256         # connections_per_ip_per_second = 64; loopback exempt unless limit_loopback = true
//! trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]  # their X-Forwarded-For names the client (limits, hooks)
//! tls_cert = "fullchain.pem"   # HTTPS/WSS and TLS on the TCP port (relative to this file; read again when it changes)
//! tls_key = "privkey.pem"
//! admin_username = "admin"    # the Socket.IO Admin UI on namespace /admin (docs/operations.md)
//! admin_password_hash = "$2b$10$…"  # bcrypt of its password
//! admin_read_only = false      # true: watch only
//! admin_mode = "production"    # or "development": also every event clients send
//!
//! [[rooms]]                    # room policies, first match wins (see crate::rooms)
//! match = "doc:*"
//! events = ["stroke", "cursor"]
//! volatile = ["cursor"]
//! ```
//!
//! The `conformance` profile is what the official Engine.IO and Socket.IO
//! test suites expect: HTTP on port 3000, pingInterval 300 ms, pingTimeout
//! 200 ms, maxPayload 1 000 000, connectTimeout 1000 ms, Socket.IO
//! namespaces `/` and `/custom` with the test behaviour, and a bare
//! Engine.IO echo server at `/engine.io/`.

mod access;
mod file;

pub use file::FileConfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use volna_hub::{HubConfig, OutboxLimits};
use volna_media::PoolConfig;
use volna_transports::socketio::SocketIoConfig;
use volna_transports::tcp::TcpConfig;
use volna_transports::ws::WsConfig;

/// A preset of `volna serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The normal server.
    #[default]
    Default,
    /// What the official Engine.IO / Socket.IO test suites expect.
    Conformance,
}

/// The Admin UI's mode, as `@socket.io/admin-ui`'s `mode` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdminMode {
    /// Sockets, rooms and server stats.
    #[default]
    Production,
    /// Also every event Socket.IO clients send.
    Development,
}

/// Everything `volna serve` needs, after merging every source.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the TCP line protocol listens. Defaults to `127.0.0.1:7000`.
    pub tcp_addr: String,
    /// Where HTTP (health, Socket.IO, `/ws`, the chat page) listens.
    /// Defaults to `127.0.0.1:3000`.
    pub http_addr: String,
    /// The TCP line protocol.
    pub tcp: TcpConfig,
    /// Rooms and history.
    pub hub: HubConfig,
    /// Socket.IO (and its Engine.IO layer).
    pub socketio: SocketIoConfig,
    /// The preset in use.
    pub profile: Profile,
    /// The plain WebSocket endpoint `/ws`. Its message limit defaults to
    /// the image limit plus 64 KiB, so an image fits in one request.
    pub ws: WsConfig,
    /// The image worker pool (thumbnails) and its limits.
    pub images: PoolConfig,
    /// Make thumbnails on the event loop instead of the pool: only for the
    /// benchmark that shows why the pool exists. Defaults to false.
    pub images_inline: bool,
    /// How long shutdown waits for connections to say goodbye. Defaults to 2 s.
    pub shutdown_grace: Duration,
    /// SIGTERM drains ([`Server::drain`](crate::server::Server::drain)):
    /// the clients are told to reconnect a slice at a time over this long.
    /// Defaults to 2 s.
    pub drain: Duration,
    /// Several nodes behind one Redis (docs/cluster.md). `None` (the
    /// default): a single in-memory node.
    pub redis: Option<volna_cluster::ClusterConfig>,
    /// The Socket.IO Admin UI on namespace `/admin`; `None` (the default):
    /// no such namespace.
    pub admin: Option<volna_transports::admin::AdminConfig>,
    /// A folder of an application's pages, served under `/app/`. `None`
    /// (the default): nothing is served there.
    pub static_dir: Option<PathBuf>,
    /// The key of the server API (`POST /api/<method>`). `None` (the
    /// default): the API is off.
    pub api_key: Option<String>,
    /// Largest server API request body. Defaults to 1 MiB.
    pub api_max_body: usize,
    /// This node's name in the server API's `info`. `None`: `volna@<http
    /// address>`.
    pub node_name: Option<String>,
    /// The backend hooks. No URL (the default): none.
    pub hooks: volna_transports::hooks::HookConfig,
    /// The keys that check clients' tokens. None (the default): tokens are
    /// not used.
    pub tokens: volna_transports::app::tokens::TokenConfig,
    /// Whether clients without an identity are admitted. Defaults to true.
    pub anonymous: bool,
    /// Bounds on HTTP request heads (slow-loris, size).
    pub http_limits: volna_transports::http::HttpLimits,
    /// Connections per client address.
    pub ip_limits: volna_transports::ipgate::IpLimits,
    /// TLS on both listeners. `None` (the default): plain TCP and HTTP.
    pub tls: Option<volna_transports::tls::TlsFiles>,
    /// Reverse proxies whose forwarding headers name the client. Defaults
    /// to none.
    pub trusted_proxies: volna_transports::proxies::TrustedProxies,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp_addr: "127.0.0.1:7000".into(),
            http_addr: "127.0.0.1:3000".into(),
            tcp: TcpConfig::default(),
            hub: HubConfig::default(),
            socketio: SocketIoConfig::default(),
            profile: Profile::Default,
            ws: WsConfig {
                max_message_size: PoolConfig::default().limits.max_bytes + (64 << 10),
                ..WsConfig::default()
            },
            images: PoolConfig::default(),
            images_inline: false,
            shutdown_grace: Duration::from_secs(2),
            drain: Duration::from_secs(2),
            redis: None,
            admin: None,
            static_dir: None,
            api_key: None,
            api_max_body: volna_transports::api::ApiConfig::DEFAULT_MAX_BODY,
            node_name: None,
            hooks: volna_transports::hooks::HookConfig::default(),
            tokens: Default::default(),
            anonymous: true,
            http_limits: Default::default(),
            ip_limits: Default::default(),
            tls: None,
            trusted_proxies: Default::default(),
        }
    }
}

/// Flags and environment variables of `volna serve` (all optional: unset
/// ones fall back to the file, then to the defaults).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML settings file.
    #[arg(long, env = "VOLNA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the raw TCP line protocol [default: 127.0.0.1:7000].
    #[arg(long, env = "VOLNA_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// Address for HTTP: health, Socket.IO, WebSocket, the chat page [default: 127.0.0.1:3000].
    #[arg(long, env = "VOLNA_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Log filter, e.g. `info`, `debug`, `volna_transports=trace` [default: info].
    #[arg(long, env = "VOLNA_LOG")]
    pub log: Option<String>,
    /// Longest TCP line in bytes [default: 4096].
    #[arg(long, env = "VOLNA_MAX_LINE")]
    pub max_line: Option<usize>,
    /// Most frames queued per connection before it is dropped as a slow consumer [default: 1024].
    #[arg(long, env = "VOLNA_QUEUE_FRAMES")]
    pub queue_frames: Option<usize>,
    /// Most bytes queued per connection before it is dropped as a slow consumer [default: 4194304].
    #[arg(long, env = "VOLNA_QUEUE_BYTES")]
    pub queue_bytes: Option<usize>,
    /// Messages kept per room for history [default: 100].
    #[arg(long, env = "VOLNA_HISTORY")]
    pub history: Option<usize>,
    /// Bytes all rooms' histories may hold together; beyond, the rooms published to least
    /// recently lose theirs and start a new epoch [default: 268435456].
    #[arg(long, env = "VOLNA_HISTORY_MAX_BYTES")]
    pub history_max_bytes: Option<usize>,
    /// Socket.IO connection-state recovery (socket.io-client 4.6+): a client whose connection
    /// broke gets its socket id, rooms and the events it missed back (docs/recovery.md)
    /// [default: false].
    #[arg(long, env = "VOLNA_RECOVERY")]
    pub recovery: Option<bool>,
    /// How long a broken connection's session and what was published are kept for
    /// recovery, in ms [default: 120000].
    #[arg(long, env = "VOLNA_MAX_DISCONNECTION_MS")]
    pub max_disconnection_ms: Option<u64>,
    /// On SIGTERM (a rolling restart) the server stops accepting and tells its clients to reconnect
    /// elsewhere, a slice at a time over this many ms, then exits; 0: all at once (SIGINT always
    /// stops at once) [default: 2000].
    #[arg(long, env = "VOLNA_DRAIN_MS")]
    pub drain_ms: Option<u64>,
    /// Preset: `conformance` serves what the official Socket.IO/Engine.IO test suites expect (port 3000, short heartbeats) [default: default].
    #[arg(long, env = "VOLNA_PROFILE", value_enum)]
    pub profile: Option<Profile>,
    /// Engine.IO ping interval in milliseconds [default: 25000].
    #[arg(long, env = "VOLNA_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Engine.IO pong timeout in milliseconds [default: 20000].
    #[arg(long, env = "VOLNA_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Largest Engine.IO polling payload or WebSocket message in bytes [default: 1000000].
    #[arg(long, env = "VOLNA_MAX_PAYLOAD")]
    pub max_payload: Option<usize>,
    /// Time a Socket.IO client has to join a namespace, in milliseconds [default: 45000].
    #[arg(long, env = "VOLNA_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// HTTP path of Socket.IO [default: /socket.io/].
    #[arg(long, env = "VOLNA_SOCKETIO_PATH")]
    pub socketio_path: Option<String>,
    /// Browser origins besides volna's own that may connect (WebSocket, /ws, polling; comma-separated,
    /// `*` for any); pages of other sites are refused with 403 [default: none, volna's own origin only].
    #[arg(
        long,
        env = "VOLNA_ALLOWED_ORIGINS",
        value_delimiter = ',',
        alias = "cors-origins"
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// The former name of `VOLNA_ALLOWED_ORIGINS`.
    #[arg(skip)]
    pub cors_origins: Option<Vec<String>>,
    /// WebSocket broadcast coalescing (Socket.IO and /ws) in ms: a client written to less than this ago gets its next
    /// broadcasts together when it has passed; replies are never held; doubled for a client that got 8+ frames in its last write; 0 = off, at most 300 [default: 15].
    #[arg(long, env = "VOLNA_COALESCE_MS")]
    pub coalesce_ms: Option<u64>,
    /// Threads that make image thumbnails [default: the number of CPUs].
    #[arg(long, env = "VOLNA_IMAGE_WORKERS")]
    pub image_workers: Option<usize>,
    /// Image jobs that may wait for a worker; more get a `busy` error [default: 64].
    #[arg(long, env = "VOLNA_IMAGE_QUEUE")]
    pub image_queue: Option<usize>,
    /// Largest image upload in bytes [default: 8388608].
    #[arg(long, env = "VOLNA_IMAGE_MAX_BYTES")]
    pub image_max_bytes: Option<usize>,
    /// Most pixels an image may declare (decompression-bomb guard) [default: 40000000].
    #[arg(long, env = "VOLNA_IMAGE_MAX_PIXELS")]
    pub image_max_pixels: Option<u64>,
    /// Benchmark only: make thumbnails ON THE EVENT LOOP instead of the worker pool, to measure
    /// what the pool saves.
    #[arg(long, hide = true)]
    pub images_inline: bool,
    /// Join a cluster of volna nodes (and Node.js Socket.IO servers) through this Redis, e.g.
    /// redis://127.0.0.1:6379 [default: none, a single in-memory node].
    #[arg(long, env = "VOLNA_REDIS")]
    pub redis: Option<String>,
    /// Redis key prefix of the cluster, as the Node.js adapter's `key` option [default: socket.io].
    #[arg(long, env = "VOLNA_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// How broadcasts travel between nodes: `pubsub` (as @socket.io/redis-adapter) or `streams` (one
    /// Redis stream named after the prefix, as @socket.io/redis-streams-adapter 0.3: with --recovery,
    /// clients recover on any node) [default: pubsub].
    #[arg(long, env = "VOLNA_REDIS_MODE")]
    pub redis_mode: Option<String>,
    /// Streams mode: key prefix of the recovery sessions kept in Redis, as the Node.js adapter's
    /// `sessionKeyPrefix` [default: sio:session:].
    #[arg(long, env = "VOLNA_REDIS_SESSION_PREFIX")]
    pub redis_session_prefix: Option<String>,
    /// Streams mode: entries the stream keeps (XADD MAXLEN ~), across all rooms: how far back a
    /// client can recover on another node [default: 10000].
    #[arg(long, env = "VOLNA_REDIS_STREAM_MAX_LEN")]
    pub redis_stream_max_len: Option<usize>,
    /// Folder of an application's own pages, served under /app/ (e.g. examples/whiteboard/public) [default: none].
    #[arg(long, env = "VOLNA_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Key of the server API, POST /api/<method> with `X-API-Key: KEY` (Centrifugo's shapes) [default: none, the API is off].
    #[arg(long, env = "VOLNA_API_KEY")]
    pub api_key: Option<String>,
    /// Largest server API request body in bytes [default: 1048576].
    #[arg(long, env = "VOLNA_API_MAX_BODY")]
    pub api_max_body: Option<usize>,
    /// This node's name in the server API's `info` [default: volna@<http address>].
    #[arg(long, env = "VOLNA_NODE_NAME")]
    pub node_name: Option<String>,
    /// Turns the Socket.IO Admin UI on (namespace /admin, https://admin.socket.io): its login name;
    /// needs --admin-password-hash [default: off].
    #[arg(long, env = "VOLNA_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// The bcrypt hash of the Admin UI's password (e.g. `htpasswd -bnBC 10 "" PASSWORD | tr -d ':'`).
    #[arg(long, env = "VOLNA_ADMIN_PASSWORD_HASH")]
    pub admin_password_hash: Option<String>,
    /// The Admin UI only watches: no emit, join, leave or disconnect [default: false].
    #[arg(long, env = "VOLNA_ADMIN_READ_ONLY")]
    pub admin_read_only: bool,
    /// `development` also shows every event Socket.IO clients send [default: production].
    #[arg(long, env = "VOLNA_ADMIN_MODE")]
    pub admin_mode: Option<AdminMode>,
    /// Backend asked on every new client, Centrifugo's connect proxy shapes (http://…) [default: none].
    #[arg(long, env = "VOLNA_CONNECT_HOOK_URL")]
    pub connect_hook_url: Option<String>,
    /// Backend that answers clients' events (rpc), Centrifugo's rpc proxy shapes [default: none].
    #[arg(long, env = "VOLNA_RPC_HOOK_URL")]
    pub rpc_hook_url: Option<String>,
    /// Backend that allows or changes publications in rooms with `publish = "hook"` [default: none].
    #[arg(long, env = "VOLNA_PUBLISH_HOOK_URL")]
    pub publish_hook_url: Option<String>,
    /// Backend that allows joins into rooms with `join = "hook"`, Centrifugo's subscribe proxy
    /// shapes [default: none].
    #[arg(long, env = "VOLNA_SUBSCRIBE_HOOK_URL")]
    pub subscribe_hook_url: Option<String>,
    /// Time a hook call may take, in milliseconds [default: 1000].
    #[arg(long, env = "VOLNA_HOOK_TIMEOUT_MS")]
    pub hook_timeout_ms: Option<u64>,
    /// Hook calls in flight per hook at most; more fail at once as busy [default: 256].
    #[arg(long, env = "VOLNA_HOOK_MAX_IN_FLIGHT")]
    pub hook_max_in_flight: Option<usize>,
    /// HMAC secret (HS256/384/512) that signs clients' JWTs, at least 16 bytes [default: none].
    #[arg(long, env = "VOLNA_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// PEM public key file (RSA, EC P-256/P-384 or Ed25519) that verifies clients' JWTs [default: none].
    #[arg(long, env = "VOLNA_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file or http(s):// URL whose keys (by `kid`) verify clients' JWTs; read again when
    /// a `kid` is unknown (a URL: at most every 5 s, and every 5 min anyway) [default: none].
    #[arg(long, env = "VOLNA_JWKS")]
    pub jwks: Option<String>,
    /// PEM roots an https --jwks URL's certificate must chain to [default: the system's,
    /// /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, env = "VOLNA_JWKS_CA")]
    pub jwks_ca: Option<PathBuf>,
    /// Accepted `aud` of clients' JWTs (comma-separated) [default: not checked].
    #[arg(long, env = "VOLNA_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Option<Vec<String>>,
    /// Accepted `iss` of clients' JWTs (comma-separated) [default: not checked].
    #[arg(long, env = "VOLNA_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Option<Vec<String>>,
    /// Admit clients without an identity (token or connect hook) [default: true].
    #[arg(long, env = "VOLNA_ANONYMOUS")]
    pub anonymous: Option<bool>,
    /// Rooms one connection may be in at once [default: 128].
    #[arg(long, env = "VOLNA_MAX_ROOMS_PER_CONNECTION")]
    pub max_rooms_per_connection: Option<usize>,
    /// Answers one connection may wait for at once (backend hooks, images, cluster-wide
    /// queries); a request beyond is refused `too-many-pending` [default: 64].
    #[arg(long, env = "VOLNA_MAX_PENDING_PER_CONNECTION")]
    pub max_pending_per_connection: Option<u32>,
    /// Requests per connection and second, every operation counted; over it a request is refused
    /// `rate-limited`, and a client that keeps sending is disconnected; 0: no limit [default: 500].
    #[arg(long, env = "VOLNA_MESSAGES_PER_SECOND")]
    pub messages_per_second: Option<f64>,
    /// Requests a connection may make at once above that rate [default: 1000].
    #[arg(long, env = "VOLNA_MESSAGES_BURST")]
    pub messages_burst: Option<u32>,
    /// Time a client has to send an HTTP request head (slow-loris), in ms [default: 10000].
    #[arg(long, env = "VOLNA_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// Largest HTTP request head in bytes, at least 8192 [default: 65536].
    #[arg(long, env = "VOLNA_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Time a TCP client has to send its first line, in ms; 0 = forever [default: 120000].
    #[arg(long, env = "VOLNA_TCP_FIRST_LINE_TIMEOUT_MS")]
    pub tcp_first_line_timeout_ms: Option<u64>,
    /// Connections (TCP and HTTP) open at once per client address; 0 = no limit [default: 256].
    #[arg(long, env = "VOLNA_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// New connections per second per client address (bursts of twice that); 0 = no limit [default: 64].
    #[arg(long, env = "VOLNA_CONNECTIONS_PER_IP_PER_SECOND")]
    pub connections_per_ip_per_second: Option<f64>,
    /// Apply the per-address limits to loopback addresses too (a proxy on this machine makes every
    /// client 127.0.0.1) [default: false].
    #[arg(long, env = "VOLNA_LIMIT_LOOPBACK")]
    pub limit_loopback: Option<bool>,
    /// Reverse proxies (addresses or networks like 10.0.0.0/8, comma-separated) whose
    /// X-Forwarded-For names the client: the per-address limits count it, hooks are told it
    /// [default: none].
    #[arg(long, env = "VOLNA_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM certificate chain (leaf first): HTTPS and WSS on the HTTP address, TLS on the TCP
    /// address; read again when the file changes [default: none, plain TCP and HTTP].
    #[arg(long, env = "VOLNA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1) [default: none].
    #[arg(long, env = "VOLNA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// Merges defaults, the file (if any), then these flags. Returns the
    /// server settings and the log filter.
    pub fn resolve(&self) -> anyhow::Result<(ServerConfig, String)> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut cfg = ServerConfig::default();
        self.resolve_access(&file, &mut cfg)?;
        if let Some(v) = self.tcp_addr.clone().or(file.tcp_addr) {
            cfg.tcp_addr = v;
        }
        if let Some(v) = self.http_addr.clone().or(file.http_addr) {
            cfg.http_addr = v;
        }
        if let Some(v) = self.max_line.or(file.max_line) {
            anyhow::ensure!(v >= 16, "max_line must be at least 16 bytes");
            cfg.tcp.max_line = v;
        }
        let defaults = OutboxLimits::default();
        cfg.tcp.outbox = OutboxLimits {
            max_frames: self
                .queue_frames
                .or(file.queue_frames)
                .unwrap_or(defaults.max_frames)
                .max(1),
            max_bytes: self
                .queue_bytes
                .or(file.queue_bytes)
                .unwrap_or(defaults.max_bytes)
                .max(1024),
        };
        let hooks = &mut cfg.hooks;
        hooks.connect_url = self
            .connect_hook_url
            .clone()
            .or(file.connect_hook_url.clone());
        hooks.rpc_url = self.rpc_hook_url.clone().or(file.rpc_hook_url.clone());
        hooks.publish_url = self
            .publish_hook_url
            .clone()
            .or(file.publish_hook_url.clone());
        hooks.subscribe_url = self
            .subscribe_hook_url
            .clone()
            .or(file.subscribe_hook_url.clone());
        if let Some(ms) = self.hook_timeout_ms.or(file.hook_timeout_ms) {
            anyhow::ensure!(ms >= 1, "hook_timeout_ms must be at least 1");
            hooks.timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.hook_max_in_flight.or(file.hook_max_in_flight) {
            anyhow::ensure!(n >= 1, "hook_max_in_flight must be at least 1");
            hooks.max_in_flight = n;
        }
        volna_transports::hooks::Hooks::new(hooks).map_err(|e| anyhow::anyhow!(e))?;
        if let Some(tables) = &file.rooms {
            let on = crate::rooms::HooksOn {
                publish: hooks.publish_url.is_some(),
                rpc: hooks.rpc_url.is_some(),
                subscribe: hooks.subscribe_url.is_some(),
            };
            cfg.hub.policies = crate::rooms::policies(tables, on)?;
        }
        if self.recovery.or(file.recovery).unwrap_or(false) {
            let ms = self
                .max_disconnection_ms
                .or(file.max_disconnection_ms)
                .unwrap_or(120_000);
            anyhow::ensure!(ms >= 1, "max_disconnection_ms must be at least 1");
            cfg.hub.recovery = Some(Duration::from_millis(ms));
        }
        if let Some(ms) = self.drain_ms.or(file.drain_ms) {
            cfg.drain = Duration::from_millis(ms);
        }
        if let Some(v) = self.history.or(file.history) {
            cfg.hub.history_len = v;
        }
        if let Some(v) = self.history_max_bytes.or(file.history_max_bytes) {
            cfg.hub.history_max_bytes = v;
        }
        let sio = &mut cfg.socketio;
        sio.engine.outbox = cfg.tcp.outbox;
        if let Some(v) = self.ping_interval_ms.or(file.ping_interval_ms) {
            anyhow::ensure!(v >= 1, "ping_interval_ms must be at least 1");
            sio.engine.ping_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.ping_timeout_ms.or(file.ping_timeout_ms) {
            anyhow::ensure!(v >= 1, "ping_timeout_ms must be at least 1");
            sio.engine.ping_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.max_payload.or(file.max_payload) {
            anyhow::ensure!(v >= 64, "max_payload must be at least 64 bytes");
            sio.engine.max_payload = v;
        }
        if let Some(v) = self.connect_timeout_ms.or(file.connect_timeout_ms) {
            sio.connect_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.socketio_path.clone().or(file.socketio_path) {
            anyhow::ensure!(
                v.starts_with('/') && v.len() > 1,
                "socketio_path must start with / and not be the root"
            );
            sio.engine.path = if v.ends_with('/') { v } else { format!("{v}/") };
        }
        let old_variable = std::env::var("VOLNA_CORS_ORIGINS")
            .ok()
            .map(|v| v.split(',').map(str::to_owned).collect());
        let mut origins_listed = false;
        if let Some(v) = self
            .allowed_origins
            .clone()
            .or(self.cors_origins.clone())
            .or(file.allowed_origins)
            .or(file.cors_origins)
            .or(old_variable)
        {
            let list: Vec<String> = v.into_iter().filter(|o| !o.is_empty()).collect();
            origins_listed = true;
            sio.engine.allowed_origins = list.clone();
            cfg.ws.allowed_origins = list;
        }
        if let Some(v) = self.coalesce_ms.or(file.coalesce_ms) {
            let max = u64::from(volna_transports::websocket::MAX_HOLD_MS);
            anyhow::ensure!(v <= max, "coalesce_ms must be at most {max}");
            sio.engine.coalesce = Duration::from_millis(v);
            cfg.ws.coalesce = Duration::from_millis(v);
        }
        if let Some(v) = self.image_workers.or(file.image_workers) {
            anyhow::ensure!(v >= 1, "image_workers must be at least 1");
            cfg.images.workers = v;
        }
        if let Some(v) = self.image_queue.or(file.image_queue) {
            anyhow::ensure!(v >= 1, "image_queue must be at least 1");
            cfg.images.queue = v;
        }
        if let Some(v) = self.image_max_bytes.or(file.image_max_bytes) {
            cfg.images.limits.max_bytes = v;
        }
        if let Some(v) = self.image_max_pixels.or(file.image_max_pixels) {
            cfg.images.limits.max_pixels = v;
        }
        cfg.images_inline = self.images_inline;
        // One request on /ws may carry one whole image.
        cfg.ws.max_message_size = cfg
            .ws
            .max_message_size
            .max(cfg.images.limits.max_bytes + (64 << 10));
        cfg.ws.outbox = cfg.tcp.outbox;
        cfg.profile = self.profile.or(file.profile).unwrap_or_default();
        if cfg.profile == Profile::Conformance {
            apply_conformance(&mut cfg);
        }
        if let Some(url) = self.redis.clone().or(file.redis).filter(|u| !u.is_empty()) {
            let mut cluster = volna_cluster::ClusterConfig {
                url,
                ..Default::default()
            };
            if let Some(prefix) = self.redis_prefix.clone().or(file.redis_prefix) {
                anyhow::ensure!(!prefix.is_empty(), "redis_prefix must not be empty");
                cluster.prefix = prefix;
            }
            match self.redis_mode.clone().or(file.redis_mode).as_deref() {
                None | Some("pubsub") => {}
                Some("streams") => cluster.mode = volna_cluster::Mode::Streams,
                Some(other) => anyhow::bail!("redis_mode must be pubsub or streams, not {other:?}"),
            }
            if let Some(p) = self
                .redis_session_prefix
                .clone()
                .or(file.redis_session_prefix)
            {
                cluster.session_prefix = p;
            }
            if let Some(n) = self.redis_stream_max_len.or(file.redis_stream_max_len) {
                anyhow::ensure!(n >= 1, "redis_stream_max_len must be at least 1");
                cluster.stream_max_len = n;
            }
            if cfg.socketio.conformance {
                cluster.namespaces.push("/custom".into());
            }
            cfg.redis = Some(cluster);
        }
        // A folder named in the file is relative to the file; one given as a
        // flag, to where volna runs.
        let file_dir = self.config.as_deref().and_then(Path::parent);
        let from_file = file.static_dir.map(|d| match file_dir {
            Some(base) if d.is_relative() => base.join(d),
            _ => d,
        });
        if let Some(dir) = self.static_dir.clone().or(from_file) {
            anyhow::ensure!(dir.is_dir(), "static_dir {} is not a folder", dir.display());
            cfg.static_dir = Some(dir);
        }
        if let Some(key) = self.api_key.clone().or(file.api_key) {
            anyhow::ensure!(
                key.len() >= 8,
                "api_key must be at least 8 characters (an empty key does not turn the API on)"
            );
            cfg.api_key = Some(key);
        }
        if let Some(v) = self.api_max_body.or(file.api_max_body) {
            anyhow::ensure!(v >= 1024, "api_max_body must be at least 1024 bytes");
            cfg.api_max_body = v;
        }
        cfg.node_name = self.node_name.clone().or(file.node_name);
        let admin_username = self.admin_username.clone().or(file.admin_username);
        if let Some(username) = admin_username.filter(|u| !u.is_empty()) {
            let hash = self
                .admin_password_hash
                .clone()
                .or(file.admin_password_hash)
                .unwrap_or_default();
            anyhow::ensure!(
                volna_transports::admin::auth::valid_hash(&hash),
                "admin_password_hash must be a bcrypt hash ($2b$10$…) when admin_username is set"
            );
            cfg.admin = Some(volna_transports::admin::AdminConfig {
                username,
                password_hash: hash,
                read_only: self.admin_read_only || file.admin_read_only.unwrap_or(false),
                development: self.admin_mode.or(file.admin_mode).unwrap_or_default()
                    == AdminMode::Development,
                server_id: cfg.node_name.clone(),
            });
            // The hosted UI may call, with credentials, unless the operator
            // chose the origins (then they list it themselves).
            if !origins_listed {
                cfg.socketio.engine.allowed_origins =
                    vec![volna_transports::admin::UI_ORIGIN.to_string()];
            }
        }
        let log = self
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        Ok((cfg, log))
    }
}

/// Forces what the official test suites expect.
fn apply_conformance(cfg: &mut ServerConfig) {
    let sio = &mut cfg.socketio;
    sio.conformance = true;
    sio.engine.ping_interval = Duration::from_millis(300);
    sio.engine.ping_timeout = Duration::from_millis(200);
    sio.engine.max_payload = 1_000_000;
    sio.engine.path = "/socket.io/".into();
    sio.connect_timeout = Duration::from_millis(1000);
    let host = match cfg.http_addr.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    cfg.http_addr = format!("{host}:3000");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("volna-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("volna.toml");
        std::fs::write(
            &path,
            "tcp_addr = \"127.0.0.1:1\"\nhistory = 5\nmax_line = 100\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            tcp_addr: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let (cfg, log) = args.resolve().unwrap();
        assert_eq!(cfg.tcp_addr, "127.0.0.1:2");
        assert_eq!(cfg.http_addr, "127.0.0.1:3000");
        assert_eq!(cfg.hub.history_len, 5);
        assert_eq!(cfg.tcp.max_line, 100);
        assert_eq!(log, "info");
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn admin_ui_needs_a_bcrypt_hash_and_allows_its_origin() {
        let hash = "$2a$04$BwcHBwcHBwcHBwcHBwcHB.9v7F4ezUqBCLZnhNDDxw8Pck1eJ21YO";
        let args = ServeArgs {
            admin_username: Some("admin".into()),
            admin_password_hash: Some(hash.into()),
            admin_mode: Some(AdminMode::Development),
            ..Default::default()
        };
        let (cfg, _) = args.resolve().unwrap();
        let admin = cfg.admin.expect("admin UI on");
        assert_eq!(admin.username, "admin");
        assert!(admin.development && !admin.read_only);
        assert_eq!(
            cfg.socketio.engine.allowed_origins,
            vec![volna_transports::admin::UI_ORIGIN]
        );
        assert!(cfg.ws.allowed_origins.is_empty());
        // Origins chosen by the operator are kept as they are.
        let listed = ServeArgs {
            allowed_origins: Some(vec!["https://a.example".into()]),
            ..args.clone()
        };
        let (cfg, _) = listed.resolve().unwrap();
        assert_eq!(
            cfg.socketio.engine.allowed_origins,
            vec!["https://a.example"]
        );
        let bad = ServeArgs {
            admin_password_hash: Some("plain".into()),
            ..args
        };
        assert!(bad.resolve().is_err());
        let (cfg, _) = ServeArgs::default().resolve().unwrap();
        assert!(cfg.admin.is_none());
    }

    #[test]
    fn conformance_profile_forces_the_suite_settings() {
        let args = ServeArgs {
            profile: Some(Profile::Conformance),
            http_addr: Some("0.0.0.0:8080".into()),
            ping_interval_ms: Some(5),
            ..Default::default()
        };
        let (cfg, _) = args.resolve().unwrap();
        assert_eq!(cfg.http_addr, "0.0.0.0:3000");
        assert!(cfg.socketio.conformance);
        assert_eq!(
            cfg.socketio.engine.ping_interval,
            Duration::from_millis(300)
        );
        assert_eq!(cfg.socketio.engine.ping_timeout, Duration::from_millis(200));
        assert_eq!(cfg.socketio.connect_timeout, Duration::from_millis(1000));
        let args = ServeArgs {
            socketio_path: Some("/rt".into()),
            allowed_origins: Some(vec!["https://a.example".into()]),
            ..Default::default()
        };
        let (cfg, _) = args.resolve().unwrap();
        assert_eq!(cfg.socketio.engine.path, "/rt/");
        assert_eq!(
            cfg.socketio.engine.allowed_origins,
            vec!["https://a.example"]
        );
        assert_eq!(cfg.ws.allowed_origins, vec!["https://a.example"]);
        assert!(!cfg.socketio.conformance);
    }
}
