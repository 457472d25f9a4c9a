//! Membership of the other volna nodes. Every node publishes a heartbeat
//! (`{"uid": …}`) on `<prefix>-volna#heartbeat#` every
//! [`ClusterConfig::heartbeat`](crate::ClusterConfig::heartbeat) and a
//! goodbye (`{"uid": …, "bye": true}`) when it stops. [`Nodes`] remembers,
//! from the presence events each node broadcast, which of its members are
//! in which rooms, so that when a node says goodbye, or stays silent for
//! three heartbeats while this node's own heartbeats keep arriving, the
//! local members get `leave` presence events for its members.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value as Json};
use volna_hub::{ConnId, Event, Hub, MemberInfo, NodeInfo, Presence, PresenceKind};

use crate::counters::bump;
use crate::shared::Shared;
use crate::wire::{RemoteBroadcast, RemoteEvent};

/// The channel volna nodes publish their heartbeats on.
pub(crate) fn heartbeat_channel(prefix: &str) -> String {
    format!("{prefix}-volna#heartbeat#")
}

/// The heartbeat node `uid` publishes: its id and its figures.
pub(crate) fn heartbeat(uid: &str, node: &NodeInfo) -> String {
    json!({"uid": uid, "node": node}).to_string()
}

/// This node's figures, for its heartbeat.
pub(crate) fn this_node(shared: &Shared, hub: &Hub) -> NodeInfo {
    hub.node_info(
        &shared.uid,
        &shared.config.node_name,
        shared.started.elapsed(),
    )
}

/// The goodbye node `uid` publishes when it stops.
pub(crate) fn goodbye(uid: &str) -> String {
    json!({"uid": uid, "bye": true}).to_string()
}

/// What this node knows of another volna node's members, to forget them if
/// it dies.
struct Node {
    last_seen: Instant,
    rooms: HashMap<RoomKey, RoomPart>,
}

/// A room as another node announced it: its part of the room's size (from
/// the last presence event), and the members it announced. A node announces
/// only while its part is small, so `members` stays bounded; a member that
/// left unannounced (its part was large then) stays listed until the part
/// is empty.
#[derive(Default)]
struct RoomPart {
    size: usize,
    members: HashMap<ConnId, Arc<str>>,
}

/// A room of a namespace: `(nsp, room)`.
type RoomKey = (Arc<str>, Arc<str>);

/// The other volna nodes as the receive loop sees them.
pub(crate) struct Nodes {
    shared: Arc<Shared>,
    hub: Hub,
    nodes: HashMap<String, Node>,
    /// When our own heartbeats started arriving without a gap: the
    /// subscription has been working since then.
    own_streak: Option<Instant>,
    own_last: Option<Instant>,
}

impl Nodes {
    pub(crate) fn new(shared: Arc<Shared>, hub: Hub) -> Nodes {
        Nodes {
            shared,
            hub,
            nodes: HashMap::new(),
            own_streak: None,
            own_last: None,
        }
    }

    /// Notes a broadcast of another server: its sender, if a known volna
    /// node, is alive, and a presence event updates the sender's members.
    pub(crate) fn on_broadcast(&mut self, inc: &RemoteBroadcast) {
        if let Some(node) = self.nodes.get_mut(&inc.uid) {
            node.last_seen = Instant::now();
        }
        if let RemoteEvent::Presence(p) = &inc.event {
            let node = self.nodes.entry(inc.uid.clone()).or_insert_with(|| Node {
                last_seen: Instant::now(),
                rooms: HashMap::new(),
            });
            let key = (p.nsp.clone(), p.room.clone());
            let part = node.rooms.entry(key.clone()).or_default();
            let before = part.size;
            part.size = p.members;
            match p.kind {
                PresenceKind::Joined => {
                    part.members.insert(p.member.id, p.member.name.clone());
                }
                PresenceKind::Left => {
                    part.members.remove(&p.member.id);
                }
            }
            if part.size == 0 {
                node.rooms.remove(&key);
            }
            self.count(&key, before, p.members);
        }
    }

    /// Moves the cluster-wide count of `key`'s remote members by one
    /// node's change of part from `before` to `after`.
    fn count(&self, (nsp, room): &RoomKey, before: usize, after: usize) {
        if before == after {
            return;
        }
        let mut counts = self.shared.remote_counts.lock().unwrap();
        let rooms = counts.entry(nsp.clone()).or_default();
        let total = rooms.entry(room.clone()).or_default();
        *total = (*total + after).saturating_sub(before);
        if *total == 0 {
            rooms.remove(room);
            if rooms.is_empty() {
                counts.remove(nsp);
            }
        }
    }

    /// A heartbeat or goodbye, ours or another node's.
    pub(crate) fn on_heartbeat(&mut self, payload: &[u8]) {
        let Ok(beat) = serde_json::from_slice::<Json>(payload) else {
            return;
        };
        let Some(uid) = beat.get("uid").and_then(Json::as_str) else {
            return;
        };
        let now = Instant::now();
        if uid == self.shared.uid {
            let gap = self.shared.config.heartbeat * 2;
            if self.own_last.is_none_or(|t| now - t > gap) {
                self.own_streak = Some(now);
            }
            self.own_last = Some(now);
            return;
        }
        if beat.get("bye").and_then(Json::as_bool) == Some(true) {
            self.shared.node_infos.lock().unwrap().remove(uid);
            if let Some(node) = self.nodes.remove(uid) {
                self.forget(uid, node);
            }
            return;
        }
        if let Some(info) = beat
            .get("node")
            .and_then(|n| serde_json::from_value::<NodeInfo>(n.clone()).ok())
            .filter(|n| n.uid == uid)
        {
            self.shared
                .node_infos
                .lock()
                .unwrap()
                .insert(uid.to_string(), info);
        }
        self.nodes
            .entry(uid.to_string())
            .or_insert_with(|| Node {
                last_seen: now,
                rooms: HashMap::new(),
            })
            .last_seen = now;
    }

    /// The subscribed connection was lost: our own heartbeats must arrive
    /// for three periods again before anyone is expired.
    pub(crate) fn subscription_lost(&mut self) {
        self.own_streak = None;
    }

    /// Forgets volna nodes silent for three heartbeats, provided our own
    /// subscription has been working for that long.
    pub(crate) fn sweep(&mut self) {
        let hb = self.shared.config.heartbeat;
        let now = Instant::now();
        let healthy = self.own_last.is_some_and(|t| now - t <= hb * 2)
            && self.own_streak.is_some_and(|t| now - t >= hb * 3);
        if !healthy {
            return;
        }
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now - n.last_seen > hb * 3)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in dead {
            self.shared.node_infos.lock().unwrap().remove(&uid);
            if let Some(node) = self.nodes.remove(&uid) {
                bump(&self.shared.counters.nodes_expired);
                tracing::info!(node = %uid, "cluster: node silent for three heartbeats, forgetting its members");
                self.forget(&uid, node);
            }
        }
    }

    /// Tells local members that a gone node's members left: its part of
    /// each room is taken off the room's size first, so the hub announces
    /// the leaves only where the room is small without them (and gives the
    /// size after).
    fn forget(&self, _uid: &str, node: Node) {
        for (key, part) in &node.rooms {
            self.count(key, part.size, 0);
        }
        for ((nsp, room), part) in node.rooms {
            for (id, name) in part.members {
                let presence = Presence {
                    nsp: nsp.clone(),
                    room: room.clone(),
                    member: MemberInfo { id, name },
                    kind: PresenceKind::Left,
                    members: 0,
                };
                self.hub
                    .deliver_remote(&nsp, &[&room], &[], Event::Presence(&presence));
            }
        }
    }
}
