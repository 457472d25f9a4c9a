//! # volna-cluster
//!
//! Several volna nodes behind one Redis, as one cluster: a [`Cluster`] is a
//! hub [`Adapter`] that publishes every room broadcast its node originates
//! to Redis pub/sub and delivers what the other nodes publish to its local
//! members. The wire format is that of the Node.js `@socket.io/redis-adapter`
//! (classic, pub/sub) and `@socket.io/redis-emitter`, so Node.js Socket.IO
//! servers and emitters sharing the key prefix are part of the same cluster
//! (see [`wire`] and `docs/cluster.md`).
//!
//! Two Redis connections per node: one for publishing (and requests), one
//! subscribed (RESP3 push, resubscribed automatically after a reconnect).
//! When Redis is unreachable the node keeps serving its local clients:
//! cross-node events are dropped (and counted) until a health probe finds
//! Redis again, then cross-node delivery resumes by itself.
//!
//! ## Modules
//!
//! - `lib.rs`: [`Cluster`] (start, state, stop), [`ClusterError`], and the
//!   hub's handle on the adapter;
//! - [`wire`] (public): the adapter's wire format, sans-IO;
//! - `config.rs`: [`ClusterConfig`];
//! - `counters.rs`: [`Counters`];
//! - `shared.rs`: the state the tasks share, the publish queue's item and
//!   the pending-request record;
//! - `publish.rs`: the publish loop (queue → Redis, pipelined batches);
//! - `receive.rs`: the receive loop (Redis pushes → delivery, nodes,
//!   requests);
//! - `local.rs`: accepting another server's broadcast (either reader),
//!   delivering to local members, listing them for requests;
//! - `nodes.rs`: heartbeats and membership of the other volna nodes;
//! - `requests.rs`: cluster-wide `who`, and answering other servers'
//!   requests;
//! - `health.rs`: the Redis probe, the health loop and the `/health` figures.
//!
//! Imports go one way: `config`, `counters` and `wire` are leaves,
//! `shared` uses only them, and every other module uses `shared` and the
//! leaves (`receive` also `nodes`, `requests` and `local`; `requests` also
//! `local`; `local` and `health` also `nodes`).

pub mod stream_wire;
pub mod wire;

mod config;
mod counters;
mod health;
mod local;
mod nodes;
mod publish;
mod receive;
mod requests;
mod shared;
mod streams;

pub use config::{ClusterConfig, Mode};
pub use counters::Counters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use volna_hub::{
    Adapter, BoxFuture, ConnId, Hub, Message, NodeInfo, Outgoing, RemoteMembers, Restored, Session,
};

use counters::bump;
use shared::{random_id, Out, Shared};
use wire::Channels;

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configured Redis URL could not be parsed.
    #[error("invalid Redis URL {url}: {source}")]
    Url {
        /// The URL as configured.
        url: String,
        /// What the Redis client found wrong with it.
        source: redis::RedisError,
    },
    /// [`Hub::set_adapter`] refused: the hub already has an adapter.
    #[error("the hub already has an adapter")]
    AdapterSet,
}

/// The Redis adapter of one hub. Dropping it does not stop it: call
/// [`Cluster::stop`].
pub struct Cluster {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// What the hub holds of the adapter (see [`Hub::set_adapter`]).
struct AdapterHandle(Arc<Shared>);

impl Adapter for AdapterHandle {
    fn forward(&self, event: Outgoing) {
        if !self.0.up.load(Ordering::Relaxed) || self.0.tx.try_send(Out::Event(event)).is_err() {
            bump(&self.0.counters.publish_dropped);
        }
    }

    fn who(&self, nsp: &str, room: &str) -> BoxFuture<RemoteMembers> {
        let shared = self.0.clone();
        let (nsp, room) = (nsp.to_string(), room.to_string());
        Box::pin(async move { requests::remote_who(&shared, &nsp, &room).await })
    }

    fn fetch_sockets(&self, nsp: &str) -> BoxFuture<RemoteMembers> {
        let shared = self.0.clone();
        let nsp = nsp.to_string();
        Box::pin(async move { requests::remote_fetch(&shared, &nsp, Vec::new()).await })
    }

    fn to_other_observers(&self, payload: Vec<u8>) {
        let out = Out::Raw {
            channel: self.0.observers_channel.clone(),
            payload: wire::encode_observers(&self.0.uid, &payload),
        };
        if !self.0.up.load(Ordering::Relaxed) || self.0.tx.try_send(out).is_err() {
            bump(&self.0.counters.publish_dropped);
        }
    }

    fn disconnect(&self, nsp: &str, targets: Vec<String>, code: u16, reason: String) {
        requests::remote_disconnect(&self.0, nsp, targets, code, reason);
    }

    fn remote_members(&self, nsp: &str, room: &str) -> usize {
        let counts = self.0.remote_counts.lock().unwrap();
        counts
            .get(nsp)
            .and_then(|rooms| rooms.get(room))
            .copied()
            .unwrap_or(0)
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .0
            .node_infos
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
        nodes
    }

    fn health(&self) -> Json {
        health::report(&self.0)
    }

    fn defer_logged(&self, msg: &Arc<Message>, except: Option<ConnId>) -> bool {
        self.0.config.mode == Mode::Streams && streams::defer(&self.0, msg, except)
    }

    fn keep_session(&self, pid: &str, session: &Session) {
        if self.0.config.mode != Mode::Streams || !self.0.up.load(Ordering::Relaxed) {
            return;
        }
        if let Some(value) = stream_wire::encode_session(pid, session) {
            let key = format!("{}{pid}", self.0.config.session_prefix);
            if self.0.tx.try_send(Out::Session { key, value }).is_err() {
                bump(&self.0.counters.publish_dropped);
            }
        }
    }

    fn owns_offset(&self, offset: &str) -> bool {
        self.0.config.mode == Mode::Streams && stream_wire::is_entry_id(offset)
    }

    fn restore_session(&self, nsp: &str, pid: &str, offset: &str) -> BoxFuture<Option<Restored>> {
        let what = shared::Restore::Session {
            pid: pid.to_string(),
        };
        restore(self.0.clone(), nsp, what, offset)
    }

    fn log_position(&self) -> Option<Arc<str>> {
        if self.0.config.mode != Mode::Streams || !self.0.offsets {
            return None;
        }
        self.0.position.lock().unwrap().clone()
    }

    fn room_since(&self, nsp: &str, room: &str, log: &str) -> BoxFuture<Option<Restored>> {
        let what = shared::Restore::Room {
            room: room.to_string(),
        };
        restore(self.0.clone(), nsp, what, log)
    }
}

/// Asks the stream reader for a session or a room since `offset`.
fn restore(
    shared: Arc<Shared>,
    nsp: &str,
    what: shared::Restore,
    offset: &str,
) -> BoxFuture<Option<Restored>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = shared::RestoreRequest {
        nsp: nsp.to_string(),
        what,
        offset: offset.to_string(),
        reply,
        since: Instant::now(),
    };
    let sent = shared.config.mode == Mode::Streams
        && shared.up.load(Ordering::Acquire)
        && shared.restores.try_send(req).is_ok();
    Box::pin(async move {
        if !sent {
            bump(&shared.counters.sessions_not_restored);
            return None;
        }
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    })
}

impl Cluster {
    /// Connects `hub` to the cluster. Returns at once even when Redis is
    /// unreachable (after trying for up to a second): the node then serves
    /// its local clients and joins the cluster when Redis answers.
    pub async fn start(hub: &Hub, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let url_err = |source| ClusterError::Url {
            url: config.url.clone(),
            source,
        };
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(url_err)?;
        let pub_client = redis::Client::open(info.clone()).map_err(url_err)?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let sub_client = redis::Client::open(info.set_redis_settings(resp3)).map_err(url_err)?;
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(3)
                .set_connection_timeout(Some(Duration::from_secs(1)))
                // Generous: a node starved of CPU reads its answers late;
                // a Redis that stopped answering is the health probe's to
                // find (health.rs).
                .set_response_timeout(Some(Duration::from_secs(10)))
        };
        let publisher = ConnectionManager::new_lazy_with_config(pub_client, manager_config())
            .map_err(url_err)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let subscriber = ConnectionManager::new_lazy_with_config(
            sub_client,
            manager_config()
                .set_push_sender(push_tx)
                .set_automatic_resubscription(),
        )
        .map_err(url_err)?;
        let uid = random_id(12);
        let channels = config
            .namespaces
            .iter()
            .map(|nsp| (nsp.clone(), Channels::new(&config.prefix, nsp)))
            .collect();
        let reader = ConnectionManager::new_lazy_with_config(
            redis::Client::open(config.url.as_str()).map_err(url_err)?,
            manager_config(),
        )
        .map_err(url_err)?;
        let (tx, rx) = mpsc::channel(config.queue.max(16));
        let (restores, restores_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            heartbeat_channel: nodes::heartbeat_channel(&config.prefix),
            observers_channel: wire::observers_channel(&config.prefix),
            uid,
            config,
            channels,
            counters: Counters::default(),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            publisher: publisher.clone(),
            tx,
            node_infos: Mutex::new(HashMap::new()),
            started: Instant::now(),
            deferred: Mutex::new(HashMap::new()),
            next_vseq: std::sync::atomic::AtomicU64::new(1),
            restores,
            offsets: hub.recovery_window().is_some(),
            position: Mutex::new(None),
            remote_counts: Mutex::new(HashMap::new()),
        });
        if !hub.set_adapter(Arc::new(AdapterHandle(shared.clone()))) {
            return Err(ClusterError::AdapterSet);
        }
        let shutdown = CancellationToken::new();
        // Try once now so a node whose Redis is up starts connected.
        let first = tokio::time::timeout(
            Duration::from_millis(1500),
            health::probe(&shared, &mut subscriber.clone()),
        )
        .await;
        match first {
            Ok(Ok(())) => {
                shared.up.store(true, Ordering::Release);
                tracing::info!(node = %shared.uid, prefix = %shared.config.prefix, "cluster: connected to redis");
            }
            Ok(Err(e)) => {
                bump(&shared.counters.redis_outages);
                tracing::warn!(node = %shared.uid, error = %e, "redis unreachable at start: serving local clients only until it answers");
            }
            Err(_) => {
                bump(&shared.counters.redis_outages);
                tracing::warn!(node = %shared.uid, "redis did not answer at start: serving local clients only until it answers");
            }
        }
        let nodes = Arc::new(Mutex::new(nodes::Nodes::new(shared.clone(), hub.clone())));
        let mut tasks = vec![
            tokio::spawn(publish::publish_loop(
                shared.clone(),
                hub.clone(),
                publisher,
                rx,
                shutdown.clone(),
            )),
            tokio::spawn(receive::receive_loop(
                shared.clone(),
                hub.clone(),
                nodes.clone(),
                push_rx,
                shutdown.clone(),
            )),
            tokio::spawn(health::health_loop(
                shared.clone(),
                hub.clone(),
                subscriber,
                shutdown.clone(),
            )),
        ];
        if shared.config.mode == Mode::Streams {
            tasks.push(tokio::spawn(streams::read_loop(
                shared.clone(),
                hub.clone(),
                nodes,
                reader,
                restores_rx,
                shutdown.clone(),
            )));
        }
        Ok(Cluster {
            shared,
            shutdown,
            tasks,
        })
    }

    /// This node's id in the cluster (the adapter's `uid`).
    pub fn node_id(&self) -> &str {
        &self.shared.uid
    }

    /// Whether Redis is reachable and the subscriptions are in place.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Waits until [`Cluster::is_up`], at most `limit`.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while !self.is_up() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The adapter's counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The figures `/health` shows.
    pub fn health(&self) -> Json {
        health::report(&self.shared)
    }

    /// Publishes what is queued, says goodbye to the other nodes and stops
    /// every task (each task is given at most 2 s to finish).
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // Goodbye, after the queue was flushed: the other nodes forget this
        // node's members at once instead of after three heartbeats.
        if self.shared.up.load(Ordering::Acquire) {
            let bye = nodes::goodbye(&self.shared.uid);
            let mut publisher = self.shared.publisher.clone();
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                redis::cmd("PUBLISH")
                    .arg(&self.shared.heartbeat_channel)
                    .arg(bye)
                    .query_async::<()>(&mut publisher),
            )
            .await;
        }
    }
}
