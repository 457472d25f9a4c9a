//! What the server does itself rather than for a connection — the server
//! API's operations: publishing from the server (to a room, or to a
//! personal room: a client id or `#user`), presence with identities,
//! counts, and disconnecting users or clients.

use std::collections::HashSet;
use std::sync::Arc;

use super::deliver::Encoder;
use super::state::{Hub, Member, Namespace};
use crate::adapter::{NodeInfo, Outgoing};
use crate::event::{ConnId, Data, Event, MemberInfo, Message};
use crate::identity::{ClientInfo, SERVER_NAME, USER_ROOM_PREFIX};
use crate::outbox::CloseReason;
use crate::stats::Stats;

/// What a [`Hub::publish_server`] reached on this node.
#[derive(Debug, Clone)]
pub enum ServerPublish {
    /// A room: the message as its members got it, and the room's epoch.
    Room {
        /// The message, with its offset.
        message: Arc<Message>,
        /// The epoch of the room's offsets.
        epoch: Arc<str>,
    },
    /// A personal room (a client id, or `#user`): how many connections
    /// here got it. Personal messages have no offset and no history.
    Personal(usize),
    /// Nothing here by that name; in a cluster the other nodes were told.
    Nobody,
}

/// This node's figures for the server API's `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Connections.
    pub clients: usize,
    /// Distinct identified users (per namespace).
    pub users: usize,
    /// Rooms that exist (have members).
    pub rooms: usize,
}

/// Who server messages are from.
fn server_member() -> MemberInfo {
    MemberInfo {
        id: 0,
        name: Arc::from(SERVER_NAME),
    }
}

impl Hub {
    /// Publishes `data` (as the application's event `event`, or as a
    /// `message`) from the server to `target`: a room — numbered and kept
    /// like a member's message, whatever the room's policy says of who may
    /// publish or which events are relayed (a volatile event stays
    /// volatile) — else a client id or `#user`, delivered to those
    /// connections only. In a cluster every other node gets it too.
    pub fn publish_server(
        &self,
        nsp: &str,
        target: &str,
        event: Option<Arc<str>>,
        data: Data,
    ) -> ServerPublish {
        let room = self.room(nsp, target).or_else(|| {
            // A room whose policy keeps its history while empty is made by
            // the server's publish, so a late joiner reads what it missed.
            let keeps = !target.starts_with(USER_ROOM_PREFIX)
                && volna_protocols::line::validate_room(target).is_ok()
                && self.personal_members(nsp, target).is_empty()
                && self
                    .inner
                    .config
                    .policies
                    .for_room(target)
                    .history_ttl
                    .is_some();
            keeps.then(|| self.room_or_new(nsp, target))
        });
        if let Some(room) = room {
            let mut rs = room.state.lock().unwrap();
            let volatile = event.as_deref().is_some_and(|e| room.policy.is_volatile(e));
            let message =
                self.send_locked(&room, &mut rs, server_member(), event, data, volatile, None);
            let epoch = rs.epoch.clone();
            drop(rs);
            self.keep_histories_in_budget();
            return ServerPublish::Room { message, epoch };
        }
        let message = Arc::new(Message {
            nsp: Arc::from(nsp),
            room: Arc::from(target),
            offset: 0,
            ts: crate::now_ms(),
            from: server_member(),
            data,
            event,
            seq: 0,
            cluster_offset: Default::default(),
        });
        let members = self.personal_members(nsp, target);
        let mut enc = Encoder::new(Event::Message(&message));
        let delivered = self.deliver(&mut enc, members.iter().map(|(k, v)| (k, v)), None);
        // A client id is one connection, unique across nodes: found here,
        // nobody else has it. A user may be connected to any node.
        let found_client = delivered > 0 && !target.starts_with(USER_ROOM_PREFIX);
        if !found_client {
            if let Some(adapter) = self.inner.adapter.get() {
                adapter.forward(Outgoing::Message(message));
            }
        }
        Stats::bump(&self.inner.stats.messages);
        if members.is_empty() {
            ServerPublish::Nobody
        } else {
            ServerPublish::Personal(delivered)
        }
    }

    /// The connections of personal room `target` here: the one with that
    /// client id, or every connection of user `#user`.
    pub(super) fn personal_members(&self, nsp: &str, target: &str) -> Vec<(ConnId, Member)> {
        let st = self.inner.state.lock().unwrap();
        let Some(ns) = st.namespaces.get(nsp) else {
            return Vec::new();
        };
        personal_ids(ns, target)
            .into_iter()
            .filter_map(|id| ns.members.get(&id).map(|m| (id, m.clone())))
            .collect()
    }

    /// The members of `room` with their identities, or `None` when no such
    /// room exists here.
    pub fn presence(&self, nsp: &str, room: &str) -> Option<Vec<ClientInfo>> {
        let st = self.inner.state.lock().unwrap();
        let ns = st.namespaces.get(nsp)?;
        let ids: Vec<ConnId> = match ns.rooms.get(room) {
            Some(r) => r.state.lock().unwrap().members.keys().copied().collect(),
            None => {
                let ids = personal_ids(ns, room);
                if ids.is_empty() {
                    return None;
                }
                ids
            }
        };
        let mut list: Vec<ClientInfo> = ids
            .iter()
            .filter_map(|id| st.conns.get(id))
            .map(|e| ClientInfo {
                client: e.client.clone(),
                user: e.user.clone().unwrap_or_else(|| Arc::from("")),
                name: e.name.clone(),
                info: e.info.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Some(list)
    }

    /// Connection `id` as the server API lists it.
    pub fn client_info(&self, id: ConnId) -> Option<ClientInfo> {
        let st = self.inner.state.lock().unwrap();
        st.conns.get(&id).map(|e| ClientInfo {
            client: e.client.clone(),
            user: e.user.clone().unwrap_or_else(|| Arc::from("")),
            name: e.name.clone(),
            info: e.info.clone(),
        })
    }

    /// This node as the server API's `info` lists it.
    pub fn node_info(&self, uid: &str, name: &str, uptime: std::time::Duration) -> NodeInfo {
        let counts = self.counts();
        NodeInfo {
            uid: uid.to_string(),
            name: name.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            num_clients: counts.clients,
            num_users: counts.users,
            num_channels: counts.rooms,
            uptime: uptime.as_secs(),
        }
    }

    /// This node's connections, users and rooms.
    pub fn counts(&self) -> NodeCounts {
        let st = self.inner.state.lock().unwrap();
        NodeCounts {
            clients: st.conns.len(),
            users: st.namespaces.values().map(|ns| ns.users.len()).sum(),
            rooms: st.namespaces.values().map(|ns| ns.rooms.len()).sum(),
        }
    }

    /// Disconnects, in every namespace, the connections of `user` (all of
    /// them, or only client `client`), or the one connection with client id
    /// `client` when no user is given. Returns how many were told to close.
    pub fn disconnect(
        &self,
        user: Option<&str>,
        client: Option<&str>,
        reason: CloseReason,
    ) -> usize {
        if user.is_none() && client.is_none() {
            return 0;
        }
        // Found through the namespaces' client and user indexes: a token
        // expiring or a flood being cut must not walk every connection.
        let members: Vec<Member> = {
            let st = self.inner.state.lock().unwrap();
            let mut out = Vec::new();
            for ns in st.namespaces.values() {
                let ids: Vec<ConnId> = match (client, user) {
                    (Some(c), _) => ns.clients.get(c).copied().into_iter().collect(),
                    (None, Some(u)) => ns.users.get(u).cloned().unwrap_or_default(),
                    (None, None) => Vec::new(),
                };
                out.extend(
                    ids.into_iter()
                        .filter(|id| {
                            user.is_none_or(|u| {
                                st.conns.get(id).and_then(|e| e.user.as_deref()) == Some(u)
                            })
                        })
                        .filter_map(|id| ns.members.get(&id).cloned()),
                );
            }
            out
        };
        close_members(&members, &reason)
    }

    /// Disconnects the members of `targets` in namespace `nsp`: rooms, or
    /// personal rooms (a client id, `#user`) — what another server asks
    /// with `disconnectSockets()`. Returns how many were told to close.
    pub fn disconnect_in(&self, nsp: &str, targets: &[&str], reason: CloseReason) -> usize {
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        for target in targets {
            let found: Vec<(ConnId, Member)> = match self.room(nsp, target) {
                Some(room) => room.members_now(),
                None => self.personal_members(nsp, target),
            };
            members.extend(
                found
                    .into_iter()
                    .filter(|(id, _)| seen.insert(*id))
                    .map(|(_, m)| m),
            );
        }
        close_members(&members, &reason)
    }
}

/// Tells each member goodbye in its own terms and closes it.
pub(super) fn close_members(members: &[Member], reason: &CloseReason) -> usize {
    let mut goodbye = Vec::new();
    for member in members {
        goodbye.clear();
        member.codec.goodbye(reason, &mut goodbye);
        for frame in goodbye.drain(..) {
            let _ = member.outbox.push_one(frame);
        }
        member.outbox.close(reason.clone());
    }
    members.len()
}

/// The ids of personal room `target` in a namespace.
fn personal_ids(ns: &Namespace, target: &str) -> Vec<ConnId> {
    match target.strip_prefix(USER_ROOM_PREFIX) {
        Some(user) => ns.users.get(user).cloned().unwrap_or_default(),
        None => ns.clients.get(target).copied().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::testing::{codec, conn, drain};
    use crate::identity::Identity;
    use crate::outbox::{Outbox, OutboxLimits};
    use crate::policy::{Policies, Publish, RoomPolicy};
    use crate::HubConfig;

    fn identified(hub: &Hub, name: &str, client: &str, user: &str) -> crate::Conn {
        hub.register_as(
            "/",
            Some(name),
            Identity {
                client: Some(Arc::from(client)),
                user: Some(Arc::from(user)),
                info: None,
                transport: "test",
                ..Identity::default()
            },
            Arc::new(Outbox::new(OutboxLimits::default())),
            codec(1),
        )
    }

    #[test]
    fn the_server_publishes_into_rooms_only_it_may_publish_to() {
        let policies = Policies::new(vec![RoomPolicy {
            publish: Publish::Server,
            ..RoomPolicy::new("feed")
        }]);
        let hub = Hub::new(HubConfig {
            policies,
            ..HubConfig::default()
        });
        let a = conn(&hub, "ann", codec(1), OutboxLimits::default());
        a.join("feed").unwrap();
        drain(&a);
        assert!(a.publish("feed", Data::text("x"), true).is_err());
        let ServerPublish::Room { message, epoch } =
            hub.publish_server("/", "feed", None, Data::text("tick"))
        else {
            panic!("a room")
        };
        assert_eq!(message.offset, 1);
        assert!(!epoch.is_empty());
        assert_eq!(drain(&a), vec!["msg feed 1 server tick"]);
        assert_eq!(hub.history("/", "feed", 10).unwrap().len(), 1);
        assert!(matches!(
            hub.publish_server("/", "nobody-here", None, Data::text("x")),
            ServerPublish::Nobody
        ));
    }

    #[test]
    fn personal_rooms_reach_one_client_or_every_connection_of_a_user() {
        let hub = Hub::new(HubConfig::default());
        let a1 = identified(&hub, "ann", "sid-a1", "ann");
        let a2 = identified(&hub, "ann-phone", "sid-a2", "ann");
        let b = identified(&hub, "bob", "sid-b", "bob");
        assert!(matches!(
            hub.publish_server("/", "#ann", None, Data::text("hi ann")),
            ServerPublish::Personal(2)
        ));
        assert!(matches!(
            hub.publish_server("/", "sid-b", None, Data::text("hi bob")),
            ServerPublish::Personal(1)
        ));
        assert_eq!(drain(&a1), vec!["msg #ann 0 server hi ann"]);
        assert_eq!(drain(&a2), vec!["msg #ann 0 server hi ann"]);
        assert_eq!(drain(&b), vec!["msg sid-b 0 server hi bob"]);
        assert_eq!(
            a1.join("#ann").unwrap_err().code(),
            "reserved-room",
            "clients cannot listen in on personal rooms"
        );
        assert_eq!(
            hub.counts(),
            NodeCounts {
                clients: 3,
                users: 2,
                rooms: 0
            }
        );
        let p = hub.presence("/", "#ann").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(&*p[0].client, "sid-a1");
        assert_eq!(&*p[0].user, "ann");
        assert_eq!(
            hub.disconnect(Some("ann"), None, CloseReason::ClientQuit),
            2
        );
        assert!(a1.outbox().closed().is_some() && a2.outbox().closed().is_some());
        assert!(b.outbox().closed().is_none());
        assert_eq!(
            hub.disconnect(None, Some("sid-b"), CloseReason::ClientQuit),
            1
        );
        assert_eq!(hub.disconnect(None, None, CloseReason::ClientQuit), 0);
        drop(a1);
        drop(a2);
        assert_eq!(hub.counts().users, 1);
    }

    #[test]
    fn rooms_with_a_history_ttl_keep_their_history_without_members() {
        let policies = Policies::new(vec![RoomPolicy {
            history_ttl: Some(std::time::Duration::from_millis(80)),
            ..RoomPolicy::new("feed:*")
        }]);
        let hub = Hub::new(HubConfig {
            policies,
            ..HubConfig::default()
        });
        // Published before anyone joined: kept for the first to come.
        let ServerPublish::Room { message, epoch } =
            hub.publish_server("/", "feed:1", None, Data::text("tick 1"))
        else {
            panic!("a room made for its history")
        };
        assert_eq!(message.offset, 1);
        assert!(matches!(
            hub.publish_server("/", "other", None, Data::text("x")),
            ServerPublish::Nobody
        ));
        let a = conn(&hub, "ann", codec(1), OutboxLimits::default());
        a.join("feed:1").unwrap();
        assert_eq!(hub.history("/", "feed:1", 10).unwrap().len(), 1);
        a.leave("feed:1").unwrap();
        // Left empty, it keeps its history, offsets and epoch…
        let stream = hub.stream("/", "feed:1", 0).unwrap();
        assert_eq!((stream.offset, &*stream.epoch), (1, &*epoch));
        assert!(
            hub.rooms("/").is_empty(),
            "listings show rooms with members"
        );
        assert_eq!(hub.sweep_rooms(), 0);
        // …until its newest message is older than the ttl.
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert_eq!(hub.sweep_rooms(), 1);
        assert!(hub.stream("/", "feed:1", 0).is_none());
    }

    #[test]
    fn policies_say_who_may_join_and_read() {
        use crate::policy::Access;
        let policies = Policies::new(vec![
            RoomPolicy {
                join: Access::Users,
                read_history: Access::Granted,
                ..RoomPolicy::new("staff:*")
            },
            RoomPolicy {
                join: Access::Granted,
                ..RoomPolicy::new("vip:*")
            },
        ]);
        let hub = Hub::new(HubConfig {
            policies,
            ..HubConfig::default()
        });
        let anon = conn(&hub, "anon", codec(1), OutboxLimits::default());
        let user = identified(&hub, "ann", "c-ann", "ann");
        let granted = hub.register_as(
            "/",
            Some("vip"),
            Identity {
                user: Some(Arc::from("vip")),
                rooms: Some(Arc::from(vec!["vip:*".to_string(), "staff:*".to_string()])),
                ..Identity::default()
            },
            Arc::new(Outbox::new(OutboxLimits::default())),
            codec(1),
        );
        assert_eq!(anon.join("staff:1").unwrap_err().code(), "forbidden");
        user.join("staff:1").unwrap();
        assert_eq!(user.join("vip:1").unwrap_err().code(), "forbidden");
        granted.join("vip:1").unwrap();
        assert_eq!(
            granted.join("elsewhere").unwrap_err().code(),
            "forbidden",
            "a token's rooms claim limits every join"
        );
        anon.join("lobby").unwrap();
        assert!(hub.may(user.id(), Access::Granted, "staff:1").is_err());
        assert!(hub.may(granted.id(), Access::Granted, "staff:1").is_ok());
        assert!(hub.may(anon.id(), Access::Anyone, "staff:1").is_ok());
    }

    #[test]
    fn a_users_name_is_theirs_even_while_away() {
        let hub = Hub::new(HubConfig::default());
        let ann = identified(&hub, "ann", "c1", "u-ann");
        drop(ann);
        let anon = conn(&hub, "ann", codec(1), OutboxLimits::default());
        assert_eq!(&*anon.name(), "ann-2", "an anonymous one gets a suffix");
        assert_eq!(anon.set_name("ann").unwrap_err().code(), "name-taken");
        let other = identified(&hub, "ann", "c2", "u-other");
        assert_eq!(&*other.name(), "ann-3");
        let back = identified(&hub, "ann", "c3", "u-ann");
        assert_eq!(&*back.name(), "ann", "its owner takes it back");
    }

    #[test]
    fn nobody_may_take_the_servers_name() {
        let hub = Hub::new(HubConfig::default());
        let a = conn(&hub, SERVER_NAME, codec(1), OutboxLimits::default());
        assert_ne!(&*a.name(), SERVER_NAME);
        assert_eq!(a.set_name(SERVER_NAME).unwrap_err().code(), "name-taken");
    }
}
