//! Room histories and their one memory budget.
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

use super::state::{Hub, Room};
use crate::event::Message;
use crate::stats::Stats;

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
    bytes: AtomicUsize,
    /// Rooms whose history was dropped to stay within the budget.
    evicted: AtomicU64,
    /// Set while one caller evicts: the others go on publishing.
    evicting: AtomicBool,
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

impl Hub {
    /// What all rooms' histories hold now, against their budget.
    pub fn history_size(&self) -> HistorySize {
        let b = &self.inner.history;
        HistorySize {
            bytes: b.bytes.load(Ordering::Relaxed),
            max_bytes: self.inner.config.history_max_bytes,
            evicted: Stats::get(&b.evicted),
        }
    }

    /// A new epoch name, for a room made or whose history was lost.
    pub(super) fn new_epoch(&self) -> Arc<str> {
        let n = self.inner.rooms_created.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{n:x}", self.inner.stem))
    }

    /// When the histories hold more than their budget, drops the histories
    /// of the rooms least recently published to, until they hold less than
    /// nine tenths of it. Call with no room's lock held.
    pub(super) fn keep_histories_in_budget(&self) {
        let budget = &self.inner.history;
        let max = self.inner.config.history_max_bytes;
        if budget.bytes.load(Ordering::Relaxed) <= max
            || budget.evicting.swap(true, Ordering::Acquire)
        {
            return;
        }
        let rooms: Vec<Arc<Room>> = {
            let st = self.inner.state.lock().unwrap();
            st.namespaces
                .values()
                .flat_map(|ns| ns.rooms.values().cloned())
                .collect()
        };
        let mut by_age: Vec<(u64, Arc<Room>)> = rooms
            .into_iter()
            .filter_map(|room| {
                let newest = room.state.lock().unwrap().history.back().map(|m| m.ts);
                newest.map(|ts| (ts, room))
            })
            .collect();
        by_age.sort_by_key(|(ts, _)| *ts);
        let target = max / 10 * 9;
        for (_, room) in by_age {
            if budget.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            let mut rs = room.state.lock().unwrap();
            if rs.history.is_empty() {
                continue;
            }
            rs.history.clear();
            rs.epoch = self.new_epoch();
            Stats::bump(&budget.evicted);
            tracing::debug!(room = %room.name, "history dropped to stay within history_max_bytes");
        }
        budget.evicting.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::testing::{codec, conn};
    use crate::outbox::OutboxLimits;
    use crate::{Data, Hub, HubConfig, Since};

    #[test]
    fn the_rooms_published_to_least_recently_lose_their_history_first() {
        let hub = Hub::new(HubConfig {
            history_max_bytes: 40_000,
            ..HubConfig::default()
        });
        let a = conn(&hub, "a", codec(1), OutboxLimits::default());
        for room in ["old", "mid", "new"] {
            a.join(room).unwrap();
        }
        let body = "x".repeat(1000);
        let epoch_of = |room: &str| hub.stream("/", room, 0).unwrap().epoch;
        let old_epoch = epoch_of("old");
        for room in ["old", "mid", "new"] {
            for _ in 0..10 {
                a.publish(room, Data::text(&body), true).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let size = hub.history_size();
        assert!(size.bytes > 30_000 && size.bytes <= 40_000, "{size:?}");
        assert_eq!(size.evicted, 0);
        // Ten more messages take it over the budget: the room published to
        // least recently goes, and starts a new epoch.
        for _ in 0..10 {
            a.publish("new", Data::text(&body), true).unwrap();
        }
        let size = hub.history_size();
        assert_eq!(size.evicted, 1, "{size:?}");
        assert!(size.bytes <= 36_000, "{size:?}");
        assert!(hub.history("/", "old", 100).unwrap().is_empty());
        assert_eq!(hub.history("/", "mid", 100).unwrap().len(), 10);
        assert_ne!(epoch_of("old"), old_epoch);
        // Resuming the old life of the room is refused, not given a gap;
        // its offsets go on.
        let b = conn(&hub, "b", codec(1), OutboxLimits::default());
        let since = Since {
            offset: 5,
            epoch: Some(old_epoch.to_string()),
            log: None,
        };
        let err = b.join_since("old", &since).unwrap_err();
        assert_eq!(err.code(), "unrecoverable");
        a.publish("old", Data::text("again"), true).unwrap();
        assert_eq!(hub.stream("/", "old", 0).unwrap().offset, 11);
        // A room that goes gives its bytes back.
        drop(a);
        drop(b);
        assert_eq!(hub.history_size().bytes, 0);
    }
}
