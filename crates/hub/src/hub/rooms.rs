//! Rooms: joining and leaving (with presence events), listing rooms and
//! members (here and cluster-wide), and reading a room's history.

use std::collections::HashMap;
use std::sync::Arc;

use volna_protocols::line::validate_room;

use super::deliver::Encoder;
use super::error::HubError;
use super::state::{ConnEntry, Hub, Member, Namespace, Room};
use crate::adapter::{ClusterWho, Missed, Outgoing};
use crate::event::{ConnId, Event, MemberInfo, Message, Presence, PresenceKind};
use crate::identity::USER_ROOM_PREFIX;
use crate::policy::Access;

/// A room's kept messages and position ([`Hub::stream`]).
#[derive(Debug, Clone)]
pub struct Stream {
    /// Messages kept, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// The room's last offset (0 before its first message).
    pub offset: u64,
    /// The epoch of its offsets.
    pub epoch: Arc<str>,
    /// Its history holds other nodes' messages too, numbered by their
    /// nodes: reading it from an offset means nothing.
    pub mixed: bool,
}

/// Where a client left a room, to resume from: the messages after
/// `offset` of the room's life `epoch` (not checked when `None`) on this
/// node; or, in a cluster with a shared log, the messages after its place
/// `log` in that log, on any node (see `docs/recovery.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct Since {
    /// The last offset the client has.
    #[serde(default)]
    pub offset: u64,
    /// The epoch that offset belongs to.
    #[serde(default)]
    pub epoch: Option<String>,
    /// The last place in the cluster's shared log the client has (a
    /// message's `log`, or the join reply's): resumes on any node.
    #[serde(default)]
    pub log: Option<String>,
}

/// How a join resumes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resume<'a> {
    /// A client's own `since`: the room's history after it.
    Since(&'a Since),
    /// A recovered session: what the recovery log has for the room after
    /// this sequence number.
    Logged(u64),
    /// A resume across nodes: what the cluster's shared log had for the
    /// room after the client's place in it.
    Given(&'a [Missed]),
}

/// The answer to a join.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    /// The room joined (the hub's shared copy of its name).
    pub room: Arc<str>,
    /// The members after the join, the joiner included, sorted by name; in
    /// a room larger than [`HubConfig::presence_limit`](crate::HubConfig::presence_limit) a sample of
    /// [`JOIN_SAMPLE`] of them (`who` lists everyone).
    pub members: Vec<MemberInfo>,
    /// How many members the room has after the join.
    pub count: usize,
    /// True if the connection was already a member (nothing changed).
    pub already: bool,
    /// The room's last offset (0 before its first message) and its epoch:
    /// where a later join resumes from ([`Since`]).
    pub offset: u64,
    /// The epoch of the room's offsets.
    pub epoch: Arc<str>,
    /// Messages resumed: sent to the joiner before anything else of the
    /// room ([`Since`]).
    pub missed: usize,
    /// In a cluster with a shared log: the place in it from which the
    /// joiner gets everything of the room ([`Since::log`]).
    pub log: Option<Arc<str>>,
}

/// A room as listed by [`Hub::rooms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room's name.
    pub name: Arc<str>,
    /// Its members on this node.
    pub members: usize,
}

impl Hub {
    /// The members of a room, or `None` if it does not exist.
    pub fn who(&self, nsp: &str, room: &str) -> Option<Vec<MemberInfo>> {
        let room = self.room(nsp, room)?;
        let rs = room.state.lock().unwrap();
        Some(member_list(&rs.members))
    }

    /// Cluster-aware [`Hub::who`]: the members of `room` on this node and,
    /// with an adapter, on every other node (waiting for their answers at
    /// most the adapter's timeout). `None` when nobody anywhere is in it.
    pub async fn who_cluster(&self, nsp: &str, room: &str) -> Option<ClusterWho> {
        let local = self.who(nsp, room);
        let remote = match self.adapter() {
            Some(adapter) => Some(adapter.who(nsp, room).await),
            None => None,
        };
        ClusterWho::merge(local, remote)
    }

    /// Every room of a namespace that has members, with its member count,
    /// sorted by name.
    pub fn rooms(&self, nsp: &str) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = {
            let st = self.inner.state.lock().unwrap();
            match st.namespaces.get(nsp) {
                Some(ns) => ns.rooms.values().cloned().collect(),
                None => return Vec::new(),
            }
        };
        let mut out: Vec<RoomInfo> = rooms
            .iter()
            .map(|r| RoomInfo {
                name: r.name.clone(),
                members: r.state.lock().unwrap().members.len(),
            })
            .filter(|r| r.members > 0)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The last `n` messages of a room, oldest first.
    pub fn history(&self, nsp: &str, room: &str, n: usize) -> Option<Vec<Arc<Message>>> {
        let room = self.room(nsp, room)?;
        let rs = room.state.lock().unwrap();
        // Messages older than the policy's history_ttl are gone.
        let oldest = room.policy.history_ttl.map_or(0, |ttl| {
            crate::now_ms().saturating_sub(ttl.as_millis() as u64)
        });
        let fresh = rs.history.iter().filter(|m| m.ts >= oldest);
        let len = fresh.clone().count();
        Some(fresh.skip(len.saturating_sub(n)).cloned().collect())
    }

    /// A room's stream: the messages kept that came after offset `after`
    /// (all kept, oldest first, when 0), with the room's last offset and
    /// epoch. `None` when no such room exists here.
    pub fn stream(&self, nsp: &str, room: &str, after: u64) -> Option<Stream> {
        let room = self.room(nsp, room)?;
        let rs = room.state.lock().unwrap();
        let oldest = room.policy.history_ttl.map_or(0, |ttl| {
            crate::now_ms().saturating_sub(ttl.as_millis() as u64)
        });
        Some(Stream {
            messages: rs
                .history
                .iter()
                .filter(|m| m.ts >= oldest && m.offset > after)
                .cloned()
                .collect(),
            offset: rs.next_offset - 1,
            epoch: rs.epoch.clone(),
            mixed: rs.remote,
        })
    }

    /// Drops the rooms that outlived their members (their policy's
    /// `history_ttl`) once their last message is older than that. Returns how
    /// many it dropped. The server calls it every few seconds.
    pub fn sweep_rooms(&self) -> usize {
        self.prune_recovery();
        let now = crate::now_ms();
        let mut st = self.inner.state.lock().unwrap();
        let mut dropped = 0;
        for ns in st.namespaces.values_mut() {
            ns.rooms.retain(|_, room| {
                let Some(ttl) = room.policy.history_ttl else {
                    return true;
                };
                let rs = room.state.lock().unwrap();
                let keep = !rs.members.is_empty() || rs.last_ts + ttl.as_millis() as u64 > now;
                dropped += usize::from(!keep);
                keep
            });
        }
        st.namespaces.retain(|_, ns| {
            !ns.members.is_empty() || !ns.rooms.is_empty() || !ns.name_owners.is_empty()
        });
        dropped
    }

    /// Whether connection `id` may do what `access` allows in `room`;
    /// `Err` says who may.
    pub fn may(&self, id: ConnId, access: Access, room: &str) -> Result<(), HubError> {
        let st = self.inner.state.lock().unwrap();
        let allowed = st.conns.get(&id).is_some_and(|e| {
            permits(access, e)
                && (access != Access::Granted
                    || e.allowed_rooms
                        .as_ref()
                        .is_some_and(|a| a.iter().any(|p| crate::glob_matches(p, room))))
        });
        if allowed {
            Ok(())
        } else {
            Err(HubError::Forbidden(format!(
                "{} may do that in room {room}",
                who(access)
            )))
        }
    }

    /// Whether connection `id` is a member of `room`.
    pub fn is_member(&self, nsp: &str, room: &str, id: ConnId) -> bool {
        self.room(nsp, room)
            .is_some_and(|r| r.state.lock().unwrap().members.contains_key(&id))
    }

    /// Joins `id` to `room_name`; `approved`: the backend allowed it, so
    /// the room policy's `join` is not asked (the token's rooms still are).
    pub(super) fn join(
        &self,
        id: ConnId,
        room_name: &str,
        approved: bool,
        resume: Option<Resume<'_>>,
    ) -> Result<JoinInfo, HubError> {
        validate_room(room_name)?;
        if room_name.starts_with(USER_ROOM_PREFIX) {
            return Err(HubError::ReservedRoom(room_name.to_string()));
        }
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        if let Some(allowed) = &entry.allowed_rooms {
            if !allowed.iter().any(|p| crate::glob_matches(p, room_name)) {
                return Err(HubError::Forbidden(format!(
                    "your token does not grant room {room_name}"
                )));
            }
        }
        let policy = match st
            .namespaces
            .get(&entry.nsp)
            .and_then(|ns| ns.rooms.get(room_name))
        {
            Some(room) => room.policy.clone(),
            None => self.inner.config.policies.for_room(room_name),
        };
        if !approved && !permits(policy.join, entry) {
            return Err(HubError::Forbidden(format!(
                "{} may join room {room_name}",
                who(policy.join)
            )));
        }
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        if entry.rooms.len() >= self.inner.config.max_rooms_per_conn
            && !entry.rooms.iter().any(|r| &**r == room_name)
        {
            return Err(HubError::TooManyRooms(self.inner.config.max_rooms_per_conn));
        }
        let ns = st
            .namespaces
            .get_mut(&entry.nsp)
            .expect("a connection's namespace exists");
        let member = ns.members.get(&id).cloned().ok_or(HubError::Gone)?;
        if matches!(resume, Some(Resume::Since(_))) && !ns.rooms.contains_key(room_name) {
            // Its life is over (emptied, or the server restarted).
            return Err(HubError::Unrecoverable(room_name.to_string()));
        }
        let room = ns
            .rooms
            .entry(Arc::from(room_name))
            .or_insert_with_key(|name| self.new_room(&entry.nsp, name))
            .clone();
        let mut rs = room.state.lock().unwrap();
        let limit = self.inner.config.presence_limit;
        let position = |rs: &super::state::RoomState, missed| JoinInfo {
            room: room.name.clone(),
            members: Vec::new(),
            count: rs.members.len(),
            already: false,
            offset: rs.next_offset - 1,
            epoch: rs.epoch.clone(),
            missed,
            log: self.inner.adapter.get().and_then(|a| a.log_position()),
        };
        if rs.members.contains_key(&id) {
            return Ok(JoinInfo {
                members: join_members(&rs.members, limit),
                already: true,
                ..position(&rs, 0)
            });
        }
        if let Some(max) = room.policy.max_members {
            if rs.members.len() >= max {
                return Err(HubError::RoomFull(room_name.to_string()));
            }
        }
        // What it missed, sent while the room is locked: nothing published
        // meanwhile can come before it or be left out.
        let missed = match resume {
            Some(resume) => {
                let missed = match resume {
                    Resume::Since(since) => missed_since(&rs, since)
                        .ok_or_else(|| HubError::Unrecoverable(room_name.to_string()))?,
                    Resume::Logged(after) => self.logged_since(&room.nsp, &room.name, after),
                    Resume::Given(given) => {
                        for m in given {
                            let mut enc = match m {
                                Missed::Message(m) => Encoder::new(Event::Message(m)),
                                Missed::Emit(e) => Encoder::new(Event::Emit(e)),
                            };
                            self.deliver(&mut enc, std::iter::once((&id, &member)), None);
                        }
                        Vec::new()
                    }
                };
                for m in &missed {
                    let mut enc = Encoder::new(Event::Message(m));
                    self.deliver(&mut enc, std::iter::once((&id, &member)), None);
                }
                match resume {
                    Resume::Given(given) => given.len(),
                    _ => missed.len(),
                }
            }
            None => 0,
        };
        entry.rooms.push(room.name.clone());
        if let Some(observer) = self.observer() {
            observer.joined(&room.nsp, &room.name, &entry.client);
        }
        let info = MemberInfo {
            id,
            name: member.name.clone(),
        };
        rs.members.insert(id, member);
        self.inner
            .stats
            .memberships
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let local = rs.members.len();
        if local > limit || !room.policy.presence {
            return Ok(JoinInfo {
                members: join_members(&rs.members, limit),
                ..position(&rs, missed)
            });
        }
        // Told to the other nodes while this node's part of the room is
        // small (they keep its size, see [`Adapter::remote_members`]);
        // announced here only while the whole room is.
        let presence = Presence {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            member: info,
            kind: PresenceKind::Joined,
            members: local,
        };
        self.announce(&rs.members, presence, Some(id), true);
        Ok(JoinInfo {
            members: member_list(&rs.members),
            ..position(&rs, missed)
        })
    }

    /// Tells this node's members of a room about a join or a leave
    /// (`presence.members`: this node's part of the room) while the whole
    /// room is within the presence limit, showing the whole room's size;
    /// with `forward`, tells the other nodes too, whatever the size (they
    /// keep this node's part, see [`Adapter::remote_members`]). Returns the
    /// deliveries.
    ///
    /// [`Adapter::remote_members`]: crate::Adapter::remote_members
    pub(super) fn announce(
        &self,
        members: &HashMap<ConnId, Member>,
        presence: Presence,
        except: Option<ConnId>,
        forward: bool,
    ) -> usize {
        let whole = members.len() + self.remote_members(&presence.nsp, &presence.room);
        let mut delivered = 0;
        if self.inner.config.announces(presence.kind, whole) {
            let shown = Presence {
                members: whole,
                ..presence.clone()
            };
            let mut enc = Encoder::new(Event::Presence(&shown));
            delivered = self.deliver(&mut enc, members.iter(), except);
        }
        if let (true, Some(adapter)) = (forward, self.inner.adapter.get()) {
            adapter.forward(Outgoing::Presence(Arc::new(presence)));
        }
        delivered
    }

    /// Members of `room` on the other nodes, as far as the cluster knows
    /// (0 on a single node).
    pub(super) fn remote_members(&self, nsp: &str, room: &str) -> usize {
        self.inner
            .adapter
            .get()
            .map_or(0, |a| a.remote_members(nsp, room))
    }

    pub(super) fn leave(&self, id: ConnId, room_name: &str) -> Result<usize, HubError> {
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let Some(pos) = entry.rooms.iter().position(|r| &**r == room_name) else {
            return Err(HubError::NotMember(room_name.to_string()));
        };
        entry.rooms.swap_remove(pos);
        if let Some(observer) = self.observer() {
            observer.left(&entry.nsp, room_name, &entry.client);
        }
        let ns = st
            .namespaces
            .get_mut(&entry.nsp)
            .expect("a connection's namespace exists");
        Ok(self.remove_from_room(ns, id, room_name))
    }

    /// Removes `id` from a room, tells the others, and drops the room once
    /// empty. Called with the state lock held. Returns the members left.
    pub(super) fn remove_from_room(
        &self,
        ns: &mut Namespace,
        id: ConnId,
        room_name: &str,
    ) -> usize {
        let Some(room) = ns.rooms.get(room_name).cloned() else {
            return 0;
        };
        let mut rs = room.state.lock().unwrap();
        let removed = rs.members.remove(&id);
        if removed.is_some() {
            self.inner
                .stats
                .memberships
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(member) = removed else {
            return rs.members.len();
        };
        let left = rs.members.len();
        if left > 0
            && (!self.inner.config.announces(PresenceKind::Left, left) || !room.policy.presence)
        {
            // A large room, or one whose policy turns presence off: leaves
            // are not announced (see HubConfig).
            return left;
        }
        let presence = Presence {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            member: MemberInfo {
                id,
                name: member.name,
            },
            kind: PresenceKind::Left,
            members: left,
        };
        if left == 0 {
            // Nobody here to tell, but members on other nodes are.
            if let Some(adapter) = self.inner.adapter.get() {
                adapter.forward(Outgoing::Presence(Arc::new(presence)));
            }
            // A room whose policy keeps its history for a time outlives its
            // members until that history is gone ([`Hub::sweep_rooms`]).
            if !room.keeps_history_when_empty() || rs.history.is_empty() {
                drop(rs);
                ns.rooms.remove(room_name);
            }
            return 0;
        }
        self.announce(&rs.members, presence, None, true);
        left
    }
}

/// Members listed in the answer to a join into a room above the presence
/// limit. Every join into a crowded room would otherwise carry (and make the
/// server sort and encode) hundreds of names nobody asked for; `who` still
/// lists everyone.
pub const JOIN_SAMPLE: usize = 16;

/// The members a join answer lists: all of a room up to `limit`, else a
/// sample of [`JOIN_SAMPLE`].
/// The messages of `room` after `since`, if it still keeps all of them
/// (and `since` is of this life of the room).
fn missed_since(rs: &super::state::RoomState, since: &Since) -> Option<Vec<Arc<Message>>> {
    if since.log.is_some() || rs.remote {
        // A place in a cluster's log: the cluster answers those
        // ([`Hub::join_given`]); this room's own history cannot. Nor can
        // it once other nodes' messages reached the room: it holds this
        // node's only, and a resume must never leave a silent gap.
        return None;
    }
    if since.epoch.as_deref().is_some_and(|e| e != &*rs.epoch) {
        return None;
    }
    let last = rs.next_offset - 1;
    if since.offset > last {
        return None;
    }
    if since.offset == last {
        return Some(Vec::new());
    }
    // History holds every kept offset in order, with no gaps (volatile
    // events take none): complete if it reaches back to the next one.
    let first = rs.history.front()?.offset;
    if first > since.offset + 1 {
        return None;
    }
    Some(
        rs.history
            .iter()
            .filter(|m| m.offset > since.offset)
            .cloned()
            .collect(),
    )
}

fn join_members(members: &HashMap<ConnId, Member>, limit: usize) -> Vec<MemberInfo> {
    if members.len() <= limit {
        member_list(members)
    } else {
        member_sample(members, JOIN_SAMPLE.min(limit))
    }
}

/// At most `limit` members, sorted by name: the whole list for a small room,
/// a sample for a large one (sorting every member on every join would be
/// quadratic over a room's life).
fn member_sample(members: &HashMap<ConnId, Member>, limit: usize) -> Vec<MemberInfo> {
    sorted_infos(members.iter().take(limit))
}

fn member_list(members: &HashMap<ConnId, Member>) -> Vec<MemberInfo> {
    sorted_infos(members.iter())
}

/// The members given, as `MemberInfo`s sorted by name.
fn sorted_infos<'m>(members: impl Iterator<Item = (&'m ConnId, &'m Member)>) -> Vec<MemberInfo> {
    let mut list: Vec<MemberInfo> = members
        .map(|(id, m)| MemberInfo {
            id: *id,
            name: m.name.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// Whether a connection meets `access` (for `Granted`, whether it has a
/// `rooms` claim at all; the room is checked against it by the caller).
fn permits(access: Access, entry: &ConnEntry) -> bool {
    match access {
        Access::Anyone => true,
        Access::Users => entry.user.is_some(),
        Access::Granted => entry.user.is_some() && entry.allowed_rooms.is_some(),
        Access::Hook => false,
    }
}

/// Who `access` lets in, for refusals.
fn who(access: Access) -> &'static str {
    match access {
        Access::Anyone => "anyone",
        Access::Users => "only signed-in users",
        Access::Granted => "only users whose token grants the room",
        Access::Hook => "only those the backend allows",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Data;
    use crate::hub::testing::{codec, conn, drain};
    use crate::outbox::OutboxLimits;
    use crate::{Conn, HubConfig};

    #[test]
    fn rooms_presence_offsets() {
        let hub = Hub::new(HubConfig::default());
        let c = codec(1);
        let a = conn(&hub, "alice", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "bob", c.clone(), OutboxLimits::default());
        let x = conn(&hub, "carol", c.clone(), OutboxLimits::default());
        a.join("r1").unwrap();
        let info = b.join("r1").unwrap();
        assert_eq!(info.members.len(), 2);
        x.join("r2").unwrap();
        assert_eq!(drain(&a), vec!["join r1 bob"]);
        let m1 = a.publish("r1", Data::text("hi"), true).unwrap();
        let m2 = b.publish("r1", Data::text("yo"), false).unwrap();
        assert_eq!((m1.offset, m2.offset), (1, 2));
        assert_eq!(drain(&a), vec!["msg r1 1 alice hi", "msg r1 2 bob yo"]);
        assert_eq!(drain(&b), vec!["msg r1 1 alice hi"]);
        assert!(drain(&x).is_empty());
        assert_eq!(
            x.publish("r1", Data::text("no"), true).unwrap_err(),
            HubError::NotMember("r1".into())
        );
        assert_eq!(hub.history("/", "r1", 10).unwrap().len(), 2);
        let rooms = hub.rooms("/");
        assert_eq!(rooms.len(), 2);
        b.leave("r1").unwrap();
        assert_eq!(drain(&a), vec!["leave r1 bob"]);
        drop(a);
        assert_eq!(hub.rooms("/").len(), 1, "an empty room is removed");
        assert_eq!(hub.connection_count(), 2);
    }

    #[test]
    fn large_rooms_do_not_announce_presence() {
        let hub = Hub::new(HubConfig {
            presence_limit: 3,
            ..HubConfig::default()
        });
        let c = codec(1);
        let mut conns: Vec<Conn> = (0..5)
            .map(|i| conn(&hub, &format!("m{i}"), c.clone(), OutboxLimits::default()))
            .collect();
        for (i, conn) in conns.iter().enumerate() {
            let info = conn.join("big").unwrap();
            assert_eq!(info.members.len(), (i + 1).min(3));
            assert_eq!(info.count, i + 1);
        }
        // m0 saw m1 and m2 arrive, not m3 and m4 (the room had grown past 3).
        assert_eq!(drain(&conns[0]), vec!["join big m1", "join big m2"]);
        drop(conns.drain(2..).collect::<Vec<_>>());
        assert_eq!(hub.who("/", "big").unwrap().len(), 2);
        // Leaves were announced only once the room was small again.
        assert_eq!(drain(&conns[0]), vec!["leave big m4"]);
    }

    #[test]
    fn joins_into_crowded_rooms_list_a_sample_and_the_count() {
        let limit = JOIN_SAMPLE + 4;
        let hub = Hub::new(HubConfig {
            presence_limit: limit,
            ..HubConfig::default()
        });
        let c = codec(1);
        let conns: Vec<Conn> = (0..limit + 10)
            .map(|i| {
                conn(
                    &hub,
                    &format!("m{i:02}"),
                    c.clone(),
                    OutboxLimits::default(),
                )
            })
            .collect();
        for (i, conn) in conns.iter().enumerate() {
            let info = conn.join("crowd").unwrap();
            assert_eq!(info.count, i + 1);
            let want = if i < limit { i + 1 } else { JOIN_SAMPLE };
            assert_eq!(info.members.len(), want, "join #{i}");
            assert!(
                info.members.windows(2).all(|w| w[0].name <= w[1].name),
                "sorted"
            );
        }
        let again = conns[0].join("crowd").unwrap();
        assert!(again.already);
        assert_eq!(
            (again.count, again.members.len()),
            (limit + 10, JOIN_SAMPLE)
        );
        assert_eq!(
            hub.who("/", "crowd").unwrap().len(),
            limit + 10,
            "who lists everyone"
        );
    }
}
