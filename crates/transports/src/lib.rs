//! # volna-transports
//!
//! Everything that moves bytes, on one tokio runtime:
//! - [`tcp`]: the raw TCP line protocol (`nc`-friendly);
//! - [`http`]: the axum router for `GET /health`, and [`http::serve`], the
//!   HTTP/1 server every HTTP endpoint (and every WebSocket) runs on;
//! - [`websocket`]: volna's one server-side WebSocket (RFC 6455), used by
//!   `/ws` and Engine.IO alike;
//! - [`ws`]: the plain WebSocket endpoints, the JSON protocol on `GET /ws`
//!   and the echo on `GET /ws/echo`;
//! - [`engineio`]: Engine.IO v4 (long-polling, WebSocket, upgrades);
//! - [`socketio`]: Socket.IO v4 (protocol v5) namespaces on Engine.IO;
//! - [`web`]: the browser chat page at `GET /`;
//! - [`pages`]: an application's own pages under `GET /app/`;
//! - [`api`]: the server API, `POST /api/<method>` in Centrifugo's shapes.
//!
//! Shared by the transports:
//! - [`app`]: every client operation ([`app::Op`]), applied to the hub in
//!   one place;
//! - [`images`]: image sharing (thumbnails on the worker pool);
//! - [`hooks`]: the backend hooks (connect, rpc, publish);
//! - [`close`]: close reason → WebSocket close code;
//! - [`origin`]: which browser pages may connect (`allowed_origins`);
//! - [`ipgate`]: connections per client address;
//! - [`proxies`]: the client behind a trusted reverse proxy;
//! - [`wire`]: a connection's stream, plain or TLS, used by readiness;
//! - [`tls`]: the certificate served (reloaded when its files change);
//! - [`fetch`]: one HTTP(S) GET (a JWKS URL).
//!
//! Each transport turns its wire format into calls on the shared
//! [`volna_hub::Hub`] and implements [`volna_hub::Codec`] for the way back.
//! Shutdown is a `CancellationToken`; connection tasks are spawned on a
//! `TaskTracker` so the server can wait for them to finish.

pub mod admin;
pub mod api;
pub mod app;
pub mod close;
pub mod engineio;
pub mod fetch;
pub mod hooks;
pub mod http;
pub mod images;
pub mod ipgate;
pub mod meters;
pub mod metrics;
pub mod origin;
pub mod pages;
pub mod proxies;
pub mod socketio;
pub mod tcp;
pub mod tls;
pub mod web;
pub mod websocket;
pub mod wire;
pub mod ws;
