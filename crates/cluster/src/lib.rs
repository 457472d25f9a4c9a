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

pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use volna_hub::{
    Adapter, BoxFuture, ConnId, Event, Hub, MemberInfo, Outgoing, Presence, PresenceKind,
    RemoteMembers,
};

use wire::{Channels, IncomingEvent};

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
        }
    }
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid Redis URL {url}: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    #[error("the hub already has an adapter")]
    AdapterSet,
}

/// Counters of the adapter, served by `/health` under `cluster`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events published to Redis (broadcasts, requests, responses).
    pub published: AtomicU64,
    /// Cross-node events not sent: Redis down or the queue full.
    pub publish_dropped: AtomicU64,
    /// Broadcasts received from other servers and delivered here.
    pub received: AtomicU64,
    /// Payloads from Redis that could not be read.
    pub decode_errors: AtomicU64,
    /// Times Redis became unreachable.
    pub redis_outages: AtomicU64,
    /// Cluster `who` requests, and those some node did not answer in time.
    pub who_requests: AtomicU64,
    pub who_partial: AtomicU64,
    /// Requests of other servers answered (fetchSockets, allRooms, …).
    pub requests_answered: AtomicU64,
    /// volna nodes forgotten after missing their heartbeats.
    pub nodes_expired: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

enum Out {
    Event(Outgoing),
    Raw { channel: String, payload: Vec<u8> },
}

struct Pending {
    expected: usize,
    got: usize,
    names: Vec<Arc<str>>,
    done: Option<oneshot::Sender<()>>,
}

struct Shared {
    uid: String,
    config: ClusterConfig,
    channels: HashMap<String, Channels>,
    heartbeat_channel: String,
    counters: Counters,
    /// Both connections answered the last probe and are subscribed.
    up: AtomicBool,
    subscribed: AtomicBool,
    pending: Mutex<HashMap<String, Pending>>,
    publisher: ConnectionManager,
    tx: mpsc::Sender<Out>,
}

impl Shared {
    fn mark_down(&self, why: &dyn std::fmt::Display) {
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

/// The Redis adapter of one hub. Dropping it does not stop it: call
/// [`Cluster::stop`].
pub struct Cluster {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

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
        Box::pin(async move { remote_who(&shared, &nsp, &room).await })
    }

    fn health(&self) -> Json {
        health(&self.0)
    }
}

fn health(shared: &Shared) -> Json {
    let c = &shared.counters;
    json!({
        "node": shared.uid,
        "redis": if shared.up.load(Ordering::Relaxed) { "up" } else { "down" },
        "prefix": shared.config.prefix,
        "published": get(&c.published),
        "publish_dropped": get(&c.publish_dropped),
        "received": get(&c.received),
        "decode_errors": get(&c.decode_errors),
        "redis_outages": get(&c.redis_outages),
        "who_requests": get(&c.who_requests),
        "who_partial": get(&c.who_partial),
        "requests_answered": get(&c.requests_answered),
        "nodes_expired": get(&c.nodes_expired),
    })
}

fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Escapes glob characters for PSUBSCRIBE.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
                .set_response_timeout(Some(Duration::from_secs(2)))
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
        let (tx, rx) = mpsc::channel(config.queue.max(16));
        let shared = Arc::new(Shared {
            heartbeat_channel: format!("{}-volna#heartbeat#", config.prefix),
            uid,
            config,
            channels,
            counters: Counters::default(),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            publisher: publisher.clone(),
            tx,
        });
        if !hub.set_adapter(Arc::new(AdapterHandle(shared.clone()))) {
            return Err(ClusterError::AdapterSet);
        }
        let shutdown = CancellationToken::new();
        // Try once now so a node whose Redis is up starts connected.
        let first = tokio::time::timeout(
            Duration::from_millis(1500),
            probe(&shared, &mut subscriber.clone()),
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
        let tasks = vec![
            tokio::spawn(publish_loop(
                shared.clone(),
                publisher,
                rx,
                shutdown.clone(),
            )),
            tokio::spawn(receive_loop(
                shared.clone(),
                hub.clone(),
                push_rx,
                shutdown.clone(),
            )),
            tokio::spawn(health_loop(shared.clone(), subscriber, shutdown.clone())),
        ];
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
        health(&self.shared)
    }

    /// Publishes what is queued (at most 1 s), says goodbye to the other
    /// nodes and stops every task.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // Goodbye, after the queue was flushed: the other nodes forget this
        // node's members at once instead of after three heartbeats.
        if self.shared.up.load(Ordering::Acquire) {
            let bye = json!({"uid": self.shared.uid, "bye": true}).to_string();
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

/// Pings both connections and subscribes if not yet done.
async fn probe(shared: &Shared, subscriber: &mut ConnectionManager) -> redis::RedisResult<()> {
    let mut publisher = shared.publisher.clone();
    redis::cmd("PING").query_async::<()>(&mut publisher).await?;
    redis::cmd("PING").query_async::<()>(subscriber).await?;
    if !shared.subscribed.load(Ordering::Acquire) {
        let pattern = format!("{}#*", glob_escape(&shared.config.prefix));
        subscriber.psubscribe(pattern).await?;
        let mut exact = vec![shared.heartbeat_channel.clone()];
        for ch in shared.channels.values() {
            exact.push(ch.request.clone());
            exact.push(ch.response.clone());
            exact.push(format!("{}{}#", ch.response, shared.uid));
        }
        subscriber.subscribe(exact).await?;
        shared.subscribed.store(true, Ordering::Release);
    }
    Ok(())
}

/// Probes Redis: every 500 ms while up, with backoff (to 5 s) while down.
/// Publishes the heartbeat.
async fn health_loop(
    shared: Arc<Shared>,
    mut subscriber: ConnectionManager,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    let mut last_beat: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        let probed = tokio::time::timeout(Duration::from_secs(3), probe(&shared, &mut subscriber))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "probe timed out",
                )))
            });
        match probed {
            Ok(()) => {
                delay = Duration::from_millis(500);
                if !shared.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %shared.uid, "redis reachable again: cross-node delivery resumed");
                }
                if last_beat.is_none_or(|t| t.elapsed() >= shared.config.heartbeat) {
                    last_beat = Some(Instant::now());
                    let beat = json!({"uid": shared.uid}).to_string();
                    let _ = shared.tx.try_send(Out::Raw {
                        channel: shared.heartbeat_channel.clone(),
                        payload: beat.into_bytes(),
                    });
                }
            }
            Err(e) => {
                shared.mark_down(&e);
                tracing::debug!(error = %e, "redis probe failed");
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publishes queued events in order, many per round trip.
async fn publish_loop(
    shared: Arc<Shared>,
    mut publisher: ConnectionManager,
    mut rx: mpsc::Receiver<Out>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<Out> = Vec::with_capacity(512);
    loop {
        let stopping = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Flush what is queued, once.
                while batch.len() < 8192 {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                true
            }
            n = rx.recv_many(&mut batch, 512) => {
                if n == 0 {
                    break;
                }
                false
            }
        };
        if !batch.is_empty() {
            publish_batch(&shared, &mut publisher, &mut batch).await;
        }
        if stopping {
            break;
        }
    }
}

async fn publish_batch(shared: &Shared, publisher: &mut ConnectionManager, batch: &mut Vec<Out>) {
    let n = batch.len() as u64;
    if !shared.up.load(Ordering::Acquire) {
        shared
            .counters
            .publish_dropped
            .fetch_add(n, Ordering::Relaxed);
        batch.clear();
        return;
    }
    let mut pipe = redis::pipe();
    for item in batch.drain(..) {
        match item {
            Out::Event(ev) => {
                let (nsp, room, payload) = wire::encode_outgoing(&shared.uid, &ev);
                let channel = match shared.channels.get(&*nsp) {
                    Some(ch) => ch.for_rooms(&[&room]),
                    None => Channels::new(&shared.config.prefix, &nsp).for_rooms(&[&room]),
                };
                pipe.publish(channel, payload).ignore();
            }
            Out::Raw { channel, payload } => {
                pipe.publish(channel, payload).ignore();
            }
        }
    }
    match pipe.query_async::<()>(publisher).await {
        Ok(()) => {
            shared.counters.published.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            shared
                .counters
                .publish_dropped
                .fetch_add(n, Ordering::Relaxed);
            shared.mark_down(&e);
        }
    }
}

/// What this node knows of another volna node's members, to forget them if
/// it dies.
struct Node {
    last_seen: Instant,
    rooms: HashMap<RoomKey, HashMap<ConnId, Arc<str>>>,
}

/// A room of a namespace: `(nsp, room)`.
type RoomKey = (Arc<str>, Arc<str>);

struct Receiver {
    shared: Arc<Shared>,
    hub: Hub,
    nodes: HashMap<String, Node>,
    /// When our own heartbeats started arriving without a gap: the
    /// subscription has been working since then.
    own_streak: Option<Instant>,
    own_last: Option<Instant>,
}

async fn receive_loop(
    shared: Arc<Shared>,
    hub: Hub,
    mut push_rx: mpsc::UnboundedReceiver<PushInfo>,
    shutdown: CancellationToken,
) {
    let mut sweep = tokio::time::interval(shared.config.heartbeat);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rcv = Receiver {
        shared,
        hub,
        nodes: HashMap::new(),
        own_streak: None,
        own_last: None,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            push = push_rx.recv() => match push {
                Some(push) => rcv.on_push(push),
                None => break,
            },
            _ = sweep.tick() => rcv.sweep(),
        }
    }
}

fn bulk(v: Option<&redis::Value>) -> Option<&[u8]> {
    match v? {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl Receiver {
    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::PMessage => {
                if let Some(payload) = bulk(push.data.get(2)) {
                    self.on_broadcast(payload);
                }
            }
            PushKind::Message => {
                let (Some(channel), Some(payload)) =
                    (bulk(push.data.first()), bulk(push.data.get(1)))
                else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel);
                if channel == self.shared.heartbeat_channel {
                    self.on_heartbeat(payload);
                    return;
                }
                let found = self.shared.channels.iter().find_map(|(nsp, ch)| {
                    if channel == ch.request {
                        Some((nsp.clone(), true))
                    } else if channel.starts_with(&ch.response) {
                        Some((nsp.clone(), false))
                    } else {
                        None
                    }
                });
                match found {
                    Some((nsp, true)) => self.on_request(&nsp, payload),
                    Some((_, false)) => self.on_response(payload),
                    None => {}
                }
            }
            PushKind::Disconnection => {
                self.own_streak = None;
                self.shared.mark_down(&"subscription connection lost");
            }
            _ => {}
        }
    }

    fn on_broadcast(&mut self, payload: &[u8]) {
        let inc = match wire::decode_broadcast(payload) {
            Ok(inc) => inc,
            Err(e) => {
                bump(&self.shared.counters.decode_errors);
                tracing::debug!(error = %e, "ignoring an unreadable broadcast");
                return;
            }
        };
        if inc.uid == self.shared.uid {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&inc.uid) {
            node.last_seen = Instant::now();
        }
        if let IncomingEvent::Presence(p) = &inc.event {
            let node = self.nodes.entry(inc.uid.clone()).or_insert_with(|| Node {
                last_seen: Instant::now(),
                rooms: HashMap::new(),
            });
            let key = (p.nsp.clone(), p.room.clone());
            match p.kind {
                PresenceKind::Joined => {
                    node.rooms
                        .entry(key)
                        .or_default()
                        .insert(p.member.id, p.member.name.clone());
                }
                PresenceKind::Left => {
                    if let Some(members) = node.rooms.get_mut(&key) {
                        members.remove(&p.member.id);
                        if members.is_empty() {
                            node.rooms.remove(&key);
                        }
                    }
                }
            }
        }
        deliver(&self.hub, &inc.nsp, &inc.rooms, &inc.except, &inc.event);
        bump(&self.shared.counters.received);
    }

    fn on_heartbeat(&mut self, payload: &[u8]) {
        let Ok(beat) = serde_json::from_slice::<Json>(payload) else {
            return;
        };
        let Some(uid) = beat.get("uid").and_then(Json::as_str) else {
            return;
        };
        let now = Instant::now();
        if uid == self.shared.uid {
            let gap = self.shared.config.heartbeat * 2;
            if self.own_last.is_none_or(|t| now - t > gap) {
                self.own_streak = Some(now);
            }
            self.own_last = Some(now);
            return;
        }
        if beat.get("bye").and_then(Json::as_bool) == Some(true) {
            if let Some(node) = self.nodes.remove(uid) {
                self.forget(uid, node);
            }
            return;
        }
        self.nodes
            .entry(uid.to_string())
            .or_insert_with(|| Node {
                last_seen: now,
                rooms: HashMap::new(),
            })
            .last_seen = now;
    }

    /// Forgets volna nodes silent for three heartbeats, provided our own
    /// subscription has been working for that long.
    fn sweep(&mut self) {
        let hb = self.shared.config.heartbeat;
        let now = Instant::now();
        let healthy = self.own_last.is_some_and(|t| now - t <= hb * 2)
            && self.own_streak.is_some_and(|t| now - t >= hb * 3);
        if !healthy {
            return;
        }
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now - n.last_seen > hb * 3)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in dead {
            if let Some(node) = self.nodes.remove(&uid) {
                bump(&self.shared.counters.nodes_expired);
                tracing::info!(node = %uid, "cluster: node silent for three heartbeats, forgetting its members");
                self.forget(&uid, node);
            }
        }
    }

    /// Tells local members that a gone node's members left.
    fn forget(&self, _uid: &str, node: Node) {
        for ((nsp, room), members) in node.rooms {
            for (id, name) in members {
                let local = self.hub.who(&nsp, &room).map_or(0, |m| m.len());
                let presence = Presence {
                    nsp: nsp.clone(),
                    room: room.clone(),
                    member: MemberInfo { id, name },
                    kind: PresenceKind::Left,
                    members: local,
                };
                self.hub
                    .deliver_remote(&nsp, &[&room], &[], Event::Presence(&presence));
            }
        }
    }

    fn on_request(&mut self, nsp: &str, payload: &[u8]) {
        let Some((req, _)) = wire::decode_control(payload) else {
            bump(&self.shared.counters.decode_errors);
            return;
        };
        let kind = req.get("type").and_then(Json::as_u64);
        let request_id = req
            .get("requestId")
            .and_then(Json::as_str)
            .map(str::to_string);
        if req.get("uid").and_then(Json::as_str) == Some(&self.shared.uid) {
            return;
        }
        if let Some(id) = &request_id {
            if self.shared.pending.lock().unwrap().contains_key(id) {
                return;
            }
        }
        let rooms_of = |v: Option<&Json>| -> Vec<String> {
            v.and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| match r {
                            Json::String(s) => Some(s.clone()),
                            Json::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let opts = req.get("opts");
        let response = match kind {
            Some(wire::request::REMOTE_FETCH) => {
                let rooms = rooms_of(opts.and_then(|o| o.get("rooms")));
                let except = rooms_of(opts.and_then(|o| o.get("except")));
                let sockets: Vec<Json> = local_members(&self.hub, nsp, &rooms, &except)
                    .into_iter()
                    .map(|(id, name, rooms)| {
                        json!({
                            "id": format!("{}-{id}", self.shared.uid),
                            "handshake": {"headers": {}, "query": {}, "auth": {}, "address": "", "time": "", "issued": 0, "url": "", "xdomain": false, "secure": false},
                            "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
                            "data": {"name": &*name, "volna": true},
                        })
                    })
                    .collect();
                json!({"requestId": request_id, "sockets": sockets})
            }
            Some(wire::request::SOCKETS) => {
                let rooms = rooms_of(req.get("rooms"));
                let ids: Vec<String> = local_members(&self.hub, nsp, &rooms, &[])
                    .into_iter()
                    .map(|(id, _, _)| format!("{}-{id}", self.shared.uid))
                    .collect();
                json!({"requestId": request_id, "sockets": ids})
            }
            Some(wire::request::ALL_ROOMS) => {
                let rooms: Vec<String> = self
                    .hub
                    .rooms(nsp)
                    .into_iter()
                    .map(|r| r.name.to_string())
                    .collect();
                json!({"requestId": request_id, "rooms": rooms})
            }
            Some(wire::request::BROADCAST) => {
                // A broadcast expecting acks: volna sockets get the event
                // (their acks are not collected), and this node says it
                // waits for none.
                if let Some((rooms, except, event)) = wire::decode_request_packet(payload) {
                    let nsp_arc: Arc<str> = Arc::from(nsp);
                    let event = match event {
                        IncomingEvent::Emit(mut e) => {
                            e.nsp = nsp_arc;
                            IncomingEvent::Emit(e)
                        }
                        other => other,
                    };
                    deliver(&self.hub, nsp, &rooms, &except, &event);
                    bump(&self.shared.counters.received);
                }
                json!({"type": wire::request::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": 0})
            }
            _ => {
                tracing::debug!(?kind, "ignoring a cluster request volna does not serve");
                return;
            }
        };
        let Some(ch) = self.shared.channels.get(nsp) else {
            return;
        };
        bump(&self.shared.counters.requests_answered);
        let _ = self.shared.tx.try_send(Out::Raw {
            channel: ch.response.clone(),
            payload: response.to_string().into_bytes(),
        });
    }

    fn on_response(&mut self, payload: &[u8]) {
        let Some((resp, _)) = wire::decode_control(payload) else {
            return;
        };
        let Some(id) = resp.get("requestId").and_then(Json::as_str) else {
            return;
        };
        let mut pending = self.shared.pending.lock().unwrap();
        let Some(p) = pending.get_mut(id) else {
            return;
        };
        p.got += 1;
        if let Some(sockets) = resp.get("sockets").and_then(Json::as_array) {
            for s in sockets {
                let name = s
                    .get("data")
                    .and_then(|d| d.get("name"))
                    .and_then(Json::as_str)
                    .or_else(|| s.get("id").and_then(Json::as_str));
                if let Some(name) = name {
                    p.names.push(Arc::from(name));
                }
            }
        }
        if p.got >= p.expected {
            if let Some(done) = p.done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// Delivers a received event to the local members it targets.
fn deliver(hub: &Hub, nsp: &str, rooms: &[String], except: &[String], event: &IncomingEvent) {
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let except: Vec<&str> = except.iter().map(String::as_str).collect();
    let event = match event {
        IncomingEvent::Message(m) => Event::Message(m),
        IncomingEvent::Presence(p) => Event::Presence(p),
        IncomingEvent::Emit(e) => Event::Emit(e),
    };
    hub.deliver_remote(nsp, &rooms, &except, event);
}

/// This node's members in any of `rooms` (every room when empty) and in
/// none of `except`, each with its rooms.
fn local_members(
    hub: &Hub,
    nsp: &str,
    rooms: &[String],
    except: &[String],
) -> Vec<(ConnId, Arc<str>, Vec<Arc<str>>)> {
    let mut by_id: HashMap<ConnId, (Arc<str>, Vec<Arc<str>>)> = HashMap::new();
    for room in hub.rooms(nsp) {
        for m in hub.who(nsp, &room.name).unwrap_or_default() {
            by_id
                .entry(m.id)
                .or_insert_with(|| (m.name.clone(), Vec::new()))
                .1
                .push(room.name.clone());
        }
    }
    let wanted: HashSet<&str> = rooms.iter().map(String::as_str).collect();
    let excluded: HashSet<&str> = except.iter().map(String::as_str).collect();
    let mut out: Vec<_> = by_id
        .into_iter()
        .filter(|(_, (_, rs))| {
            (wanted.is_empty() || rs.iter().any(|r| wanted.contains(&**r)))
                && !rs.iter().any(|r| excluded.contains(&**r))
        })
        .map(|(id, (name, rs))| (id, name, rs))
        .collect();
    out.sort_by_key(|(id, _, _)| *id);
    out
}

/// Members of `room` on the other servers: asks them on the request
/// channel (as `fetchSockets` does) and waits for as many answers as there
/// are other subscribers, at most the request timeout.
async fn remote_who(shared: &Arc<Shared>, nsp: &str, room: &str) -> RemoteMembers {
    bump(&shared.counters.who_requests);
    let partial = || {
        bump(&shared.counters.who_partial);
        RemoteMembers {
            names: Vec::new(),
            partial: true,
        }
    };
    if !shared.up.load(Ordering::Acquire) {
        return partial();
    }
    let Some(ch) = shared.channels.get(nsp) else {
        return RemoteMembers::default();
    };
    let mut publisher = shared.publisher.clone();
    let numsub = tokio::time::timeout(
        shared.config.request_timeout,
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&ch.request)
            .query_async::<redis::Value>(&mut publisher),
    )
    .await;
    let subscribers = match numsub {
        Ok(Ok(v)) => numsub_count(&v),
        _ => return partial(),
    };
    let expected = subscribers.saturating_sub(1);
    if expected == 0 {
        return RemoteMembers::default();
    }
    let request_id = random_id(10);
    let (done_tx, done_rx) = oneshot::channel();
    shared.pending.lock().unwrap().insert(
        request_id.clone(),
        Pending {
            expected,
            got: 0,
            names: Vec::new(),
            done: Some(done_tx),
        },
    );
    let request = json!({
        "uid": shared.uid,
        "requestId": request_id,
        "type": wire::request::REMOTE_FETCH,
        "opts": {"rooms": [room], "except": []},
    })
    .to_string();
    let sent = tokio::time::timeout(
        shared.config.request_timeout,
        redis::cmd("PUBLISH")
            .arg(&ch.request)
            .arg(request)
            .query_async::<()>(&mut publisher),
    )
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = tokio::time::timeout(shared.config.request_timeout, done_rx).await;
    }
    let p = shared.pending.lock().unwrap().remove(&request_id);
    let Some(p) = p else {
        return partial();
    };
    if p.got < p.expected {
        bump(&shared.counters.who_partial);
    }
    RemoteMembers {
        names: p.names,
        partial: p.got < p.expected,
    }
}

/// The count in a `PUBSUB NUMSUB channel` reply (RESP2 array or RESP3 map).
fn numsub_count(v: &redis::Value) -> usize {
    let as_n = |v: &redis::Value| match v {
        redis::Value::Int(n) => Some(*n as usize),
        _ => None,
    };
    match v {
        redis::Value::Array(items) => items.get(1).and_then(as_n).unwrap_or(0),
        redis::Value::Map(pairs) => pairs.first().and_then(|(_, n)| as_n(n)).unwrap_or(0),
        _ => 0,
    }
}
