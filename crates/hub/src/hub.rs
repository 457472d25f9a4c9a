//! Connections, namespaces, rooms, broadcast, presence and history.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use volna_protocols::line::{validate_name, NameError};

use crate::adapter::{Adapter, ClusterWho, Outgoing};
use crate::event::{Codec, ConnId, Data, Event, MemberInfo, Message, Presence, PresenceKind};
use crate::outbox::{CloseReason, Frame, Outbox, PushError};
use crate::stats::Stats;

/// Settings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages kept per room for `history`. Defaults to 100.
    pub history_len: usize,
    /// Rooms with more members than this do not announce joins and leaves,
    /// and join replies list only this many members: in a room of thousands
    /// a presence event per arrival costs O(members) deliveries each, and
    /// nobody reads them (large chat channels behave the same way). `who`
    /// still lists everyone. Defaults to 256.
    pub presence_limit: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history_len: 100,
            presence_limit: 256,
        }
    }
}

/// Why a hub operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("you are not in room {0}")]
    NotMember(String),
    #[error("no room named {0}")]
    NoSuchRoom(String),
    #[error("the name {0} is taken")]
    NameTaken(String),
    #[error("{0}")]
    BadName(#[from] NameError),
    #[error("the connection is closed")]
    Gone,
}

impl HubError {
    /// A short, stable code, e.g. `not-member`.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NotMember(_) => "not-member",
            HubError::NoSuchRoom(_) => "no-such-room",
            HubError::NameTaken(_) => "name-taken",
            HubError::BadName(_) => "bad-name",
            HubError::Gone => "gone",
        }
    }
}

/// The answer to a join.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub room: Arc<str>,
    /// The members after the join, the joiner included, sorted by name; in
    /// a room larger than [`HubConfig::presence_limit`] a sample of
    /// [`JOIN_SAMPLE`] of them (`who` lists everyone).
    pub members: Vec<MemberInfo>,
    /// How many members the room has after the join.
    pub count: usize,
    /// True if the connection was already a member (nothing changed).
    pub already: bool,
}

/// A room as listed by [`Hub::rooms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: Arc<str>,
    pub members: usize,
}

/// The hub: cheap to clone, shared by every transport.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    next_id: AtomicU64,
    stats: Stats,
    /// Lock order: `state` before any room's lock, never the other way.
    state: Mutex<State>,
    /// The cluster adapter, if any (see [`Hub::set_adapter`]).
    adapter: OnceLock<Arc<dyn Adapter>>,
}

#[derive(Default)]
struct State {
    namespaces: HashMap<Arc<str>, Namespace>,
    conns: HashMap<ConnId, ConnEntry>,
}

#[derive(Default)]
struct Namespace {
    rooms: HashMap<Arc<str>, Arc<Room>>,
    names: HashMap<Arc<str>, ConnId>,
    members: HashMap<ConnId, Member>,
}

struct ConnEntry {
    nsp: Arc<str>,
    name: Arc<str>,
    rooms: Vec<Arc<str>>,
}

/// What a room (or a namespace) keeps of a member: enough to deliver to it.
#[derive(Clone)]
struct Member {
    name: Arc<str>,
    outbox: Arc<Outbox>,
    codec: Arc<dyn Codec>,
    /// `codec.key()`, kept here so a fan-out does not visit every codec.
    key: u64,
}

struct Room {
    nsp: Arc<str>,
    name: Arc<str>,
    state: Mutex<RoomState>,
}

struct RoomState {
    members: HashMap<ConnId, Member>,
    next_offset: u64,
    last_ts: u64,
    history: VecDeque<Arc<Message>>,
}

/// Encodes one event at most once per codec key.
struct Encoder<'e> {
    event: Event<'e>,
    cache: Vec<(u64, Vec<Frame>)>,
}

impl<'e> Encoder<'e> {
    fn new(event: Event<'e>) -> Self {
        Encoder {
            event,
            cache: Vec::new(),
        }
    }

    fn frames(&mut self, key: u64, codec: &dyn Codec) -> &[Frame] {
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
    /// A new hub.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config,
                next_id: AtomicU64::new(1),
                stats: Stats::default(),
                state: Mutex::new(State::default()),
                adapter: OnceLock::new(),
            }),
        }
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Registers a connection in namespace `nsp`.
    ///
    /// `name` is the requested display name; if it is missing or invalid the
    /// connection is called `guest-<id>`, and if it is taken a `-2`, `-3`…
    /// suffix is added. Dropping the returned [`Conn`] removes it from every
    /// room (telling the other members) and from the hub.
    pub fn register(
        &self,
        nsp: &str,
        name: Option<&str>,
        outbox: Arc<Outbox>,
        codec: Arc<dyn Codec>,
    ) -> Conn {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.inner.state.lock().unwrap();
        let nsp: Arc<str> = match st.namespaces.get_key_value(nsp) {
            Some((k, _)) => k.clone(),
            None => Arc::from(nsp),
        };
        let ns = st.namespaces.entry(nsp.clone()).or_default();
        let base = match name {
            Some(n) if validate_name(n).is_ok() => n.to_string(),
            _ => format!("guest-{id}"),
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while ns.names.contains_key(candidate.as_str()) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        let name: Arc<str> = Arc::from(candidate);
        ns.names.insert(name.clone(), id);
        ns.members.insert(
            id,
            Member {
                name: name.clone(),
                outbox: outbox.clone(),
                key: codec.key(),
                codec,
            },
        );
        st.conns.insert(
            id,
            ConnEntry {
                nsp: nsp.clone(),
                name,
                rooms: Vec::new(),
            },
        );
        drop(st);
        Stats::bump(&self.inner.stats.connections_opened);
        Conn {
            hub: self.clone(),
            id,
            nsp,
            outbox,
        }
    }

    /// The members of a room, or `None` if it does not exist.
    pub fn who(&self, nsp: &str, room: &str) -> Option<Vec<MemberInfo>> {
        let room = self.room(nsp, room)?;
        let rs = room.state.lock().unwrap();
        Some(member_list(&rs.members))
    }

    /// Every room of a namespace with its member count, sorted by name.
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
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The last `n` messages of a room, oldest first.
    pub fn history(&self, nsp: &str, room: &str, n: usize) -> Option<Vec<Arc<Message>>> {
        let room = self.room(nsp, room)?;
        let rs = room.state.lock().unwrap();
        let skip = rs.history.len().saturating_sub(n);
        Some(rs.history.iter().skip(skip).cloned().collect())
    }

    /// Whether connection `id` is a member of `room`.
    pub fn is_member(&self, nsp: &str, room: &str, id: ConnId) -> bool {
        self.room(nsp, room)
            .is_some_and(|r| r.state.lock().unwrap().members.contains_key(&id))
    }

    /// Publishes to `room` on behalf of connection `id`, which must be a
    /// member. For work that finishes after the request that started it
    /// (e.g. an image processed on a worker pool); otherwise use
    /// [`Conn::publish`].
    pub fn publish_as(
        &self,
        id: ConnId,
        nsp: &str,
        room: &str,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        self.publish(id, nsp, room, data, include_self)
    }

    /// Number of connections registered.
    pub fn connection_count(&self) -> usize {
        self.inner.state.lock().unwrap().conns.len()
    }

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

    /// Closes every connection's outbox with `reason` (used at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        let outboxes: Vec<Arc<Outbox>> = {
            let st = self.inner.state.lock().unwrap();
            st.namespaces
                .values()
                .flat_map(|ns| ns.members.values().map(|m| m.outbox.clone()))
                .collect()
        };
        for ob in outboxes {
            ob.close(reason.clone());
        }
    }

    /// Connects this hub to other nodes. Once set, every room broadcast the
    /// hub originates is also given to the adapter. Returns false (and
    /// changes nothing) if an adapter was already set.
    pub fn set_adapter(&self, adapter: Arc<dyn Adapter>) -> bool {
        self.inner.adapter.set(adapter).is_ok()
    }

    /// The cluster adapter, if one is set.
    pub fn adapter(&self) -> Option<&Arc<dyn Adapter>> {
        self.inner.adapter.get()
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
        let mut enc = Encoder::new(event);
        if let ([room], []) = (rooms, except) {
            // The common case: one room, delivered under its lock so that
            // remote and local events of a room keep one order.
            let Some(room) = self.room(nsp, room) else {
                return 0;
            };
            let rs = room.state.lock().unwrap();
            return self.deliver(&mut enc, rs.members.iter(), None);
        }
        let excluded: std::collections::HashSet<ConnId> = except
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
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for room in rooms.iter().filter_map(|r| self.room(nsp, r)) {
                let rs = room.state.lock().unwrap();
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

    fn room(&self, nsp: &str, room: &str) -> Option<Arc<Room>> {
        let st = self.inner.state.lock().unwrap();
        st.namespaces.get(nsp)?.rooms.get(room).cloned()
    }

    fn deliver<'m>(
        &self,
        enc: &mut Encoder<'_>,
        members: impl Iterator<Item = (&'m ConnId, &'m Member)>,
        except: Option<ConnId>,
    ) -> usize {
        let mut delivered = 0;
        for (id, m) in members {
            if Some(*id) == except {
                continue;
            }
            let frames = enc.frames(m.key, m.codec.as_ref());
            if frames.is_empty() {
                continue;
            }
            match m.outbox.push_paced(frames) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    Stats::bump(&self.inner.stats.slow_consumers);
                    tracing::info!(conn = id, "slow consumer disconnected: outgoing queue full");
                }
                Err(PushError::Closed) => {}
            }
        }
        self.inner
            .stats
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    fn set_name(&self, id: ConnId, name: &str) -> Result<Arc<str>, HubError> {
        validate_name(name)?;
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        if &*entry.name == name {
            return Ok(entry.name.clone());
        }
        let ns = st
            .namespaces
            .get_mut(&entry.nsp)
            .expect("a connection's namespace exists");
        if ns.names.contains_key(name) {
            return Err(HubError::NameTaken(name.to_string()));
        }
        let new: Arc<str> = Arc::from(name);
        ns.names.remove(&entry.name);
        ns.names.insert(new.clone(), id);
        if let Some(m) = ns.members.get_mut(&id) {
            m.name = new.clone();
        }
        for room in &entry.rooms {
            if let Some(r) = ns.rooms.get(room) {
                if let Some(m) = r.state.lock().unwrap().members.get_mut(&id) {
                    m.name = new.clone();
                }
            }
        }
        entry.name = new.clone();
        Ok(new)
    }

    fn join(&self, id: ConnId, room_name: &str) -> Result<JoinInfo, HubError> {
        validate_name(room_name)?;
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let ns = st
            .namespaces
            .get_mut(&entry.nsp)
            .expect("a connection's namespace exists");
        let member = ns.members.get(&id).cloned().ok_or(HubError::Gone)?;
        let room = ns
            .rooms
            .entry(Arc::from(room_name))
            .or_insert_with_key(|name| {
                Arc::new(Room {
                    nsp: entry.nsp.clone(),
                    name: name.clone(),
                    state: Mutex::new(RoomState {
                        members: HashMap::new(),
                        next_offset: 1,
                        last_ts: 0,
                        history: VecDeque::new(),
                    }),
                })
            })
            .clone();
        let mut rs = room.state.lock().unwrap();
        let limit = self.inner.config.presence_limit;
        if rs.members.contains_key(&id) {
            return Ok(JoinInfo {
                room: room.name.clone(),
                members: join_members(&rs.members, limit),
                count: rs.members.len(),
                already: true,
            });
        }
        entry.rooms.push(room.name.clone());
        let info = MemberInfo {
            id,
            name: member.name.clone(),
        };
        rs.members.insert(id, member);
        if rs.members.len() > limit {
            return Ok(JoinInfo {
                room: room.name.clone(),
                members: join_members(&rs.members, limit),
                count: rs.members.len(),
                already: false,
            });
        }
        let presence = Presence {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            member: info,
            kind: PresenceKind::Joined,
            members: rs.members.len(),
        };
        let mut enc = Encoder::new(Event::Presence(&presence));
        self.deliver(&mut enc, rs.members.iter(), Some(id));
        if let Some(adapter) = self.inner.adapter.get() {
            adapter.forward(Outgoing::Presence(Arc::new(presence)));
        }
        Ok(JoinInfo {
            room: room.name.clone(),
            members: member_list(&rs.members),
            count: rs.members.len(),
            already: false,
        })
    }

    fn leave(&self, id: ConnId, room_name: &str) -> Result<usize, HubError> {
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let entry = st.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let Some(pos) = entry.rooms.iter().position(|r| &**r == room_name) else {
            return Err(HubError::NotMember(room_name.to_string()));
        };
        entry.rooms.swap_remove(pos);
        let ns = st
            .namespaces
            .get_mut(&entry.nsp)
            .expect("a connection's namespace exists");
        Ok(self.remove_from_room(ns, id, room_name))
    }

    /// Removes `id` from a room, tells the others, and drops the room once
    /// empty. Called with the state lock held. Returns the members left.
    fn remove_from_room(&self, ns: &mut Namespace, id: ConnId, room_name: &str) -> usize {
        let Some(room) = ns.rooms.get(room_name).cloned() else {
            return 0;
        };
        let mut rs = room.state.lock().unwrap();
        let Some(member) = rs.members.remove(&id) else {
            return rs.members.len();
        };
        let left = rs.members.len();
        if left > 0 && left >= self.inner.config.presence_limit {
            // A large room: leaves are not announced (see HubConfig).
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
            drop(rs);
            ns.rooms.remove(room_name);
            return 0;
        }
        let mut enc = Encoder::new(Event::Presence(&presence));
        self.deliver(&mut enc, rs.members.iter(), None);
        if let Some(adapter) = self.inner.adapter.get() {
            adapter.forward(Outgoing::Presence(Arc::new(presence)));
        }
        left
    }

    fn publish(
        &self,
        id: ConnId,
        nsp: &str,
        room_name: &str,
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
        let from = MemberInfo {
            id,
            name: sender.name.clone(),
        };
        let ts = crate::now_ms().max(rs.last_ts);
        let msg = Arc::new(Message {
            nsp: room.nsp.clone(),
            room: room.name.clone(),
            offset: rs.next_offset,
            ts,
            from,
            data,
        });
        rs.next_offset += 1;
        rs.last_ts = ts;
        if self.inner.config.history_len > 0 {
            if rs.history.len() == self.inner.config.history_len {
                rs.history.pop_front();
            }
            rs.history.push_back(msg.clone());
        }
        let mut enc = Encoder::new(Event::Message(&msg));
        let except = if include_self { None } else { Some(id) };
        self.deliver(&mut enc, rs.members.iter(), except);
        if let Some(adapter) = self.inner.adapter.get() {
            adapter.forward(Outgoing::Message(msg.clone()));
        }
        drop(rs);
        Stats::bump(&self.inner.stats.messages);
        Ok(msg)
    }

    fn unregister(&self, id: ConnId) {
        let mut guard = self.inner.state.lock().unwrap();
        let st = &mut *guard;
        let Some(entry) = st.conns.remove(&id) else {
            return;
        };
        if let Some(ns) = st.namespaces.get_mut(&entry.nsp) {
            for room in &entry.rooms {
                self.remove_from_room(ns, id, room);
            }
            ns.names.remove(&entry.name);
            ns.members.remove(&id);
            if ns.members.is_empty() && ns.rooms.is_empty() {
                st.namespaces.remove(&entry.nsp);
            }
        }
        drop(guard);
        Stats::bump(&self.inner.stats.connections_closed);
    }
}

/// Members listed in the answer to a join into a room above the presence
/// limit. Every join into a crowded room would otherwise carry (and make the
/// server sort and encode) hundreds of names nobody asked for; `who` still
/// lists everyone.
pub const JOIN_SAMPLE: usize = 16;

/// The members a join answer lists: all of a room up to `limit`, else a
/// sample of [`JOIN_SAMPLE`].
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
    if members.len() <= limit {
        return member_list(members);
    }
    let mut list: Vec<MemberInfo> = members
        .iter()
        .take(limit)
        .map(|(id, m)| MemberInfo {
            id: *id,
            name: m.name.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

fn member_list(members: &HashMap<ConnId, Member>) -> Vec<MemberInfo> {
    let mut list: Vec<MemberInfo> = members
        .iter()
        .map(|(id, m)| MemberInfo {
            id: *id,
            name: m.name.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// A connection registered with the hub. Dropping it unregisters it.
pub struct Conn {
    hub: Hub,
    id: ConnId,
    nsp: Arc<str>,
    outbox: Arc<Outbox>,
}

impl Conn {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Its namespace.
    pub fn nsp(&self) -> &Arc<str> {
        &self.nsp
    }

    /// The hub it belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Its outgoing queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Its current display name.
    pub fn name(&self) -> Arc<str> {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns
            .get(&self.id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// The rooms it is in, in the order it joined them.
    pub fn rooms(&self) -> Vec<Arc<str>> {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns
            .get(&self.id)
            .map(|e| e.rooms.clone())
            .unwrap_or_default()
    }

    /// Whether it is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns
            .get(&self.id)
            .is_some_and(|e| e.rooms.iter().any(|r| &**r == room))
    }

    /// Changes the display name; it must be valid and free in the namespace.
    pub fn set_name(&self, name: &str) -> Result<Arc<str>, HubError> {
        self.hub.set_name(self.id, name)
    }

    /// Joins a room, creating it if needed. The other members receive a
    /// [`Presence`] event.
    pub fn join(&self, room: &str) -> Result<JoinInfo, HubError> {
        self.hub.join(self.id, room)
    }

    /// Leaves a room. The other members receive a [`Presence`] event.
    pub fn leave(&self, room: &str) -> Result<usize, HubError> {
        self.hub.leave(self.id, room)
    }

    /// Publishes to a room it is a member of. The message gets the room's
    /// next offset and is queued to every member (the sender too if
    /// `include_self`).
    pub fn publish(
        &self,
        room: &str,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        self.hub
            .publish(self.id, &self.nsp, room, data, include_self)
    }

    /// Closes its outbox, which tells its transport to finish.
    pub fn close(&self, reason: CloseReason) {
        self.outbox.close(reason);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("nsp", &self.nsp)
            .finish()
    }
}

impl Hub {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Batch, OutboxLimits};

    /// Encodes events as short text lines and counts how often it is called.
    struct TestCodec {
        key: u64,
        calls: AtomicU64,
    }

    impl Codec for TestCodec {
        fn key(&self) -> u64 {
            self.key
        }
        fn encode(&self, event: &Event<'_>, out: &mut Vec<Frame>) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let s = match event {
                Event::Message(m) => format!(
                    "msg {} {} {} {}",
                    m.room,
                    m.offset,
                    m.from.name,
                    m.data.as_text().unwrap_or_default()
                ),
                Event::Presence(p) => format!("{} {} {}", p.kind.as_str(), p.room, p.member.name),
                Event::Emit(e) => format!("emit {} {}", e.event, e.args.json.get()),
            };
            out.push(Frame::text(s));
        }
    }

    fn codec(key: u64) -> Arc<TestCodec> {
        Arc::new(TestCodec {
            key,
            calls: AtomicU64::new(0),
        })
    }

    fn conn(hub: &Hub, name: &str, codec: Arc<TestCodec>, limits: OutboxLimits) -> Conn {
        hub.register("/", Some(name), Arc::new(Outbox::new(limits)), codec)
    }

    fn drain(c: &Conn) -> Vec<String> {
        let mut out = Vec::new();
        let _ = c.outbox().try_batch(&mut out);
        out.iter()
            .map(|f| String::from_utf8(f.bytes().to_vec()).unwrap())
            .collect()
    }

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
    fn names_are_unique_per_namespace() {
        let hub = Hub::new(HubConfig::default());
        let c = codec(1);
        let a = conn(&hub, "sam", c.clone(), OutboxLimits::default());
        let b = conn(&hub, "sam", c.clone(), OutboxLimits::default());
        assert_eq!(&*b.name(), "sam-2");
        assert_eq!(b.set_name("sam"), Err(HubError::NameTaken("sam".into())));
        b.set_name("max").unwrap();
        drop(a);
        b.set_name("sam").unwrap();
        let other = hub.register(
            "/chat",
            Some("sam"),
            Arc::new(Outbox::new(OutboxLimits::default())),
            c.clone(),
        );
        assert_eq!(&*other.name(), "sam");
        let anon = hub.register("/", None, Arc::new(Outbox::new(OutboxLimits::default())), c);
        assert!(anon.name().starts_with("guest-"));
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

    /// Records what the hub forwards.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Adapter for Recorder {
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
                    partial: true,
                }
            })
        }
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
        };
        assert_eq!(
            hub.deliver_remote("/", &["r"], &[], Event::Message(&msg)),
            1
        );
        assert_eq!(drain(&a), vec!["msg r 9 remote yo"]);
        assert!(drain(&b).is_empty());
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
}
