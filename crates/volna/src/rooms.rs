//! The `[[rooms]]` tables of the settings file: room policies, turned into
//! the hub's [`Policies`].
//!
//! ```toml
//! [[rooms]]
//! match = "doc:*"               # glob on room names: * any run, ? one character
//! events = ["stroke", "cursor"] # the application's own events relayed ("*": any, the default)
//! volatile = ["cursor"]         # not kept, dropped for a member who is behind
//! publish = "members"           # or "none": only the server publishes; "hook": the publish hook decides
//! rpc = ["order"]               # events answered by the rpc hook instead of relayed ("*": every one)
//! history = 500                 # messages kept (default: `history`)
//! history_ttl = 3600            # seconds a message stays in the history
//! presence = true               # announce joins and leaves
//! max_members = 50              # a join beyond is refused with room-full
//! join = "users"                # who may join (and so publish): anyone, users (signed in), granted (token's rooms claim), hook (the subscribe hook)
//! recover = false              # with --recovery: not logged, a recovered socket misses what came meanwhile
//! read_history = "users"        # who may read the history; read_presence: who may list the members
//! ```
//!
//! The first table whose `match` fits a room's name is its policy; a room
//! none fits allows everything.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use volna_hub::{Access, EventRule, Policies, Publish, RoomPolicy};
use volna_transports::app;

/// One `[[rooms]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomTable {
    /// The glob on room names.
    #[serde(rename = "match")]
    pub pattern: String,
    /// `"*"` or a list of event names.
    pub events: Option<Events>,
    /// Event names that are volatile.
    pub volatile: Option<Vec<String>>,
    /// `"members"` or `"none"`.
    pub publish: Option<String>,
    /// Messages kept for `history`.
    pub history: Option<usize>,
    /// Seconds a message stays in the history.
    pub history_ttl: Option<u64>,
    /// Whether joins and leaves are announced.
    pub presence: Option<bool>,
    /// Whether its messages are kept for Socket.IO recovery.
    pub recover: Option<bool>,
    /// Most members at a time.
    pub max_members: Option<usize>,
    /// `"*"` or the events the rpc hook answers.
    pub rpc: Option<Events>,
    /// Who may join: `anyone`, `users` or `granted`.
    pub join: Option<String>,
    /// Who may read the history.
    pub read_history: Option<String>,
    /// Who may list the members.
    pub read_presence: Option<String>,
}

/// The `events` key: every name, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Events {
    /// `"*"`.
    All(String),
    /// `["a", "b"]`.
    List(Vec<String>),
}

/// The hooks the tables may refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct HooksOn {
    /// `publish_hook_url` is set.
    pub publish: bool,
    /// `rpc_hook_url` is set.
    pub rpc: bool,
    /// `subscribe_hook_url` is set.
    pub subscribe: bool,
}

/// Checks every table and builds the policies, in order.
pub fn policies(tables: &[RoomTable], hooks: HooksOn) -> anyhow::Result<Policies> {
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            policy(t, hooks)
                .map_err(|e| anyhow::anyhow!("[[rooms]] #{} ({:?}): {e}", i + 1, t.pattern))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Policies::new)
}

fn event_names(names: &[String]) -> anyhow::Result<Vec<Arc<str>>> {
    names
        .iter()
        .map(|n| app::event_name(n).map_err(|e| anyhow::anyhow!("event {n:?}: {}", e.message)))
        .collect()
}

fn access(value: Option<&str>, key: &str) -> anyhow::Result<Access> {
    Ok(match value {
        None | Some("anyone") => Access::Anyone,
        Some("users") => Access::Users,
        Some("granted") => Access::Granted,
        Some(other) => {
            anyhow::bail!("{key} must be \"anyone\", \"users\" or \"granted\", not {other:?}")
        }
    })
}

fn rule(events: &Events, key: &str) -> anyhow::Result<EventRule> {
    Ok(match events {
        Events::All(s) if s == "*" => EventRule::Any,
        Events::All(s) => anyhow::bail!("{key} must be \"*\" or a list, not {s:?}"),
        Events::List(names) => EventRule::Only(event_names(names)?),
    })
}

fn policy(t: &RoomTable, hooks: HooksOn) -> anyhow::Result<RoomPolicy> {
    anyhow::ensure!(!t.pattern.is_empty(), "match must not be empty");
    let mut p = RoomPolicy::new(t.pattern.clone());
    p.events = match &t.events {
        None => EventRule::Any,
        Some(events) => rule(events, "events")?,
    };
    if let Some(rpc) = &t.rpc {
        anyhow::ensure!(
            hooks.rpc,
            "rpc needs an rpc hook: set rpc_hook_url (or --rpc-hook-url)"
        );
        p.rpc = rule(rpc, "rpc")?;
    }
    p.volatile = event_names(t.volatile.as_deref().unwrap_or_default())?;
    for v in &p.volatile {
        anyhow::ensure!(p.allows_event(v), "volatile event {v:?} is not in events");
    }
    p.publish = match t.publish.as_deref() {
        None | Some("members") => Publish::Members,
        Some("none") => Publish::Server,
        Some("hook") if hooks.publish => Publish::Hook,
        Some("hook") => anyhow::bail!(
            "publish = \"hook\" needs a publish hook: set publish_hook_url (or --publish-hook-url)"
        ),
        Some(other) => {
            anyhow::bail!("publish must be \"members\", \"none\" or \"hook\", not {other:?}")
        }
    };
    p.join = match t.join.as_deref() {
        Some("hook") if hooks.subscribe => Access::Hook,
        Some("hook") => anyhow::bail!(
            "join = \"hook\" needs a subscribe hook: set subscribe_hook_url (or --subscribe-hook-url)"
        ),
        join => access(join, "join")?,
    };
    p.read_history = access(t.read_history.as_deref(), "read_history")?;
    p.read_presence = access(t.read_presence.as_deref(), "read_presence")?;
    p.history = t.history;
    p.history_ttl = match t.history_ttl {
        Some(0) => anyhow::bail!("history_ttl must be at least 1 second"),
        s => s.map(Duration::from_secs),
    };
    p.presence = t.presence.unwrap_or(true);
    p.recover = t.recover.unwrap_or(true);
    p.max_members = match t.max_members {
        Some(0) => anyhow::bail!("max_members must be at least 1"),
        m => m,
    };
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> anyhow::Result<Policies> {
        #[derive(Deserialize)]
        struct File {
            rooms: Vec<RoomTable>,
        }
        let f: File = toml::from_str(toml_text)?;
        policies(&f.rooms, HooksOn::default())
    }

    #[test]
    fn tables_become_policies_in_order() {
        let p = parse(
            r#"
            [[rooms]]
            match = "doc:*"
            events = ["stroke", "cursor"]
            volatile = ["cursor"]
            history = 500
            history_ttl = 60
            presence = false
            max_members = 3

            [[rooms]]
            match = "feed.*"
            publish = "none"
            "#,
        )
        .unwrap();
        let doc = p.for_room("doc:7");
        assert!(doc.allows_event("stroke") && !doc.allows_event("chat"));
        assert!(doc.is_volatile("cursor") && !doc.is_volatile("stroke"));
        assert_eq!(
            (doc.history, doc.history_ttl, doc.presence, doc.max_members),
            (Some(500), Some(Duration::from_secs(60)), false, Some(3))
        );
        assert_eq!(p.for_room("feed.prices").publish, Publish::Server);
        assert!(p.for_room("lobby").allows_event("x"));
    }

    #[test]
    fn the_documented_example_is_valid() {
        let doc = include_str!("../../../docs/applications.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let p = parse(&doc[start..end]).unwrap();
        assert!(p.for_room("board:7").is_volatile("cursor"));
        assert_eq!(p.for_room("prices.eur").publish, Publish::Server);
        assert!(p.for_room("lobby").allows_event("anything"));
    }

    #[test]
    fn mistakes_are_reported_with_the_table() {
        for (text, want) in [
            ("match = \"a\"\nevents = \"some\"", "events must be"),
            (
                "match = \"a\"\nevents = [\"x\"]\nvolatile = [\"y\"]",
                "not in events",
            ),
            ("match = \"a\"\nevents = [\"connect\"]", "reserved"),
            ("match = \"a\"\npublish = \"hook\"", "publish hook"),
            ("match = \"a\"\nmax_members = 0", "at least 1"),
            ("match = \"\"", "must not be empty"),
        ] {
            let err = parse(&format!("[[rooms]]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want) && err.contains("#1"), "{text}: {err}");
        }
        assert!(parse("[[rooms]]\nmatch = \"a\"\nbogus = 1\n").is_err());
    }
}
