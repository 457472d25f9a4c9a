//! [`HubConfig`]: the hub's settings.

use super::limit::RateLimit;
use crate::event::PresenceKind;
use crate::policy::Policies;

/// Settings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages kept per room for `history`. Defaults to 100.
    pub history_len: usize,
    /// Bytes all rooms' histories may hold together; beyond, the rooms
    /// published to least recently lose theirs (and start a new epoch).
    /// Defaults to 256 MiB.
    pub history_max_bytes: usize,
    /// Rooms with more members than this do not announce joins and leaves,
    /// and join replies list only this many members: in a room of thousands
    /// a presence event per arrival costs O(members) deliveries each, and
    /// nobody reads them (large chat channels behave the same way). `who`
    /// still lists everyone. Defaults to 256.
    pub presence_limit: usize,
    /// Per-room rules, by room name. Defaults to none: every room allows
    /// everything.
    pub policies: Policies,
    /// Rooms one connection may be in at once; a join beyond is refused
    /// with `too-many-rooms`. Defaults to 128.
    pub max_rooms_per_conn: usize,
    /// Requests per connection and second (every operation counts).
    /// Defaults to [`RateLimit::default`].
    pub rate: RateLimit,
    /// Answers one connection may be waiting for at once (backend hooks,
    /// images, cluster-wide queries); a request beyond is refused with
    /// `too-many-pending`. Defaults to 64.
    pub max_pending_per_conn: u32,
    /// Connection-state recovery: how long the sessions of connections gone
    /// abnormally, and what was published, are kept. `None` (the default):
    /// off.
    pub recovery: Option<std::time::Duration>,
}

impl HubConfig {
    /// Whether a room of `members` (after the change) announces a join or a
    /// leave: a join while it has at most [`presence_limit`](Self::presence_limit),
    /// a leave while it has fewer (the same room sizes either way: the leave
    /// undoing a join is announced exactly when the join was).
    pub(crate) fn announces(&self, kind: PresenceKind, members: usize) -> bool {
        match kind {
            PresenceKind::Joined => members <= self.presence_limit,
            PresenceKind::Left => members < self.presence_limit,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history_len: 100,
            history_max_bytes: 256 << 20,
            presence_limit: 256,
            policies: Policies::default(),
            max_rooms_per_conn: 128,
            rate: RateLimit::default(),
            max_pending_per_conn: 64,
            recovery: None,
        }
    }
}
