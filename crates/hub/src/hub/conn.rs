//! A connection's life in the hub: registering it (with a unique display
//! name), renaming it, and the [`Conn`] handle whose drop unregisters it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use volna_protocols::line::validate_name;

use super::error::HubError;
use super::limit::{Bucket, Verdict};
use super::rooms::{JoinInfo, Since};
use super::state::{ConnEntry, Hub, Member};
use crate::event::{Codec, ConnId, Data, Message};
use crate::identity::{Identity, SERVER_NAME};
use crate::outbox::{CloseReason, Outbox};
use crate::stats::Stats;

impl Hub {
    /// Registers an anonymous connection in namespace `nsp`: see
    /// [`register_as`](Hub::register_as).
    pub fn register(
        &self,
        nsp: &str,
        name: Option<&str>,
        outbox: Arc<Outbox>,
        codec: Arc<dyn Codec>,
    ) -> Conn {
        self.register_as(nsp, name, Identity::default(), outbox, codec)
    }

    /// Registers a connection in namespace `nsp`.
    ///
    /// `name` is the requested display name; if it is missing or invalid the
    /// connection is called `guest-<id>`, and if it is taken a `-2`, `-3`…
    /// suffix is added. `identity` says which client and user it is: the
    /// server API reaches it by its client id and, for an identified
    /// user, through the user's personal room `#user`. Dropping the
    /// returned [`Conn`] removes it from every room (telling the other
    /// members) and from the hub.
    pub fn register_as(
        &self,
        nsp: &str,
        name: Option<&str>,
        identity: Identity,
        outbox: Arc<Outbox>,
        codec: Arc<dyn Codec>,
    ) -> Conn {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client = identity
            .client
            .unwrap_or_else(|| Arc::from(format!("{}.{id:x}", self.inner.stem)));
        let mut st = self.inner.state.lock().unwrap();
        let nsp: Arc<str> = match st.namespaces.get_key_value(nsp) {
            Some((k, _)) => k.clone(),
            None => Arc::from(nsp),
        };
        let ns = st.namespaces.entry(nsp.clone()).or_default();
        let base = match name {
            Some(n) if validate_name(n).is_ok() && n != SERVER_NAME => n.to_string(),
            _ => format!("guest-{id}"),
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while ns.name_taken(&candidate, identity.user.as_ref()) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        let name: Arc<str> = Arc::from(candidate);
        ns.names.insert(name.clone(), id);
        ns.bind_name(&name, identity.user.as_ref());
        let protocol = crate::stats::protocol_slot(codec.protocol()) as u8;
        ns.members.insert(
            id,
            Member {
                name: name.clone(),
                outbox: outbox.clone(),
                key: codec.key(),
                codec,
                protocol,
            },
        );
        ns.clients.insert(client.clone(), id);
        if let Some(user) = &identity.user {
            ns.users.entry(user.clone()).or_default().push(id);
        }
        st.conns.insert(
            id,
            ConnEntry {
                nsp: nsp.clone(),
                name,
                rooms: Vec::new(),
                client,
                user: identity.user,
                info: identity.info,
                transport: identity.transport,
                expires: identity.expires,
                allowed_rooms: identity.rooms,
                protocol,
                since: crate::now_ms(),
            },
        );
        let view = self
            .observer()
            .and_then(|_| st.conns.get(&id).map(|e| view_of(id, e)));
        drop(st);
        if let (Some(observer), Some(view)) = (self.observer(), view) {
            observer.connected(&view);
        }
        Stats::bump(&self.inner.stats.connections_opened);
        Stats::bump(&self.inner.stats.opened_by_protocol[protocol as usize]);
        Conn {
            hub: self.clone(),
            id,
            nsp,
            outbox,
            bucket: Mutex::new(Bucket::new(self.inner.config.rate)),
            pending: OnceLock::new(),
            protocol,
        }
    }

    /// Number of rooms, of every namespace (a sum over namespaces, not a
    /// walk over rooms).
    pub fn room_count(&self) -> usize {
        let st = self.inner.state.lock().unwrap();
        st.namespaces.values().map(|ns| ns.rooms.len()).sum()
    }

    /// Number of connections registered.
    pub fn connection_count(&self) -> usize {
        self.inner.state.lock().unwrap().conns.len()
    }

    pub(super) fn set_name(&self, id: ConnId, name: &str) -> Result<Arc<str>, HubError> {
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
        if ns.name_taken(name, entry.user.as_ref()) || name == SERVER_NAME {
            return Err(HubError::NameTaken(name.to_string()));
        }
        let new: Arc<str> = Arc::from(name);
        ns.names.remove(&entry.name);
        ns.names.insert(new.clone(), id);
        ns.bind_name(&new, entry.user.as_ref());
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
        if let Some(observer) = self.observer() {
            observer.updated(&view_of(id, entry));
        }
        Ok(new)
    }

    /// Says who connection `id` is now: see [`Conn::identify`]. Its
    /// client id and transport stay.
    pub fn identify(&self, id: ConnId, identity: Identity) {
        let mut st = self.inner.state.lock().unwrap();
        let st = &mut *st;
        let Some(entry) = st.conns.get_mut(&id) else {
            return;
        };
        let Some(ns) = st.namespaces.get_mut(&entry.nsp) else {
            return;
        };
        if entry.user != identity.user {
            if let Some(old) = entry.user.take() {
                if let Some(ids) = ns.users.get_mut(&old) {
                    ids.retain(|c| *c != id);
                    if ids.is_empty() {
                        ns.users.remove(&old);
                    }
                }
            }
            if let Some(user) = &identity.user {
                ns.users.entry(user.clone()).or_default().push(id);
            }
        }
        entry.user = identity.user;
        entry.info = identity.info;
        entry.expires = identity.expires;
        entry.allowed_rooms = identity.rooms;
    }

    /// When connection `id`'s credentials expire (seconds since the Unix
    /// epoch), if they do.
    pub fn expires(&self, id: ConnId) -> Option<u64> {
        let st = self.inner.state.lock().unwrap();
        st.conns.get(&id).and_then(|e| e.expires)
    }

    /// A new client id, unique across restarts and nodes, for a connection
    /// about to register (its transport needs one before: the connect hook
    /// is told it).
    pub fn new_client_id(&self) -> Arc<str> {
        let n = self.inner.clients_made.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-c{n:x}", self.inner.stem))
    }

    /// Renames connection `id`: see [`Conn::set_name`].
    pub fn rename(&self, id: ConnId, name: &str) -> Result<Arc<str>, HubError> {
        self.set_name(id, name)
    }

    /// Joins connection `id` to a room: see [`Conn::join`].
    pub fn join_as(&self, id: ConnId, room: &str) -> Result<JoinInfo, HubError> {
        self.join(id, room, false, None)
    }

    /// Joins connection `id` to a room the backend allowed it into (the
    /// subscribe hook): the room policy's `join` is not asked again; the
    /// rest (the token's rooms, room and connection limits) is.
    pub fn join_approved(
        &self,
        id: ConnId,
        room: &str,
        since: Option<&Since>,
    ) -> Result<JoinInfo, HubError> {
        self.join(id, room, true, since.map(super::rooms::Resume::Since))
    }

    /// Joins connection `id` to `room`, first sending it `missed`: what the
    /// cluster's shared log had for the room after the client's place in
    /// it ([`Adapter::room_since`](crate::Adapter::room_since)), under the
    /// room's lock like any resume.
    pub fn join_given(
        &self,
        id: ConnId,
        room: &str,
        missed: &[crate::Missed],
    ) -> Result<JoinInfo, HubError> {
        self.join(id, room, false, Some(super::rooms::Resume::Given(missed)))
    }

    fn unregister(&self, id: ConnId, reason: Option<CloseReason>) {
        let mut guard = self.inner.state.lock().unwrap();
        let st = &mut *guard;
        let Some(entry) = st.conns.remove(&id) else {
            return;
        };
        if let Some(observer) = self.observer() {
            let reason = reason.map(|r| r.to_string());
            observer.disconnected(&entry.nsp, &entry.client, reason.as_deref());
            // As Socket.IO's adapter, which leaves every room, its own
            // (named by its id) included, after the disconnect.
            for room in entry.rooms.iter().chain(std::iter::once(&entry.client)) {
                observer.left(&entry.nsp, room, &entry.client);
            }
        }
        if let Some(ns) = st.namespaces.get_mut(&entry.nsp) {
            for room in &entry.rooms {
                self.remove_from_room(ns, id, room);
            }
            ns.names.remove(&entry.name);
            ns.members.remove(&id);
            // Only if it is still this connection's: a recovered session
            // registers its client id again (socket.io #4880).
            if ns.clients.get(&entry.client) == Some(&id) {
                ns.clients.remove(&entry.client);
            }
            if let Some(user) = &entry.user {
                if let Some(ids) = ns.users.get_mut(user) {
                    ids.retain(|c| *c != id);
                    if ids.is_empty() {
                        ns.users.remove(user);
                    }
                }
            }
            if ns.members.is_empty() && ns.rooms.is_empty() && ns.name_owners.is_empty() {
                st.namespaces.remove(&entry.nsp);
            }
        }
        let protocol = entry.protocol as usize;
        drop(guard);
        Stats::bump(&self.inner.stats.connections_closed);
        Stats::bump(&self.inner.stats.closed_by_protocol[protocol]);
    }
}

/// A connection registered with the hub. Dropping it unregisters it.
pub struct Conn {
    pub(super) hub: Hub,
    id: ConnId,
    nsp: Arc<str>,
    outbox: Arc<Outbox>,
    /// Its request rate; only its own transport task takes from it.
    bucket: Mutex<Bucket>,
    /// Answers it waits for ([`Conn::begin_pending`]); made on its first.
    pending: OnceLock<Arc<AtomicU32>>,
    /// Its protocol's slot in [`crate::stats::PROTOCOLS`].
    protocol: u8,
}

/// One answer a connection waits for; dropping it (the answer is sent or
/// abandoned) frees its place.
#[derive(Debug)]
pub struct Pending(Arc<AtomicU32>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

    /// Takes one request from its rate ([`RateLimit`](super::RateLimit)); a
    /// refusal is counted (`rate_limited`).
    pub fn take_request(&self) -> Verdict {
        let verdict = self.bucket.lock().unwrap().take();
        if verdict != Verdict::Allowed {
            Stats::bump(&self.hub.inner.stats.rate_limited);
        }
        verdict
    }

    /// Takes a place among the answers it may wait for at once
    /// (`max_pending_per_conn`); `None`, counted (`too_many_pending`), when
    /// they are all taken.
    pub fn begin_pending(&self) -> Option<Pending> {
        let max = self.hub.inner.config.max_pending_per_conn;
        let count = self.pending.get_or_init(|| Arc::new(AtomicU32::new(0)));
        let taken = count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            Stats::bump(&self.hub.inner.stats.too_many_pending);
            return None;
        }
        Some(Pending(count.clone()))
    }

    /// Its client id (the server API's name for it; Socket.IO: the socket id).
    pub fn client(&self) -> Arc<str> {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns
            .get(&self.id)
            .map(|e| e.client.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Its user id, if it is an identified user.
    pub fn user(&self) -> Option<Arc<str>> {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns.get(&self.id).and_then(|e| e.user.clone())
    }

    /// The protocol it speaks: `tcp`, `ws` or `socketio` (its codec's).
    pub fn protocol(&self) -> &'static str {
        crate::stats::PROTOCOLS[self.protocol as usize]
    }

    /// The transport it came by: `tcp`, `websocket` or `polling`.
    pub fn transport(&self) -> &'static str {
        let st = self.hub.inner.state.lock().unwrap();
        st.conns.get(&self.id).map_or("", |e| e.transport)
    }

    /// Says who it is now (a later sign-in or a refreshed token): see
    /// [`Hub::identify`].
    pub fn identify(&self, identity: Identity) {
        self.hub.identify(self.id, identity);
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
    /// [`Presence`](crate::Presence) event.
    pub fn join(&self, room: &str) -> Result<JoinInfo, HubError> {
        self.hub.join(self.id, room, false, None)
    }

    /// Joins a room and resumes it: first the messages published after
    /// `since` (refused [`HubError::Unrecoverable`] when the room no longer
    /// keeps them all, or is another life of the room), then everything
    /// published from then on, as any member.
    pub fn join_since(&self, room: &str, since: &Since) -> Result<JoinInfo, HubError> {
        self.hub.join(
            self.id,
            room,
            false,
            Some(super::rooms::Resume::Since(since)),
        )
    }

    /// Leaves a room. The other members receive a [`Presence`](crate::Presence) event.
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
            .publish(self.id, &self.nsp, room, None, data, include_self)
    }

    /// Publishes the application's own event `event` to a room it is a
    /// member of, exactly as [`publish`](Conn::publish) does a message:
    /// the room's next offset, the history, every member.
    pub fn publish_event(
        &self,
        room: &str,
        event: Arc<str>,
        data: Data,
        include_self: bool,
    ) -> Result<Arc<Message>, HubError> {
        self.hub
            .publish(self.id, &self.nsp, room, Some(event), data, include_self)
    }

    /// Closes its outbox, which tells its transport to finish.
    pub fn close(&self, reason: CloseReason) {
        self.outbox.close(reason);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let reason = self.outbox.closed();
        let slot = reason
            .as_ref()
            .map_or(CloseReason::CODES.len(), CloseReason::slot);
        Stats::bump(&self.hub.inner.stats.closed_by_reason[slot]);
        // Why it closed only matters to an observer beyond that.
        let reason = self.hub.observer().and(reason);
        self.hub.unregister(self.id, reason);
    }
}

/// A connection's entry as [`ConnView`](crate::ConnView).
pub(super) fn view_of(id: ConnId, e: &ConnEntry) -> crate::ConnView {
    crate::ConnView {
        id,
        nsp: e.nsp.clone(),
        client: e.client.clone(),
        name: e.name.clone(),
        user: e.user.clone(),
        transport: e.transport,
        protocol: crate::stats::PROTOCOLS[e.protocol as usize],
        rooms: e.rooms.clone(),
        since: e.since,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::testing::{codec, conn};
    use crate::outbox::OutboxLimits;
    use crate::HubConfig;

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
}
