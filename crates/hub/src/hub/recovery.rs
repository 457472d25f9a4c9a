//! Connection-state recovery (Socket.IO's, as socket.io 4.6+ offers it):
//! a log of what was published, and the sessions of connections that went
//! away abnormally, both kept for the recovery window.
//!
//! Every message or event kept in a room's history is also logged, with a
//! node-wide sequence number ([`Message::seq`]) that transports show the
//! client as an opaque offset. When a connection closes abnormally its
//! session (client id, identity, name, rooms) is kept; a client that comes
//! back within the window naming it and the last offset it got is given
//! back the same client id and rooms, and first everything logged for those
//! rooms after that offset ([`Hub::resume_session`]). Logged is what the
//! rooms' histories would keep; what is volatile, or sent to one client, is
//! not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::HubError;
use super::recovery_log::{Recovery, Session};
use super::state::Hub;
use crate::adapter::{Missed, Restored};
use crate::event::{ConnId, Event, Message};
use crate::identity::Identity;
use crate::Conn;

impl Hub {
    /// How long sessions and the log are kept, when recovery is on.
    pub fn recovery_window(&self) -> Option<Duration> {
        self.inner.recovery.as_ref().map(|r| r.window)
    }

    /// The log's position now (0 without recovery): a new connection's
    /// [`Session::connected_at`].
    pub fn recovery_position(&self) -> u64 {
        self.inner.recovery.as_ref().map_or(0, Recovery::position)
    }

    /// Keeps `conn`'s session under `pid` for the window (nothing without
    /// recovery). Call before dropping the connection.
    pub fn keep_session(&self, pid: Arc<str>, conn: &Conn, connected_at: u64) {
        let Some(recovery) = &self.inner.recovery else {
            return;
        };
        let session = {
            let st = self.inner.state.lock().unwrap();
            let Some(e) = st.conns.get(&conn.id()) else {
                return;
            };
            Session {
                nsp: e.nsp.clone(),
                identity: Identity {
                    client: Some(e.client.clone()),
                    user: e.user.clone(),
                    info: e.info.clone(),
                    transport: e.transport,
                    expires: e.expires,
                    rooms: e.allowed_rooms.clone(),
                },
                name: e.name.clone(),
                rooms: e.rooms.clone(),
                connected_at,
                gone: Instant::now(),
            }
        };
        if let Some(adapter) = self.inner.adapter.get() {
            adapter.keep_session(&pid, &session);
        }
        recovery.sessions.lock().unwrap().insert(pid, session);
    }

    /// Gives connection `id` (registered again with the restored
    /// session's identity) what it missed, then its rooms back, then lets
    /// the adapter go on delivering from its log. Returns how many
    /// messages and events it was sent.
    pub fn restore(&self, id: ConnId, nsp: &str, restored: Restored) -> usize {
        let member = {
            let st = self.inner.state.lock().unwrap();
            st.namespaces
                .get(nsp)
                .and_then(|ns| ns.members.get(&id).cloned())
        };
        if let Some(member) = &member {
            for missed in &restored.missed {
                let mut enc = match missed {
                    Missed::Message(m) => super::deliver::Encoder::new(Event::Message(m)),
                    Missed::Emit(e) => super::deliver::Encoder::new(Event::Emit(e)),
                };
                self.deliver(&mut enc, std::iter::once((&id, member)), None);
            }
            for room in &restored.rooms {
                if let Err(e) = self.join(id, room, true, None) {
                    tracing::debug!(%room, error = %e, "a restored room could not be joined");
                }
            }
        }
        (restored.release)();
        if member.is_some() {
            restored.missed.len()
        } else {
            0
        }
    }

    /// Takes the session kept under `pid` in `nsp`, if it is still within
    /// the window (and its token, if any, has not expired).
    pub fn take_session(&self, pid: &str, nsp: &str) -> Option<Session> {
        let recovery = self.inner.recovery.as_ref()?;
        let mut sessions = recovery.sessions.lock().unwrap();
        let session = sessions.get(pid)?;
        if &*session.nsp != nsp {
            return None;
        }
        let session = sessions.remove(pid)?;
        let fresh = session.gone.elapsed() <= recovery.window;
        let valid = session
            .identity
            .expires
            .is_none_or(|exp| exp * 1000 > crate::now_ms());
        (fresh && valid).then_some(session)
    }

    /// Gives connection `id` (registered again with the session's
    /// identity) its rooms back, after sending it what they logged after
    /// `after`: first what the log had when called, then, room by room
    /// under each room's lock while it joins, what came meanwhile; after
    /// that it is a member like any other, so nothing is missed or sent
    /// twice. Returns how many messages it was sent;
    /// [`HubError::Unrecoverable`] when the log no longer reaches back to
    /// `after` (nothing was sent or joined then).
    pub fn resume_session(
        &self,
        id: ConnId,
        nsp: &str,
        rooms: &[Arc<str>],
        after: u64,
    ) -> Result<usize, HubError> {
        let recovery = self
            .inner
            .recovery
            .as_ref()
            .ok_or_else(|| HubError::Unrecoverable(nsp.to_string()))?;
        let (missed, position) = recovery
            .since(nsp, rooms, after)
            .ok_or_else(|| HubError::Unrecoverable(nsp.to_string()))?;
        let member = {
            let st = self.inner.state.lock().unwrap();
            st.namespaces
                .get(nsp)
                .and_then(|ns| ns.members.get(&id).cloned())
                .ok_or(HubError::Gone)?
        };
        for m in &missed {
            let mut enc = super::deliver::Encoder::new(Event::Message(m));
            self.deliver(&mut enc, std::iter::once((&id, &member)), None);
        }
        let mut sent = missed.len();
        for room in rooms {
            match self.join(id, room, true, Some(super::rooms::Resume::Logged(position))) {
                Ok(info) => sent += info.missed,
                Err(e) => {
                    tracing::debug!(%room, error = %e, "a recovered room could not be joined")
                }
            }
        }
        Ok(sent)
    }

    /// What `room` logged after `after`; for [`Hub::join`] under the room's
    /// lock.
    pub(super) fn logged_since(&self, nsp: &str, room: &str, after: u64) -> Vec<Arc<Message>> {
        self.inner
            .recovery
            .as_ref()
            .map(|r| r.room_since(nsp, room, after))
            .unwrap_or_default()
    }

    /// Logs `msg` when recovery is on (else only wraps it).
    pub(super) fn logged(&self, msg: Message) -> Arc<Message> {
        match &self.inner.recovery {
            Some(r) => r.log(msg),
            None => Arc::new(msg),
        }
    }

    /// With recovery on: the window, sessions kept and messages logged
    /// (for `/health`).
    pub fn recovery_sizes(&self) -> Option<(Duration, usize, usize)> {
        let r = self.inner.recovery.as_ref()?;
        let (sessions, logged) = r.sizes();
        Some((r.window, sessions, logged))
    }

    /// Drops sessions and log entries older than the window.
    pub fn prune_recovery(&self) {
        if let Some(r) = &self.inner.recovery {
            r.prune();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::recovery_log::{parse_recovery_offset, recovery_offset};
    use crate::hub::testing::{codec, conn, drain};
    use crate::outbox::{Outbox, OutboxLimits};
    use crate::{Data, HubConfig};

    fn hub(window: Duration) -> Hub {
        Hub::new(HubConfig {
            recovery: Some(window),
            ..HubConfig::default()
        })
    }

    fn again(hub: &Hub, session: &Session) -> Conn {
        hub.register_as(
            "/",
            Some(&session.name),
            session.identity.clone(),
            Arc::new(Outbox::new(OutboxLimits::default())),
            codec(1),
        )
    }

    #[test]
    fn a_session_gets_its_rooms_and_what_they_logged_back() {
        let hub = hub(Duration::from_secs(60));
        let a = conn(&hub, "a", codec(1), OutboxLimits::default());
        let p = conn(&hub, "p", codec(1), OutboxLimits::default());
        for c in [&a, &p] {
            c.join("r").unwrap();
            c.join("s").unwrap();
        }
        p.join("other").unwrap();
        p.publish("r", Data::text("seen"), true).unwrap();
        let seen = hub.recovery_position();
        assert_eq!(seen, 1);
        hub.keep_session(Arc::from("pid-a"), &a, 0);
        drop(a);
        p.publish("s", Data::text("m1"), true).unwrap();
        p.publish("other", Data::text("not for a"), true).unwrap();
        p.publish("r", Data::text("m2"), true).unwrap();
        assert!(hub.take_session("pid-a", "/other-nsp").is_none());
        let session = hub.take_session("pid-a", "/").unwrap();
        assert!(hub.take_session("pid-a", "/").is_none(), "taken once");
        let b = again(&hub, &session);
        drain(&b);
        assert_eq!(hub.resume_session(b.id(), "/", &session.rooms, seen), Ok(2));
        let got: Vec<String> = drain(&b)
            .into_iter()
            .filter(|l| l.starts_with("msg"))
            .collect();
        assert_eq!(got, vec!["msg s 1 p m1", "msg r 2 p m2"]);
        assert_eq!(b.rooms().len(), 2);
        p.publish("r", Data::text("after"), true).unwrap();
        assert!(drain(&b).contains(&"msg r 3 p after".to_string()));
        // The client id is the old one's: reachable by it again.
        assert_eq!(b.client(), session.identity.client.clone().unwrap());
    }

    #[test]
    fn an_offset_the_log_no_longer_reaches_is_unrecoverable() {
        let hub = hub(Duration::from_millis(1));
        let a = conn(&hub, "a", codec(1), OutboxLimits::default());
        a.join("r").unwrap();
        a.publish("r", Data::text("old"), true).unwrap();
        a.publish("r", Data::text("older"), true).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        hub.prune_recovery();
        let rooms = vec![Arc::from("r")];
        assert!(matches!(
            hub.resume_session(a.id(), "/", &rooms, 0),
            Err(HubError::Unrecoverable(_))
        ));
        assert!(matches!(
            hub.resume_session(a.id(), "/", &rooms, 99),
            Err(HubError::Unrecoverable(_))
        ));
        assert_eq!(parse_recovery_offset(&recovery_offset(42)), Some(42));
        assert_eq!(parse_recovery_offset("hello"), None);
    }

    #[test]
    fn a_stale_connection_going_does_not_unlist_its_recovered_successor() {
        let hub = hub(Duration::from_secs(60));
        let old = conn(&hub, "a", codec(1), OutboxLimits::default());
        hub.keep_session(Arc::from("pid"), &old, 0);
        let session = hub.take_session("pid", "/").unwrap();
        let new = again(&hub, &session);
        drop(old); // its late close (socket.io #4880)
        let client = session.identity.client.clone().unwrap();
        let reached = hub.publish_server("/", &client, None, Data::text("dm"));
        assert!(
            !matches!(reached, crate::ServerPublish::Nobody),
            "still reachable by its id"
        );
        assert!(drain(&new).iter().any(|l| l.ends_with("dm")));
    }
}
