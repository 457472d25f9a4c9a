//! Socket.IO v5 over the Engine.IO sessions of [`crate::engineio`].
//!
//! Each Engine.IO session may join several namespaces; each joined namespace
//! is a hub [`Conn`] (so it can join rooms and receive broadcasts through
//! [`SioCodec`]) sharing the session's single outbox. Packets are decoded
//! with [`volna_protocols::socketio`]; binary packets are reassembled from
//! their attachments before dispatch.
//!
//! Behaviour follows the Node.js reference server: a CONNECT to an unknown
//! namespace is answered `{"message":"Invalid namespace"}`; a CONNECT to a
//! namespace already joined, a packet for a namespace not joined, a
//! malformed packet, text arriving while attachments are expected or an
//! attachment nobody announced close the whole connection (counted in
//! `protocol_closes`); a session that joins no namespace within the connect
//! timeout is closed.
//!
//! What a namespace does is an [`Application`] (`application.rs`): the
//! default chat (`chat.rs`, every operation of [`crate::app`]) or the
//! conformance profile (`conformance.rs`); see `docs/socketio.md`.

mod application;
mod chat;
mod codec;
mod conformance;
mod connect;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{CloseReason, Conn, Frame, Hub, Outbox, Stats};
use volna_protocols::socketio::{write_connect_error, BinaryAssembler, Packet, PacketKind};

use crate::app::admit;
use crate::engineio::{
    Engine, EngineConfig, EngineHandler, EngineMessage, Handshake, Session, SessionHandler,
    TransportKind,
};
use connect::{Connecting, Handoff};

pub use application::{Answer, Application, EventCall, SocketRef};
pub use chat::Chat;
pub use codec::SioCodec;
pub use conformance::Conformance;

/// Settings of the Socket.IO server.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The Engine.IO layer (path, heartbeat, payload limit, CORS, queues).
    pub engine: EngineConfig,
    /// How long a new connection may take to join its first namespace.
    /// Defaults to 45 s, as the reference server.
    pub connect_timeout: Duration,
    /// The behaviour the official test suite expects: namespaces `/` and
    /// `/custom`, `auth` sent back on connect, `message` echoed as
    /// `message-back`, `message-with-ack` acknowledged with its arguments.
    pub conformance: bool,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_secs(45),
            conformance: false,
        }
    }
}

/// The Socket.IO engine, ready to be mounted with [`Engine::router`]: the
/// chat, or the conformance behaviour when `config.conformance` is set.
pub fn engine(
    app: crate::app::Context,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    config: SocketIoConfig,
) -> Arc<Engine> {
    let application = default_application(&app, config.conformance);
    engine_with(app, application, shutdown, tracker, config)
}

/// What the namespaces do by default: the chat, or the conformance
/// behaviour.
pub fn default_application(app: &crate::app::Context, conformance: bool) -> Arc<dyn Application> {
    let chat = Chat { app: app.clone() };
    if conformance {
        Arc::new(Conformance { chat })
    } else {
        Arc::new(chat)
    }
}

/// The Socket.IO engine running `application` (e.g. the default one with
/// the Admin UI's namespace added, [`crate::admin::AdminApp`]).
pub fn engine_with(
    app: crate::app::Context,
    application: Arc<dyn Application>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    config: SocketIoConfig,
) -> Arc<Engine> {
    let hub = app.hub.clone();
    let ctx = app;
    let state = Arc::new(App {
        ctx,
        hub: hub.clone(),
        connect_timeout: config.connect_timeout,
        application,
        tracker: tracker.clone(),
    });
    Engine::new(config.engine, SioHandler(state), hub, shutdown, tracker)
}

/// The router serving Socket.IO at the configured path.
pub fn router(
    app: crate::app::Context,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    config: SocketIoConfig,
) -> Router {
    engine(app, shutdown, tracker, config).router()
}

struct App {
    ctx: crate::app::Context,
    hub: Hub,
    connect_timeout: Duration,
    application: Arc<dyn Application>,
    tracker: TaskTracker,
}

struct SioHandler(Arc<App>);

impl EngineHandler for SioHandler {
    fn open(&self, session: &Arc<Session>, handshake: Handshake) -> Box<dyn SessionHandler> {
        // Kept only for a connect hook, which is told them.
        let handshake = admit::has_connect_hook(&self.0.ctx).then(|| {
            Box::new((
                handshake.peer,
                admit::passed_headers(&self.0.ctx, &handshake.headers),
            ))
        });
        let connected = Arc::new(Connected::default());
        let timeout = self.0.connect_timeout;
        let flag = connected.clone();
        let watched = session.clone();
        // Ends as soon as a namespace is joined, so that a connected session
        // holds no timer (and no task) for it.
        self.0.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {
                    if !flag.done.load(Ordering::Acquire) {
                        tracing::debug!(sid = %watched.sid(), "socket.io connect timeout");
                        watched.close(CloseReason::Timeout);
                    }
                }
                _ = flag.wake.notified() => {}
                _ = watched.closed() => {}
            }
        });
        Box::new(SioSession {
            app: self.0.clone(),
            session: Arc::downgrade(session),
            outbox: session.outbox().clone(),
            sockets: Vec::new(),
            pending: None,
            connected,
            handoff: Arc::new(Handoff::default()),
            handshake,
        })
    }
}

/// Whether a session has joined a namespace yet (the connect timeout).
#[derive(Default)]
struct Connected {
    done: AtomicBool,
    /// Ends the timeout task; `notify_one` keeps a permit if it is not
    /// waiting yet.
    wake: tokio::sync::Notify,
}

/// A socket: one namespace joined by one connection.
struct Socket {
    conn: Conn,
    /// Its private session id, with connection-state recovery on: the name
    /// its session is kept under when its connection goes abnormally.
    pid: Option<Arc<str>>,
    /// The recovery log's position when it connected.
    connected_at: u64,
}

/// Whether a connection that ended so keeps its sockets' sessions, as the
/// reference server's list of recoverable reasons (transport closed or in
/// error, ping timeout, forced close, server shutting down).
fn recoverable(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::TransportClosed
            | CloseReason::Timeout
            | CloseReason::ClientQuit
            | CloseReason::ServerShutdown
            | CloseReason::ServerRestart
    )
}

/// The Socket.IO state of one Engine.IO session.
struct SioSession {
    app: Arc<App>,
    #[allow(dead_code)]
    session: Weak<Session>,
    outbox: Arc<Outbox>,
    /// The namespaces joined, with their sockets: a handful at most, so a
    /// vector (one small allocation) rather than a hash map (a table of
    /// several slots per idle connection).
    sockets: Vec<(Box<str>, Socket)>,
    /// A binary packet waiting for its attachments.
    pending: Option<BinaryAssembler>,
    connected: Arc<Connected>,
    /// Sockets a connect hook admitted, on their way to `sockets`.
    handoff: Arc<Handoff>,
    /// The handshake's peer and the headers the connect hook may see; kept
    /// only when there is a connect hook.
    #[allow(clippy::type_complexity)]
    handshake: Option<
        Box<(
            Option<std::net::SocketAddr>,
            serde_json::Map<String, serde_json::Value>,
        )>,
    >,
}

fn protocol_error(why: impl Into<String>) -> CloseReason {
    CloseReason::ProtocolError(why.into())
}

impl SessionHandler for SioSession {
    fn on_message(&mut self, msg: EngineMessage) -> Result<(), CloseReason> {
        let result = self.receive(msg);
        if result.is_err() {
            Stats::bump(&self.app.hub.stats().bad_input);
        }
        result
    }

    fn on_close(&mut self, reason: &CloseReason) {
        tracing::debug!(reason = %reason, sockets = self.sockets.len(), "socket.io connection closed");
        self.handoff.take_into(&mut self.sockets);
        if recoverable(reason) {
            for (_, socket) in &self.sockets {
                if let Some(pid) = &socket.pid {
                    self.app
                        .hub
                        .keep_session(pid.clone(), &socket.conn, socket.connected_at);
                }
            }
        }
        // Dropping the conns takes them out of their rooms.
        self.sockets.clear();
        self.handoff.clear();
        self.pending = None;
    }

    fn on_upgrade(&mut self) {
        self.handoff.take_into(&mut self.sockets);
        for (_, socket) in &self.sockets {
            self.app.hub.set_transport(socket.conn.id(), "websocket");
        }
    }
}

impl SioSession {
    fn socket(&self, nsp: &str) -> Option<&Socket> {
        self.sockets
            .iter()
            .find(|(n, _)| &**n == nsp)
            .map(|(_, s)| s)
    }

    fn receive(&mut self, msg: EngineMessage) -> Result<(), CloseReason> {
        match msg {
            EngineMessage::Text(text) => {
                if self.pending.is_some() {
                    return Err(protocol_error(
                        "got plaintext data when reconstructing a packet",
                    ));
                }
                let text =
                    std::str::from_utf8(&text).map_err(|_| protocol_error("invalid UTF-8"))?;
                let packet = Packet::decode(text)
                    .map_err(|e| protocol_error(format!("invalid socket.io packet: {e}")))?;
                if packet.kind.is_binary() {
                    let asm = BinaryAssembler::new(packet)
                        .map_err(|e| protocol_error(format!("invalid binary packet: {e}")))?;
                    if asm.is_complete() {
                        return self.finish_binary(asm);
                    }
                    self.pending = Some(asm);
                    Ok(())
                } else {
                    self.dispatch(packet, Vec::new())
                }
            }
            EngineMessage::Binary(data) => {
                let Some(asm) = self.pending.as_mut() else {
                    return Err(protocol_error(
                        "got binary data when not reconstructing a packet",
                    ));
                };
                let complete = asm
                    .push(data)
                    .map_err(|e| protocol_error(format!("invalid attachment: {e}")))?;
                if complete {
                    let asm = self.pending.take().expect("checked above");
                    return self.finish_binary(asm);
                }
                Ok(())
            }
        }
    }

    fn finish_binary(&mut self, asm: BinaryAssembler) -> Result<(), CloseReason> {
        let (packet, attachments) = asm
            .finish()
            .map_err(|e| protocol_error(format!("invalid binary packet: {e}")))?;
        self.dispatch(packet, attachments)
    }

    fn dispatch(&mut self, packet: Packet, attachments: Vec<Bytes>) -> Result<(), CloseReason> {
        let mut joined = self.socket(&packet.nsp).is_some();
        if !joined {
            // Perhaps admitted by a connect hook a moment ago.
            self.handoff.take_into(&mut self.sockets);
            joined = self.socket(&packet.nsp).is_some();
        }
        match packet.kind {
            PacketKind::Connect if !joined => {
                self.connect(&packet);
                Ok(())
            }
            PacketKind::Connect | PacketKind::ConnectError => Err(protocol_error(format!(
                "invalid state: {} for namespace {}",
                packet.kind, packet.nsp
            ))),
            _ if !joined => Err(protocol_error(format!(
                "{} for namespace {} which is not joined",
                packet.kind, packet.nsp
            ))),
            PacketKind::Disconnect => {
                self.sockets.retain(|(n, _)| **n != *packet.nsp);
                Ok(())
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                self.on_event(&packet, attachments);
                Ok(())
            }
            // The server never asks for acknowledgements.
            PacketKind::Ack | PacketKind::BinaryAck => Ok(()),
        }
    }

    fn connect(&mut self, packet: &Packet) {
        let nsp = packet.nsp.as_str();
        if !self.app.application.has_namespace(nsp) {
            let mut s = String::from("4");
            write_connect_error(&mut s, nsp, "Invalid namespace");
            self.push(&[Frame::text(s)]);
            return;
        }
        let auth = packet.data_str().unwrap_or("{}");
        if self.gated(nsp, auth) {
            return;
        }
        let shared_log = self.cluster_recovery(auth);
        if shared_log.is_none() && self.app.hub.recovery_window().is_some() {
            if self.recover(nsp, auth) {
                self.app.ctx.meters.recovery(0);
                return;
            }
            if auth.contains("\"pid\"") {
                self.app.ctx.meters.recovery(2);
            }
        }
        // The socket id is its client id, so the server API and the Redis
        // emitter reach it (`io.to(socket.id)`), as on Node.
        let sid: Arc<str> = Arc::from(crate::engineio::random_id());
        let transport = match self.session.upgrade().map(|s| s.transport()) {
            Some(TransportKind::Polling) => "polling",
            _ => "websocket",
        };
        let (peer, headers) = match &self.handshake {
            Some(h) => (h.0, h.1.clone()),
            None => (None, serde_json::Map::new()),
        };
        let connecting = self.connecting(
            nsp,
            RawValue::from_string(auth.to_owned()).expect("decoder validated the JSON"),
        );
        let arrival = connecting.arrival(sid, transport, peer, headers);
        match shared_log {
            Some((pid, offset)) => connecting.restore_or_start(pid, offset, arrival),
            None => connecting.start(arrival),
        }
        // Admitted at once (no connect hook): in `sockets` now.
        self.handoff.take_into(&mut self.sockets);
    }

    /// A CONNECT of namespace `nsp` with `auth`, to be answered.
    fn connecting(&self, nsp: &str, auth: Box<RawValue>) -> Connecting {
        Connecting {
            app: self.app.clone(),
            outbox: self.outbox.clone(),
            connected: self.connected.clone(),
            handoff: self.handoff.clone(),
            nsp: nsp.into(),
            auth,
        }
    }

    /// A CONNECT to a namespace with its own gate
    /// ([`Application::gate`]): checked in a task (the session goes on
    /// reading), then admitted as is or refused with the gate's message.
    /// False when the namespace has no gate.
    fn gated(&mut self, nsp: &str, auth: &str) -> bool {
        let raw = RawValue::from_string(auth.to_owned()).expect("decoder validated the JSON");
        let Some(check) = self.app.application.gate(nsp, &raw) else {
            return false;
        };
        let sid: Arc<str> = Arc::from(crate::engineio::random_id());
        let transport = match self.session.upgrade().map(|s| s.transport()) {
            Some(TransportKind::Polling) => "polling",
            _ => "websocket",
        };
        let connecting = self.connecting(nsp, raw);
        self.app.tracker.spawn(async move {
            match check.await {
                Ok(()) => {
                    let grant = admit::Grant {
                        identity: volna_hub::Identity {
                            client: Some(sid.clone()),
                            transport,
                            ..Default::default()
                        },
                        name: Some("admin".into()),
                        rooms: Vec::new(),
                        sign_in_by: None,
                    };
                    connecting.finish(&sid, Ok(grant));
                }
                Err(message) => {
                    let mut s = String::from("4");
                    write_connect_error(&mut s, &connecting.nsp, &message);
                    let _ = connecting.outbox.push(&[Frame::text(s)]);
                }
            }
        });
        true
    }

    /// The `pid` and `offset` of a CONNECT that recovers through the
    /// cluster's shared log (its offset is a place in that log).
    fn cluster_recovery(&self, auth: &str) -> Option<(String, String)> {
        self.app.hub.recovery_window()?;
        let adapter = self.app.hub.adapter()?;
        let auth: serde_json::Value = serde_json::from_str(auth).ok()?;
        let pid = auth.get("pid")?.as_str()?;
        let offset = auth.get("offset")?.as_str()?;
        adapter
            .owns_offset(offset)
            .then(|| (pid.to_owned(), offset.to_owned()))
    }

    /// Connection-state recovery: a CONNECT whose `auth` names a kept
    /// session (`pid`) and the last offset its client got (`offset`; none
    /// if it got no event at all) gets the same socket id, identity and
    /// rooms back, first the events those rooms had meanwhile, then the
    /// CONNECT answer with the same `pid` (the client's `recovered`). The
    /// admission is not asked again, as the reference server's
    /// `skipMiddlewares`. False, and a fresh connection instead, when there
    /// is no such session or the log no longer reaches back to the offset.
    fn recover(&mut self, nsp: &str, auth: &str) -> bool {
        let Ok(auth) = serde_json::from_str::<serde_json::Value>(auth) else {
            return false;
        };
        let Some(pid) = auth.get("pid").and_then(serde_json::Value::as_str) else {
            return false;
        };
        let hub = &self.app.hub;
        let Some(session) = hub.take_session(pid, nsp) else {
            return false;
        };
        let after = match auth.get("offset") {
            None | Some(serde_json::Value::Null) => Some(session.connected_at),
            Some(serde_json::Value::String(offset)) => volna_hub::parse_recovery_offset(offset),
            Some(_) => None,
        };
        let (Some(after), Some(sid)) = (after, session.identity.client.clone()) else {
            return false;
        };
        let connected_at = hub.recovery_position();
        let grant = admit::Grant {
            identity: session.identity,
            name: Some(session.name.to_string()),
            rooms: Vec::new(),
            sign_in_by: None,
        };
        let conn = grant.register(hub, nsp, self.outbox.clone(), Arc::new(SioCodec::new(nsp)));
        let sent = match hub.resume_session(conn.id(), nsp, &session.rooms, after) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::debug!(error = %e, "socket.io session not recovered");
                return false;
            }
        };
        tracing::debug!(%sid, sent, "socket.io session recovered");
        if !self.connected.done.swap(true, Ordering::AcqRel) {
            self.connected.wake.notify_one();
        }
        let mut s = String::from("4");
        volna_protocols::socketio::write_connect_with_pid(&mut s, nsp, &sid, Some(pid));
        self.push(&[Frame::text(s)]);
        let pid: Arc<str> = Arc::from(pid);
        self.sockets.retain(|(n, _)| &**n != nsp);
        self.sockets.push((
            nsp.into(),
            Socket {
                conn,
                pid: Some(pid),
                connected_at,
            },
        ));
        true
    }

    fn socket_ref<'a>(&'a self, socket: &'a Socket) -> SocketRef<'a> {
        SocketRef {
            conn: &socket.conn,
            outbox: &self.outbox,
            tracker: &self.app.tracker,
        }
    }

    fn push(&self, frames: &[Frame]) {
        // A full queue closes the outbox; the session notices and ends.
        let _ = self.outbox.push(frames);
    }

    fn on_event(&mut self, packet: &Packet, attachments: Vec<Bytes>) {
        let Ok(event) = packet.event() else {
            // The decoder only lets well-formed events through.
            Stats::bump(&self.app.hub.stats().bad_input);
            return;
        };
        let Some(socket) = self.socket(&packet.nsp) else {
            return;
        };
        let call = EventCall {
            name: event.name.as_ref(),
            args: &event.args,
            attachments,
            ack: packet.id,
        };
        self.app
            .application
            .on_event(&self.socket_ref(socket), call);
    }
}
