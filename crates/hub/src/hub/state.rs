//! The hub's shared state: the [`Hub`] handle and what it holds behind its
//! locks (namespaces, connections, rooms and their members), plus the
//! accessors every other part of the hub goes through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::config::HubConfig;
use super::history::History;
use crate::adapter::Adapter;
use serde_json::value::RawValue;

use crate::event::{Codec, ConnId};
use crate::outbox::Outbox;
use crate::policy::RoomPolicy;
use crate::stats::Stats;

/// The hub: cheap to clone, shared by every transport.
#[derive(Clone)]
pub struct Hub {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: HubConfig,
    pub(super) next_id: AtomicU64,
    pub(super) stats: Stats,
    /// Lock order: `state` before any room's lock, never the other way.
    pub(super) state: Mutex<State>,
    /// The cluster adapter, if any (see [`Hub::set_adapter`]).
    pub(super) adapter: OnceLock<Arc<dyn Adapter>>,
    /// Told of connects, disconnects, joins, leaves and renames, if set (see
    /// [`Hub::set_observer`]).
    pub(super) observer: OnceLock<Arc<dyn crate::observe::Observer>>,
    /// When the hub started (ms since the Unix epoch) and its process id,
    /// in hex: the stem of the client ids and room epochs it makes.
    pub(super) stem: String,
    /// Rooms created so far, for their epochs.
    pub(super) rooms_created: AtomicU64,
    /// Client ids made ahead of registration so far.
    pub(super) clients_made: AtomicU64,
    /// Connection-state recovery, when on.
    pub(super) recovery: Option<super::recovery_log::Recovery>,
    /// What every room's history holds, against `history_max_bytes`.
    pub(super) history: Arc<super::history::Budget>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) namespaces: HashMap<Arc<str>, Namespace>,
    pub(super) conns: HashMap<ConnId, ConnEntry>,
}

#[derive(Default)]
pub(super) struct Namespace {
    pub(super) rooms: HashMap<Arc<str>, Arc<Room>>,
    pub(super) names: HashMap<Arc<str>, ConnId>,
    pub(super) members: HashMap<ConnId, Member>,
    /// Client id → connection: a client's personal room.
    pub(super) clients: HashMap<Arc<str>, ConnId>,
    /// User id → its connections: the user's personal room `#user`.
    pub(super) users: HashMap<Arc<str>, Vec<ConnId>>,
    /// Display name → the user who has taken it: nobody else may, even
    /// while that user is away.
    pub(super) name_owners: HashMap<Arc<str>, Arc<str>>,
}

impl Namespace {
    /// Whether `name` is held by a connection, or belongs to a user other
    /// than `user`.
    pub(super) fn name_taken(&self, name: &str, user: Option<&Arc<str>>) -> bool {
        self.names.contains_key(name)
            || self
                .name_owners
                .get(name)
                .is_some_and(|owner| Some(owner) != user)
    }

    /// Binds `name` to `user` (an identified user's name is theirs).
    pub(super) fn bind_name(&mut self, name: &Arc<str>, user: Option<&Arc<str>>) {
        if let Some(user) = user {
            self.name_owners.insert(name.clone(), user.clone());
        }
    }
}

pub(super) struct ConnEntry {
    pub(super) nsp: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) rooms: Vec<Arc<str>>,
    pub(super) client: Arc<str>,
    pub(super) user: Option<Arc<str>>,
    pub(super) info: Option<Arc<RawValue>>,
    pub(super) transport: &'static str,
    pub(super) expires: Option<u64>,
    pub(super) allowed_rooms: Option<Arc<[String]>>,
    /// Its protocol's slot in [`crate::stats::PROTOCOLS`].
    pub(super) protocol: u8,
    /// When it registered, in ms since the Unix epoch.
    pub(super) since: u64,
}

/// What a room (or a namespace) keeps of a member: enough to deliver to it.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) name: Arc<str>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) codec: Arc<dyn Codec>,
    /// `codec.key()`, kept here so a fan-out does not visit every codec.
    pub(super) key: u64,
    /// Its protocol's slot in [`crate::stats::PROTOCOLS`], for the counters.
    pub(super) protocol: u8,
}

pub(super) struct Room {
    pub(super) nsp: Arc<str>,
    pub(super) name: Arc<str>,
    /// Chosen by name when the room is created.
    pub(super) policy: Arc<RoomPolicy>,
    pub(super) state: Mutex<RoomState>,
}

impl Room {
    /// A copy of its members (taken under its lock, which is not kept).
    pub(super) fn members_now(&self) -> Vec<(ConnId, Member)> {
        self.state
            .lock()
            .unwrap()
            .members
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    /// Whether its policy keeps its history after the last member left
    /// (for `history_ttl`), so that a late joiner, or the server API before
    /// anyone joined, finds it.
    pub(super) fn keeps_history_when_empty(&self) -> bool {
        self.policy.history_ttl.is_some() && self.policy.history != Some(0)
    }
}

pub(super) struct RoomState {
    pub(super) members: HashMap<ConnId, Member>,
    pub(super) next_offset: u64,
    pub(super) last_ts: u64,
    pub(super) history: History,
    /// Names this life of the room: a room emptied and made again starts
    /// its offsets again under a new epoch, and a room whose history was
    /// dropped for the memory budget goes on under a new one.
    pub(super) epoch: Arc<str>,
    /// Messages from other nodes reached its members (and its history):
    /// offsets are each origin node's, so its history is no longer one
    /// sequence, and a resume by offsets is refused.
    pub(super) remote: bool,
}

impl Hub {
    /// A new hub.
    pub fn new(config: HubConfig) -> Hub {
        let recovery = config.recovery.map(super::recovery_log::Recovery::new);
        Hub {
            inner: Arc::new(Inner {
                config,
                next_id: AtomicU64::new(1),
                stats: Stats::default(),
                state: Mutex::new(State::default()),
                adapter: OnceLock::new(),
                observer: OnceLock::new(),
                stem: format!("{:x}{:x}", crate::now_ms(), std::process::id()),
                rooms_created: AtomicU64::new(0),
                clients_made: AtomicU64::new(0),
                recovery,
                history: Arc::default(),
            }),
        }
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
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

    /// Installs the observer of connects, disconnects, joins, leaves and renames
    /// (see [`crate::Observer`]). Returns false (and changes nothing) if
    /// one was already set.
    pub fn set_observer(&self, observer: Arc<dyn crate::observe::Observer>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// The observer, if one is set.
    pub(super) fn observer(&self) -> Option<&Arc<dyn crate::observe::Observer>> {
        self.inner.observer.get()
    }

    /// The policy of room `room` (whether or not it exists now).
    pub fn policy(&self, nsp: &str, room: &str) -> Arc<RoomPolicy> {
        match self.room(nsp, room) {
            Some(r) => r.policy.clone(),
            None => self.inner.config.policies.for_room(room),
        }
    }

    /// A new epoch name, for a room made or whose history was lost.
    pub(super) fn new_epoch(&self) -> Arc<str> {
        let n = self.inner.rooms_created.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{n:x}", self.inner.stem))
    }

    /// A new room (not yet in any map).
    pub(super) fn new_room(&self, nsp: &Arc<str>, name: &Arc<str>) -> Arc<Room> {
        Arc::new(Room {
            nsp: nsp.clone(),
            name: name.clone(),
            policy: self.inner.config.policies.for_room(name),
            state: Mutex::new(RoomState {
                members: HashMap::new(),
                next_offset: 1,
                last_ts: 0,
                history: History::new(self.inner.history.clone()),
                epoch: self.new_epoch(),
                remote: false,
            }),
        })
    }

    /// Room `name` of namespace `nsp`, made (with its namespace) if it does
    /// not exist.
    pub(super) fn room_or_new(&self, nsp: &str, name: &str) -> Arc<Room> {
        let mut st = self.inner.state.lock().unwrap();
        let nsp: Arc<str> = match st.namespaces.get_key_value(nsp) {
            Some((k, _)) => k.clone(),
            None => Arc::from(nsp),
        };
        let ns = st.namespaces.entry(nsp.clone()).or_default();
        if let Some(room) = ns.rooms.get(name) {
            return room.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let room = self.new_room(&nsp, &name);
        ns.rooms.insert(name, room.clone());
        room
    }

    pub(super) fn room(&self, nsp: &str, room: &str) -> Option<Arc<Room>> {
        let st = self.inner.state.lock().unwrap();
        st.namespaces.get(nsp)?.rooms.get(room).cloned()
    }
}
