//! Read-only views of the hub for tools that watch it (the Socket.IO Admin
//! UI), and the few operations such a tool applies to the connections it
//! picks: every connection, the census of namespaces and transports, the
//! connections a filter names, and emit, leave and disconnect by id. None of
//! this is on the message path.

use std::collections::HashSet;
use std::sync::Arc;

use super::deliver::Encoder;
use super::state::{Hub, Member};
use crate::event::{ConnId, Emit, Event};
use crate::observe::ConnView;
use crate::outbox::CloseReason;

/// How many connections each namespace and each transport has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Namespace → connections, sorted by name.
    pub namespaces: Vec<(Arc<str>, usize)>,
    /// Transport name → connections, sorted by name.
    pub transports: Vec<(&'static str, usize)>,
    /// Connections in all.
    pub connections: usize,
}

impl Hub {
    /// The namespace and client id of connection `id`, while it is here.
    pub fn client_of(&self, id: crate::event::ConnId) -> Option<(Arc<str>, Arc<str>)> {
        let st = self.inner.state.lock().unwrap();
        st.conns.get(&id).map(|e| (e.nsp.clone(), e.client.clone()))
    }

    /// Every connection, as a copy (one walk under the lock).
    pub fn connections(&self) -> Vec<ConnView> {
        let st = self.inner.state.lock().unwrap();
        let mut all: Vec<ConnView> = st
            .conns
            .iter()
            .map(|(id, e)| super::conn::view_of(*id, e))
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Connections by namespace and by transport.
    pub fn census(&self) -> Census {
        let st = self.inner.state.lock().unwrap();
        let mut namespaces: Vec<(Arc<str>, usize)> = st
            .namespaces
            .iter()
            .map(|(name, ns)| (name.clone(), ns.members.len()))
            .collect();
        namespaces.sort();
        let mut transports: Vec<(&'static str, usize)> = Vec::new();
        for e in st.conns.values() {
            match transports.iter_mut().find(|(t, _)| *t == e.transport) {
                Some((_, n)) => *n += 1,
                None => transports.push((e.transport, 1)),
            }
        }
        transports.sort();
        Census {
            namespaces,
            transports,
            connections: st.conns.len(),
        }
    }

    /// The connections of namespace `nsp` that `filter` names, as Socket.IO's
    /// `io.of(nsp).in(filter)`: the members of room `filter`, or the
    /// connection whose client id it is (or the connections of `#user`);
    /// every connection of the namespace when there is no filter.
    pub fn targets(&self, nsp: &str, filter: Option<&str>) -> Vec<ConnId> {
        self.target_members(nsp, filter)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    fn target_members(&self, nsp: &str, filter: Option<&str>) -> Vec<(ConnId, Member)> {
        let Some(filter) = filter else {
            let st = self.inner.state.lock().unwrap();
            let Some(ns) = st.namespaces.get(nsp) else {
                return Vec::new();
            };
            let mut all: Vec<(ConnId, Member)> =
                ns.members.iter().map(|(k, v)| (*k, v.clone())).collect();
            all.sort_by_key(|(id, _)| *id);
            return all;
        };
        match self.room(nsp, filter) {
            Some(room) => {
                let mut found = room.members_now();
                found.sort_by_key(|(id, _)| *id);
                found
            }
            None => self.personal_members(nsp, filter),
        }
    }

    /// Makes connection `id` leave `room`; false if it was not in it.
    pub fn leave_as(&self, id: ConnId, room: &str) -> bool {
        self.leave(id, room).is_ok()
    }

    /// Delivers `emit` (an event from the server, rendered by every
    /// transport in its own terms) to the connections of `emit.nsp` that
    /// `filter` names (see [`Hub::targets`]). Returns how many got it.
    pub fn emit_to(&self, filter: Option<&str>, emit: &Emit) -> usize {
        let members = self.target_members(&emit.nsp, filter);
        let mut enc = Encoder::new(Event::Emit(emit));
        self.deliver(&mut enc, members.iter().map(|(k, v)| (k, v)), None)
    }

    /// Connection `id` now runs over `transport` (a Socket.IO connection
    /// upgraded from polling to WebSocket); the observer is told.
    pub fn set_transport(&self, id: ConnId, transport: &'static str) {
        let mut st = self.inner.state.lock().unwrap();
        let Some(entry) = st.conns.get_mut(&id) else {
            return;
        };
        if entry.transport == transport {
            return;
        }
        entry.transport = transport;
        if let Some(observer) = self.observer() {
            observer.updated(&super::conn::view_of(id, entry));
        }
    }

    /// Sends `payload` to the observers of the other nodes of the cluster
    /// (see [`crate::Adapter::to_other_observers`]). False without an
    /// adapter (a single node).
    pub fn tell_other_nodes(&self, payload: Vec<u8>) -> bool {
        match self.adapter() {
            Some(adapter) => {
                adapter.to_other_observers(payload);
                true
            }
            None => false,
        }
    }

    /// Gives this node's observer what another node's observer sent (the
    /// adapter calls it).
    pub fn observe_other_node(&self, payload: &[u8]) {
        if let Some(observer) = self.observer() {
            observer.told_by_other_node(payload);
        }
    }

    /// Tells connections `ids` goodbye in their own terms and closes them.
    /// Returns how many were told.
    pub fn disconnect_ids(&self, ids: &[ConnId], reason: CloseReason) -> usize {
        let wanted: HashSet<ConnId> = ids.iter().copied().collect();
        let members: Vec<Member> = {
            let st = self.inner.state.lock().unwrap();
            st.namespaces
                .values()
                .flat_map(|ns| ns.members.iter())
                .filter(|(id, _)| wanted.contains(id))
                .map(|(_, m)| m.clone())
                .collect()
        };
        super::server::close_members(&members, &reason)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::hub::testing::{codec, conn, drain};
    use crate::observe::Observer;
    use crate::outbox::OutboxLimits;
    use crate::HubConfig;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Observer for Log {
        fn connected(&self, c: &ConnView) {
            self.0
                .lock()
                .unwrap()
                .push(format!("connect {} {}", c.nsp, c.name));
        }
        fn disconnected(&self, nsp: &str, _client: &str, _reason: Option<&str>) {
            self.0.lock().unwrap().push(format!("disconnect {nsp}"));
        }
        fn joined(&self, _nsp: &str, room: &str, _client: &str) {
            self.0.lock().unwrap().push(format!("join {room}"));
        }
        fn left(&self, _nsp: &str, room: &str, client: &str) {
            let room = if room == client { "<own>" } else { room };
            self.0.lock().unwrap().push(format!("leave {room}"));
        }
    }

    #[derive(Default)]
    struct Updates(Mutex<Vec<(String, &'static str)>>);

    impl Observer for Updates {
        fn connected(&self, _c: &ConnView) {}
        fn disconnected(&self, _nsp: &str, _client: &str, _reason: Option<&str>) {}
        fn joined(&self, _nsp: &str, _room: &str, _client: &str) {}
        fn left(&self, _nsp: &str, _room: &str, _client: &str) {}
        fn updated(&self, c: &ConnView) {
            self.0
                .lock()
                .unwrap()
                .push((c.name.to_string(), c.transport));
        }
    }

    #[test]
    fn renames_and_upgrades_are_observed() {
        let hub = Hub::new(HubConfig::default());
        let seen = Arc::new(Updates::default());
        assert!(hub.set_observer(seen.clone()));
        let a = conn(&hub, "ann", codec(1), OutboxLimits::default());
        let before = a.transport();
        hub.set_transport(a.id(), before);
        hub.set_transport(a.id(), "websocket-upgraded");
        assert_eq!(a.transport(), "websocket-upgraded");
        assert_eq!(hub.census().transports, vec![("websocket-upgraded", 1)]);
        hub.rename(a.id(), "anna").unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("ann".to_string(), "websocket-upgraded"),
                ("anna".to_string(), "websocket-upgraded"),
            ]
        );
    }

    #[test]
    fn observer_views_targets_and_census() {
        let hub = Hub::new(HubConfig::default());
        let log = Arc::new(Log::default());
        assert!(hub.set_observer(log.clone()));
        let a = conn(&hub, "ann", codec(1), OutboxLimits::default());
        let b = conn(&hub, "bob", codec(1), OutboxLimits::default());
        a.join("lobby").unwrap();
        b.join("lobby").unwrap();
        b.join("other").unwrap();
        assert_eq!(hub.targets("/", Some("lobby")), vec![a.id(), b.id()]);
        assert_eq!(hub.targets("/", Some(&b.client())), vec![b.id()]);
        assert_eq!(hub.targets("/", None).len(), 2);
        assert!(hub.targets("/", Some("nowhere")).is_empty());
        let census = hub.census();
        assert_eq!(census.connections, 2);
        assert_eq!(census.namespaces, vec![(Arc::from("/"), 2)]);
        let views = hub.connections();
        assert_eq!(views[1].rooms.len(), 2);
        assert!(hub.leave_as(b.id(), "other"));
        assert!(!hub.leave_as(b.id(), "other"));
        drain(&b);
        let emit = Emit {
            nsp: Arc::from("/"),
            room: None,
            event: Arc::from("news"),
            args: crate::Data::text("hi"),
            cluster_offset: None,
        };
        assert_eq!(hub.emit_to(Some(&b.client()), &emit), 1);
        assert_eq!(drain(&b).len(), 1);
        assert_eq!(hub.disconnect_ids(&[b.id()], CloseReason::ClientQuit), 1);
        drop(b);
        let log = log.0.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![
                "connect / ann",
                "connect / bob",
                "join lobby",
                "join lobby",
                "join other",
                "leave other",
                "disconnect /",
                "leave lobby",
                "leave <own>",
            ]
        );
    }
}
