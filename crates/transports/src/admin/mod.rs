//! The server side of the Socket.IO Admin UI (`@socket.io/admin-ui` 0.5):
//! namespace `/admin` on the Socket.IO server, for the hosted UI at
//! <https://admin.socket.io> or its built page served anywhere.
//!
//! - `auth.rs`: the login (name and bcrypt hash, sessions), refused with
//!   `invalid credentials`;
//! - `sockets.rs`: every hub connection as the UI's `SerializedSocket`, and
//!   the hub observer behind `socket_connected`, `socket_disconnected`,
//!   `room_joined`, `room_left`, `socket_updated` (a rename);
//! - `stats.rs`: `server_stats` every 2 s;
//! - `commands.rs`: `emit`, `join`, `leave`, `_disconnect`.
//!
//! [`AdminApp`] wraps the server's [`Application`]: `/admin` is its own,
//! every other namespace goes on to the wrapped one (in development mode
//! after telling the UI of the event, `event_received`). On connect an
//! admin socket gets `session` (after a login with a password), `config`,
//! `server_stats` and `all_sockets`. See `docs/operations.md`, "Admin UI".
//!
//! In a cluster (`--redis`) the Admin UIs of the volna nodes talk through
//! the hub's adapter ([`Hub::tell_other_nodes`], opaque JSON payloads on
//! the adapter's own channel): a node whose admin sockets are connected
//! says so with each `server_stats` it sends to the others; a node told so
//! (in the last [`FOLLOWED_FOR`]) sends them its `server_stats` and socket
//! events too, which they emit to their admin sockets, as the reference's
//! broadcasts on `/admin` reach every node's admin sockets. `all_sockets`
//! adds the other nodes' sockets (the adapter's `fetchSockets`), and the
//! commands are applied on every node (`told_by_other_node`).

pub mod auth;
pub mod commands;
pub mod sockets;
pub mod stats;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{BoxFuture, Frame, Hub, Outbox};
use volna_protocols::socketio::write_event;

use crate::socketio::{Application, EventCall, SocketRef};
use auth::{Gatekeeper, Login};
use commands::Command;
use stats::ServerStats;

/// The Admin UI's namespace.
pub const NAMESPACE: &str = "/admin";

/// The hosted UI's origin, allowed (with credentials) when the operator
/// lists no origins of their own.
pub const UI_ORIGIN: &str = "https://admin.socket.io";

/// Settings of the Admin UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The login name.
    pub username: String,
    /// The bcrypt hash of the password.
    pub password_hash: String,
    /// Only watch: no command is applied, and the UI shows none.
    pub read_only: bool,
    /// Development mode: the UI is also told of every event Socket.IO
    /// clients send (`event_received`). Off (production) by default.
    pub development: bool,
    /// This node's id in the UI; `None`: `hostname#pid`.
    pub server_id: Option<String>,
}

/// The features the UI may use, as the reference's `Feature` names: the
/// commands unless read-only, the aggregated events, and in development
/// mode the events list.
pub fn features(config: &AdminConfig) -> Vec<&'static str> {
    let mut list = if config.read_only {
        Vec::new()
    } else {
        vec![
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
        ]
    };
    list.push("AGGREGATED_EVENTS");
    if config.development {
        list.push("ALL_EVENTS");
    }
    list
}

/// How long a node keeps sending its events to the others after an Admin
/// UI connected to one of them last said so (it says so every
/// [`stats::INTERVAL`]).
pub const FOLLOWED_FOR: Duration = Duration::from_secs(6);

/// The admin sockets connected now (their client ids and outgoing queues),
/// and emitting to all of them.
#[derive(Default)]
pub struct Panel {
    sockets: Mutex<Vec<(Arc<str>, Arc<Outbox>)>>,
    count: AtomicUsize,
    /// Until when (ms since the epoch) an Admin UI connected to another
    /// node follows this one; 0: never was.
    elsewhere: AtomicU64,
}

impl Panel {
    /// Whether any admin socket is connected (to this node).
    pub fn is_watched(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Whether an Admin UI connected to another node of the cluster
    /// follows this one.
    pub fn is_followed_elsewhere(&self) -> bool {
        let until = self.elsewhere.load(Ordering::Relaxed);
        until != 0 && until > volna_hub::now_ms()
    }

    /// Whether an Admin UI, here or on another node, follows this node.
    pub fn is_followed(&self) -> bool {
        self.is_watched() || self.is_followed_elsewhere()
    }

    /// Notes that an Admin UI on another node follows this one; true if
    /// none did until now.
    fn followed_elsewhere(&self) -> bool {
        let now = volna_hub::now_ms();
        let until = now + FOLLOWED_FOR.as_millis() as u64;
        self.elsewhere.swap(until, Ordering::Relaxed) <= now
    }

    fn add(&self, client: Arc<str>, outbox: Arc<Outbox>) {
        let mut sockets = self.sockets.lock().unwrap();
        sockets.push((client, outbox));
        self.count.store(sockets.len(), Ordering::Relaxed);
    }

    /// Forgets admin socket `client` (it went).
    pub fn forget(&self, client: &str) {
        let mut sockets = self.sockets.lock().unwrap();
        sockets.retain(|(c, _)| &**c != client);
        self.count.store(sockets.len(), Ordering::Relaxed);
    }

    /// Emits `event` with `args` to every admin socket (encoded once).
    pub fn emit(&self, event: &str, args: &[Value]) {
        if !self.is_watched() {
            return;
        }
        let frame = Frame::text(packet(event, args));
        let mut sockets = self.sockets.lock().unwrap();
        sockets.retain(|(_, outbox)| outbox.closed().is_none());
        self.count.store(sockets.len(), Ordering::Relaxed);
        for (_, outbox) in sockets.iter() {
            let _ = outbox.push_one(frame.clone());
        }
    }
}

/// The Socket.IO EVENT packet of `event(args…)` in namespace `/admin`.
pub fn packet(event: &str, args: &[Value]) -> String {
    let raw: Vec<Box<RawValue>> = args
        .iter()
        .map(|a| to_raw_value(a).expect("a JSON value serializes"))
        .collect();
    let mut s = String::from("4");
    write_event(&mut s, NAMESPACE, None, event, &raw, 0);
    s
}

/// What the Admin UIs of the nodes of a cluster send each other: an event
/// for the admin sockets, or a command to apply.
#[derive(Deserialize)]
struct Relayed<'a> {
    /// The sender has admin sockets connected: follow it.
    #[serde(default)]
    watched: bool,
    /// An event for the admin sockets, with `args`.
    #[serde(default)]
    emit: Option<String>,
    /// A command of the UI (`emit`, `join`, …), with `args`.
    #[serde(default)]
    command: Option<String>,
    #[serde(default, borrow)]
    args: Vec<&'a RawValue>,
}

/// The Admin UI's state: settings, login, admin sockets, stats.
pub struct Admin {
    config: AdminConfig,
    hub: Hub,
    gate: Gatekeeper,
    panel: Arc<Panel>,
    stats: ServerStats,
    socketio_path: String,
    tracker: TaskTracker,
}

impl Admin {
    /// Sets the Admin UI up on `hub`: its observer, the task relaying what it
    /// sees and the one sending `server_stats`, both ending with `shutdown`.
    pub fn start(
        config: AdminConfig,
        hub: Hub,
        socketio_path: &str,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Admin> {
        let panel = Arc::new(Panel::default());
        let admin = Arc::new(Admin {
            gate: Gatekeeper::new(config.username.clone(), config.password_hash.clone()),
            stats: ServerStats::new(config.server_id.clone(), &hub),
            config,
            hub: hub.clone(),
            panel: panel.clone(),
            socketio_path: socketio_path.to_string(),
            tracker: tracker.clone(),
        });
        let (notes, rx) = sockets::Notes::new(panel, admin.config.development);
        if !hub.set_observer(Arc::new(notes)) {
            tracing::warn!("admin UI: the hub already has an observer; sockets are not followed");
        }
        let relaying = admin.clone();
        let relay_stop = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = relaying.relay(rx) => {}
                _ = relay_stop.cancelled() => {}
            }
        });
        let ticking = admin.clone();
        tracker.spawn(async move {
            let mut every = tokio::time::interval(stats::INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => ticking.emit_stats(),
                    _ = shutdown.cancelled() => break,
                }
            }
        });
        tracing::info!(
            server_id = admin.stats.server_id(),
            read_only = admin.config.read_only,
            development = admin.config.development,
            "admin UI on namespace {NAMESPACE}"
        );
        admin
    }

    /// Sends `server_stats` to the admin sockets following this node, here
    /// and on the other nodes (to which it also says whether admin sockets
    /// are connected here).
    fn emit_stats(&self) {
        let watched = self.panel.is_watched();
        if !watched && !self.panel.is_followed_elsewhere() {
            return;
        }
        let payload = self.stats.payload(&self.hub);
        self.panel
            .emit("server_stats", std::slice::from_ref(&payload));
        self.tell_other_nodes(&json!({
            "watched": watched,
            "emit": "server_stats",
            "args": [payload],
        }));
    }

    /// Sends `message` to the Admin UIs of the other nodes (none without a
    /// cluster).
    fn tell_other_nodes(&self, message: &Value) {
        self.hub.tell_other_nodes(message.to_string().into_bytes());
    }

    /// Emits `event(args…)` to the admin sockets following this node: its
    /// own, and those of the other nodes when one follows it.
    fn tell(&self, event: &str, args: &[Value]) {
        self.panel.emit(event, args);
        if self.panel.is_followed_elsewhere() {
            self.tell_other_nodes(&json!({
                "watched": self.panel.is_watched(),
                "emit": event,
                "args": args,
            }));
        }
    }

    /// Renders the observer's notes and emits them, and reads what the
    /// other nodes send, until the hub goes.
    async fn relay(&self, mut rx: mpsc::Receiver<sockets::Note>) {
        while let Some(note) = rx.recv().await {
            if let sockets::Note::Remote(payload) = &note {
                self.told_by_other_node(payload);
            } else if let sockets::Note::Sent(args, to, ts) = &note {
                for id in to {
                    if let Some((nsp, client)) = self.hub.client_of(*id) {
                        let at = sockets::date(*ts);
                        self.tell(
                            "event_sent",
                            &[json!(&*nsp), json!(&*client), args.clone(), at],
                        );
                    }
                }
            } else if let Some((event, args)) = note.render(&self.socketio_path) {
                self.tell(event, &args);
            }
        }
    }

    /// What the Admin UI of another node sent: it is followed (this node
    /// then sends its `server_stats` at once, to show up without waiting),
    /// an event for this node's admin sockets, or a command of its UI,
    /// applied to this node's connections (unless this node is read-only).
    fn told_by_other_node(&self, payload: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<Relayed<'_>>(payload) else {
            tracing::debug!("admin UI: unreadable payload from another node");
            return;
        };
        if msg.watched && self.panel.followed_elsewhere() {
            self.emit_stats();
        }
        if let Some(event) = &msg.emit {
            let args: Vec<Value> = msg
                .args
                .iter()
                .map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null))
                .collect();
            self.panel.emit(event, &args);
        }
        if let Some(name) = &msg.command {
            if self.config.read_only {
                return;
            }
            match Command::decode(name, &msg.args) {
                Some(command) => {
                    tracing::info!(?command, "admin UI command from another node");
                    command.apply(&self.hub, Vec::new());
                }
                None => tracing::debug!(event = %name, "admin UI: unknown relayed command"),
            }
        }
    }

    /// Logins refused so far.
    pub fn refused(&self) -> u64 {
        self.gate.refused()
    }

    /// Every connection, serialized.
    fn all_sockets(&self) -> Value {
        Value::Array(
            self.hub
                .connections()
                .iter()
                .map(|c| sockets::serialize(c, &self.socketio_path))
                .collect(),
        )
    }

    /// Every socket of the cluster: this node's, then those the other
    /// servers answer `fetchSockets` with, namespace by namespace (this
    /// node's namespaces and `/`).
    async fn cluster_sockets(&self) -> Value {
        let Some(adapter) = self.hub.adapter().cloned() else {
            return self.all_sockets();
        };
        let mut namespaces: Vec<Arc<str>> = self
            .hub
            .census()
            .namespaces
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if !namespaces.iter().any(|n| &**n == "/") {
            namespaces.push(Arc::from("/"));
        }
        let answers =
            futures_util::future::join_all(namespaces.iter().map(|nsp| adapter.fetch_sockets(nsp)))
                .await;
        let mut all = match self.all_sockets() {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        for (nsp, found) in namespaces.iter().zip(answers) {
            all.extend(
                found
                    .sockets
                    .iter()
                    .map(|s| sockets::serialize_remote(s, nsp)),
            );
        }
        Value::Array(all)
    }

    fn on_connect(self: &Arc<Self>, socket: &SocketRef<'_>, auth: &RawValue) {
        let login = Login::parse(auth.get());
        let send = |event: &str, args: &[Value]| {
            let _ = socket.outbox().push_one(Frame::text(packet(event, args)));
        };
        // Followed from now on, before the snapshot below: what happens
        // meanwhile is told as events, never missed (at worst told twice).
        self.panel
            .add(socket.conn().client(), socket.outbox().clone());
        let resumed = login
            .session_id
            .as_deref()
            .is_some_and(|s| self.gate.knows_session(s));
        if !resumed {
            send("session", &[json!(self.gate.new_session())]);
        }
        send(
            "config",
            &[json!({ "supportedFeatures": features(&self.config) })],
        );
        let stats = self.stats.payload(&self.hub);
        send("server_stats", std::slice::from_ref(&stats));
        send("all_sockets", &[self.all_sockets()]);
        if self.hub.adapter().is_some() {
            // The other nodes start following this one now, and the list
            // is sent again with their sockets once they have answered.
            self.tell_other_nodes(&json!({
                "watched": true,
                "emit": "server_stats",
                "args": [stats],
            }));
            let admin = self.clone();
            let outbox = socket.outbox().clone();
            self.tracker.spawn(async move {
                let all = admin.cluster_sockets().await;
                if outbox.closed().is_none() {
                    let _ = outbox.push_one(Frame::text(packet("all_sockets", &[all])));
                }
            });
        }
    }

    fn on_command(&self, event: EventCall<'_>) {
        if self.config.read_only {
            tracing::debug!(event = event.name, "admin UI is read-only: command ignored");
            return;
        }
        match Command::decode(event.name, event.args) {
            Some(command) => {
                tracing::info!(?command, "admin UI command");
                if event.attachments.is_empty() {
                    // The other nodes apply it to their connections too
                    // (binary arguments are this node's only).
                    self.relay_command(event.name, event.args);
                }
                command.apply(&self.hub, event.attachments);
            }
            None => tracing::debug!(event = event.name, "admin UI: unknown command"),
        }
    }

    /// Sends command `name(args…)` to the other nodes (none without a
    /// cluster), its arguments as the UI wrote them.
    fn relay_command(&self, name: &str, args: &[&RawValue]) {
        if self.hub.adapter().is_none() {
            return;
        }
        let mut text = String::from("{\"command\":");
        text.push_str(&Value::String(name.to_string()).to_string());
        text.push_str(",\"args\":[");
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(a.get());
        }
        text.push_str("]}");
        self.hub.tell_other_nodes(text.into_bytes());
    }

    fn event_received(&self, socket: &SocketRef<'_>, event: &EventCall<'_>) {
        if !self.panel.is_followed() {
            return;
        }
        let mut args = vec![Value::String(event.name.to_string())];
        args.extend(
            event
                .args
                .iter()
                .map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null)),
        );
        self.tell(
            "event_received",
            &[
                json!(socket.nsp()),
                json!(&*socket.conn().client()),
                Value::Array(args),
                sockets::date(volna_hub::now_ms()),
            ],
        );
    }
}

/// The server's application with namespace `/admin` added.
pub struct AdminApp {
    /// What every other namespace does.
    pub inner: Arc<dyn Application>,
    /// The Admin UI.
    pub admin: Arc<Admin>,
}

impl Application for AdminApp {
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == NAMESPACE || self.inner.has_namespace(nsp)
    }

    fn gate(&self, nsp: &str, auth: &RawValue) -> Option<BoxFuture<Result<(), String>>> {
        if nsp != NAMESPACE {
            return self.inner.gate(nsp, auth);
        }
        let admin = self.admin.clone();
        let login = Login::parse(auth.get());
        Some(Box::pin(async move {
            admin.gate.check(&login).await.map_err(str::to_owned)
        }))
    }

    fn on_connect(&self, socket: &SocketRef<'_>, auth: &RawValue) {
        if socket.nsp() == NAMESPACE {
            self.admin.on_connect(socket, auth);
        } else {
            self.inner.on_connect(socket, auth);
        }
    }

    fn on_event(&self, socket: &SocketRef<'_>, event: EventCall<'_>) {
        if socket.nsp() == NAMESPACE {
            self.admin.on_command(event);
            return;
        }
        if self.admin.config.development {
            self.admin.event_received(socket, &event);
        }
        self.inner.on_event(socket, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AdminConfig {
        AdminConfig {
            username: "admin".into(),
            password_hash: String::new(),
            read_only: false,
            development: false,
            server_id: None,
        }
    }

    #[test]
    fn features_follow_the_mode() {
        assert_eq!(
            features(&config()),
            vec![
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS"
            ]
        );
        let ro = AdminConfig {
            read_only: true,
            development: true,
            ..config()
        };
        assert_eq!(features(&ro), vec!["AGGREGATED_EVENTS", "ALL_EVENTS"]);
    }

    #[test]
    fn packets_are_admin_namespace_events() {
        assert_eq!(
            packet("config", &[json!({"supportedFeatures": ["EMIT"]})]),
            r#"42/admin,["config",{"supportedFeatures":["EMIT"]}]"#
        );
    }
}
