//! The server API: `POST /api/<method>` with a JSON body, in the shapes of
//! Centrifugo's HTTP server API, so that a backend written for Centrifugo
//! (the `cent` Python client, `gocent`, `phpcent`…) drives volna unchanged,
//! a Centrifugo channel being a volna room (or a personal room: a client id,
//! or `#user`).
//!
//! - The key travels in `X-API-Key: <key>` (or `Authorization: apikey
//!   <key>`). With no key configured the API does not exist (404); a missing
//!   or wrong key is 401 with an empty body.
//! - A body that is not JSON is 400, an unknown method 404, a body over
//!   [`ApiConfig::max_body`] 413 — each with `{"error": {"code", "message"}}`.
//! - Otherwise the answer is 200 with `{"result": …}` or
//!   `{"error": {"code", "message"}}` ([`ApiError`], Centrifugo's codes).
//!
//! # Layout
//! - this file: configuration, the router, authentication and the answer;
//! - `methods.rs`: the methods (`publish`, `broadcast`, `presence`,
//!   `presence_stats`, `history`, `channels`, `disconnect`, `info`,
//!   `batch`).

mod methods;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::value::RawValue;
use serde_json::{json, Value as Json};
use volna_hub::{Hub, Stats};

/// The server API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The key every request must carry.
    pub key: String,
    /// Largest request body, in bytes. Defaults to 1 MiB.
    pub max_body: usize,
    /// This node's id in `info` (its cluster id when clustered).
    pub node_uid: String,
    /// This node's name in `info`.
    pub node_name: String,
}

impl ApiConfig {
    /// The default body limit: 1 MiB.
    pub const DEFAULT_MAX_BODY: usize = 1 << 20;
}

/// What the handlers share.
#[derive(Clone)]
struct ApiState {
    hub: Hub,
    meters: Arc<crate::meters::Meters>,
    config: Arc<ApiConfig>,
    started: Instant,
}

/// The router of `POST /api/{method}`.
pub fn router(hub: Hub, meters: Arc<crate::meters::Meters>, config: ApiConfig) -> Router {
    let max_body = config.max_body;
    let state = ApiState {
        hub,
        meters,
        config: Arc::new(config),
        started: Instant::now(),
    };
    Router::new()
        .route("/api/{method}", post(call))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// An error in Centrifugo's terms: a code from its list and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code (see the constants).
    pub code: u32,
    /// What went wrong, for the backend's log.
    pub message: String,
}

impl ApiError {
    /// Something failed inside the server.
    pub const INTERNAL: u32 = 100;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: u32 = 104;
    /// A request over a limit.
    pub const LIMIT_EXCEEDED: u32 = 106;
    /// The request is malformed.
    pub const BAD_REQUEST: u32 = 107;
    /// The feature is off for this channel (e.g. presence).
    pub const NOT_AVAILABLE: u32 = 108;
    /// A `since` position that the history cannot continue from.
    pub const UNRECOVERABLE_POSITION: u32 = 112;

    fn new(code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Self::BAD_REQUEST, message)
    }

    fn json(&self) -> Json {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// `POST /api/{method}`.
async fn call(
    State(state): State<ApiState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stats = state.hub.stats();
    if !authorized(&headers, &state.config.key) {
        Stats::bump(&stats.api_errors);
        state.meters.api_call("-", 401);
        tracing::info!(%method, "server API: refused a request without the right key");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Kept as the text it came in: `data` goes out byte for byte.
    let text = std::str::from_utf8(&body).unwrap_or("\u{fffd}");
    let text = if text.trim().is_empty() { "{}" } else { text };
    let params: Box<RawValue> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            Stats::bump(&stats.api_errors);
            let error = ApiError::bad_request(format!("the body is not JSON: {e}"));
            state.meters.api_call("-", error.code);
            return answer(StatusCode::BAD_REQUEST, error.json());
        }
    };
    let Some(method) = methods::Method::from_name(&method) else {
        Stats::bump(&stats.api_errors);
        state.meters.api_call("-", ApiError::METHOD_NOT_FOUND);
        let error = ApiError::new(
            ApiError::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        );
        return answer(StatusCode::NOT_FOUND, error.json());
    };
    Stats::bump(&stats.api_requests);
    let body = match method {
        // A batch answers `{"replies": […]}` at the top, as Centrifugo does.
        methods::Method::Batch => {
            state.meters.api_call(method.name(), 0);
            methods::batch(&state, &params).await
        }
        method => match methods::run(&state, method, &params).await {
            Ok(result) => {
                state.meters.api_call(method.name(), 0);
                json!({ "result": result })
            }
            Err(error) => {
                Stats::bump(&stats.api_errors);
                state.meters.api_call(method.name(), error.code);
                error.json()
            }
        },
    };
    answer(StatusCode::OK, body)
}

fn answer(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether the request carries `key`, as `X-API-Key: key` or
/// `Authorization: apikey key`. Compared in constant time.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split_once(' ')
                        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
                })
                .map(|(_, k)| k.trim())
        });
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), key.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_in_either_header() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "k1"));
        h.insert("x-api-key", "k1".parse().unwrap());
        assert!(authorized(&h, "k1"));
        assert!(!authorized(&h, "k2"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "apikey k1".parse().unwrap());
        assert!(authorized(&h, "k1"));
        h.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert!(!authorized(&h, "k1"));
    }
}
