//! # volna-transports
//!
//! Everything that moves bytes, on one tokio runtime:
//! - [`tcp`]: the raw TCP line protocol (`nc`-friendly);
//! - [`http`]: the HTTP server (axum) that later carries Engine.IO,
//!   Socket.IO and plain WebSocket endpoints, and answers `GET /health`.
//!
//! Each transport turns its wire format into calls on the shared
//! [`volna_hub::Hub`] and implements [`volna_hub::Codec`] for the way back.
//! Shutdown is a `CancellationToken`; connection tasks are spawned on a
//! `TaskTracker` so the server can wait for them to finish.

pub mod app;
pub mod close;
pub mod engineio;
pub mod http;
pub mod images;
pub mod socketio;
pub mod tcp;
pub mod web;
pub mod websocket;
pub mod ws;
