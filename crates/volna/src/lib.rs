//! # volna
//!
//! The `volna` binary's library half: configuration ([`config`]), the server
//! wiring ([`server`]), the interactive client ([`client`]) and the load
//! generator ([`bench`](mod@bench)). `main.rs`
//! only parses the command line and calls into these, so integration tests
//! can start a real server in-process on port 0.

pub mod bench;
pub mod client;
pub mod config;
pub mod rooms;
pub mod server;
