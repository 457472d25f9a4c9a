//! The behaviour the official Socket.IO test suite expects
//! (`volna serve --profile conformance`): namespaces `/` and `/custom`,
//! the CONNECT payload sent back as `auth`, `message` echoed as
//! `message-back`, `message-with-ack` acknowledged with its arguments.
//! Every other event is the chat's.

use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use volna_hub::Frame;
use volna_protocols::socketio::{write_event, DEFAULT_NAMESPACE};

use super::application::{Application, EventCall, SocketRef};
use super::chat::Chat;

/// See [`Conformance::on_connect`].
const AUTH_DELAY: Duration = Duration::from_millis(50);

/// The test suite's server, on top of the chat.
pub struct Conformance {
    /// Events the suite does not name.
    pub chat: Chat,
}

impl Application for Conformance {
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == DEFAULT_NAMESPACE || nsp == "/custom"
    }

    /// Sends `auth` back. The suite's helper reads one WebSocket message
    /// per event-loop turn and drops a second one that arrives in the same
    /// read, so `auth` must not share a write with the CONNECT reply. The
    /// Node server sends it after the first write completes; a short delay
    /// gives the same separation even under load.
    fn on_connect(&self, socket: &SocketRef<'_>, auth: &RawValue) {
        let mut s = String::from("4");
        write_event(&mut s, socket.nsp(), None, "auth", &[auth], 0);
        let outbox = socket.outbox().clone();
        socket.tracker().spawn(async move {
            tokio::time::sleep(AUTH_DELAY).await;
            let _ = outbox.push_one(Frame::text(s));
        });
    }

    fn on_event(&self, socket: &SocketRef<'_>, event: EventCall<'_>) {
        let attachments: &[Bytes] = &event.attachments;
        match event.name {
            "message" => socket.emit("message-back", event.args, attachments),
            "message-with-ack" => {
                if let Some(id) = event.ack {
                    socket.ack(id, event.args, attachments);
                }
            }
            _ => self.chat.on_event(socket, event),
        }
    }
}
