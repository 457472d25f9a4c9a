//! Publishing: a message gets its room's next offset and a timestamp, is
//! kept in the room's history and queued to every member under the room's
//! lock, then handed to the cluster adapter.

use std::sync::Arc;

use super::deliver::Encoder;
use super::error::HubError;
use super::state::{Hub, Room, RoomState};
use crate::adapter::Outgoing;
use crate::event::{ConnId, Data, Event, MemberInfo, Message};
use crate::policy::Publish;
use crate::stats::Stats;

impl Hub {
    /// Publishes to `room` (as the application's event `event`, or as a
    /// message) on behalf of connection `id`, which must be a member. For
    /// work that finishes after the request that started it (an image made
    /// on the worker pool, a publication the backend's hook allowed);
    /// otherwise use [`Conn::publish`](crate::Conn::publish).
    pub fn publish_as(
        &self,
        id: ConnId,
        nsp: &str,
        room: &str,
        event: Option<Arc<str>>,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        self.publish(id, nsp, room, event, data, include_self)
    }

    pub(super) fn publish(
        &self,
        id: ConnId,
        nsp: &str,
        room_name: &str,
        event: Option<Arc<str>>,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        let room = self
            .room(nsp, room_name)
            .ok_or_else(|| HubError::NoSuchRoom(room_name.to_string()))?;
        let mut rs = room.state.lock().unwrap();
        let Some(sender) = rs.members.get(&id) else {
            return Err(HubError::NotMember(room_name.to_string()));
        };
        let policy = &room.policy;
        if policy.publish == Publish::Server {
            return Err(HubError::PublishForbidden(room_name.to_string()));
        }
        let volatile = match event.as_deref() {
            Some(name) if !policy.allows_event(name) => {
                return Err(HubError::EventNotAllowed(
                    name.to_string(),
                    room_name.to_string(),
                ));
            }
            Some(name) => policy.is_volatile(name),
            None => false,
        };
        let from = MemberInfo {
            id,
            name: sender.name.clone(),
        };
        let except = if include_self { None } else { Some(id) };
        let msg = self.send_locked(&room, &mut rs, from, event, data, volatile, except);
        drop(rs);
        self.keep_histories_in_budget();
        Ok(msg)
    }

    /// Stamps a message with the room's next offset (none, 0, when
    /// `volatile`) and the time, keeps it in the history (unless volatile), queues it to the members (but
    /// `except`) and hands it to the cluster adapter. Called with the
    /// room's lock held, so members and adapter see one order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_locked(
        &self,
        room: &Room,
        rs: &mut RoomState,
        from: MemberInfo,
        event: Option<Arc<str>>,
        data: Data,
        volatile: bool,
        except: Option<ConnId>,
    ) -> Arc<Message> {
        let policy = &room.policy;
        let ts = crate::now_ms().max(rs.last_ts);
        // A volatile event is not numbered (offset 0): it is never kept or
        // recovered, so the room's offsets stay without gaps for what is.
        let offset = if volatile { 0 } else { rs.next_offset };
        let msg = Message {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            offset,
            ts,
            from,
            data,
            event,
            seq: 0,
            cluster_offset: Default::default(),
        };
        // Logged for recovery what the history would keep.
        let msg = if volatile || !policy.recover {
            Arc::new(msg)
        } else {
            self.logged(msg)
        };
        if !volatile {
            rs.next_offset += 1;
        }
        rs.last_ts = ts;
        Stats::bump(&self.inner.stats.messages);
        // A logged message may be taken over by a cluster with a shared
        // log, which delivers it here too, in the log's order (and keeps it
        // in the history then, in that order).
        let adapter = self.inner.adapter.get();
        if msg.seq != 0 && adapter.is_some_and(|a| a.defer_logged(&msg, except)) {
            return msg;
        }
        if !volatile {
            self.keep_in_history(room, rs, &msg);
        }
        let mut enc = Encoder::new(Event::Message(&msg));
        if volatile {
            self.deliver_volatile(&mut enc, rs.members.iter(), except);
        } else {
            self.deliver(&mut enc, rs.members.iter(), except);
        }
        if let Some(adapter) = adapter {
            adapter.forward(Outgoing::Message(msg.clone()));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hub::testing::{codec, conn, drain};
    use crate::outbox::OutboxLimits;
    use crate::policy::{EventRule, Policies, RoomPolicy};
    use crate::{Conn, HubConfig};

    fn hub_with(policies: Vec<RoomPolicy>) -> Hub {
        Hub::new(HubConfig {
            policies: Policies::new(policies),
            ..HubConfig::default()
        })
    }

    #[test]
    fn policies_shape_rooms_by_name() {
        let mut doc = RoomPolicy::new("doc:*");
        doc.events = EventRule::Only(vec![Arc::from("stroke"), Arc::from("cursor")]);
        doc.volatile = vec![Arc::from("cursor")];
        doc.history = Some(2);
        doc.presence = false;
        doc.max_members = Some(2);
        let mut feed = RoomPolicy::new("feed.*");
        feed.publish = Publish::Server;
        let hub = hub_with(vec![doc, feed]);
        let c = codec(1);
        let a = conn(&hub, "ann", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "bob", c.clone(), OutboxLimits::default());
        let x = conn(&hub, "cy", c.clone(), OutboxLimits::default());
        a.join("doc:1").unwrap();
        b.join("doc:1").unwrap();
        // Presence is off, and the room holds two.
        assert!(drain(&a).is_empty());
        assert_eq!(x.join("doc:1").unwrap_err().code(), "room-full");
        // Only the listed events, and the history keeps two, volatile ones
        // not at all.
        let ev = |c: &Conn, name: &str, text: &str| {
            c.publish_event("doc:1", Arc::from(name), Data::text(text), true)
        };
        assert_eq!(ev(&a, "chat", "x").unwrap_err().code(), "event-not-allowed");
        for i in 0..3 {
            ev(&a, "stroke", &i.to_string()).unwrap();
        }
        ev(&a, "cursor", "c").unwrap();
        let kept: Vec<u64> = hub
            .history("/", "doc:1", 10)
            .unwrap()
            .iter()
            .map(|m| m.offset)
            .collect();
        assert_eq!(kept, vec![2, 3]);
        assert_eq!(drain(&b).len(), 4);
        // Clients may not publish where only the server does.
        x.join("feed.prices").unwrap();
        assert_eq!(
            x.publish("feed.prices", Data::text("buy"), true)
                .unwrap_err()
                .code(),
            "publish-forbidden"
        );
        // Rooms no glob matches allow everything.
        x.join("lobby").unwrap();
        x.publish_event("lobby", Arc::from("anything"), Data::text("1"), true)
            .unwrap();
    }

    #[test]
    fn volatile_events_skip_a_member_that_is_behind_without_cutting_it() {
        let mut game = RoomPolicy::new("game");
        game.volatile = vec![Arc::from("pos")];
        let hub = hub_with(vec![game]);
        let c = codec(1);
        let small = OutboxLimits {
            max_frames: 8,
            max_bytes: 1 << 20,
        };
        let fast = conn(&hub, "fast", c.clone(), OutboxLimits::default());
        let slow = conn(&hub, "slow", c.clone(), small);
        fast.join("game").unwrap();
        slow.join("game").unwrap();
        drain(&fast);
        drain(&slow);
        for i in 0..20 {
            fast.publish_event("game", Arc::from("pos"), Data::text(&i.to_string()), false)
                .unwrap();
        }
        // slow never read: it got what fits in half its queue, the rest was
        // dropped and counted, and it is still connected.
        assert_eq!(drain(&slow).len(), 4);
        assert_eq!(Stats::get(&hub.stats().volatile_dropped), 16);
        assert!(slow.outbox().closed().is_none());
        assert!(hub.history("/", "game", 10).unwrap().is_empty());
        // An ordinary message still reaches it, numbered 1: volatile events
        // take no offsets.
        fast.publish("game", Data::text("hi"), false).unwrap();
        assert_eq!(drain(&slow), vec!["msg game 1 fast hi"]);
    }

    #[test]
    fn volatile_events_from_other_nodes_are_volatile_here_too() {
        let mut game = RoomPolicy::new("game");
        game.volatile = vec![Arc::from("pos")];
        let hub = hub_with(vec![game]);
        let slow = conn(
            &hub,
            "slow",
            codec(1),
            OutboxLimits {
                max_frames: 4,
                max_bytes: 1 << 20,
            },
        );
        slow.join("game").unwrap();
        for i in 0..10 {
            let msg = Message {
                nsp: Arc::from("/"),
                room: Arc::from("game"),
                offset: i,
                ts: 1,
                from: MemberInfo {
                    id: 99,
                    name: Arc::from("remote"),
                },
                data: Data::text("p"),
                event: Some(Arc::from("pos")),
                seq: 0,
                cluster_offset: Default::default(),
            };
            hub.deliver_remote("/", &["game"], &[], Event::Message(&msg));
        }
        assert_eq!(drain(&slow).len(), 2);
        assert_eq!(Stats::get(&hub.stats().volatile_dropped), 8);
        assert!(slow.outbox().closed().is_none());
    }

    #[test]
    fn history_ttl_forgets_old_messages() {
        let mut short = RoomPolicy::new("short");
        short.history_ttl = Some(Duration::from_millis(30));
        let hub = hub_with(vec![short]);
        let a = conn(&hub, "a", codec(1), OutboxLimits::default());
        a.join("short").unwrap();
        a.publish("short", Data::text("old"), true).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        a.publish("short", Data::text("new"), true).unwrap();
        let texts: Vec<String> = hub
            .history("/", "short", 10)
            .unwrap()
            .iter()
            .map(|m| m.data.as_text().unwrap().to_string())
            .collect();
        assert_eq!(texts, vec!["new"]);
    }
}
