//! Joining a namespace: the CONNECT packet, the client's admission
//! ([`crate::app::admit`]) and the answer.
//!
//! Without a connect hook the socket is admitted while the packet is
//! handled. With one, the admission runs in its own task (the session keeps
//! reading, other sockets keep working) and the socket reaches the session
//! through a [`Handoff`]: the task registers it, answers CONNECT and runs
//! the application's `on_connect` while holding the handoff's lock, then
//! leaves the socket there; the session, given a packet for a namespace it
//! does not know, takes the handoff's sockets first (waiting on the lock if
//! the task is still at it). So no packet the client sends after CONNECT can
//! arrive before its socket.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use serde_json::Value as Json;
use volna_hub::{Frame, Outbox, Restored};
use volna_protocols::socketio::{write_connect_error_with_data, write_connect_with_pid};

use super::{App, Connected, SioCodec, Socket, SocketRef};
use crate::app::admit::{self, Admission, Arrival, Refusal};

/// Sockets admitted by a task, waiting for the session to take them in.
#[derive(Default)]
pub(super) struct Handoff {
    sockets: Mutex<Vec<(Box<str>, Socket)>>,
}

impl Handoff {
    /// Moves the waiting sockets into `sockets` (replacing any of the same
    /// namespace).
    pub(super) fn take_into(&self, sockets: &mut Vec<(Box<str>, Socket)>) {
        let mut waiting = self.sockets.lock().unwrap();
        for (nsp, socket) in waiting.drain(..) {
            sockets.retain(|(n, _)| *n != nsp);
            sockets.push((nsp, socket));
        }
    }

    /// Drops the waiting sockets (the session is over).
    pub(super) fn clear(&self) {
        self.sockets.lock().unwrap().clear();
    }
}

/// One CONNECT being answered.
pub(super) struct Connecting {
    pub(super) app: Arc<App>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) connected: Arc<Connected>,
    pub(super) handoff: Arc<Handoff>,
    pub(super) nsp: Box<str>,
    pub(super) auth: Box<RawValue>,
}

impl Connecting {
    /// The arrival the admission decides on: the CONNECT's `auth` object is
    /// its data, `auth.name` the name it asks for.
    pub(super) fn arrival(
        &self,
        sid: Arc<str>,
        transport: &'static str,
        peer: Option<std::net::SocketAddr>,
        headers: serde_json::Map<String, Json>,
    ) -> Arrival {
        let data: Json = serde_json::from_str(self.auth.get()).unwrap_or(Json::Null);
        Arrival {
            client: sid,
            transport,
            protocol: "socketio",
            remote_addr: peer,
            name: data.get("name").and_then(Json::as_str).map(str::to_owned),
            data,
            headers,
        }
    }

    /// Admits (or refuses) the socket: at once without a connect hook,
    /// else in a task.
    pub(super) fn start(self, arrival: Arrival) {
        if let Some(admission) = admit::admit_now(&self.app.ctx, &arrival) {
            self.finish(&arrival.client, admission);
            return;
        }
        let tracker = self.app.tracker.clone();
        tracker.spawn(async move {
            let client = arrival.client.clone();
            let admission = admit::admit(&self.app.ctx, arrival).await;
            self.finish(&client, admission);
        });
    }

    /// Connection-state recovery through the cluster's shared log (the
    /// client's offset is a place in it): the adapter finds the session,
    /// kept by whichever node the client was on, and what it missed; the
    /// socket gets its id, identity and rooms back, the missed events, then
    /// CONNECT with the same `pid`. Without such a session it is admitted
    /// afresh, as [`Connecting::start`].
    pub(super) fn restore_or_start(self, pid: String, offset: String, arrival: Arrival) {
        let Some(adapter) = self.app.hub.adapter().cloned() else {
            self.start(arrival);
            return;
        };
        let restoring = adapter.restore_session(&self.nsp, &pid, &offset);
        let tracker = self.app.tracker.clone();
        tracker.spawn(async move {
            match restoring.await {
                Some(restored) => {
                    self.app.ctx.meters.recovery(1);
                    self.finish_restored(pid, restored)
                }
                None => {
                    self.app.ctx.meters.recovery(2);
                    self.start(arrival)
                }
            }
        });
    }

    fn finish_restored(self, pid: String, restored: Restored) {
        let nsp = &*self.nsp;
        let hub = &self.app.hub;
        let Some(sid) = restored.identity.client.clone() else {
            (restored.release)();
            return;
        };
        if self.outbox.closed().is_some() {
            (restored.release)();
            return;
        }
        // This node may keep a copy of the session too: it is taken now.
        let _ = hub.take_session(&pid, nsp);
        let mut waiting = self.handoff.sockets.lock().unwrap();
        let grant = admit::Grant {
            identity: restored.identity.clone(),
            name: restored.name.as_deref().map(str::to_owned),
            rooms: Vec::new(),
            sign_in_by: None,
        };
        let conn = grant.register(hub, nsp, self.outbox.clone(), Arc::new(SioCodec::new(nsp)));
        let sent = hub.restore(conn.id(), nsp, restored);
        tracing::debug!(%sid, sent, "socket.io session restored from the cluster");
        if !self.connected.done.swap(true, Ordering::AcqRel) {
            self.connected.wake.notify_one();
        }
        let mut s = String::from("4");
        write_connect_with_pid(&mut s, nsp, &sid, Some(&pid));
        let _ = self.outbox.push(&[Frame::text(s)]);
        waiting.retain(|(n, _)| &**n != nsp);
        waiting.push((
            self.nsp.clone(),
            Socket {
                conn,
                pid: Some(Arc::from(pid)),
                connected_at: hub.recovery_position(),
            },
        ));
    }

    pub(super) fn finish(self, sid: &str, admission: Admission) {
        let nsp = &*self.nsp;
        match admission {
            Ok(grant) => {
                if self.outbox.closed().is_some() {
                    return;
                }
                let mut waiting = self.handoff.sockets.lock().unwrap();
                let conn = grant.register(
                    &self.app.hub,
                    nsp,
                    self.outbox.clone(),
                    Arc::new(SioCodec::new(nsp)),
                );
                tracing::debug!(nsp, name = %conn.name(), "socket.io socket connected");
                if !self.connected.done.swap(true, Ordering::AcqRel) {
                    self.connected.wake.notify_one();
                }
                // With recovery on, a private session id its client names
                // when it comes back.
                let hub = &self.app.hub;
                let pid: Option<Arc<str>> = hub
                    .recovery_window()
                    .map(|_| Arc::from(crate::engineio::random_id()));
                let connected_at = hub.recovery_position();
                let mut s = String::from("4");
                write_connect_with_pid(&mut s, nsp, sid, pid.as_deref());
                let _ = self.outbox.push(&[Frame::text(s)]);
                let socket = SocketRef {
                    conn: &conn,
                    outbox: &self.outbox,
                    tracker: &self.app.tracker,
                };
                self.app.application.on_connect(&socket, &self.auth);
                waiting.retain(|(n, _)| &**n != nsp);
                waiting.push((
                    self.nsp.clone(),
                    Socket {
                        conn,
                        pid,
                        connected_at,
                    },
                ));
            }
            Err(Refusal { code, reason }) => {
                // As a Node middleware's `next(err)` with `err.data`.
                let mut s = String::from("4");
                let data = serde_json::json!({ "code": code, "reason": &reason }).to_string();
                write_connect_error_with_data(&mut s, nsp, &reason, &data);
                let _ = self.outbox.push(&[Frame::text(s)]);
            }
        }
    }
}
