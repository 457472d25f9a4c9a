//! Engine.IO v4 server: the HTTP long-polling and WebSocket transports, the
//! upgrade from one to the other, heartbeats and sessions.
//!
//! An [`Engine`] serves one path (`/socket.io/` by default) on the shared
//! axum router. It knows nothing of what the messages mean: every session
//! gets a [`SessionHandler`] from the [`EngineHandler`] given to
//! [`Engine::new`] (the Socket.IO layer, or the echo server of the
//! conformance profile) and hands it each text or binary message.
//!
//! ## Outgoing frames
//! Each session has one bounded [`Outbox`](volna_hub::Outbox). Every
//! packet the server sends (open, pings, messages, and whatever the handler
//! pushes) goes through it in order: a [`Frame::Text`] holds one complete
//! Engine.IO text packet (`2`, `4hello`, `42["x"]`), a [`Frame::Binary`] one
//! binary message. On WebSocket a push to an idle outbox is written at once
//! and the rest in vectored batches (`websocket.rs`); a long-polling `GET`
//! drains it into one payload (`\x1e`-separated, binary as `b<base64>`).
//! Only the transport-level replies of the upgrade dance (`3probe` on the
//! probing WebSocket, the `6` noop that ends a pending poll) bypass it.
//! When the outbox overflows the session is closed as a slow consumer.
//!
//! ## Errors
//! Bad requests are answered like the Node.js reference server: HTTP 400
//! (403 for code 4) with `{"code":N,"message":"..."}`, where the codes are
//! 0 `Transport unknown`, 1 `Session ID unknown`, 2 `Bad handshake method`,
//! 3 `Bad request`, 4 `Forbidden`, 5 `Unsupported protocol version`. A
//! polling `POST` larger than `maxPayload` gets 413; a WebSocket message
//! larger than that closes the connection. Invalid packets, overlapping
//! polls and pings sent by the client close the session.

mod polling;
mod session;
mod websocket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{Frame, Hub, OutboxLimits, Stats};

use crate::websocket::{Refusal, Upgrade};

pub use session::{EngineMessage, Session, SessionHandler, TransportKind};

/// Settings of an Engine.IO server.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The HTTP path, with a trailing slash. Defaults to `/socket.io/`.
    pub path: String,
    /// Time between server pings. Defaults to 25 s.
    pub ping_interval: Duration,
    /// How long to wait for the pong. Defaults to 20 s.
    pub ping_timeout: Duration,
    /// Largest polling payload or WebSocket message accepted, in bytes.
    /// Defaults to 1 000 000.
    pub max_payload: usize,
    /// How long a WebSocket may take to complete an upgrade. Defaults to 10 s.
    pub upgrade_timeout: Duration,
    /// Origins allowed to call from a browser page. Empty (the default): no
    /// CORS headers at all, as the reference server without its `cors`
    /// option. `*` allows any origin (reflected, with credentials).
    pub allowed_origins: Vec<String>,
    /// Bounds of each session's outgoing queue.
    pub outbox: OutboxLimits,
    /// Broadcast coalescing on WebSocket sessions: a connection written to less
    /// than this ago gets its next broadcast frames together once this has
    /// passed (replies go at once and take held frames along). Zero turns
    /// it off. Defaults to 15 ms (at most
    /// [`MAX_HOLD_MS`](crate::websocket::MAX_HOLD_MS)).
    pub coalesce: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            outbox: OutboxLimits::default(),
            coalesce: Duration::from_millis(15),
        }
    }
}

/// What the handshake request of a session said.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The peer's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The request's headers.
    pub headers: HeaderMap,
}

/// Creates the application side of each new session.
pub trait EngineHandler: Send + Sync + 'static {
    /// Called once per session, right after the handshake was queued, with
    /// what the handshake request said (to keep, or not).
    fn open(&self, session: &Arc<Session>, handshake: Handshake) -> Box<dyn SessionHandler>;
}

/// An Engine.IO server: its settings, its application and its sessions.
pub struct Engine {
    config: EngineConfig,
    handler: Box<dyn EngineHandler>,
    hub: Hub,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Writes the outboxes of WebSocket sessions (see `websocket.rs`).
    flusher: Arc<crate::websocket::Flusher>,
    /// The task that closes every session at shutdown runs (one for the
    /// engine, instead of a watcher in every session's heartbeat).
    shutdown_watch: std::sync::atomic::AtomicBool,
}

/// The error codes of the reference server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// `transport` is missing or not `polling`/`websocket`.
    UnknownTransport = 0,
    /// `sid` names no open session.
    UnknownSid = 1,
    /// A handshake (no `sid`) by anything but `GET`.
    BadHandshakeMethod = 2,
    /// A request that does not fit the session: the wrong transport or
    /// method, an overlapping poll or `POST`, an invalid payload.
    BadRequest = 3,
    /// The reference server's refusal by its `allowRequest` hook; answered
    /// with HTTP 403. volna has no such hook and never sends it.
    Forbidden = 4,
    /// `EIO` is not `4`.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The message the reference server gives with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A random session id: 20 characters of the URL-safe base64 alphabet.
pub fn random_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 20] = rand::random();
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect()
}

impl Engine {
    /// A new server. Long-lived tasks are spawned on `tracker` and watch
    /// `shutdown`.
    pub fn new(
        config: EngineConfig,
        handler: impl EngineHandler,
        hub: Hub,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Engine> {
        let flusher = crate::websocket::Flusher::new(config.coalesce);
        Arc::new(Engine {
            config,
            handler: Box::new(handler),
            hub,
            sessions: Mutex::new(HashMap::new()),
            shutdown,
            tracker,
            flusher,
            shutdown_watch: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts (once) the task that closes every session at shutdown.
    fn watch_shutdown(self: &Arc<Self>) {
        if self
            .shutdown_watch
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let engine = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            shutdown.cancelled().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let sessions: Vec<Arc<Session>> =
                engine.sessions.lock().unwrap().values().cloned().collect();
            for s in sessions {
                s.close(volna_hub::CloseReason::ServerShutdown);
            }
        });
    }

    /// Its settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The hub whose counters it bumps.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// The router serving the engine's path (with and without its trailing
    /// slash).
    pub fn router(self: &Arc<Self>) -> Router {
        let path = self.config.path.clone();
        let trimmed = path.trim_end_matches('/').to_string();
        let mut router = Router::new().route(&path, any(handle));
        if !trimmed.is_empty() && trimmed != path {
            router = router.route(&trimmed, any(handle));
        }
        router.with_state(self.clone())
    }

    fn get(&self, sid: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap().get(sid).cloned()
    }

    fn remove(&self, sid: &str) {
        self.sessions.lock().unwrap().remove(sid);
    }

    /// Creates a session, queues its open packet, starts its heartbeat and
    /// gives it its handler.
    fn create_session(
        self: &Arc<Self>,
        transport: TransportKind,
        handshake: Handshake,
    ) -> Arc<Session> {
        self.watch_shutdown();
        let session = loop {
            let sid: Arc<str> = Arc::from(random_id());
            let mut sessions = self.sessions.lock().unwrap();
            if sessions.contains_key(&sid) {
                continue;
            }
            let session = Session::new(self.clone(), sid.clone(), transport);
            sessions.insert(sid, session.clone());
            break session;
        };
        let upgrades: Vec<String> = match transport {
            TransportKind::Polling => vec!["websocket".into()],
            TransportKind::WebSocket => Vec::new(),
        };
        let open = volna_protocols::engineio::OpenInfo {
            sid: session.sid().to_string(),
            upgrades,
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        };
        let _ = session
            .outbox()
            .push_one(Frame::text(open.to_packet_string()));
        let handler = self.handler.open(&session, handshake);
        session.set_handler(handler);
        self.tracker.spawn(session::drive(session.clone()));
        if self.shutdown.is_cancelled() {
            // Made while the shutdown watcher was closing the others.
            session.close(volna_hub::CloseReason::ServerShutdown);
        }
        tracing::debug!(sid = %session.sid(), ?transport, "engine.io session opened");
        session
    }

    fn error(&self, code: ErrorCode, req_headers: &HeaderMap) -> Response {
        let body = format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            code as u8,
            code.message()
        );
        let mut resp = (
            code.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        self.apply_cors(req_headers, resp.headers_mut());
        resp
    }

    fn cors_enabled(&self) -> bool {
        !self.config.allowed_origins.is_empty()
    }

    /// Adds CORS headers for an allowed `Origin`.
    fn apply_cors(&self, req: &HeaderMap, out: &mut HeaderMap) {
        if !self.cors_enabled() {
            return;
        }
        let Some(origin) = req.get(header::ORIGIN) else {
            return;
        };
        let allowed = self
            .config
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()));
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if allowed {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Answers a CORS preflight request.
    fn preflight(&self, req: &HeaderMap) -> Response {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        self.apply_cors(req, h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(asked) = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            h.append(
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            );
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        resp
    }

    fn bump_bad_input(&self) {
        Stats::bump(&self.hub.stats().bad_input);
    }

    /// Counts `n` bytes a client sent.
    fn count_received(&self, n: usize) {
        self.hub.stats().received_bytes[2]
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every request to the engine's path.
async fn handle(State(engine): State<Arc<Engine>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let ws = match Upgrade::from_parts(&parts) {
        Ok(upgrade) => Some(upgrade),
        Err(Refusal::NotWebSocket) => None,
        Err(refusal) => return refusal.into_response(),
    };
    let headers = &parts.headers;
    if !crate::origin::origin_allowed(headers, &engine.config.allowed_origins) {
        crate::app::count_bad_input(&engine.hub);
        return crate::origin::refused_origin();
    }
    let transport = match query.get("transport").map(String::as_str) {
        Some("polling") => TransportKind::Polling,
        Some("websocket") => TransportKind::WebSocket,
        _ => {
            if parts.method == Method::OPTIONS && engine.cors_enabled() {
                return engine.preflight(headers);
            }
            return engine.error(ErrorCode::UnknownTransport, headers);
        }
    };
    if parts.method == Method::OPTIONS && engine.cors_enabled() {
        return engine.preflight(headers);
    }
    if let Some(sid) = query.get("sid") {
        let Some(session) = engine.get(sid) else {
            return engine.error(ErrorCode::UnknownSid, headers);
        };
        if session.heartbeat_expired() {
            session.close(volna_hub::CloseReason::Timeout);
            return engine.error(ErrorCode::UnknownSid, headers);
        }
        if let Some(ws) = ws {
            if transport != TransportKind::WebSocket {
                return engine.error(ErrorCode::BadRequest, headers);
            }
            return websocket::upgrade(&engine, session, ws);
        }
        if session.transport() != transport {
            return engine.error(ErrorCode::BadRequest, headers);
        }
        if session.is_closed() && parts.method != Method::GET {
            // Only a poll may still collect the close of a lingering session.
            return engine.error(ErrorCode::UnknownSid, headers);
        }
        let mut resp = match parts.method {
            Method::GET => polling::poll(&engine, &session).await,
            Method::POST => polling::data(&engine, &session, headers, body).await,
            _ => return engine.error(ErrorCode::BadRequest, headers),
        };
        engine.apply_cors(headers, resp.headers_mut());
        return resp;
    }
    if parts.method != Method::GET {
        return engine.error(ErrorCode::BadHandshakeMethod, headers);
    }
    if (transport == TransportKind::WebSocket) != ws.is_some() {
        return engine.error(ErrorCode::BadRequest, headers);
    }
    if query.get("EIO").map(String::as_str) != Some("4") {
        return engine.error(ErrorCode::UnsupportedProtocolVersion, headers);
    }
    let handshake = Handshake {
        peer: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0),
        headers: parts.headers.clone(),
    };
    match ws {
        Some(ws) => websocket::handshake(&engine, ws, handshake),
        None => {
            let session = engine.create_session(TransportKind::Polling, handshake);
            let mut resp = polling::handshake_response(&session);
            engine.apply_cors(headers, resp.headers_mut());
            resp
        }
    }
}

/// An Engine.IO server that sends every message back: the application the
/// official Engine.IO test suite expects.
pub struct EchoHandler;

struct EchoSession {
    session: std::sync::Weak<Session>,
}

impl EngineHandler for EchoHandler {
    fn open(&self, session: &Arc<Session>, _handshake: Handshake) -> Box<dyn SessionHandler> {
        Box::new(EchoSession {
            session: Arc::downgrade(session),
        })
    }
}

impl SessionHandler for EchoSession {
    fn on_message(&mut self, msg: EngineMessage) -> Result<(), volna_hub::CloseReason> {
        let Some(session) = self.session.upgrade() else {
            return Ok(());
        };
        let frame = match msg {
            EngineMessage::Text(text) => {
                let mut b = BytesMut::with_capacity(text.len() + 1);
                b.put_u8(b'4');
                b.extend_from_slice(&text);
                Frame::Text(b.freeze())
            }
            EngineMessage::Binary(data) => Frame::Binary(data),
        };
        let _ = session.outbox().push_one(frame);
        Ok(())
    }

    fn on_close(&mut self, _reason: &volna_hub::CloseReason) {}
}

/// The body of a polling response.
fn text_body(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_safe_and_distinct() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
