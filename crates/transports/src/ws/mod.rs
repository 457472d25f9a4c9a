//! The plain WebSocket transport: a small JSON protocol on `GET /ws`
//! (`docs/websocket-protocol.md`) and a bare echo on `GET /ws/echo` for
//! compliance runs (Autobahn).
//!
//! Both run on volna's one WebSocket ([`crate::websocket`]), as Engine.IO
//! does. Each connection is one task that reads requests and applies them;
//! replies and broadcasts go through the connection's
//! [`Outbox`](volna_hub::Outbox), which
//! writes straight to the socket when nothing is queued, so a client sees
//! them in the order the server produced them.
//!
//! WebSocket clients live in the hub namespace [`NAMESPACE`] (`/`), with the
//! TCP line clients and Socket.IO's default namespace, so all three meet in
//! the same rooms. A message's `data` is any JSON value; binary attachments
//! travel as separate binary frames and are referenced from `data` by
//! `{"_placeholder":true,"num":i}` objects, exactly as Socket.IO carries
//! them, so they map 1:1 onto [`volna_hub::Data`].
//!
//! - `request.rs`: a text frame → an [`Op`](crate::app::Op);
//! - `requests.rs`: one connection's requests, attachments and replies;
//! - `render.rs`: replies, errors and hub events as JSON frames
//!   ([`JsonCodec`]);
//! - `connection.rs`: the read and write loops, pings, timeouts, closing,
//!   and the echo endpoint.

mod connection;
mod render;
mod request;
mod requests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio_util::task::TaskTracker;
use volna_hub::{Codec, OutboxLimits};

use crate::app::admit::{self, Arrival};
use crate::http::HttpState;
pub use crate::tcp::NAMESPACE;
use crate::websocket::{Flusher, Reader, Upgrade, WsSocket};
pub use render::JsonCodec;

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
    /// Broadcast coalescing: a connection written to less than this ago
    /// gets its next broadcast frames together once this has passed
    /// (replies go at once and take held frames along). Zero turns it off.
    /// Defaults to 15 ms, as Engine.IO's (at most
    /// [`MAX_HOLD_MS`](crate::websocket::MAX_HOLD_MS)).
    pub coalesce: Duration,
    /// Whether `GET /ws/echo` is served. Defaults to true.
    pub echo: bool,
    /// Largest message `/ws/echo` accepts. Defaults to 16 MiB, the largest
    /// message of the Autobahn suite.
    pub echo_max_message_size: usize,
    /// Browser origins besides volna's own that may connect
    /// ([`crate::origin`]); `*` for any. Defaults to none.
    pub allowed_origins: Vec<String>,
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
            coalesce: Duration::from_millis(15),
            echo: true,
            echo_max_message_size: 16 << 20,
            allowed_origins: Vec::new(),
        }
    }
}

/// Shared state of the WebSocket handlers.
#[derive(Clone)]
pub struct WsState {
    /// What every HTTP endpoint shares: the application context and the
    /// shutdown signal.
    pub http: HttpState,
    /// The transport's settings.
    pub config: Arc<WsConfig>,
    /// Every connection is a task of this tracker, so a server waiting on
    /// the tracker waits for WebSocket goodbyes too.
    pub tracker: TaskTracker,
    codec: Arc<dyn Codec>,
    flusher: Arc<Flusher>,
}

impl WsState {
    /// State for [`router`].
    pub fn new(http: HttpState, config: WsConfig, tracker: TaskTracker) -> WsState {
        let flusher = Flusher::new(config.coalesce);
        WsState {
            http,
            config: Arc::new(config),
            tracker,
            codec: Arc::new(JsonCodec),
            flusher,
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
    /// A token for the connect hook.
    token: Option<String>,
}

/// Accepts the upgrade and spawns `serve` on the socket once it is ours.
fn accept<F, Fut>(state: &WsState, req: Request, max_message: usize, serve: F) -> Response
where
    F: FnOnce(Arc<WsSocket>, Reader) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (parts, _body) = req.into_parts();
    let upgrade = match Upgrade::from_parts(&parts) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.into_response(),
    };
    let place = upgrade.place();
    let (resp, stream) = upgrade.accept();
    state.tracker.spawn(async move {
        let Some((stream, pre)) = stream.await else {
            return;
        };
        serve(
            Arc::new(WsSocket::new(stream).holding(place)),
            Reader::new(max_message, pre),
        )
        .await;
    });
    resp
}

async fn ws_handler(
    State(state): State<WsState>,
    Query(query): Query<ConnectQuery>,
    req: Request,
) -> Response {
    if !crate::origin::origin_allowed(req.headers(), &state.config.allowed_origins) {
        crate::app::count_bad_input(&state.http.app.hub);
        return crate::origin::refused_origin();
    }
    let max = state.config.max_message_size;
    let s = state.clone();
    let ctx = &state.http.app;
    let arrival = Arrival {
        client: ctx.hub.new_client_id(),
        transport: "websocket",
        protocol: "json",
        remote_addr: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        name: query.name,
        data: match query.token {
            Some(token) => serde_json::json!({ "token": token }),
            None => serde_json::Value::Null,
        },
        headers: if admit::has_connect_hook(ctx) {
            admit::passed_headers(ctx, req.headers())
        } else {
            serde_json::Map::new()
        },
    };
    accept(&state, req, max, move |sock, reader| {
        connection::run(sock, reader, s, arrival)
    })
}

async fn echo_handler(State(state): State<WsState>, req: Request) -> Response {
    if !crate::origin::origin_allowed(req.headers(), &state.config.allowed_origins) {
        return crate::origin::refused_origin();
    }
    let max = state.config.echo_max_message_size;
    let s = state.clone();
    accept(&state, req, max, move |sock, reader| {
        connection::run_echo(sock, reader, s)
    })
}
