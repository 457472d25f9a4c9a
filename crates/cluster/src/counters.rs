//! [`Counters`], the adapter's figures (served by `/health` under
//! `cluster`), and the relaxed atomic helpers every task bumps them with.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the adapter, served by `/health` under `cluster`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events published to Redis (broadcasts, requests, responses).
    pub published: AtomicU64,
    /// Cross-node events not sent: Redis down or the queue full.
    pub publish_dropped: AtomicU64,
    /// Broadcasts received from other servers and delivered here.
    pub received: AtomicU64,
    /// Payloads from Redis that could not be read.
    pub decode_errors: AtomicU64,
    /// Times Redis became unreachable.
    pub redis_outages: AtomicU64,
    /// Health probes not answered in time while Redis was visibly serving
    /// this node (a busy node, not a dead Redis).
    pub probes_slow: AtomicU64,
    /// Cluster `who` requests this node sent.
    pub who_requests: AtomicU64,
    /// Of those, the ones some node did not answer in time (a partial list).
    pub who_partial: AtomicU64,
    /// Requests of other servers answered (fetchSockets, allRooms, …).
    pub requests_answered: AtomicU64,
    /// volna nodes forgotten after missing their heartbeats.
    pub nodes_expired: AtomicU64,
    /// Streams mode: sessions restored from Redis (Socket.IO recovery
    /// across nodes).
    pub sessions_restored: AtomicU64,
    /// Streams mode: recoveries that found no session, or an offset the
    /// stream no longer holds (the client connects afresh).
    pub sessions_not_restored: AtomicU64,
    /// Streams mode: messages of this node delivered here without their
    /// place in the stream (Redis failed or was slow to give it back).
    pub delivered_unlogged: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
