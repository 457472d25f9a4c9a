//! Fan-out: encoding an event once per codec ([`Encoder`]) and queueing
//! the frames to members, for local broadcasts, for events from other nodes
//! and at shutdown.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{Hub, Member};
use crate::event::{Codec, ConnId, Event, Message};
use crate::outbox::{CloseReason, Frame, Outbox, PushError};
use crate::stats::Stats;

/// Encodes one event at most once per codec key.
pub(super) struct Encoder<'e> {
    event: Event<'e>,
    cache: Vec<(u64, Vec<Frame>)>,
}

impl<'e> Encoder<'e> {
    pub(super) fn new(event: Event<'e>) -> Self {
        Encoder {
            event,
            cache: Vec::new(),
        }
    }

    /// Its kind's slot in [`crate::stats::EVENT_KINDS`].
    pub(super) fn kind(&self) -> usize {
        match self.event {
            Event::Message(_) => 0,
            Event::Presence(_) => 1,
            Event::Emit(_) => 2,
        }
    }

    pub(super) fn frames(&mut self, key: u64, codec: &dyn Codec) -> &[Frame] {
        let pos = match self.cache.iter().position(|(k, _)| *k == key) {
            Some(pos) => pos,
            None => {
                let mut frames = Vec::new();
                codec.encode(&self.event, &mut frames);
                self.cache.push((key, frames));
                self.cache.len() - 1
            }
        };
        &self.cache[pos].1
    }
}

impl Hub {
    /// Delivers an event to every connection of a namespace (`room: None`) or
    /// to the members of one room, optionally skipping one connection.
    /// Returns the number of receivers.
    pub fn broadcast(
        &self,
        nsp: &str,
        room: Option<&str>,
        event: Event<'_>,
        except: Option<ConnId>,
    ) -> usize {
        let mut enc = Encoder::new(event);
        match room {
            Some(room) => {
                let Some(room) = self.room(nsp, room) else {
                    return 0;
                };
                let rs = room.state.lock().unwrap();
                self.deliver(&mut enc, rs.members.iter(), except)
            }
            None => {
                let members: Vec<(ConnId, Member)> = {
                    let st = self.inner.state.lock().unwrap();
                    match st.namespaces.get(nsp) {
                        Some(ns) => ns.members.iter().map(|(k, v)| (*k, v.clone())).collect(),
                        None => return 0,
                    }
                };
                self.deliver(&mut enc, members.iter().map(|(k, v)| (k, v)), except)
            }
        }
    }

    /// Delivers an event that came from another node to this node's members
    /// only; it is never forwarded again. `rooms` empty means every
    /// connection of the namespace; otherwise the members of any of `rooms`
    /// (each once), minus the members of any of `except`. Returns the
    /// number of receivers.
    pub fn deliver_remote(
        &self,
        nsp: &str,
        rooms: &[&str],
        except: &[&str],
        event: Event<'_>,
    ) -> usize {
        // An event the room's policy makes volatile is volatile here too.
        let volatile_name = match &event {
            Event::Message(m) => m.event.clone(),
            _ => None,
        };
        let mut enc = Encoder::new(event);
        if let ([room], []) = (rooms, except) {
            // The common case: one room, delivered under its lock so that
            // remote and local events of a room keep one order.
            let Some(room) = self.room(nsp, room) else {
                // A personal room: a client id or `#user`.
                let members = self.personal_members(nsp, room);
                return self.deliver(&mut enc, members.iter().map(|(k, v)| (k, v)), None);
            };
            let mut rs = room.state.lock().unwrap();
            if volatile_name.is_some_and(|e| room.policy.is_volatile(&e)) {
                return self.deliver_volatile(&mut enc, rs.members.iter(), None);
            }
            if let Event::Presence(p) = event {
                // Announced here only while the whole room is small, with
                // the whole room's size.
                if !room.policy.presence {
                    return 0;
                }
                return self.announce(&rs.members, p.clone(), None, false);
            }
            let Event::Message(m) = event else {
                return self.deliver(&mut enc, rs.members.iter(), None);
            };
            // Kept in the room's history like its own messages (so every
            // node's history has the room's messages from all nodes); its
            // offsets are then no longer one sequence: a resume by offsets
            // is refused ([`RoomState::remote`]).
            rs.remote = true;
            let kept = if self.inner.recovery.is_some() && room.policy.recover {
                // Logged here too, so a client of this node recovers it.
                self.logged(Message::clone(m))
            } else {
                Arc::new(Message::clone(m))
            };
            self.keep_in_history(&room, &mut rs, &kept);
            let mut enc = Encoder::new(Event::Message(&kept));
            let delivered = self.deliver(&mut enc, rs.members.iter(), None);
            drop(rs);
            self.keep_histories_in_budget();
            return delivered;
        }
        let excluded: HashSet<ConnId> = except
            .iter()
            .filter_map(|r| self.room(nsp, r))
            .flat_map(|r| {
                let ids: Vec<ConnId> = r.state.lock().unwrap().members.keys().copied().collect();
                ids
            })
            .collect();
        let members: Vec<(ConnId, Member)> = if rooms.is_empty() {
            let st = self.inner.state.lock().unwrap();
            match st.namespaces.get(nsp) {
                Some(ns) => ns
                    .members
                    .iter()
                    .filter(|(id, _)| !excluded.contains(id))
                    .map(|(k, v)| (*k, v.clone()))
                    .collect(),
                None => return 0,
            }
        } else {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for name in rooms {
                let Some(room) = self.room(nsp, name) else {
                    for (id, m) in self.personal_members(nsp, name) {
                        if !excluded.contains(&id) && seen.insert(id) {
                            out.push((id, m));
                        }
                    }
                    continue;
                };
                let mut rs = room.state.lock().unwrap();
                if matches!(event, Event::Message(_)) {
                    rs.remote = true;
                }
                for (id, m) in &rs.members {
                    if !excluded.contains(id) && seen.insert(*id) {
                        out.push((*id, m.clone()));
                    }
                }
            }
            out
        };
        self.deliver(&mut enc, members.iter().map(|(k, v)| (k, v)), None)
    }

    /// Delivers a message this node published, which the adapter took over
    /// ([`Adapter::defer_logged`](crate::Adapter::defer_logged)), to the
    /// room's members here (but `except`), under the room's lock.
    /// It enters the room's history now, so histories follow the log's
    /// order too.
    pub fn deliver_logged(&self, msg: &Arc<Message>, except: Option<ConnId>) -> usize {
        let Some(room) = self.room(&msg.nsp, &msg.room) else {
            return 0;
        };
        let mut rs = room.state.lock().unwrap();
        self.keep_in_history(&room, &mut rs, msg);
        let mut enc = Encoder::new(Event::Message(msg));
        let delivered = self.deliver(&mut enc, rs.members.iter(), except);
        drop(rs);
        self.keep_histories_in_budget();
        delivered
    }

    /// Closes every connection's outbox with `reason` (used at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for ob in self.outboxes() {
            ob.close(reason.clone());
        }
    }

    /// Every connection's outbox (once each: the sockets of one Socket.IO
    /// connection share theirs), e.g. to close them a few at a time.
    pub fn outboxes(&self) -> Vec<Arc<Outbox>> {
        let st = self.inner.state.lock().unwrap();
        let mut seen = HashSet::new();
        st.namespaces
            .values()
            .flat_map(|ns| ns.members.values().map(|m| m.outbox.clone()))
            .filter(|ob| seen.insert(Arc::as_ptr(ob)))
            .collect()
    }

    pub(super) fn deliver<'m>(
        &self,
        enc: &mut Encoder<'_>,
        members: impl Iterator<Item = (&'m ConnId, &'m Member)>,
        except: Option<ConnId>,
    ) -> usize {
        self.deliver_as(enc, members, except, false)
    }

    /// [`deliver`](Hub::deliver) for a volatile event: a member whose queue
    /// is busy misses it (counted) instead of being cut as a slow consumer.
    pub(super) fn deliver_volatile<'m>(
        &self,
        enc: &mut Encoder<'_>,
        members: impl Iterator<Item = (&'m ConnId, &'m Member)>,
        except: Option<ConnId>,
    ) -> usize {
        self.deliver_as(enc, members, except, true)
    }

    fn deliver_as<'m>(
        &self,
        enc: &mut Encoder<'_>,
        members: impl Iterator<Item = (&'m ConnId, &'m Member)>,
        except: Option<ConnId>,
        volatile: bool,
    ) -> usize {
        let (mut delivered, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
        let mut by_protocol = [0u64; 4];
        // The Admin UI in development mode lists what each socket is sent.
        let observer = self.observer().filter(|o| o.wants_sent());
        let mut to = Vec::new();
        for (id, m) in members {
            if Some(*id) == except {
                continue;
            }
            let frames = enc.frames(m.key, m.codec.as_ref());
            if frames.is_empty() {
                continue;
            }
            bytes += frames.iter().map(|f| f.len() as u64).sum::<u64>();
            let pushed = if volatile {
                m.outbox.push_volatile(frames)
            } else {
                m.outbox.push_paced(frames).map(|()| true)
            };
            match pushed {
                Ok(true) => {
                    delivered += 1;
                    by_protocol[m.protocol as usize] += 1;
                    if observer.is_some() {
                        to.push(*id);
                    }
                }
                Ok(false) => dropped += 1,
                Err(PushError::Full) => {
                    Stats::bump(&self.inner.stats.slow_consumers);
                    tracing::info!(conn = id, "slow consumer disconnected: outgoing queue full");
                }
                Err(PushError::Closed) => {}
            }
        }
        if let (Some(observer), false) = (observer, to.is_empty()) {
            observer.sent(&enc.event, &to);
        }
        let stats = &self.inner.stats;
        stats.deliveries.fetch_add(delivered, Ordering::Relaxed);
        for (slot, n) in by_protocol.into_iter().enumerate() {
            if n > 0 {
                stats.deliveries_by_kind[enc.kind()][slot].fetch_add(n, Ordering::Relaxed);
            }
        }
        stats.broadcast_bytes.fetch_add(bytes, Ordering::Relaxed);
        if dropped > 0 {
            stats.volatile_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        delivered as usize
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use super::*;
    use crate::adapter::{Adapter, Outgoing};
    use crate::event::{Data, MemberInfo, Message, Presence, PresenceKind};
    use crate::hub::testing::{codec, conn, drain};
    use crate::outbox::{Batch, OutboxLimits};
    use crate::{Conn, HubConfig};

    /// Records what the hub forwards; the other nodes hold `.1` members of
    /// every room.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>, std::sync::atomic::AtomicUsize);

    impl Adapter for Recorder {
        fn remote_members(&self, _nsp: &str, _room: &str) -> usize {
            self.1.load(Ordering::Relaxed)
        }
        fn forward(&self, event: Outgoing) {
            let s = match event {
                Outgoing::Message(m) => format!("msg {} {}", m.room, m.offset),
                Outgoing::Presence(p) => {
                    format!(
                        "{} {} {} {}",
                        p.kind.as_str(),
                        p.room,
                        p.member.name,
                        p.members
                    )
                }
            };
            self.0.lock().unwrap().push(s);
        }
        fn who(&self, _nsp: &str, _room: &str) -> crate::BoxFuture<crate::RemoteMembers> {
            Box::pin(async {
                crate::RemoteMembers {
                    names: vec![Arc::from("zed")],
                    clients: Vec::new(),
                    sockets: Vec::new(),
                    partial: true,
                }
            })
        }
    }

    #[test]
    fn encodes_once_per_codec_key() {
        let hub = Hub::new(HubConfig::default());
        let c1 = codec(1);
        let c2 = codec(2);
        let conns: Vec<Conn> = (0..10)
            .map(|i| {
                let c = if i % 2 == 0 { c1.clone() } else { c2.clone() };
                let conn = conn(&hub, &format!("u{i}"), c, OutboxLimits::default());
                conn.join("big").unwrap();
                conn
            })
            .collect();
        c1.calls.store(0, Ordering::Relaxed);
        c2.calls.store(0, Ordering::Relaxed);
        conns[0].publish("big", Data::text("x"), true).unwrap();
        assert_eq!(c1.calls.load(Ordering::Relaxed), 1);
        assert_eq!(c2.calls.load(Ordering::Relaxed), 1);
        let f0 = {
            let mut v = Vec::new();
            conns[2].outbox().try_batch(&mut v);
            v.pop().unwrap()
        };
        let f1 = {
            let mut v = Vec::new();
            conns[4].outbox().try_batch(&mut v);
            v.pop().unwrap()
        };
        assert_eq!(
            f0.bytes().as_ptr(),
            f1.bytes().as_ptr(),
            "receivers share the same bytes"
        );
    }

    #[test]
    fn slow_consumer_is_closed_not_waited_for() {
        let hub = Hub::new(HubConfig::default());
        let c = codec(1);
        let small = OutboxLimits {
            max_frames: 3,
            max_bytes: 1 << 20,
        };
        let fast = conn(&hub, "fast", c.clone(), OutboxLimits::default());
        let slow = conn(&hub, "slow", c.clone(), small);
        fast.join("r").unwrap();
        slow.join("r").unwrap();
        drain(&fast);
        for i in 0..10 {
            fast.publish("r", Data::text(&i.to_string()), true).unwrap();
        }
        assert_eq!(drain(&fast).len(), 10);
        let mut out = Vec::new();
        assert!(matches!(
            slow.outbox().try_batch(&mut out),
            Some(Batch::Closed(CloseReason::SlowConsumer { .. }))
        ));
        assert_eq!(Stats::get(&hub.stats().slow_consumers), 1);
    }

    #[test]
    fn broadcast_to_everyone() {
        let hub = Hub::new(HubConfig::default());
        let c = codec(1);
        let a = conn(&hub, "a", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "b", c.clone(), OutboxLimits::default());
        let other_ns = hub.register(
            "/x",
            Some("z"),
            Arc::new(Outbox::new(OutboxLimits::default())),
            c.clone(),
        );
        a.join("r").unwrap();
        drain(&a);
        let msg = a.publish("r", Data::text("all"), true).unwrap();
        drain(&a);
        let n = hub.broadcast("/", None, Event::Message(&msg), Some(a.id()));
        assert_eq!(n, 1);
        assert_eq!(drain(&b), vec!["msg r 1 a all"]);
        assert!(drain(&a).is_empty());
        assert!(drain(&other_ns).is_empty());
    }

    #[tokio::test]
    async fn adapter_sees_originated_events_and_remote_ones_stay_local() {
        let hub = Hub::new(HubConfig::default());
        let rec = Arc::new(Recorder::default());
        assert!(hub.set_adapter(rec.clone()));
        let c = codec(1);
        let a = conn(&hub, "a", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "b", c.clone(), OutboxLimits::default());
        let x = conn(&hub, "x", c.clone(), OutboxLimits::default());
        a.join("r").unwrap();
        b.join("r").unwrap();
        x.join("s").unwrap();
        a.publish("r", Data::text("hi"), true).unwrap();
        b.leave("r").unwrap();
        drop(x);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![
                "join r a 1",
                "join r b 2",
                "join s x 1",
                "msg r 1",
                "leave r b 1",
                "leave s x 0"
            ]
        );
        drain(&a);
        drain(&b);
        let msg = Message {
            nsp: Arc::from("/"),
            room: Arc::from("r"),
            offset: 9,
            ts: 1,
            from: MemberInfo {
                id: 77,
                name: Arc::from("remote"),
            },
            data: Data::text("yo"),
            event: None,
            seq: 0,
            cluster_offset: Default::default(),
        };
        assert_eq!(
            hub.deliver_remote("/", &["r"], &[], Event::Message(&msg)),
            1
        );
        assert_eq!(drain(&a), vec!["msg r 9 remote yo"]);
        assert!(drain(&b).is_empty());
        // The room's history holds this node's messages only: a resume by
        // offsets could not give back what came from elsewhere, so it is
        // refused rather than given with a gap.
        let since = crate::Since {
            offset: 0,
            ..Default::default()
        };
        assert_eq!(
            b.join_since("r", &since).unwrap_err().code(),
            "unrecoverable"
        );
        assert_eq!(
            hub.deliver_remote("/", &[], &["r"], Event::Message(&msg)),
            1
        );
        assert_eq!(drain(&b), vec!["msg r 9 remote yo"]);
        assert_eq!(
            hub.deliver_remote("/", &["nope"], &[], Event::Message(&msg)),
            0
        );
        assert_eq!(
            rec.0.lock().unwrap().len(),
            6,
            "remote events are not forwarded"
        );
        let who = hub.who_cluster("/", "r").await.unwrap();
        let names: Vec<&str> = who.members.iter().map(|m| &*m.name).collect();
        assert_eq!(names, vec!["a", "zed"]);
        assert!(who.members[0].id.is_some() && who.members[1].id.is_none());
        assert!(who.partial);
    }

    #[test]
    fn presence_is_bounded_by_the_whole_room() {
        let hub = Hub::new(HubConfig {
            presence_limit: 4,
            ..HubConfig::default()
        });
        let rec = Arc::new(Recorder::default());
        rec.1.store(3, Ordering::Relaxed);
        assert!(hub.set_adapter(rec.clone()));
        let c = codec(1);
        let a = conn(&hub, "a", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "b", c.clone(), OutboxLimits::default());
        a.join("r").unwrap();
        // Two here and three elsewhere: past the limit, so `a` is not told,
        // but the other nodes still learn this node's part of the room.
        b.join("r").unwrap();
        assert!(drain(&a).is_empty());
        assert_eq!(*rec.0.lock().unwrap(), vec!["join r a 1", "join r b 2"]);
        let remote = |kind| Presence {
            nsp: Arc::from("/"),
            room: Arc::from("r"),
            member: MemberInfo {
                id: 90,
                name: Arc::from("far"),
            },
            kind,
            members: 1,
        };
        assert_eq!(
            hub.deliver_remote(
                "/",
                &["r"],
                &[],
                Event::Presence(&remote(PresenceKind::Joined))
            ),
            0,
            "another node's join into a large room is not announced"
        );
        // The room shrank elsewhere: now its joins and leaves are told,
        // with the whole room's size.
        rec.1.store(1, Ordering::Relaxed);
        assert_eq!(
            hub.deliver_remote(
                "/",
                &["r"],
                &[],
                Event::Presence(&remote(PresenceKind::Left))
            ),
            2
        );
        assert_eq!(drain(&a), vec!["leave r far"]);
        drain(&b);
        b.leave("r").unwrap();
        assert_eq!(drain(&a), vec!["leave r b"]);
        assert_eq!(rec.0.lock().unwrap().last().unwrap(), "leave r b 1");
    }
}
