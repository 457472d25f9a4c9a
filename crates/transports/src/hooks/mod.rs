//! Backend hooks: volna asks an application's own HTTP backend, in the
//! shapes of Centrifugo's proxy, whether a client may connect (`connect`),
//! what a client's event answers (`rpc`), and whether a publication may go
//! out, perhaps changed (`publish`).
//!
//! Each hook is one URL POSTed a JSON body; the backend answers
//! `{"result": …}`, `{"error": {"code", "message"}}` or `{"disconnect":
//! {"code", "reason"}}` ([`HookAnswer`]). Every call is bounded: a timeout
//! (default 1 s) and a number of calls in flight per hook (default 256;
//! beyond it a call fails at once as busy). A backend that is down, slow,
//! answers a non-200 status or something that is not one of those shapes
//! fails the call ([`HookFailure`]): logged, counted in `/health`
//! (`hook_failures`), and the client that caused it gets a clear error —
//! nobody else waits, and the event loop never does.
//!
//! # Layout
//! - this file: settings, the hooks, one call;
//! - `bodies.rs`: the request bodies and how answers are read.

mod bodies;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;
use tokio::sync::Semaphore;

pub use bodies::{
    connect_body, publish_body, result_data, rpc_body, subscribe_body, Caller, ConnectGrant,
    HookAnswer,
};

/// Settings of the hooks. A hook without a URL is off.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// Asked on every new client: may it connect, and who is it?
    pub connect_url: Option<String>,
    /// Asked for the events a room's policy routes to the backend (and
    /// every custom event when no policy is configured).
    pub rpc_url: Option<String>,
    /// Asked before a client's publication into a room whose policy says
    /// `publish = "hook"`.
    pub publish_url: Option<String>,
    /// The subscribe hook: asked before a join into a room whose policy
    /// says `join = "hook"`. `None`: off.
    pub subscribe_url: Option<String>,
    /// How long a call may take. Defaults to 1 s.
    pub timeout: Duration,
    /// Calls in flight per hook at most. Defaults to 256.
    pub max_in_flight: usize,
    /// Request headers passed on to the connect hook (lower case). Defaults
    /// to `cookie`, `authorization`, `user-agent`, `origin`,
    /// `x-forwarded-for`, `x-real-ip`.
    pub headers: Vec<String>,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            connect_url: None,
            rpc_url: None,
            publish_url: None,
            subscribe_url: None,
            timeout: Duration::from_secs(1),
            max_in_flight: 256,
            headers: [
                "cookie",
                "authorization",
                "user-agent",
                "origin",
                "x-forwarded-for",
                "x-real-ip",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `connect_hook_url`.
    Connect,
    /// `rpc_hook_url`.
    Rpc,
    /// `publish_hook_url`.
    Publish,
    /// `subscribe_hook_url`.
    Subscribe,
}

impl Hook {
    /// Every hook, in the order of their slots in [`HookStats`].
    pub const ALL: [Hook; 4] = [Hook::Connect, Hook::Rpc, Hook::Publish, Hook::Subscribe];

    /// Its name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Rpc => "rpc",
            Hook::Publish => "publish",
            Hook::Subscribe => "subscribe",
        }
    }
}

/// Why a hook call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookFailure {
    /// As many calls as allowed are in flight already.
    #[error("the {0} hook is busy")]
    Busy(&'static str),
    /// The backend did not answer in time.
    #[error("the {0} hook did not answer in time")]
    Timeout(&'static str),
    /// The backend could not be reached.
    #[error("the {0} hook is unreachable: {1}")]
    Unreachable(&'static str, String),
    /// The backend answered with another status than 200.
    #[error("the {0} hook answered HTTP {1}")]
    Status(&'static str, u16),
    /// The answer is not one of the hook's shapes.
    #[error("the {0} hook answered something that is not a hook answer: {1}")]
    Garbage(&'static str, String),
}

/// Largest answer read from a backend.
const MAX_ANSWER: usize = 1 << 20;

struct Endpoint {
    uri: Uri,
    in_flight: Semaphore,
}

/// Counters of the hooks, shown in `/health` and `/metrics`.
#[derive(Debug)]
pub struct HookStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed ([`HookFailure`]).
    pub failures: AtomicU64,
    /// Answers that refused the client (`error` or `disconnect`).
    pub refusals: AtomicU64,
    /// Calls by hook ([`Hook::ALL`]) and outcome ([`HookStats::OUTCOMES`]).
    pub by_outcome: [[AtomicU64; 3]; 4],
    /// How long calls took, by hook ([`Hook::ALL`]), in seconds.
    pub seconds: [prometheus_client::metrics::histogram::Histogram; 4],
}

impl HookStats {
    /// A call's outcomes: the backend allowed, refused, or failed.
    pub const OUTCOMES: [&'static str; 3] = ["allowed", "refused", "failed"];
}

impl Default for HookStats {
    fn default() -> Self {
        let histogram = || {
            prometheus_client::metrics::histogram::Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        };
        HookStats {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            by_outcome: Default::default(),
            seconds: [histogram(), histogram(), histogram(), histogram()],
        }
    }
}

/// The configured hooks; cheap to clone. With no URL configured every
/// `is_on` is false and nothing is ever called.
#[derive(Clone)]
pub struct Hooks {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    connect: Option<Endpoint>,
    rpc: Option<Endpoint>,
    publish: Option<Endpoint>,
    subscribe: Option<Endpoint>,
    timeout: Duration,
    headers: Vec<String>,
    stats: HookStats,
}

impl Hooks {
    /// The hooks of `config`; an invalid URL is an error naming it.
    pub fn new(config: &HookConfig) -> Result<Hooks, String> {
        let endpoint = |url: &Option<String>, what: &str| -> Result<Option<Endpoint>, String> {
            let Some(url) = url else { return Ok(None) };
            let uri: Uri = url
                .parse()
                .map_err(|e| format!("{what}_hook_url {url:?} is not a URL: {e}"))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(format!(
                    "{what}_hook_url {url:?} must be an http:// URL with a host"
                ));
            }
            Ok(Some(Endpoint {
                uri,
                in_flight: Semaphore::new(config.max_in_flight.max(1)),
            }))
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        Ok(Hooks {
            inner: Arc::new(Inner {
                client: Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector),
                connect: endpoint(&config.connect_url, "connect")?,
                rpc: endpoint(&config.rpc_url, "rpc")?,
                publish: endpoint(&config.publish_url, "publish")?,
                subscribe: endpoint(&config.subscribe_url, "subscribe")?,
                timeout: config.timeout,
                headers: config.headers.clone(),
                stats: HookStats::default(),
            }),
        })
    }

    /// No hooks.
    pub fn none() -> Hooks {
        Hooks::new(&HookConfig::default()).expect("no URL, nothing to parse")
    }

    /// Whether `hook` has a URL.
    pub fn is_on(&self, hook: Hook) -> bool {
        self.endpoint(hook).is_some()
    }

    /// The counters.
    pub fn stats(&self) -> &HookStats {
        &self.inner.stats
    }

    /// The request headers the connect hook is given.
    pub fn passed_headers(&self) -> &[String] {
        &self.inner.headers
    }

    fn endpoint(&self, hook: Hook) -> Option<&Endpoint> {
        match hook {
            Hook::Connect => self.inner.connect.as_ref(),
            Hook::Rpc => self.inner.rpc.as_ref(),
            Hook::Publish => self.inner.publish.as_ref(),
            Hook::Subscribe => self.inner.subscribe.as_ref(),
        }
    }

    /// POSTs `body` to `hook` and reads its answer. A failure is logged and
    /// counted here; a refusal is counted.
    pub async fn call(&self, hook: Hook, body: &Json) -> Result<HookAnswer, HookFailure> {
        let stats = &self.inner.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let answer = self.try_call(hook, body).await;
        let slot = hook as usize;
        stats.seconds[slot].observe(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Err(failure) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(hook = hook.name(), error = %failure, "backend hook failed; the client is told");
                2
            }
            Ok(HookAnswer::Error { .. } | HookAnswer::Disconnect { .. }) => {
                stats.refusals.fetch_add(1, Ordering::Relaxed);
                1
            }
            Ok(HookAnswer::Result(_)) => 0,
        };
        stats.by_outcome[slot][outcome].fetch_add(1, Ordering::Relaxed);
        answer
    }

    async fn try_call(&self, hook: Hook, body: &Json) -> Result<HookAnswer, HookFailure> {
        let name = hook.name();
        let Some(endpoint) = self.endpoint(hook) else {
            return Err(HookFailure::Unreachable(name, "no URL configured".into()));
        };
        let Ok(_permit) = endpoint.in_flight.try_acquire() else {
            return Err(HookFailure::Busy(name));
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("volna/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a POST with a parsed URI is a valid request");
        let exchange = async {
            let response = self
                .inner
                .client
                .request(request)
                .await
                .map_err(|e| HookFailure::Unreachable(name, e.to_string()))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(HookFailure::Status(name, status));
            }
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| HookFailure::Garbage(name, e.to_string()))?
                .to_bytes();
            HookAnswer::parse(&body).map_err(|why| HookFailure::Garbage(name, why))
        };
        tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| HookFailure::Timeout(name))?
    }
}
