//! The hub's operations on its rooms' histories (`history.rs`): what they
//! hold against their budget, and keeping them within it. When a publish
//! takes the total over [`HubConfig::history_max_bytes`], the rooms whose
//! newest message is the oldest lose their whole history first, until the
//! total is back under nine tenths of the budget; such a room starts a new
//! epoch, so a client that resumes it from an offset of the old life is
//! told `unrecoverable` instead of being given a gap.
//!
//! [`HubConfig::history_max_bytes`]: crate::HubConfig::history_max_bytes

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::history::HistorySize;
use super::state::{Hub, Room, RoomState};
use crate::event::Message;
use crate::stats::Stats;

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

    /// Keeps `msg` in `room`'s history, within the room's policy (count and
    /// age). Called with the room's lock held.
    pub(super) fn keep_in_history(&self, room: &Room, rs: &mut RoomState, msg: &Arc<Message>) {
        let policy = &room.policy;
        let keep = policy.history.unwrap_or(self.inner.config.history_len);
        let oldest = policy
            .history_ttl
            .map_or(0, |ttl| msg.ts.saturating_sub(ttl.as_millis() as u64));
        rs.history.push(msg.clone(), keep, oldest);
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
