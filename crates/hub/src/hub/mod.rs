//! The [`Hub`]: namespaces, connections, rooms, presence, history and
//! broadcast. One file per concern:
//!
//! - `state.rs`: the [`Hub`] handle and the state behind its locks (lock
//!   order: the hub's state before any room's, never the other way).
//! - `config.rs`: [`HubConfig`].
//! - `error.rs`: [`HubError`].
//! - `conn.rs`: registering, renaming and unregistering connections; the
//!   [`Conn`] handle.
//! - `rooms.rs`: join, leave and presence; room and member listings
//!   ([`JoinInfo`], [`RoomInfo`]); history; cluster-wide `who`.
//! - `limit.rs`: a connection's request rate ([`RateLimit`]).
//! - `publish.rs`: offsets, timestamps and history of published messages.
//! - `server.rs`: what the server does itself (the server API): publishing
//!   from the server, personal rooms, presence with identities, counts,
//!   disconnects ([`ServerPublish`], [`NodeCounts`]).
//! - `deliver.rs`: fan-out, encoding each event once per codec; broadcasts,
//!   events from other nodes, shutdown.
//! - `view.rs`: read-only views for tools that watch the hub (the Admin
//!   UI) and the emit, leave and disconnect by id they apply ([`Census`]).
//! - `testing.rs` (tests only): the test codec and helpers the unit tests
//!   of the files above share.

mod config;
mod conn;
mod deliver;
mod error;
mod histories;
mod history;
mod limit;
mod publish;
mod recovery;
mod recovery_log;
mod rooms;
mod server;
mod state;
#[cfg(test)]
mod testing;
mod view;

pub use config::HubConfig;
pub use conn::{Conn, Pending};
pub use error::HubError;
pub use history::HistorySize;
pub use limit::{RateLimit, Verdict};
pub use recovery_log::{parse_recovery_offset, recovery_offset, Session};
pub use rooms::{JoinInfo, RoomInfo, Since, Stream, JOIN_SAMPLE};
pub use server::{NodeCounts, ServerPublish};
pub use state::Hub;
pub use view::Census;
