//! One Engine.IO session: its state machine, heartbeat and close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use volna_hub::{CloseReason, Frame, Outbox, Stats};
use volna_protocols::engineio::Packet;

use super::Engine;

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling: `GET` to receive, `POST` to send.
    Polling,
    /// One WebSocket carrying both directions.
    WebSocket,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    /// A text message (valid UTF-8), without the Engine.IO `4`.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// The application side of a session. Calls are serialized: a session never
/// runs two of them at once.
pub trait SessionHandler: Send + 'static {
    /// A message arrived. Returning an error closes the session with that
    /// reason.
    fn on_message(&mut self, msg: EngineMessage) -> Result<(), CloseReason>;

    /// The session is closed; called once.
    fn on_close(&mut self, reason: &CloseReason);

    /// The session upgraded from polling to WebSocket.
    fn on_upgrade(&mut self) {}
}

/// Where a WebSocket upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    /// No WebSocket is attached.
    None,
    /// A WebSocket is attached and waits for `2probe`.
    Probing,
    /// `3probe` was sent at this instant: pending polls are answered with a
    /// noop a little later (see [`PROBE_NOOP_DELAY`]).
    Probed(Instant),
}

/// How long after the probe a waiting poll is ended with a noop, as the
/// reference server's 100 ms upgrade check. A poll still waiting when the
/// upgrade completes is refused instead (400), like one arriving after it.
pub(super) const PROBE_NOOP_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a session closed by the client over polling stays known, so that
/// a poll racing the client's close packet still gets its noop.
const CLOSED_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

struct State {
    transport: TransportKind,
    upgrade: Upgrade,
    /// A GET is waiting (generation of the current one).
    poll: Option<u64>,
    poll_gen: u64,
    /// A POST is being processed.
    post: bool,
    finished: bool,
    /// Kept in the session table after the close (see [`CLOSED_LINGER`]).
    lingering: bool,
    /// A ping was sent and its pong has not arrived.
    ping_sent: bool,
    /// When the pong of the next (or current) ping is due: the next ping
    /// goes out `ping_timeout` before it.
    pong_due: Instant,
}

/// An Engine.IO session.
pub struct Session {
    engine: Arc<Engine>,
    sid: Arc<str>,
    outbox: Arc<Outbox>,
    state: Mutex<State>,
    handler: Mutex<Option<Box<dyn SessionHandler>>>,
    /// A pong arrived: the heartbeat recomputes its deadline. A permit is
    /// kept if the heartbeat is not waiting, so none is missed.
    pong: Notify,
    /// Wakes a pending poll when it must end early (upgrade).
    pub(super) poll_wake: Notify,
    /// Set once, by `finish`; `closed_wake` then wakes every waiter. (A
    /// flag and a `Notify` cost a third of a `CancellationToken`'s memory,
    /// and every idle connection holds one.)
    closed: AtomicBool,
    closed_wake: Notify,
}

/// What interrupts a pending poll.
pub(super) enum PollStop {
    /// The session moved to WebSocket: refuse the poll.
    Refuse,
    /// An upgrade is probing: answer `6` at this instant (or earlier data).
    NoopAt(Instant),
}

impl Session {
    pub(super) fn new(
        engine: Arc<Engine>,
        sid: Arc<str>,
        transport: TransportKind,
    ) -> Arc<Session> {
        let outbox = Arc::new(Outbox::new(engine.config.outbox));
        let pong_due = Instant::now() + engine.config.ping_interval + engine.config.ping_timeout;
        Arc::new(Session {
            engine,
            sid,
            outbox,
            state: Mutex::new(State {
                transport,
                upgrade: Upgrade::None,
                poll: None,
                poll_gen: 0,
                post: false,
                finished: false,
                lingering: false,
                ping_sent: false,
                pong_due,
            }),
            handler: Mutex::new(None),
            pong: Notify::new(),
            poll_wake: Notify::new(),
            closed: AtomicBool::new(false),
            closed_wake: Notify::new(),
        })
    }

    /// The session id.
    pub fn sid(&self) -> &Arc<str> {
        &self.sid
    }

    /// The session's outgoing queue; every frame goes through it.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The engine it belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.state.lock().unwrap().transport
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the session is over.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn set_handler(&self, handler: Box<dyn SessionHandler>) {
        *self.handler.lock().unwrap() = Some(handler);
        if self.is_closed() {
            // Closed while the handler was being made: give it its close.
            if let Some(mut h) = self.handler.lock().unwrap().take() {
                h.on_close(&self.outbox.closed().unwrap_or(CloseReason::TransportClosed));
            }
        }
    }

    /// Closes the session: the transport flushes what is queued (unless the
    /// reason discards it) and ends. A protocol error is counted.
    pub fn close(&self, reason: CloseReason) {
        if self.outbox.close(reason.clone()) {
            if matches!(reason, CloseReason::ProtocolError(_)) {
                Stats::bump(&self.engine.hub.stats().protocol_closes);
            }
            tracing::debug!(sid = %self.sid, reason = %reason, "engine.io session closing");
        }
        let actual = self.outbox.closed().unwrap_or(reason);
        self.finish(actual);
    }

    /// Closes for a protocol violation.
    pub(super) fn protocol_error(&self, why: impl Into<String>) {
        self.close(CloseReason::ProtocolError(why.into()));
    }

    /// Tears the session down once its outbox is closed: forgets it, tells
    /// the handler, wakes the transports. Idempotent.
    fn finish(&self, reason: CloseReason) {
        let linger = {
            let mut st = self.state.lock().unwrap();
            if st.finished {
                return;
            }
            st.finished = true;
            st.lingering = reason == CloseReason::ClientQuit
                && st.transport == TransportKind::Polling
                && st.poll.is_none();
            st.lingering
        };
        if !linger {
            self.engine.remove(&self.sid);
        }
        let handler = self.handler.lock().unwrap().take();
        if let Some(mut h) = handler {
            h.on_close(&reason);
        }
        self.closed.store(true, Ordering::Release);
        self.closed_wake.notify_waiters();
        self.poll_wake.notify_waiters();
    }

    /// Handles one packet from the client.
    pub(super) fn on_packet(&self, packet: Packet) {
        match packet {
            Packet::Close => self.close(CloseReason::ClientQuit),
            Packet::Pong(_) => self.on_pong(),
            Packet::Ping(_) => {
                self.engine.bump_bad_input();
                self.protocol_error("invalid heartbeat direction");
            }
            Packet::Message(text) => self.deliver(EngineMessage::Text(text)),
            Packet::Binary(data) => self.deliver(EngineMessage::Binary(data)),
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// A pong answers the ping in flight; the next ping is due an interval
    /// later. Unsolicited pongs are ignored.
    fn on_pong(&self) {
        let config = &self.engine.config;
        {
            let mut st = self.state.lock().unwrap();
            if !st.ping_sent {
                return;
            }
            st.ping_sent = false;
            st.pong_due = Instant::now() + config.ping_interval + config.ping_timeout;
        }
        self.pong.notify_one();
    }

    /// Whether the pong is overdue, even if the heartbeat task has not
    /// noticed yet (requests check this so the timeout is exact).
    pub(super) fn heartbeat_expired(&self) -> bool {
        let st = self.state.lock().unwrap();
        !st.finished && Instant::now() >= st.pong_due
    }

    fn deliver(&self, msg: EngineMessage) {
        let result = {
            let mut guard = self.handler.lock().unwrap();
            match guard.as_mut() {
                Some(h) => h.on_message(msg),
                None => Ok(()),
            }
        };
        if let Err(reason) = result {
            self.close(reason);
        }
    }

    // ---- long-polling bookkeeping ----

    /// Claims the poll slot; `None` if a poll is already pending.
    pub(super) fn begin_poll(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap();
        if st.poll.is_some() {
            return None;
        }
        st.poll_gen += 1;
        st.poll = Some(st.poll_gen);
        Some(st.poll_gen)
    }

    pub(super) fn end_poll(&self, generation: u64) {
        let mut st = self.state.lock().unwrap();
        if st.poll == Some(generation) {
            st.poll = None;
        }
    }

    /// Whether a pending poll must end (now or at some instant).
    pub(super) fn poll_stop(&self) -> Option<PollStop> {
        let st = self.state.lock().unwrap();
        if st.transport == TransportKind::WebSocket {
            return Some(PollStop::Refuse);
        }
        match st.upgrade {
            Upgrade::Probed(at) => Some(PollStop::NoopAt(at + PROBE_NOOP_DELAY)),
            _ => None,
        }
    }

    /// A poll answered the close of a lingering session: forget it now.
    pub(super) fn forget(&self) {
        self.engine.remove(&self.sid);
    }

    /// Claims the POST slot; false if one is being processed.
    pub(super) fn begin_post(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        !std::mem::replace(&mut st.post, true)
    }

    pub(super) fn end_post(&self) {
        self.state.lock().unwrap().post = false;
    }

    // ---- upgrade bookkeeping ----

    /// Attaches a probing WebSocket; false if the session cannot upgrade.
    pub(super) fn begin_upgrade(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.finished || st.transport != TransportKind::Polling || st.upgrade != Upgrade::None {
            return false;
        }
        st.upgrade = Upgrade::Probing;
        true
    }

    /// `3probe` was sent: end pending polls with a noop.
    pub(super) fn probed(&self) {
        self.state.lock().unwrap().upgrade = Upgrade::Probed(Instant::now());
        self.poll_wake.notify_waiters();
    }

    /// The probing WebSocket went away or failed: stay on polling.
    pub(super) fn abort_upgrade(&self) {
        let mut st = self.state.lock().unwrap();
        if st.transport == TransportKind::Polling {
            st.upgrade = Upgrade::None;
        }
    }

    /// `5` arrived: the WebSocket is now the transport.
    pub(super) fn complete_upgrade(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.finished || st.upgrade == Upgrade::None {
            return false;
        }
        st.transport = TransportKind::WebSocket;
        st.upgrade = Upgrade::None;
        drop(st);
        self.poll_wake.notify_waiters();
        if let Some(h) = self.handler.lock().unwrap().as_mut() {
            h.on_upgrade();
        }
        true
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("transport", &self.transport())
            .finish()
    }
}

/// The session's supervisor: sends pings, enforces the pong timeout, closes
/// the session at shutdown, and tears it down once its outbox is closed
/// (whoever closed it).
pub(super) async fn drive(session: Arc<Session>) {
    let timeout = session.engine.config.ping_timeout;
    // Shutdown is the engine's to announce (`Engine::watch_shutdown`), so
    // that an idle session's task waits on three things, not four.
    loop {
        let (ping_sent, pong_due) = {
            let st = session.state.lock().unwrap();
            (st.ping_sent, st.pong_due)
        };
        let at = if ping_sent {
            pong_due
        } else {
            pong_due.checked_sub(timeout).unwrap_or(pong_due)
        };
        tokio::select! {
            biased;
            reason = session.outbox.wait_closed() => {
                session.finish(reason);
                if session.state.lock().unwrap().lingering {
                    let shutdown = session.engine.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(CLOSED_LINGER) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    session.forget();
                }
                return;
            }
            _ = session.pong.notified() => {}
            _ = sleep_until(at) => {
                if ping_sent {
                    tracing::debug!(sid = %session.sid, "engine.io ping timeout");
                    session.close(CloseReason::Timeout);
                } else {
                    session.state.lock().unwrap().ping_sent = true;
                    let _ = session.outbox.push_one(Frame::Text(Bytes::from_static(b"2")));
                }
            }
        }
    }
}
