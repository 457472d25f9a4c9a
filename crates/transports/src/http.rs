//! The HTTP side: the state every HTTP endpoint shares ([`HttpState`]),
//! `GET /health`, and [`serve`], which runs the router the server merges
//! from every endpoint's (`/health`, `/ws`, Socket.IO, the chat page).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use volna_media::LagMonitor;

use crate::app::Context;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The hub and the image service, as every transport applies
    /// operations with them.
    pub app: Context,
    /// Cancelled when the server shuts down: long-lived connections
    /// (WebSocket, long-polling) watch it and close themselves.
    pub shutdown: CancellationToken,
    /// Event-loop lag, measured continuously; reported by `/health`.
    pub lag: Option<LagMonitor>,
}

/// The router of `GET /health`: counters, cluster state, event-loop lag
/// and image pool figures as JSON (`?reset_lag=1` starts a new lag window).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

/// Query of `GET /health`.
#[derive(Debug, Default, serde::Deserialize)]
struct HealthQuery {
    /// `reset_lag=1` starts a new event-loop lag window after this answer
    /// (benchmarks measure one run at a time).
    #[serde(default)]
    reset_lag: Option<String>,
}

/// `GET /health`: `{"status":"ok", "version":…, counters…}`.
async fn health(
    State(state): State<HttpState>,
    Query(query): Query<HealthQuery>,
) -> Json<serde_json::Value> {
    let mut body = serde_json::Map::new();
    body.insert("status".into(), "ok".into());
    body.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    for (name, value) in state.app.hub.stats().snapshot() {
        body.insert(name.into(), value.into());
    }
    let hooks = state.app.hooks.stats();
    let history = state.app.hub.history_size();
    body.insert(
        "history".into(),
        serde_json::json!({"bytes": history.bytes, "max_bytes": history.max_bytes, "evicted_rooms": history.evicted}),
    );
    if let Some((window, sessions, logged)) = state.app.hub.recovery_sizes() {
        body.insert(
            "recovery".into(),
            serde_json::json!({"window_ms": window.as_millis() as u64, "sessions": sessions, "logged": logged}),
        );
    }
    body.insert(
        "hooks".into(),
        serde_json::json!({
            "calls": hooks.calls.load(std::sync::atomic::Ordering::Relaxed),
            "failures": hooks.failures.load(std::sync::atomic::Ordering::Relaxed),
            "refusals": hooks.refusals.load(std::sync::atomic::Ordering::Relaxed),
        }),
    );
    if let Some(adapter) = state.app.hub.adapter() {
        body.insert("cluster".into(), adapter.health());
    }
    if let Some(lag) = &state.lag {
        let s = lag.snapshot();
        body.insert(
            "event_loop_lag_us".into(),
            serde_json::json!({"samples": s.samples, "mean": s.mean_us, "p50": s.p50_us, "p99": s.p99_us, "max": s.max_us}),
        );
        if query
            .reset_lag
            .as_deref()
            .is_some_and(|v| v == "1" || v == "true")
        {
            lag.reset();
        }
    }
    if let Some(images) = &state.app.images {
        let s = images.pool().stats();
        body.insert(
            "image_pool".into(),
            serde_json::json!({"workers": s.workers, "done": s.done, "failed": s.failed, "rejected_busy": s.rejected_busy, "queue_depth": s.queue_depth, "work_us": s.work_us}),
        );
    }
    Json(body.into())
}

pub use crate::websocket::HttpLimits;

/// Serves `router` on `listener` until `shutdown` is cancelled, with the
/// HTTP/1 server whose upgraded connections every WebSocket endpoint runs
/// on ([`crate::websocket::serve`]), and the default [`HttpLimits`].
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let no_gate = crate::ipgate::IpGate::new(crate::ipgate::IpLimits {
        max_open: 0,
        per_second: 0.0,
        ..Default::default()
    });
    serve_with(
        listener,
        router,
        shutdown,
        HttpLimits::default(),
        no_gate,
        None,
    )
    .await
}

/// [`serve`] with these limits, connections counted in `gate` (shared
/// with the TCP transport), and HTTPS when `tls` is given.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
    gate: crate::ipgate::IpGate,
    tls: Option<crate::tls::Tls>,
) {
    crate::websocket::serve(listener, router, shutdown, limits, gate, tls).await
}
