//! What connection-state recovery keeps ([`super::recovery`]): the log of
//! what was published, with a node-wide sequence number, and the sessions
//! of connections that went away abnormally, both for the recovery window.
//! Plain data behind two locks; the hub's operations on it are in
//! `recovery.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::event::Message;
use crate::identity::Identity;

/// Entries the log holds at most, whatever the window (a bound on memory).
const MAX_LOGGED: usize = 1 << 20;

/// The log and the sessions; present when the hub has a recovery window.
pub(super) struct Recovery {
    pub(super) window: Duration,
    log: Mutex<Log>,
    pub(super) sessions: Mutex<HashMap<Arc<str>, Session>>,
}

struct Log {
    /// The next sequence number (the first is 1).
    next: u64,
    entries: VecDeque<(Instant, Arc<Message>)>,
}

/// A connection gone abnormally, kept for the window.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its namespace.
    pub nsp: Arc<str>,
    /// Who it was (its client id included).
    pub identity: Identity,
    /// Its display name.
    pub name: Arc<str>,
    /// The rooms it was in.
    pub rooms: Vec<Arc<str>>,
    /// The log's position when it connected: where a client that got no
    /// offset at all resumes from.
    pub connected_at: u64,
    /// When it went.
    pub gone: Instant,
}

/// The offset a client is shown for a logged message.
pub fn recovery_offset(seq: u64) -> String {
    format!("v1-{seq}")
}

/// The sequence number of an offset made by [`recovery_offset`].
pub fn parse_recovery_offset(offset: &str) -> Option<u64> {
    offset.strip_prefix("v1-")?.parse().ok()
}

impl Recovery {
    pub(super) fn new(window: Duration) -> Recovery {
        Recovery {
            window,
            log: Mutex::new(Log {
                next: 1,
                entries: VecDeque::new(),
            }),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `msg` (stamped with the next sequence number). Called with the
    /// room's lock held, so the log has each room's order.
    pub(super) fn log(&self, mut msg: Message) -> Arc<Message> {
        let mut log = self.log.lock().unwrap();
        msg.seq = log.next;
        log.next += 1;
        let msg = Arc::new(msg);
        let now = Instant::now();
        log.entries.push_back((now, msg.clone()));
        while log.entries.len() > MAX_LOGGED
            || log
                .entries
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            log.entries.pop_front();
        }
        msg
    }

    /// The last sequence number given.
    pub(super) fn position(&self) -> u64 {
        self.log.lock().unwrap().next - 1
    }

    /// What `rooms` of `nsp` logged after `after`, oldest first, and the
    /// log's position; `None` when the log no longer reaches back there.
    pub(super) fn since(
        &self,
        nsp: &str,
        rooms: &[Arc<str>],
        after: u64,
    ) -> Option<(Vec<Arc<Message>>, u64)> {
        let log = self.log.lock().unwrap();
        let position = log.next - 1;
        if after > position {
            return None;
        }
        // Complete if the oldest entry kept is at most the one after `after`
        // (or nothing was logged since).
        let first = log.entries.front().map_or(log.next, |(_, m)| m.seq);
        if after < position && first > after + 1 {
            return None;
        }
        let missed = log
            .entries
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.seq > after && &*m.nsp == nsp && rooms.contains(&m.room))
            .cloned()
            .collect();
        Some((missed, position))
    }

    /// What `room` logged after `after` (the rest of a resume, read under
    /// the room's lock).
    pub(super) fn room_since(&self, nsp: &str, room: &str, after: u64) -> Vec<Arc<Message>> {
        let log = self.log.lock().unwrap();
        log.entries
            .iter()
            .rev()
            .take_while(|(_, m)| m.seq > after)
            .filter(|(_, m)| &*m.nsp == nsp && &*m.room == room)
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    /// Sessions kept, and messages logged.
    pub(super) fn sizes(&self) -> (usize, usize) {
        let sessions = self.sessions.lock().unwrap().len();
        (sessions, self.log.lock().unwrap().entries.len())
    }

    /// Drops what is older than the window.
    pub(super) fn prune(&self) {
        let now = Instant::now();
        self.sessions
            .lock()
            .unwrap()
            .retain(|_, s| now.duration_since(s.gone) <= self.window);
        let mut log = self.log.lock().unwrap();
        while log
            .entries
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            log.entries.pop_front();
        }
    }
}
