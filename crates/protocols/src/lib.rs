//! # volna-protocols
//!
//! Sans-IO encoding and decoding of every wire format volna speaks. Nothing in
//! this crate performs I/O or depends on an async runtime: each decoder takes
//! bytes (or a `&str`) and returns a typed value or a typed error, each encoder
//! appends to a buffer. That keeps the codecs testable with plain unit tests,
//! property tests and fuzzers, and lets the transports decide how bytes move.
//!
//! ## Layout
//! - [`line`](mod@line): the raw TCP line protocol (`/join room`, plain lines are
//!   messages). A [`line::LineSplitter`] cuts a byte stream into bounded lines;
//!   [`line::parse`] turns one line into a [`line::Command`].
//! - [`engineio`]: Engine.IO v4 packets and long-polling payloads.
//! - [`socketio`]: Socket.IO v5 packets, including binary placeholders
//!   ([`socketio::BinaryAssembler`]); a folder of one file per concern
//!   (packet model, error, decode, encode, binary attachments).
//! - [`websocket`]: RFC 6455 framing, server side: a [`websocket::Decoder`]
//!   for what clients send, header and control-frame builders for what the
//!   server writes.
//! - [`json`]: JSON helpers the formats share: `JSON.stringify`-style string
//!   literals and the `{"_placeholder":true,"num":N}` attachment markers.

pub mod engineio;
pub mod json;
pub mod line;
pub mod socketio;
pub mod websocket;
