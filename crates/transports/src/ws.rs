//! The plain WebSocket transport: a small JSON protocol on `GET /ws`
//! (`docs/websocket-protocol.md`) and a bare echo on `GET /ws/echo` for
//! compliance runs (Autobahn).
//!
//! Each `/ws` connection runs two tasks: the upgrade task reads frames and
//! acts on them, a writer task drains the connection's [`Outbox`] and feeds
//! everything queued to the socket before flushing once. Replies and
//! broadcasts go through the same outbox, so a client sees them in the order
//! the server produced them.
//!
//! WebSocket clients live in the hub namespace [`NAMESPACE`] (`/`), with the
//! TCP line clients and Socket.IO's default namespace, so all three meet in
//! the same rooms. A message's `data` is any JSON value; binary attachments
//! travel as separate binary frames and are referenced from `data` by
//! `{"_placeholder":true,"num":i}` objects, exactly as Socket.IO carries
//! them, so they map 1:1 onto [`volna_hub::Data`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{
    Batch, CloseReason, Codec, Conn, Data, Event, Frame, MemberInfo, Message, Outbox, OutboxLimits,
    Stats,
};

use volna_protocols::json::{self, push_json_string};

use crate::app::{Applied, Context, Op, Outcome, Reply};
use crate::http::HttpState;
pub use crate::tcp::NAMESPACE;

/// Settings of the WebSocket transport.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest WebSocket message accepted on `/ws`, in bytes; also the bound
    /// of one request together with all its attachments. A larger message
    /// closes the connection with 1009 after a `too-large` error frame.
    /// Defaults to 1 MiB.
    pub max_message_size: usize,
    /// Most binary attachments one request may announce. Defaults to 16.
    pub max_attachments: usize,
    /// Bounds of each connection's outgoing queue.
    pub outbox: OutboxLimits,
    /// How long the server keeps trying to deliver the last frames and the
    /// close frame, and waits for the client's close reply. Defaults to 5 s.
    pub close_grace: Duration,
    /// How often the server pings an otherwise quiet client. `None` disables
    /// pings. Defaults to 25 s.
    pub ping_interval: Option<Duration>,
    /// A connection that sends nothing (not even a pong) for this long is
    /// closed with 1001. `None` disables the check. Defaults to 60 s.
    pub idle_timeout: Option<Duration>,
    /// Messages `history` returns when given no `limit`. Defaults to 20.
    pub history_default: usize,
    /// Initial capacity of a connection's read buffer. tungstenite allocates
    /// it up front, so it is paid by every idle connection. Defaults to 4 KiB.
    pub read_buffer_size: usize,
    /// Bytes buffered before the writer hits the socket in the middle of a
    /// batch (a batch is always flushed at its end). Defaults to 16 KiB.
    pub write_buffer_size: usize,
    /// Whether `GET /ws/echo` is served. Defaults to true.
    pub echo: bool,
    /// Largest message `/ws/echo` accepts. Defaults to 16 MiB, the largest
    /// message of the Autobahn suite.
    pub echo_max_message_size: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: 1 << 20,
            max_attachments: 16,
            outbox: OutboxLimits::default(),
            close_grace: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(25)),
            idle_timeout: Some(Duration::from_secs(60)),
            history_default: 20,
            read_buffer_size: 4 << 10,
            write_buffer_size: 16 << 10,
            echo: true,
            echo_max_message_size: 16 << 20,
        }
    }
}

/// Shared state of the WebSocket handlers.
#[derive(Clone)]
pub struct WsState {
    pub http: HttpState,
    pub config: Arc<WsConfig>,
    /// Every connection holds a token of this tracker until it has closed,
    /// so a server waiting on the tracker waits for WebSocket goodbyes too.
    pub tracker: TaskTracker,
    codec: Arc<dyn Codec>,
}

impl WsState {
    /// State for [`router`].
    pub fn new(http: HttpState, config: WsConfig, tracker: TaskTracker) -> WsState {
        WsState {
            http,
            config: Arc::new(config),
            tracker,
            codec: Arc::new(JsonCodec),
        }
    }
}

/// `GET /ws` (the JSON protocol) and, if enabled, `GET /ws/echo`.
pub fn router(state: WsState) -> Router {
    let mut r = Router::new().route("/ws", get(ws_handler));
    if state.config.echo {
        r = r.route("/ws/echo", get(echo_handler));
    }
    r.with_state(state)
}

/// Query string of `GET /ws`.
#[derive(Debug, Deserialize)]
struct ConnectQuery {
    /// Requested display name; invalid or missing gives `guest-<id>`.
    name: Option<String>,
}

async fn ws_handler(
    State(state): State<WsState>,
    Query(query): Query<ConnectQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let cfg = state.config.clone();
    let token = state.tracker.token();
    ws.read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        .max_message_size(cfg.max_message_size)
        .max_frame_size(cfg.max_message_size)
        .on_upgrade(move |socket| async move {
            let _token = token;
            run_connection(socket, state, query.name).await;
        })
}

async fn echo_handler(State(state): State<WsState>, ws: WebSocketUpgrade) -> Response {
    let cfg = state.config.clone();
    let token = state.tracker.token();
    ws.read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        .max_message_size(cfg.echo_max_message_size)
        .max_frame_size(cfg.echo_max_message_size)
        .on_upgrade(move |socket| async move {
            let _token = token;
            run_echo(socket, cfg, state.http.shutdown.clone()).await;
        })
}

// ---------------------------------------------------------------------------
// JSON writing

/// A JSON object written field by field. Keys are static ASCII names that
/// need no escaping.
struct Obj {
    s: String,
    first: bool,
}

impl Obj {
    fn with_capacity(cap: usize) -> Obj {
        let mut s = String::with_capacity(cap);
        s.push('{');
        Obj { s, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.s.push(',');
        }
        self.first = false;
        self.s.push('"');
        self.s.push_str(k);
        self.s.push_str("\":");
        &mut self.s
    }

    fn str(mut self, k: &str, v: &str) -> Obj {
        push_json_string(self.key(k), v);
        self
    }

    fn num(mut self, k: &str, v: u64) -> Obj {
        let _ = write!(self.key(k), "{v}");
        self
    }

    fn bool(mut self, k: &str, v: bool) -> Obj {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    /// A value that is already valid JSON text.
    fn raw(mut self, k: &str, v: &str) -> Obj {
        self.key(k).push_str(v);
        self
    }

    fn finish(mut self) -> String {
        self.s.push('}');
        self.s
    }
}

fn member_json(out: &mut String, m: &MemberInfo) {
    let _ = write!(out, "{{\"id\":{},\"name\":", m.id);
    push_json_string(out, &m.name);
    out.push('}');
}

fn members_json(members: &[MemberInfo]) -> String {
    let mut s = String::with_capacity(2 + members.len() * 32);
    s.push('[');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        member_json(&mut s, m);
    }
    s.push(']');
    s
}

/// The `{"type":"message",…}` object of a hub message. Its attachments, if
/// any, are announced by `"attachments":N` and follow as binary frames.
fn message_json(m: &Message) -> String {
    let mut from = String::with_capacity(32 + m.from.name.len());
    member_json(&mut from, &m.from);
    let mut o = Obj::with_capacity(112 + m.room.len() + from.len() + m.data.json.get().len())
        .str("type", "message")
        .str("room", &m.room)
        .num("offset", m.offset)
        .num("ts", m.ts)
        .raw("from", &from)
        .raw("data", m.data.json.get());
    if !m.data.attachments.is_empty() {
        o = o.num("attachments", m.data.attachments.len() as u64);
    }
    o.finish()
}

/// Encodes hub events for `/ws` clients. Stateless: one key for every
/// connection, so a broadcast is rendered once for all of them.
pub struct JsonCodec;

impl JsonCodec {
    const KEY: u64 = u64::from_be_bytes(*b"ws-json\0");
}

impl Codec for JsonCodec {
    fn key(&self) -> u64 {
        Self::KEY
    }

    fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>) {
        match event {
            Event::Message(m) => {
                out.push(Frame::text(message_json(m)));
                out.extend(m.data.attachments.iter().cloned().map(Frame::Binary));
            }
            Event::Presence(p) => {
                let s = Obj::with_capacity(96 + p.room.len() + p.member.name.len())
                    .str("type", "presence")
                    .str("room", &p.room)
                    .str("event", p.kind.as_str())
                    .num("id", p.member.id)
                    .str("name", &p.member.name)
                    .num("members", p.members as u64)
                    .finish();
                out.push(Frame::text(s));
            }
            Event::Emit(e) => {
                // An event from another server (see docs/cluster.md).
                let mut o = Obj::with_capacity(64 + e.event.len() + e.args.json.get().len())
                    .str("type", "event");
                if let Some(room) = &e.room {
                    o = o.str("room", room);
                }
                o = o.str("event", &e.event).raw("args", e.args.json.get());
                if !e.args.attachments.is_empty() {
                    o = o.num("attachments", e.args.attachments.len() as u64);
                }
                out.push(Frame::text(o.finish()));
                out.extend(e.args.attachments.iter().cloned().map(Frame::Binary));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Requests

/// Every op the protocol knows.
const OPS: &[&str] = &[
    "nick", "join", "leave", "message", "echo", "who", "rooms", "history", "image",
];

/// A request's fields as raw JSON, checked one by one afterwards so errors
/// can say which field is wrong. Unknown fields are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    attachments: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow, rename = "self")]
    include_self: Option<&'a RawValue>,
}

/// A parsed request. `id` is the raw JSON of the client's id (a number or a
/// string), echoed back in the reply.
#[derive(Debug)]
struct Request {
    id: Option<String>,
    op: &'static str,
    /// The operation, without its binary parts yet (see [`with_parts`]).
    action: Op,
    attachments: usize,
}

/// A refused request.
#[derive(Debug)]
struct ReqError {
    id: Option<String>,
    op: Option<&'static str>,
    code: &'static str,
    message: String,
    /// Binary frames the request announced, to be skipped so the connection
    /// stays in step.
    skip: usize,
}

/// The first cheap look at a value's JSON type.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn parse_request(text: &str, cfg: &WsConfig) -> Result<Request, ReqError> {
    let err = |id: Option<String>, op, code, message: String| ReqError {
        id,
        op,
        code,
        message,
        skip: 0,
    };
    if let Err(e) = serde_json::from_str::<&RawValue>(text) {
        return Err(err(None, None, "bad-json", format!("malformed JSON: {e}")));
    }
    let env: Envelope<'_> = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) => {
            let message = if text.trim_start().starts_with('{') {
                format!("invalid request: {e}")
            } else {
                "a request must be a JSON object such as {\"op\":\"join\",\"room\":\"lobby\",\"id\":1}"
                    .to_string()
            };
            return Err(err(None, None, "bad-request", message));
        }
    };
    let id = match env.id {
        None => None,
        Some(raw) => match json_kind(raw) {
            "a string" | "a number" => Some(raw.get().to_string()),
            other => {
                return Err(err(
                    None,
                    None,
                    "bad-request",
                    format!("id must be a number or a string, not {other}"),
                ))
            }
        },
    };
    let Some(op_raw) = env.op else {
        return Err(err(
            id,
            None,
            "bad-request",
            format!("missing field op (one of {})", OPS.join(", ")),
        ));
    };
    let op_name: String = match serde_json::from_str(op_raw.get()) {
        Ok(s) => s,
        Err(_) => {
            return Err(err(
                id,
                None,
                "bad-request",
                format!("op must be a string, not {}", json_kind(op_raw)),
            ))
        }
    };
    let Some(op) = OPS.iter().copied().find(|o| *o == op_name) else {
        let mut shown = op_name;
        if shown.len() > 64 {
            let mut cut = 64;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        return Err(err(
            id,
            None,
            "unknown-op",
            format!("unknown op {shown:?}; known ops: {}", OPS.join(", ")),
        ));
    };

    // From here on, errors name the op and skip announced attachments.
    let attachments = match env.attachments {
        None => 0,
        Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
            Ok(n) if n as usize <= cfg.max_attachments => n as usize,
            Ok(n) => {
                return Err(ReqError {
                    id,
                    op: Some(op),
                    code: "too-many-attachments",
                    message: format!(
                        "{n} attachments announced; at most {} are allowed",
                        cfg.max_attachments
                    ),
                    // Too many to skip reliably: treat the frames that follow
                    // as unexpected.
                    skip: 0,
                });
            }
            Err(_) => {
                return Err(err(
                    id,
                    Some(op),
                    "bad-request",
                    format!(
                        "attachments must be a non-negative integer, not {}",
                        json_kind(raw)
                    ),
                ))
            }
        },
    };
    let bad = |id: Option<String>, message: String| ReqError {
        id,
        op: Some(op),
        code: "bad-request",
        message,
        skip: attachments,
    };
    let string_field = |id: &Option<String>, field: &str, raw: Option<&RawValue>| {
        let Some(raw) = raw else {
            return Err(bad(
                id.clone(),
                format!("{op} needs a string field {field}"),
            ));
        };
        serde_json::from_str::<String>(raw.get()).map_err(|_| {
            bad(
                id.clone(),
                format!("{field} must be a string, not {}", json_kind(raw)),
            )
        })
    };
    if attachments > 0 && !matches!(op, "message" | "echo" | "image") {
        return Err(bad(id, format!("{op} takes no attachments")));
    }
    if op == "image" && attachments != 1 {
        return Err(bad(
            id,
            "image needs \"attachments\":1 followed by one binary frame with the image bytes"
                .into(),
        ));
    }
    let action = match op {
        "nick" => Op::Nick {
            name: string_field(&id, "name", env.name)?,
        },
        "join" => Op::Join {
            room: string_field(&id, "room", env.room)?,
        },
        "leave" => Op::Leave {
            room: string_field(&id, "room", env.room)?,
        },
        "who" => Op::Who {
            room: string_field(&id, "room", env.room)?,
        },
        "rooms" => Op::Rooms,
        "history" => {
            let room = string_field(&id, "room", env.room)?;
            let limit = match env.limit {
                None => cfg.history_default,
                Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                    Ok(n) => n.min(10_000) as usize,
                    Err(_) => {
                        return Err(bad(
                            id,
                            format!(
                                "limit must be a non-negative integer, not {}",
                                json_kind(raw)
                            ),
                        ))
                    }
                },
            };
            Op::History { room, limit }
        }
        "message" => {
            let room = string_field(&id, "room", env.room)?;
            let Some(data) = env.data else {
                return Err(bad(
                    id,
                    "message needs a field data (any JSON value)".into(),
                ));
            };
            if let Err(why) = check_placeholders(data, attachments) {
                return Err(ReqError {
                    code: "bad-placeholder",
                    ..bad(id, why)
                });
            }
            let include_self = match env.include_self {
                None => true,
                Some(raw) => match raw.get() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(
                            id,
                            format!("self must be a boolean, not {}", json_kind(raw)),
                        ))
                    }
                },
            };
            Op::Message {
                room,
                data: Data {
                    json: data.to_owned(),
                    attachments: Vec::new(),
                },
                include_self,
            }
        }
        "echo" => {
            let data = env
                .data
                .map(|d| d.to_owned())
                .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
            if let Err(why) = check_placeholders(&data, attachments) {
                return Err(ReqError {
                    code: "bad-placeholder",
                    ..bad(id, why)
                });
            }
            Op::Echo {
                data: Data {
                    json: data,
                    attachments: Vec::new(),
                },
            }
        }
        "image" => {
            let room = string_field(&id, "room", env.room)?;
            let name = match env.name {
                None => "image".to_string(),
                Some(raw) => string_field(&id, "name", Some(raw))?,
            };
            Op::Image {
                room,
                name,
                bytes: Bytes::new(),
            }
        }
        _ => unreachable!("every op in OPS is handled"),
    };
    Ok(Request {
        id,
        op,
        action,
        attachments,
    })
}

/// Checks that every `{"_placeholder":true,"num":i}` in `data` points at
/// one of the `n` announced attachments, as a Socket.IO receiver requires.
fn check_placeholders(data: &RawValue, n: usize) -> Result<(), String> {
    let raw = data.get();
    if n == 0 && !json::may_hold_placeholders(raw) {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("data could not be read: {e}"))?;
    let invalid = || {
        if n == 0 {
            "data holds a binary placeholder but the request announced no attachments".to_string()
        } else {
            format!("a placeholder's num must be an integer below {n} (the attachments announced)")
        }
    };
    // An invalid num and one out of range get the same answer.
    json::for_each_placeholder(&value, |i| {
        if (i as usize) < n {
            Ok(())
        } else {
            Err(json::InvalidPlaceholder)
        }
    })
    .map_err(|_| invalid())
}

// ---------------------------------------------------------------------------
// Connection

/// A request waiting for its binary frames.
struct Pending {
    id: Option<String>,
    op: &'static str,
    /// `None` when the request was refused and its frames are only skipped.
    action: Option<Op>,
    expected: usize,
    received: usize,
    bytes: usize,
    parts: Vec<Bytes>,
}

/// Per-connection state of the reader.
struct Session<'a> {
    conn: &'a Conn,
    cfg: &'a Arc<WsConfig>,
    pending: Option<Pending>,
    app: &'a Context,
}

fn reply(id: Option<&str>, op: &str) -> Obj {
    Obj::with_capacity(128)
        .str("type", "reply")
        .raw("id", id.unwrap_or("null"))
        .bool("ok", true)
        .str("op", op)
}

fn error_json(
    id: Option<&str>,
    op: Option<&str>,
    code: &str,
    message: &str,
    fatal: bool,
) -> String {
    let mut o = Obj::with_capacity(96 + message.len())
        .str("type", "error")
        .raw("id", id.unwrap_or("null"))
        .bool("ok", false);
    if let Some(op) = op {
        o = o.str("op", op);
    }
    o = o.str("code", code).str("message", message);
    if fatal {
        o = o.bool("fatal", true);
    }
    o.finish()
}

impl Session<'_> {
    fn push(&self, frame: Frame) {
        let _ = self.conn.outbox().push_one(frame);
    }

    /// Sends an error frame and counts it as bad input.
    fn error(&self, id: Option<&str>, op: Option<&str>, code: &str, message: &str) {
        Stats::bump(&self.conn.hub().stats().bad_input);
        self.push(Frame::text(error_json(id, op, code, message, false)));
    }

    fn on_text(&mut self, text: &str) {
        if let Some(p) = self.pending.take() {
            if p.action.is_some() {
                self.error(
                    p.id.as_deref(),
                    Some(p.op),
                    "missing-attachments",
                    &format!(
                        "the request announced {} binary frames but a text frame came after {}; \
                         the request was dropped",
                        p.expected, p.received
                    ),
                );
            }
        }
        match parse_request(text, self.cfg) {
            Ok(req) if req.attachments == 0 => {
                self.execute(req.id.as_deref(), req.op, req.action, Vec::new())
            }
            Ok(req) => {
                self.pending = Some(Pending {
                    id: req.id,
                    op: req.op,
                    action: Some(req.action),
                    expected: req.attachments,
                    received: 0,
                    bytes: text.len(),
                    parts: Vec::with_capacity(req.attachments),
                });
            }
            Err(e) => {
                self.error(e.id.as_deref(), e.op, e.code, &e.message);
                if e.skip > 0 {
                    self.pending = Some(Pending {
                        id: e.id,
                        op: e.op.unwrap_or(""),
                        action: None,
                        expected: e.skip,
                        received: 0,
                        bytes: 0,
                        parts: Vec::new(),
                    });
                }
            }
        }
    }

    fn on_binary(&mut self, bytes: Bytes) {
        let Some(p) = self.pending.as_mut() else {
            self.error(
                None,
                None,
                "unexpected-binary",
                "a binary frame must follow a request that announces it with \"attachments\":N",
            );
            return;
        };
        p.received += 1;
        p.bytes += bytes.len();
        if p.action.is_some() {
            if p.bytes > self.cfg.max_message_size {
                p.action = None;
                p.parts = Vec::new();
                let (id, op) = (p.id.clone(), p.op);
                self.error(
                    id.as_deref(),
                    Some(op),
                    "too-large",
                    &format!(
                        "the request and its attachments exceed {} bytes",
                        self.cfg.max_message_size
                    ),
                );
            } else {
                p.parts.push(bytes);
            }
        }
        let p = self.pending.as_ref().expect("pending checked above");
        if p.received == p.expected {
            let p = self.pending.take().expect("pending checked above");
            if let Some(action) = p.action {
                self.execute(p.id.as_deref(), p.op, action, p.parts);
            }
        }
    }

    /// Applies a decoded request; its reply (now, or when a cluster-wide
    /// `who` or an image is done) carries the request's id.
    fn execute(&self, id: Option<&str>, op: &'static str, action: Op, parts: Vec<Bytes>) {
        let op_value = with_parts(action, parts);
        match op_value.apply(self.conn, self.app) {
            Applied::Now(outcome) => {
                let frames = render(id, op, outcome, self.cfg, self.in_cluster());
                let _ = self.conn.outbox().push(&frames);
            }
            Applied::Later(answer) => {
                let outbox = self.conn.outbox().clone();
                let id = id.map(str::to_string);
                let cfg = self.cfg.clone();
                let in_cluster = self.in_cluster();
                tokio::spawn(async move {
                    let frames = render(id.as_deref(), op, answer.await, &cfg, in_cluster);
                    let _ = outbox.push(&frames);
                });
            }
        }
    }

    fn in_cluster(&self) -> bool {
        self.conn.hub().adapter().is_some()
    }

    /// Reads and handles frames while the connection is open. Returns
    /// whether the stream may still be read for the close handshake.
    async fn read_loop(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        shutdown: &CancellationToken,
    ) -> AfterOpen {
        let outbox = self.conn.outbox().clone();
        let idle = self.cfg.idle_timeout.unwrap_or(FAR_FUTURE);
        // One timer for the whole connection, pushed back by every frame.
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = outbox.wait_closed() => return AfterOpen::Handshake,
                _ = shutdown.cancelled() => {
                    outbox.close(CloseReason::ServerShutdown);
                    return AfterOpen::Handshake;
                }
                _ = &mut timer => {
                    outbox.close(CloseReason::Timeout);
                    return AfterOpen::Handshake;
                }
            };
            let msg = match msg {
                None => return AfterOpen::Done,
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    if let Some((code, message)) = classify(&e) {
                        let stats = self.conn.hub().stats();
                        Stats::bump(&stats.bad_input);
                        Stats::bump(&stats.protocol_closes);
                        let _ = outbox
                            .push_one(Frame::text(error_json(None, None, code, &message, true)));
                        outbox.close(CloseReason::ProtocolError(format!("{code}: {message}")));
                    } else {
                        tracing::debug!(conn = self.conn.id(), error = %e, "websocket read failed");
                    }
                    // After a read error the stream cannot be trusted (an
                    // oversized frame is still in flight): stop reading.
                    return AfterOpen::Done;
                }
            };
            timer.as_mut().reset(Instant::now() + idle);
            match msg {
                WsMessage::Text(text) => self.on_text(text.as_str()),
                WsMessage::Binary(bytes) => self.on_binary(bytes),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                WsMessage::Close(_) => {
                    // tungstenite has queued the close reply; the next read
                    // flushes it and ends the stream.
                    outbox.close(CloseReason::ClientQuit);
                    return AfterOpen::Handshake;
                }
            }
        }
    }
}

/// Gives a decoded operation the binary frames that followed its request.
fn with_parts(op: Op, parts: Vec<Bytes>) -> Op {
    match op {
        Op::Message {
            room,
            data,
            include_self,
        } => Op::Message {
            room,
            data: Data {
                json: data.json,
                attachments: parts,
            },
            include_self,
        },
        Op::Echo { data } => Op::Echo {
            data: Data {
                json: data.json,
                attachments: parts,
            },
        },
        Op::Image { room, name, .. } => Op::Image {
            room,
            name,
            bytes: parts.into_iter().next().unwrap_or_default(),
        },
        other => other,
    }
}

/// The frames of a reply: the reply (or error) object, then its binary
/// attachments.
fn render(
    id: Option<&str>,
    op: &'static str,
    outcome: Outcome,
    cfg: &WsConfig,
    in_cluster: bool,
) -> Vec<Frame> {
    let reply_value = match outcome {
        Ok(r) => r,
        Err(e) => {
            return vec![Frame::text(error_json(
                id,
                Some(op),
                e.code,
                &e.message,
                false,
            ))];
        }
    };
    let text = match reply_value {
        Reply::Nick { name } => reply(id, op).str("name", &name).finish(),
        Reply::Join(info) => reply(id, op)
            .str("room", &info.room)
            .raw("members", &members_json(&info.members))
            .num("count", info.count as u64)
            .bool("already", info.already)
            .finish(),
        Reply::Leave { room, members } => reply(id, op)
            .str("room", &room)
            .num("members", members as u64)
            .finish(),
        Reply::Published(m) => reply(id, op)
            .str("room", &m.room)
            .num("offset", m.offset)
            .num("ts", m.ts)
            .finish(),
        Reply::Echo(data) => {
            let mut o = reply(id, op).raw("data", data.json.get());
            if !data.attachments.is_empty() {
                o = o.num("attachments", data.attachments.len() as u64);
            }
            let mut frames = Vec::with_capacity(1 + data.attachments.len());
            frames.push(Frame::text(o.finish()));
            frames.extend(data.attachments.into_iter().map(Frame::Binary));
            return frames;
        }
        Reply::Who { room, who } => {
            let mut members = String::from("[");
            for (i, m) in who.members.iter().enumerate() {
                if i > 0 {
                    members.push(',');
                }
                match m.id {
                    Some(id) => {
                        let _ = write!(members, "{{\"id\":{id},\"name\":");
                    }
                    None => members.push_str("{\"id\":null,\"name\":"),
                }
                push_json_string(&mut members, &m.name);
                members.push('}');
            }
            members.push(']');
            let mut o = reply(id, op).str("room", &room).raw("members", &members);
            if in_cluster {
                o = o.bool("partial", who.partial);
            }
            o.finish()
        }
        Reply::Rooms(rooms) => {
            let mut list = String::from("[");
            for (i, r) in rooms.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                // `room`/`count` as every transport names them; `name` and
                // `members` as /ws always did.
                list.push_str(
                    &Obj::with_capacity(48 + 2 * r.name.len())
                        .str("room", &r.name)
                        .num("count", r.members as u64)
                        .str("name", &r.name)
                        .num("members", r.members as u64)
                        .finish(),
                );
            }
            list.push(']');
            reply(id, op).raw("rooms", &list).finish()
        }
        Reply::History { room, messages } => return history_frames(id, op, &room, &messages, cfg),
    };
    vec![Frame::text(text)]
}

/// A history reply: the newest messages that fit in half the outgoing
/// queue, so asking for history never makes the asker a slow consumer.
fn history_frames(
    id: Option<&str>,
    op: &'static str,
    room: &str,
    msgs: &[Arc<Message>],
    cfg: &WsConfig,
) -> Vec<Frame> {
    let budget_bytes = cfg.outbox.max_bytes / 2;
    let budget_frames = cfg.outbox.max_frames / 2;
    let (mut bytes, mut frames) = (256, 1);
    let mut encoded = Vec::with_capacity(msgs.len());
    for m in msgs.iter().rev() {
        let json = message_json(m);
        bytes += json.len() + 1 + m.data.attachment_bytes();
        frames += m.data.attachments.len();
        if bytes > budget_bytes || frames > budget_frames {
            break;
        }
        encoded.push((json, m));
    }
    let truncated = encoded.len() < msgs.len();
    let mut list = String::with_capacity(bytes);
    list.push('[');
    let mut bins = Vec::new();
    for (i, (json, m)) in encoded.iter().rev().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(json);
        bins.extend(m.data.attachments.iter().cloned().map(Frame::Binary));
    }
    list.push(']');
    let mut o = reply(id, op).str("room", room).raw("messages", &list);
    if !bins.is_empty() {
        o = o.num("attachments", bins.len() as u64);
    }
    if truncated {
        o = o.bool("truncated", true);
    }
    let mut out = Vec::with_capacity(1 + bins.len());
    out.push(Frame::text(o.finish()));
    out.extend(bins);
    out
}

/// What is left to do with the stream once the connection stops serving.
enum AfterOpen {
    /// Keep reading (and ignoring) frames so the close handshake can finish.
    Handshake,
    /// The stream has ended or must not be read again.
    Done,
}

/// "Never", for disabled timers (30 years, well inside `Instant`'s range).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Maps a read error to the error code and message the client is told, or
/// `None` when the peer simply went away.
///
/// axum hides tungstenite's error type, so this reads the error's text; the
/// unit tests pin the texts of the tungstenite version in use.
fn classify(e: &axum::Error) -> Option<(&'static str, String)> {
    let text = e.to_string();
    if text.starts_with("Space limit exceeded") {
        Some((
            "too-large",
            format!("message too large ({text}); the connection is closed"),
        ))
    } else if text.starts_with("UTF-8 encoding error") {
        Some(("bad-utf8", "a text frame was not valid UTF-8".to_string()))
    } else if text.starts_with("WebSocket protocol error") {
        if text.contains("without closing handshake") {
            None
        } else {
            Some(("protocol-error", text))
        }
    } else {
        None
    }
}

/// The close code and reason the server sends when it closes for `reason`,
/// plus the error frame that goes before it; `None` when no close frame is
/// due (the client left, or the socket is gone).
fn close_for(reason: &CloseReason) -> Option<(u16, String, Option<String>)> {
    let error = match reason {
        CloseReason::ClientQuit | CloseReason::TransportClosed => return None,
        CloseReason::SlowConsumer { .. } => Some("slow-consumer"),
        CloseReason::Timeout => Some("timeout"),
        CloseReason::ServerShutdown | CloseReason::ProtocolError(_) => None,
    };
    let code = crate::close::websocket_close_code(reason);
    let full = reason.to_string();
    let error = error.map(|c| error_json(None, None, c, &full, true));
    Some((code, truncate_reason(full), error))
}

/// Close reasons are limited to 123 bytes.
fn truncate_reason(mut s: String) -> String {
    if s.len() > 123 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn to_ws(frame: Frame) -> Option<WsMessage> {
    match frame {
        Frame::Binary(b) => Some(WsMessage::Binary(b)),
        Frame::Text(b) => match Utf8Bytes::try_from(b) {
            Ok(t) => Some(WsMessage::Text(t)),
            Err(_) => {
                tracing::error!("dropped a text frame that is not UTF-8");
                None
            }
        },
    }
}

async fn run_connection(socket: WebSocket, state: WsState, name: Option<String>) {
    let cfg = state.config.clone();
    let hub = state.http.app.hub.clone();
    let (sink, mut stream) = socket.split();
    let outbox = Arc::new(Outbox::new(cfg.outbox));
    let conn = hub.register(
        NAMESPACE,
        name.as_deref(),
        outbox.clone(),
        state.codec.clone(),
    );
    tracing::debug!(id = conn.id(), "websocket client connected");
    let welcome = Obj::with_capacity(160)
        .str("type", "welcome")
        .str("server", "volna")
        .str("version", env!("CARGO_PKG_VERSION"))
        .num("id", conn.id())
        .str("name", &conn.name())
        .num("max_message_size", cfg.max_message_size as u64)
        .num("max_attachments", cfg.max_attachments as u64)
        .num(
            "max_image_bytes",
            state
                .http
                .app
                .images
                .as_ref()
                .map_or(0, |i| i.pool().limits().max_bytes as u64),
        )
        .finish();
    let _ = outbox.push_one(Frame::text(welcome));
    let mut writer = tokio::spawn(write_loop(sink, outbox.clone(), cfg.clone()));
    let mut session = Session {
        conn: &conn,
        cfg: &cfg,
        pending: None,
        app: &state.http.app,
    };
    let after = session.read_loop(&mut stream, &state.http.shutdown).await;
    drop(session);
    outbox.close(CloseReason::TransportClosed);
    // Leave the rooms now (others see the leave at once); the writer still
    // gets the grace period to say goodbye, and the reader to see the
    // client's close reply, which ends the stream.
    drop(conn);
    let grace = tokio::time::sleep(cfg.close_grace);
    tokio::pin!(grace);
    if let AfterOpen::Handshake = after {
        tokio::select! {
            _ = async { while let Some(Ok(_)) = stream.next().await {} } => {}
            _ = &mut grace => {}
        }
    }
    tokio::select! {
        _ = &mut writer => {}
        _ = &mut grace => writer.abort(),
    }
}

/// Drains the outbox into the socket until it closes, then sends the close
/// frame its reason calls for.
async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    outbox: Arc<Outbox>,
    cfg: Arc<WsConfig>,
) {
    let mut batch: Vec<Frame> = Vec::new();
    let mut ping = cfg.ping_interval.map(|every| {
        let mut i = tokio::time::interval_at(Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let reason = loop {
        let got = tokio::select! {
            b = outbox.next_batch(&mut batch) => b,
            _ = tick(&mut ping) => {
                let sent = tokio::select! {
                    r = sink.send(WsMessage::Ping(Bytes::new())) => r,
                    _ = closed_discarding(&outbox) => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
                continue;
            }
        };
        match got {
            Batch::Frames => {
                let written = tokio::select! {
                    r = send_batch(&mut sink, &mut batch) => r,
                    // A slow consumer's queue is dropped: stop writing to it
                    // even if the socket is stuck.
                    _ = closed_discarding(&outbox) => Ok(()),
                };
                batch.clear();
                if batch.capacity() > 256 {
                    batch = Vec::new();
                }
                if written.is_err() {
                    return;
                }
            }
            Batch::Closed(reason) => break reason,
        }
    };
    let close = close_for(&reason);
    let _ = tokio::time::timeout(cfg.close_grace, async {
        for f in batch.drain(..) {
            if let Some(m) = to_ws(f) {
                sink.feed(m).await?;
            }
        }
        if let Some((code, why, error)) = close {
            if let Some(error) = error {
                sink.feed(WsMessage::Text(error.into())).await?;
            }
            sink.feed(WsMessage::Close(Some(CloseFrame {
                code,
                reason: why.into(),
            })))
            .await?;
        }
        sink.flush().await
    })
    .await;
}

async fn send_batch(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    batch: &mut Vec<Frame>,
) -> Result<(), axum::Error> {
    for f in batch.drain(..) {
        if let Some(m) = to_ws(f) {
            sink.feed(m).await?;
        }
    }
    sink.flush().await
}

/// Resolves once the outbox is closed for a reason that drops its queue.
async fn closed_discarding(outbox: &Outbox) {
    if !outbox.wait_closed().await.discards_queue() {
        std::future::pending::<()>().await;
    }
}

async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------
// Echo

/// `GET /ws/echo`: every text and binary message comes back unchanged.
async fn run_echo(mut socket: WebSocket, cfg: Arc<WsConfig>, shutdown: CancellationToken) {
    let idle = cfg.idle_timeout.unwrap_or(FAR_FUTURE);
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(idle, socket.recv()) => match m {
                Ok(m) => m,
                Err(_) => {
                    close_and_drain(socket, 1001, "timeout", cfg.close_grace).await;
                    return;
                }
            },
            _ = shutdown.cancelled() => {
                close_and_drain(socket, 1001, "server-shutdown", cfg.close_grace).await;
                return;
            }
        };
        match msg {
            None => return,
            Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => {
                if socket.send(m).await.is_err() {
                    return;
                }
            }
            // tungstenite answers pings and close frames itself; the next
            // read flushes the answer.
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some((code, message)) = classify(&e) {
                    let close = match code {
                        "too-large" => 1009,
                        "bad-utf8" => 1007,
                        _ => 1002,
                    };
                    let _ = tokio::time::timeout(
                        cfg.close_grace,
                        socket.send(WsMessage::Close(Some(CloseFrame {
                            code: close,
                            reason: truncate_reason(format!("{code}: {message}")).into(),
                        }))),
                    )
                    .await;
                }
                return;
            }
        }
    }
}

/// Starts the close handshake and waits (at most `grace`) for the reply.
async fn close_and_drain(mut socket: WebSocket, code: u16, reason: &'static str, grace: Duration) {
    let _ = tokio::time::timeout(grace, async {
        socket
            .send(WsMessage::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await?;
        while let Some(m) = socket.recv().await {
            m?;
        }
        Ok::<(), axum::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite;

    #[test]
    fn classifies_tungstenite_errors() {
        let too_long = axum::Error::new(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 10,
                max_size: 5,
            },
        ));
        assert_eq!(classify(&too_long).unwrap().0, "too-large");
        let utf8 = axum::Error::new(tungstenite::Error::Utf8("bad".into()));
        assert_eq!(classify(&utf8).unwrap().0, "bad-utf8");
        let proto = axum::Error::new(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::UnmaskedFrameFromClient,
        ));
        assert_eq!(classify(&proto).unwrap().0, "protocol-error");
        let reset = axum::Error::new(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ));
        assert!(classify(&reset).is_none());
        let io = axum::Error::new(tungstenite::Error::Io(
            std::io::ErrorKind::BrokenPipe.into(),
        ));
        assert!(classify(&io).is_none());
    }

    #[test]
    fn escapes_json_strings() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn parses_requests_and_reports_field_errors() {
        let cfg = WsConfig::default();
        let r = parse_request(r#"{"op":"join","room":"lobby","id":7}"#, &cfg).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert!(matches!(r.action, Op::Join { ref room } if room == "lobby"));
        let e = parse_request("{nope", &cfg).unwrap_err();
        assert_eq!(e.code, "bad-json");
        let e = parse_request("[1]", &cfg).unwrap_err();
        assert_eq!(e.code, "bad-request");
        let e = parse_request(r#"{"op":"dance","id":"x"}"#, &cfg).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("unknown-op", Some("\"x\"")));
        let e = parse_request(r#"{"op":"join","room":5,"id":1}"#, &cfg).unwrap_err();
        assert_eq!(e.code, "bad-request");
        assert!(e.message.contains("room must be a string"), "{}", e.message);
        let e = parse_request(
            r#"{"op":"message","room":"r","attachments":2,"data":{"_placeholder":true,"num":2}}"#,
            &cfg,
        )
        .unwrap_err();
        assert_eq!((e.code, e.skip), ("bad-placeholder", 2));
        let e = parse_request(
            r#"{"op":"message","room":"r","data":[{"_placeholder":true,"num":0}]}"#,
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.code, "bad-placeholder");
        let r = parse_request(
            r#"{"op":"message","room":"r","attachments":1,"data":{"img":{"_placeholder":true,"num":0}}}"#,
            &cfg,
        )
        .unwrap();
        assert_eq!(r.attachments, 1);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let (code, why, error) = close_for(&CloseReason::SlowConsumer {
            frames: 1024,
            bytes: 4 << 20,
        })
        .unwrap();
        assert_eq!(code, 1008);
        assert!(why.len() <= 123 && why.starts_with("slow-consumer"));
        assert!(error.unwrap().contains("\"code\":\"slow-consumer\""));
        assert_eq!(close_for(&CloseReason::ServerShutdown).unwrap().0, 1001);
        assert!(close_for(&CloseReason::TransportClosed).is_none());
    }
}
