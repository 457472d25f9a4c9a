//! Room histories and their one memory budget: what a room keeps
//! ([`History`]) and what they all hold together ([`Budget`]); the hub's
//! operations on them are in `histories.rs`.
//!
//! Each room keeps its last messages ([`History`]), bounded by its count
//! and age (the policy's `history`, `history_ttl`). All histories together
//! are bounded by bytes ([`HubConfig::history_max_bytes`]): when a publish
//! takes the total over it, the rooms whose newest message is the oldest
//! lose their whole history first, until the total is back under nine
//! tenths of the budget. Such a room starts a new epoch, so a client that
//! resumes it from an offset of the old life is told `unrecoverable`
//! instead of being given a gap.
//!
//! [`HubConfig::history_max_bytes`]: crate::HubConfig::history_max_bytes

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::event::Message;

/// What one kept message costs, approximately: the message itself, its
/// body and event name, its `Arc` and its slot in the queue.
fn cost(msg: &Message) -> usize {
    std::mem::size_of::<Message>()
        + 2 * std::mem::size_of::<usize>()
        + std::mem::size_of::<Arc<Message>>()
        + msg.data.json.get().len()
        + msg.data.attachment_bytes()
        + msg.event.as_deref().map_or(0, str::len)
}

/// The bytes every history holds together, and what the budget evicted.
#[derive(Debug, Default)]
pub(super) struct Budget {
    pub(super) bytes: AtomicUsize,
    /// Rooms whose history was dropped to stay within the budget.
    pub(super) evicted: AtomicU64,
    /// Set while one caller evicts: the others go on publishing.
    pub(super) evicting: AtomicBool,
}

/// The messages a room keeps, oldest first, with what they cost counted in
/// the hub's [`Budget`] (given back when they go, or the room does).
pub(super) struct History {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
    budget: Arc<Budget>,
}

impl History {
    pub(super) fn new(budget: Arc<Budget>) -> History {
        History {
            messages: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Appends `msg`, first dropping what is older than `oldest_ts` and as
    /// many of the oldest as needed to keep at most `keep` (nothing is kept
    /// when `keep` is 0).
    pub(super) fn push(&mut self, msg: Arc<Message>, keep: usize, oldest_ts: u64) {
        while self.messages.front().is_some_and(|m| m.ts < oldest_ts) {
            self.pop_front();
        }
        if keep == 0 {
            return;
        }
        while self.messages.len() >= keep {
            self.pop_front();
        }
        let c = cost(&msg);
        self.bytes += c;
        self.budget.bytes.fetch_add(c, Ordering::Relaxed);
        self.messages.push_back(msg);
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.messages.pop_front() {
            let c = cost(&m);
            self.bytes -= c;
            self.budget.bytes.fetch_sub(c, Ordering::Relaxed);
        }
    }

    /// Drops every message.
    pub(super) fn clear(&mut self) {
        self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.messages.clear();
    }

    pub(super) fn iter(&self) -> std::collections::vec_deque::Iter<'_, Arc<Message>> {
        self.messages.iter()
    }

    pub(super) fn front(&self) -> Option<&Arc<Message>> {
        self.messages.front()
    }

    pub(super) fn back(&self) -> Option<&Arc<Message>> {
        self.messages.back()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What the histories hold, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySize {
    /// Bytes all rooms' histories hold (an estimate: bodies, attachments
    /// and bookkeeping).
    pub bytes: usize,
    /// The budget ([`crate::HubConfig::history_max_bytes`]).
    pub max_bytes: usize,
    /// Rooms whose history was dropped to stay within it, since start.
    pub evicted: u64,
}
