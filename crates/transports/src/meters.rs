//! The counters the transports and the application layer keep for
//! `/metrics` ([`crate::metrics`]): requests by protocol and operation,
//! server API calls by method and code, Socket.IO recoveries by outcome.
//! Fixed arrays of atomics where the label sets are fixed (a request costs
//! one relaxed add); a labelled family only for the server API, whose
//! requests are few.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use volna_hub::PROTOCOLS;

/// Operations of the application layer, as [`crate::app::Op::name`] spells
/// them: the slots of [`Meters::requests`].
pub const OPERATIONS: [&str; 11] = [
    "nick", "join", "leave", "message", "echo", "who", "rooms", "history", "image", "emit", "auth",
];

/// How a Socket.IO CONNECT that named a session ended: the slots of
/// [`Meters::recoveries`].
pub const RECOVERY_OUTCOMES: [&str; 3] = ["recovered", "recovered_from_cluster", "fresh"];

/// Labels of the server API's counter: its method and the answer's code
/// (`0` for a result, else the error's code, or `401`, `404`).
pub type ApiLabels = [(&'static str, String); 2];

/// The counters; one per server, shared by every transport.
#[derive(Debug, Default)]
pub struct Meters {
    requests: [[AtomicU64; OPERATIONS.len()]; PROTOCOLS.len()],
    recoveries: [AtomicU64; RECOVERY_OUTCOMES.len()],
    /// Server API calls by method and code.
    pub api: Family<ApiLabels, Counter>,
}

impl Meters {
    /// Counts an operation `op` of a client speaking `protocol`.
    pub fn request(&self, protocol: &str, op: &str) {
        let p = volna_hub::protocol_slot(protocol);
        if let Some(o) = OPERATIONS.iter().position(|n| *n == op) {
            self.requests[p][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests so far of `protocol` slot `p` and operation slot `o`.
    pub fn requests(&self, p: usize, o: usize) -> u64 {
        self.requests[p][o].load(Ordering::Relaxed)
    }

    /// Counts a Socket.IO recovery attempt's outcome (a slot of
    /// [`RECOVERY_OUTCOMES`]).
    pub fn recovery(&self, outcome: usize) {
        self.recoveries[outcome].fetch_add(1, Ordering::Relaxed);
    }

    /// Recovery attempts so far with outcome slot `o`.
    pub fn recoveries(&self, o: usize) -> u64 {
        self.recoveries[o].load(Ordering::Relaxed)
    }

    /// Counts a server API call.
    pub fn api_call(&self, method: &'static str, code: u32) {
        self.api
            .get_or_create(&[("method", method.to_string()), ("code", code.to_string())])
            .inc();
    }
}
