//! Wires the hub and the transports into one running server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{CloseReason, Hub};
use volna_transports::images::ImageService;
use volna_transports::{engineio, http, socketio, tcp};

use crate::config::{Profile, ServerConfig};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listener could not be bound.
    Bind {
        /// Which listener, as the message names it: `TCP clients` or `HTTP`.
        what: &'static str,
        /// The address as configured.
        addr: String,
        /// Why resolving or binding the address failed.
        source: io::Error,
    },
    /// The image worker threads could not be started.
    Workers {
        /// The error from spawning a thread.
        source: io::Error,
    },
    /// The Redis cluster settings are unusable (e.g. a malformed URL).
    Cluster {
        /// What is wrong with them.
        source: volna_cluster::ClusterError,
    },
    /// A hook URL or a token key is unusable.
    Hooks {
        /// What is wrong with it.
        why: String,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind { what, addr, source } => {
                write!(f, "cannot listen for {what} on {addr}: {source}")?;
                if source.kind() == io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another process holds that port: stop it, or pick another address with --{}-addr)",
                        if *what == "TCP clients" { "tcp" } else { "http" }
                    )?;
                }
                Ok(())
            }
            StartError::Workers { source } => {
                write!(f, "cannot start the image worker threads: {source}")
            }
            StartError::Cluster { source } => write!(f, "cannot join the cluster: {source}"),
            StartError::Hooks { why } => write!(f, "cannot start: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Workers { source } => Some(source),
            StartError::Cluster { source } => Some(source),
            StartError::Hooks { .. } => None,
        }
    }
}

/// A server that is accepting connections.
pub struct Server {
    /// Where the TCP line protocol listens.
    pub tcp_addr: SocketAddr,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
    accepting: CancellationToken,
    tracker: TaskTracker,
    tasks: Vec<JoinHandle<()>>,
    config: ServerConfig,
    images: Arc<volna_media::ImagePool>,
    lag: volna_media::LagMonitor,
    cluster: Option<volna_cluster::Cluster>,
}

/// Pending connections the kernel queues for each listener. The default of
/// `TcpListener::bind` (128) overflows when a few hundred clients connect at
/// once: the dropped SYNs are retried a second later, so every overflow
/// costs a client a whole second.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind {
        what,
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await.map_err(err)? {
        match listen(sa) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })))
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds every listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
        let tcp_listener = bind("TCP clients", &config.tcp_addr).await?;
        let http_listener = bind("HTTP", &config.http_addr).await?;
        let tcp_addr = tcp_listener
            .local_addr()
            .expect("bound socket has an address");
        let http_addr = http_listener
            .local_addr()
            .expect("bound socket has an address");
        let hub = Hub::new(config.hub.clone());
        // With --redis the hub forwards its broadcasts to the other nodes
        // (docs/cluster.md); started before any client can connect.
        let node_name = config
            .node_name
            .clone()
            .unwrap_or_else(|| format!("volna@{http_addr}"));
        let cluster = match &config.redis {
            Some(c) => Some(
                volna_cluster::Cluster::start(
                    &hub,
                    volna_cluster::ClusterConfig {
                        node_name: node_name.clone(),
                        ..c.clone()
                    },
                )
                .await
                .map_err(|source| StartError::Cluster { source })?,
            ),
            None => None,
        };
        let shutdown = CancellationToken::new();
        // Cancelled to stop accepting (a drain), and with `shutdown`.
        let accepting = shutdown.child_token();
        let tracker = TaskTracker::new();
        // CPU-bound image work runs on its own threads, never on the loop.
        let images = Arc::new(
            volna_media::ImagePool::new(config.images.clone())
                .map_err(|source| StartError::Workers { source })?,
        );
        let app = volna_transports::app::Context {
            hub: hub.clone(),
            images: Some(if config.images_inline {
                tracing::warn!(
                    "--images-inline: thumbnails are made ON THE EVENT LOOP (benchmark mode)"
                );
                ImageService::inline_on_event_loop(images.clone())
            } else {
                ImageService::new(images.clone())
            }),
            hooks: volna_transports::hooks::Hooks::new(&config.hooks)
                .map_err(|why| StartError::Hooks { why })?,
            tokens: volna_transports::app::tokens::Tokens::new(&config.tokens)
                .map_err(|why| StartError::Hooks { why })?,
            anonymous: config.anonymous,
            ip_gate: volna_transports::ipgate::IpGate::new(config.ip_limits)
                .trusting(config.trusted_proxies.clone()),
            meters: Default::default(),
        };
        // A JWKS URL is fetched now and then.
        if let Some(tokens) = &app.tokens {
            tokens.start(shutdown.clone());
        }
        // TLS on both listeners, the certificate read again when it changes.
        let tls = match &config.tls {
            Some(files) => {
                let tls = volna_transports::tls::Tls::load(
                    files.clone(),
                    config.http_limits.header_timeout,
                )
                .map_err(|e| StartError::Hooks { why: e.to_string() })?;
                tls.watch(shutdown.clone());
                Some(tls)
            }
            None => None,
        };
        let tcp_task = tokio::spawn(tcp::serve(
            tcp_listener,
            app.clone(),
            Arc::new(tcp::TcpConfig {
                tls: tls.clone(),
                ..config.tcp.clone()
            }),
            shutdown.clone(),
            accepting.clone(),
            tracker.clone(),
        ));
        let lag = volna_media::LagMonitor::start(volna_media::LagMonitor::DEFAULT_INTERVAL);
        let state = http::HttpState {
            app: app.clone(),
            shutdown: shutdown.clone(),
            lag: Some(lag.clone()),
        };
        let router = http::router(state.clone())
            .merge(volna_transports::metrics::router(state.clone()))
            .merge(volna_transports::ws::router(
                volna_transports::ws::WsState::new(
                    state.clone(),
                    config.ws.clone(),
                    tracker.clone(),
                ),
            ));
        // The Admin UI, when configured, adds namespace `/admin` to what the
        // namespaces do.
        let mut application = socketio::default_application(&app, config.socketio.conformance);
        if let Some(admin) = config.admin.clone() {
            let admin = volna_transports::admin::Admin::start(
                admin,
                hub.clone(),
                &config.socketio.engine.path,
                shutdown.clone(),
                &tracker,
            );
            application = Arc::new(volna_transports::admin::AdminApp {
                inner: application,
                admin,
            });
        }
        let router = router.merge(
            socketio::engine_with(
                app.clone(),
                application,
                shutdown.clone(),
                tracker.clone(),
                config.socketio.clone(),
            )
            .router(),
        );
        // The browser chat page at `/`.
        let router = router.merge(volna_transports::web::router());
        // The server API at `/api/<method>`, when it has a key.
        let router = match &config.api_key {
            Some(key) => router.merge(volna_transports::api::router(
                hub.clone(),
                app.meters.clone(),
                volna_transports::api::ApiConfig {
                    key: key.clone(),
                    max_body: config.api_max_body,
                    node_uid: cluster
                        .as_ref()
                        .map_or_else(volna_transports::engineio::random_id, |c| {
                            c.node_id().to_string()
                        }),
                    node_name,
                },
            )),
            None => router,
        };
        // An application's own pages at `/app/`.
        let router = match &config.static_dir {
            Some(dir) => router.merge(volna_transports::pages::router(dir.clone())),
            None => router,
        };
        let router = if config.profile == Profile::Conformance {
            // The official Engine.IO suite talks to a bare echo server.
            let echo = engineio::EngineConfig {
                path: "/engine.io/".into(),
                ..config.socketio.engine.clone()
            };
            router.merge(
                engineio::Engine::new(
                    echo,
                    engineio::EchoHandler,
                    hub.clone(),
                    shutdown.clone(),
                    tracker.clone(),
                )
                .router(),
            )
        } else {
            router
        };
        // The HTTP server stops accepting, and lets its kept-alive
        // connections go after their current request, when a drain starts;
        // upgraded WebSockets and Engine.IO sessions are closed by the drain.
        let http_task = tokio::spawn(http::serve_with(
            http_listener,
            router,
            accepting.clone(),
            config.http_limits,
            app.ip_gate.clone(),
            tls,
        ));
        // Rooms that outlived their members (history_ttl) go once their
        // history has.
        let sweeper = {
            let (hub, shutdown) = (hub.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = every.tick() => { hub.sweep_rooms(); }
                    }
                }
            })
        };
        tracing::info!(%tcp_addr, %http_addr, "volna {} listening", env!("CARGO_PKG_VERSION"));
        Ok(Server {
            tcp_addr,
            http_addr,
            hub,
            shutdown,
            accepting,
            tracker,
            tasks: vec![tcp_task, http_task, sweeper],
            config,
            images,
            lag,
            cluster,
        })
    }

    /// The hub, for in-process inspection.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The cluster adapter, when started with `redis`.
    pub fn cluster(&self) -> Option<&volna_cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// How long SIGTERM's drain spreads the reconnects.
    pub fn drain_window(&self) -> Duration {
        self.config.drain
    }

    /// A rolling restart's half: stops accepting, then tells the clients to
    /// reconnect (elsewhere: a load balancer sends them to the other nodes)
    /// a slice at a time, spread evenly over `window` so the rest of the
    /// cluster is not hit by every reconnect at once, then shuts down.
    /// Socket.IO clients see their transport close (they reconnect, and
    /// recover their session where recovery is on), `/ws` clients a close
    /// 1012 (service restart), TCP clients `bye server-restart: …`.
    pub async fn drain(self, window: Duration) {
        self.accepting.cancel();
        let outboxes = self.hub.outboxes();
        tracing::info!(
            connections = outboxes.len(),
            ?window,
            "draining: clients are told to reconnect elsewhere"
        );
        if !outboxes.is_empty() && !window.is_zero() {
            // A slice every 20 ms (or fewer, larger slices for a short window).
            let ticks = (window.as_millis() / 20).clamp(1, outboxes.len() as u128) as usize;
            let per_tick = outboxes.len().div_ceil(ticks);
            let mut every = tokio::time::interval(window / ticks as u32);
            for slice in outboxes.chunks(per_tick) {
                every.tick().await;
                for ob in slice {
                    ob.close(CloseReason::ServerRestart);
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops accepting, tells every client the server is going away, and
    /// waits (at most the configured grace period) for connections to close.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.hub.close_all(CloseReason::ServerShutdown);
        self.shutdown.cancel();
        self.tracker.close();
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.tracker.len(),
                "connections still open after the grace period; closing them"
            );
        }
        if let Some(cluster) = self.cluster {
            // After the connections closed: their `leave`s are flushed.
            cluster.stop().await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(grace, task).await;
        }
        let stats: Vec<String> = self
            .hub
            .stats()
            .snapshot()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.images.shutdown();
        self.lag.stop();
        let pool = self.images.stats();
        tracing::info!(
            "stopped: {}; event-loop lag {}; image pool: {} done, {} failed, {} rejected busy",
            stats.join(" "),
            self.lag.snapshot(),
            pool.done,
            pool.failed,
            pool.rejected_busy
        );
    }
}
