//! Room policies: per-room rules chosen by the room's name.
//!
//! A [`Policies`] is an ordered list of [`RoomPolicy`]s, each with a glob
//! (`doc:*`, `game-??`); the first whose glob matches a room's name is the
//! room's policy, and a room no glob matches gets the default (everything
//! allowed, the hub's history size). The hub applies what concerns a room's
//! structure — history size and age, presence, the member bound — and the
//! application layer what concerns operations: which events may be sent,
//! which are volatile, who may publish.

use std::sync::Arc;
use std::time::Duration;

/// Which of the application's own events a room relays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventRule {
    /// Any event name (that is not reserved).
    #[default]
    Any,
    /// Only these names.
    Only(Vec<Arc<str>>),
}

/// Who may publish (messages and events) to a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Publish {
    /// Its members.
    #[default]
    Members,
    /// Nobody but the server (the server API, another node, the Redis
    /// emitter): clients are refused with `publish-forbidden`.
    Server,
    /// Members, each publication allowed (and perhaps changed) by the
    /// backend's publish hook first. The hub takes it as `Members`: asking
    /// the hook is the application layer's part.
    Hook,
}

/// Who may do something in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Every connection, anonymous ones too.
    #[default]
    Anyone,
    /// Identified users (a token or the connect hook).
    Users,
    /// Users whose token's `rooms` claim grants the room.
    Granted,
    /// The backend's subscribe hook decides, per join (only for joining:
    /// the application layer asks it and then joins with
    /// [`Hub::join_approved`](crate::Hub::join_approved)).
    Hook,
}

/// The rules of the rooms a glob matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// The glob on room names: `*` any run of characters, `?` one.
    pub pattern: String,
    /// The application's own events the room relays.
    pub events: EventRule,
    /// Events delivered at most once and only to members keeping up: not
    /// kept in the history, and dropped (counted) for a member whose queue
    /// is busy instead of closing it as a slow consumer. Cursors, positions.
    pub volatile: Vec<Arc<str>>,
    /// Who may publish.
    pub publish: Publish,
    /// Messages kept for `history`; `None`: the hub's default.
    pub history: Option<usize>,
    /// How long a message stays in the history; `None`: until pushed out.
    pub history_ttl: Option<Duration>,
    /// Whether joins and leaves are announced to the other members.
    pub presence: bool,
    /// Whether its messages are logged for Socket.IO connection-state
    /// recovery (when it is on): a recovered socket gets this room back
    /// either way, but not what it missed in it.
    pub recover: bool,
    /// Most members at a time; a join beyond is refused with `room-full`.
    pub max_members: Option<usize>,
    /// Who may join (and so publish).
    pub join: Access,
    /// Who may read the history.
    pub read_history: Access,
    /// Who may list the members (`who`).
    pub read_presence: Access,
    /// The events answered by the backend's rpc hook instead of relayed.
    /// With no table configured at all, every event goes there (when the
    /// hook is configured); otherwise only those a table lists.
    pub rpc: EventRule,
}

impl RoomPolicy {
    /// A policy for `pattern` that allows everything, as a room without a
    /// policy.
    pub fn new(pattern: impl Into<String>) -> RoomPolicy {
        RoomPolicy {
            pattern: pattern.into(),
            events: EventRule::Any,
            volatile: Vec::new(),
            publish: Publish::Members,
            history: None,
            history_ttl: None,
            presence: true,
            recover: true,
            max_members: None,
            rpc: EventRule::Only(Vec::new()),
            join: Access::Anyone,
            read_history: Access::Anyone,
            read_presence: Access::Anyone,
        }
    }

    /// Whether the event `name` goes to the rpc hook here.
    pub fn routes_to_rpc(&self, name: &str) -> bool {
        match &self.rpc {
            EventRule::Any => true,
            EventRule::Only(names) => names.iter().any(|n| &**n == name),
        }
    }

    /// Whether the room relays the event `name`.
    pub fn allows_event(&self, name: &str) -> bool {
        match &self.events {
            EventRule::Any => true,
            EventRule::Only(names) => names.iter().any(|n| &**n == name),
        }
    }

    /// Whether the event `name` is volatile here.
    pub fn is_volatile(&self, name: &str) -> bool {
        self.volatile.iter().any(|n| &**n == name)
    }
}

/// Every room policy, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    rooms: Vec<Arc<RoomPolicy>>,
    default: Arc<RoomPolicy>,
}

impl Default for RoomPolicy {
    /// The policy of every room when no table is configured: everything
    /// allowed, every event to the rpc hook if there is one.
    fn default() -> Self {
        RoomPolicy {
            rpc: EventRule::Any,
            ..RoomPolicy::new("*")
        }
    }
}

impl Policies {
    /// Policies tried in the order given.
    pub fn new(rooms: Vec<RoomPolicy>) -> Policies {
        let mut default = RoomPolicy::default();
        if !rooms.is_empty() {
            // With tables, only the events a table lists go to the rpc hook.
            default.rpc = EventRule::Only(Vec::new());
        }
        Policies {
            rooms: rooms.into_iter().map(Arc::new).collect(),
            default: Arc::new(default),
        }
    }

    /// Whether no policy is configured.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The policy of the room `name`: the first that matches, or the
    /// default.
    pub fn for_room(&self, name: &str) -> Arc<RoomPolicy> {
        self.rooms
            .iter()
            .find(|p| glob_matches(&p.pattern, name))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of
/// characters (none too) and `?` for exactly one. Linear in practice: the
/// last `*` is the only backtracking point.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("doc:*", "doc:1", true),
            ("doc:*", "doc:", true),
            ("doc:*", "docs", false),
            ("*", "", true),
            ("game-??", "game-42", true),
            ("game-??", "game-4", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*.news", "sport.news", true),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("é*", "été", true),
        ] {
            assert_eq!(glob_matches(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn the_rpc_hook_takes_every_event_only_when_no_table_is_configured() {
        assert!(Policies::default().for_room("x").routes_to_rpc("order"));
        assert!(Policies::new(Vec::new())
            .for_room("x")
            .routes_to_rpc("order"));
        let shop = RoomPolicy {
            rpc: EventRule::Only(vec![Arc::from("order")]),
            ..RoomPolicy::new("shop:*")
        };
        let p = Policies::new(vec![shop]);
        assert!(p.for_room("shop:1").routes_to_rpc("order"));
        assert!(!p.for_room("shop:1").routes_to_rpc("chat"));
        assert!(
            !p.for_room("lobby").routes_to_rpc("order"),
            "a room no table matches relays"
        );
    }

    #[test]
    fn first_match_wins_and_the_default_allows_everything() {
        let mut doc = RoomPolicy::new("doc:*");
        doc.events = EventRule::Only(vec![Arc::from("stroke")]);
        let mut all = RoomPolicy::new("*");
        all.presence = false;
        let p = Policies::new(vec![doc, all]);
        assert!(!p.for_room("doc:1").allows_event("cursor"));
        assert!(p.for_room("doc:1").allows_event("stroke"));
        assert!(!p.for_room("lobby").presence);
        let none = Policies::default();
        assert!(none.for_room("x").allows_event("anything"));
        assert!(none.for_room("x").presence);
    }
}
