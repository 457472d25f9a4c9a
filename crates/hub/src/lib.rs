//! # volna-hub
//!
//! The part of volna that every transport shares. A TCP line client, a plain
//! WebSocket client and a Socket.IO socket are all a [`Conn`] here: they have
//! an id, a display name, a namespace and a set of rooms, and they receive
//! [`Frame`]s through a bounded [`Outbox`].
//!
//! The hub knows nothing about wire formats. Each connection brings a
//! [`Codec`] that turns hub [`Event`]s into frames. A broadcast encodes each
//! event once per distinct codec (see [`Codec::key`]) and hands the same
//! [`bytes::Bytes`] to every receiver, so a room of ten thousand Socket.IO
//! clients costs one JSON encoding per message, not ten thousand.
//!
//! ## Layout
//! - `outbox/`: a connection's outgoing frames.
//!   - `mod.rs`: the bounded queue ([`Outbox`]) and the slow-consumer policy.
//!   - `frame.rs`: what it carries ([`Frame`]) and why a connection closes
//!     ([`CloseReason`]).
//!   - `direct.rs`: the direct-write and pacing seam of the raw WebSocket
//!     path ([`DirectSink`], [`Outbox::push_paced`]).
//!   - `clock.rs`: the hub's one millisecond clock, on tokio's timeline, that
//!     pacing deadlines are told in ([`clock_ms`], [`clock_instant`]).
//! - `event.rs`: leaf types — connection ids, what the hub broadcasts
//!   ([`Message`], [`Presence`]) and the [`Codec`] trait.
//! - `identity.rs`: who a connection is beyond its name ([`Identity`],
//!   [`ClientInfo`]) and the names reserved for the server and personal
//!   rooms.
//! - `observe.rs`: a read-only view of connections ([`ConnView`]) and the
//!   [`Observer`] of membership changes (the Admin UI).
//! - `adapter.rs`: the cluster seam ([`Adapter`]) and the shapes it carries
//!   (no import of `hub/`, so the modules form no circle).
//! - `hub/`: the [`Hub`] itself, one file per concern.
//!   - `state.rs`: the [`Hub`] handle and the state behind its locks.
//!   - `config.rs`, `error.rs`: [`HubConfig`], [`HubError`].
//!   - `conn.rs`: registering, renaming and unregistering connections
//!     ([`Conn`]).
//!   - `rooms.rs`: join, leave, presence, listings, history, cluster-wide
//!     `who`.
//!   - `publish.rs`: offsets, timestamps and history of messages.
//!   - `deliver.rs`: fan-out, one encoding per codec key.
//!   - `server.rs`: what the server does itself (the server API): publish
//!     from the server, personal rooms, presence, counts, disconnects.
//! - `stats.rs`: counters every layer can bump and read.
//!
//! ## Ordering and offsets
//! Every message published to a room gets the room's next offset (1, 2, 3…)
//! and a timestamp, and is queued to every member while the room's lock is
//! held, so all members see a room's messages in offset order. Locks are
//! `std::sync::Mutex`es held for short, non-async sections only.
//!
//! ## Slow consumers
//! See [`Outbox`]: when a connection's queue would exceed its frame or byte
//! bound, the connection is closed with [`CloseReason::SlowConsumer`], its
//! queued frames are dropped, and the event is counted. Senders never wait
//! for a slow receiver.

mod adapter;
mod event;
mod hub;
mod identity;
mod observe;
mod outbox;
mod policy;
mod stats;

pub use adapter::{
    Adapter, BoxFuture, ClusterWho, Missed, NodeInfo, Outgoing, RemoteMembers, Restored, WhoMember,
};
pub use event::{Codec, ConnId, Data, Emit, Event, MemberInfo, Message, Presence, PresenceKind};
pub use hub::{
    parse_recovery_offset, recovery_offset, Census, Conn, HistorySize, Hub, HubConfig, HubError,
    JoinInfo, NodeCounts, Pending, RateLimit, RoomInfo, ServerPublish, Session, Since, Stream,
    Verdict, JOIN_SAMPLE,
};
pub use identity::{ClientInfo, Identity, SERVER_NAME, USER_ROOM_PREFIX};
pub use observe::{ConnView, Observer};
pub use outbox::{
    clock_instant, clock_ms, Batch, CloseReason, DirectSink, Frame, Outbox, OutboxLimits, PushError,
};
pub use policy::{glob_matches, Access, EventRule, Policies, Publish, RoomPolicy};
pub use stats::{protocol_slot, Stats, EVENT_KINDS, PROTOCOLS};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
