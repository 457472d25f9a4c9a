//! Counters shared by every layer.

use std::sync::atomic::{AtomicU64, Ordering};

/// The protocols connections speak, as [`Codec::protocol`](crate::Codec::protocol)
/// names them: the index of each is its slot in the per-protocol counters.
pub const PROTOCOLS: [&str; 4] = ["tcp", "ws", "socketio", "other"];

/// The kinds of broadcast, as their slots in [`Stats::deliveries_by_kind`].
pub const EVENT_KINDS: [&str; 3] = ["message", "presence", "emit"];

/// The slot of `protocol` in [`PROTOCOLS`] (the last for an unknown one).
pub fn protocol_slot(protocol: &str) -> usize {
    PROTOCOLS
        .iter()
        .position(|p| *p == protocol)
        .unwrap_or(PROTOCOLS.len() - 1)
}

/// Monotonic counters. Every layer bumps the ones it owns; `/health` and the
/// shutdown log read them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections registered with the hub since start.
    pub connections_opened: AtomicU64,
    /// Connections removed from the hub since start.
    pub connections_closed: AtomicU64,
    /// Messages published to rooms.
    pub messages: AtomicU64,
    /// Frames queued to receivers by broadcasts (one per receiver per event).
    pub deliveries: AtomicU64,
    /// Connections closed because their outgoing queue overflowed.
    pub slow_consumers: AtomicU64,
    /// Requests refused as bad input (malformed packets, over-long lines,
    /// invalid UTF-8, unknown commands…); the connection may have survived.
    pub bad_input: AtomicU64,
    /// Connections closed for a protocol violation.
    pub protocol_closes: AtomicU64,
    /// Volatile events not delivered to a member whose queue was busy.
    pub volatile_dropped: AtomicU64,
    /// Requests refused for going over a connection's rate.
    pub rate_limited: AtomicU64,
    /// Requests refused because their connection already waited for too
    /// many answers (`max_pending_per_conn`).
    pub too_many_pending: AtomicU64,
    /// Server API requests answered.
    pub api_requests: AtomicU64,
    /// Server API requests refused (bad key, bad request, an error result).
    pub api_errors: AtomicU64,
    /// Connections registered, by protocol ([`PROTOCOLS`]).
    pub opened_by_protocol: [AtomicU64; 4],
    /// Connections removed, by protocol ([`PROTOCOLS`]).
    pub closed_by_protocol: [AtomicU64; 4],
    /// Deliveries by kind of broadcast ([`EVENT_KINDS`]) and the
    /// receiver's protocol ([`PROTOCOLS`]).
    pub deliveries_by_kind: [[AtomicU64; 4]; 3],
    /// Bytes clients sent (lines, WebSocket messages, polling bodies), by
    /// protocol ([`PROTOCOLS`]).
    pub received_bytes: [AtomicU64; 4],
    /// Bytes of the frames broadcasts queued to receivers.
    pub broadcast_bytes: AtomicU64,
    /// Connections removed, by why their transport closed
    /// ([`CloseReason::CODES`](crate::CloseReason::CODES) slots; the last
    /// slot: the connection left its namespace, its transport still open).
    pub closed_by_reason: [AtomicU64; 9],
    /// Room memberships now (members of all rooms together).
    pub memberships: std::sync::atomic::AtomicI64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Connections currently registered.
    pub fn connections_open(&self) -> u64 {
        Self::get(&self.connections_opened).saturating_sub(Self::get(&self.connections_closed))
    }

    /// Every counter by name, for reports.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("connections_open", self.connections_open()),
            ("connections_opened", Self::get(&self.connections_opened)),
            ("messages", Self::get(&self.messages)),
            ("deliveries", Self::get(&self.deliveries)),
            ("slow_consumers", Self::get(&self.slow_consumers)),
            ("bad_input", Self::get(&self.bad_input)),
            ("protocol_closes", Self::get(&self.protocol_closes)),
            ("volatile_dropped", Self::get(&self.volatile_dropped)),
            ("rate_limited", Self::get(&self.rate_limited)),
            ("too_many_pending", Self::get(&self.too_many_pending)),
            ("api_requests", Self::get(&self.api_requests)),
            ("api_errors", Self::get(&self.api_errors)),
        ]
    }
}
