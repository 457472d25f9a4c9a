//! This node's side of the hub: delivering what other servers broadcast to
//! the local members it targets, and listing local members for the other
//! servers' requests. Used by the receive loop and by request answering.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use volna_hub::{ConnId, Event, Hub};

use crate::counters::bump;
use crate::nodes::Nodes;
use crate::shared::Shared;
use crate::wire::{RemoteBroadcast, RemoteEvent};

/// Another server's broadcast, as either reader (pub/sub or the stream)
/// got it: its sender is noted (with the room size its presence tells),
/// then it is delivered to the local members it targets, and counted.
pub(crate) fn accept(shared: &Shared, hub: &Hub, nodes: &Mutex<Nodes>, inc: &RemoteBroadcast) {
    nodes.lock().unwrap().on_broadcast(inc);
    deliver(hub, &inc.nsp, &inc.rooms, &inc.except, &inc.event);
    bump(&shared.counters.received);
}

/// Delivers a received event to the local members it targets.
pub(crate) fn deliver(
    hub: &Hub,
    nsp: &str,
    rooms: &[String],
    except: &[String],
    event: &RemoteEvent,
) {
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let except: Vec<&str> = except.iter().map(String::as_str).collect();
    let event = match event {
        RemoteEvent::Message(m) => Event::Message(m),
        RemoteEvent::Presence(p) => Event::Presence(p),
        RemoteEvent::Emit(e) => Event::Emit(e),
    };
    hub.deliver_remote(nsp, &rooms, &except, event);
}

/// This node's members in any of `rooms` (every room when empty) and in
/// none of `except`, each with its rooms.
pub(crate) fn local_members(
    hub: &Hub,
    nsp: &str,
    rooms: &[String],
    except: &[String],
) -> Vec<(ConnId, Arc<str>, Vec<Arc<str>>)> {
    let mut by_id: HashMap<ConnId, (Arc<str>, Vec<Arc<str>>)> = HashMap::new();
    for room in hub.rooms(nsp) {
        for m in hub.who(nsp, &room.name).unwrap_or_default() {
            by_id
                .entry(m.id)
                .or_insert_with(|| (m.name.clone(), Vec::new()))
                .1
                .push(room.name.clone());
        }
    }
    let wanted: HashSet<&str> = rooms.iter().map(String::as_str).collect();
    let excluded: HashSet<&str> = except.iter().map(String::as_str).collect();
    let mut out: Vec<_> = by_id
        .into_iter()
        .filter(|(_, (_, rs))| {
            (wanted.is_empty() || rs.iter().any(|r| wanted.contains(&**r)))
                && !rs.iter().any(|r| excluded.contains(&**r))
        })
        .map(|(id, (name, rs))| (id, name, rs))
        .collect();
    out.sort_by_key(|(id, _, _)| *id);
    out
}
