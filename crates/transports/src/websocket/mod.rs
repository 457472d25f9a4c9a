//! volna's one server-side WebSocket (RFC 6455), used by `/ws`, `/ws/echo`
//! and Engine.IO alike, over the raw `TcpStream` of an upgraded HTTP/1.1
//! connection. The framing itself is sans-IO, in
//! [`volna_protocols::websocket`]; this module moves the bytes.
//!
//! The server uses no WebSocket library. tungstenite (only the tests and
//! `volna bench` use it, as a client) keeps a 128 KiB read buffer per
//! connection (and a write buffer), which makes an idle connection cost
//! ~120 KiB, and every outgoing message goes through a task wake-up and a
//! `flush`. Here an idle
//! connection holds no buffer, and a push to an idle connection's outbox is
//! written on the spot.
//!
//! - [`server`]: the HTTP/1 server ([`serve`]) whose upgrades yield the
//!   `TcpStream`, and the opening handshake ([`Upgrade`]);
//! - [`socket`]: [`WsSocket`], the connection's write side and the outbox's
//!   [`DirectSink`](volna_hub::DirectSink);
//! - [`reader`]: [`Reader`], the read side;
//! - [`flusher`]: [`Flusher`], the one task that writes outboxes scheduled
//!   by pushes, and holds paced broadcasts to coalesce them.

pub mod flusher;
pub mod reader;
pub mod server;
pub mod socket;

pub use flusher::{Flusher, MAX_HOLD_MS};
pub use reader::{ReadEnd, Reader};
pub use server::{serve, HttpLimits, RawCapable, Refusal, Upgrade};
pub use socket::WsSocket;
pub use volna_protocols::websocket::Message;
