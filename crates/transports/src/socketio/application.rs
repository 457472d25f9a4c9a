//! The seam between Socket.IO's protocol handling and what a namespace does.
//!
//! `mod.rs` speaks the protocol (namespaces, packets, binary reassembly,
//! acks); an [`Application`] decides which namespaces exist and what each
//! event does. volna ships two: the default chat ([`super::chat::Chat`],
//! every operation of [`crate::app`]) and the behaviour the official test
//! suite expects ([`super::conformance::Conformance`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_util::task::TaskTracker;
use volna_hub::{BoxFuture, Conn, Frame, Outbox};
use volna_protocols::socketio::{write_ack, write_event};

/// What a namespace does.
pub trait Application: Send + Sync + 'static {
    /// Whether clients may connect to namespace `nsp`.
    fn has_namespace(&self, nsp: &str) -> bool;

    /// A namespace's own check of a CONNECT, before (and instead of) the
    /// server's admission: `Some` answer resolving to `Ok` admits the socket
    /// as is (no token, no connect hook), `Err(message)` refuses it with a
    /// CONNECT_ERROR `{message}`. `None` (the default): the server's
    /// admission decides (`app/admit.rs`). The Admin UI's `/admin` login.
    fn gate(&self, _nsp: &str, _auth: &RawValue) -> Option<BoxFuture<Result<(), String>>> {
        None
    }

    /// A socket has joined its namespace (its CONNECT reply is queued).
    /// `auth` is the CONNECT packet's payload (`{}` when none).
    fn on_connect(&self, _socket: &SocketRef<'_>, _auth: &RawValue) {}

    /// One event from the client.
    fn on_event(&self, socket: &SocketRef<'_>, event: EventCall<'_>);
}

/// An event as the client sent it.
pub struct EventCall<'a> {
    /// The event name.
    pub name: &'a str,
    /// Its arguments, binary parts as placeholders indexing `attachments`.
    pub args: &'a [&'a RawValue],
    /// The binary attachments.
    pub attachments: Vec<Bytes>,
    /// The id to acknowledge with, when the client asked for an ack.
    pub ack: Option<u64>,
}

/// One socket (a namespace joined by one Engine.IO session), as an
/// application sees it: its hub connection and ways to answer.
pub struct SocketRef<'a> {
    pub(super) conn: &'a Conn,
    pub(super) outbox: &'a Arc<Outbox>,
    pub(super) tracker: &'a TaskTracker,
}

impl SocketRef<'_> {
    /// The socket's hub connection.
    pub fn conn(&self) -> &Conn {
        self.conn
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        self.conn.nsp()
    }

    /// Sends `event` with its arguments and attachments to this socket.
    pub fn emit(&self, event: &str, args: &[&RawValue], attachments: &[Bytes]) {
        let mut s = String::from("4");
        write_event(&mut s, self.nsp(), None, event, args, attachments.len());
        push_with_attachments(self.outbox, s, attachments);
    }

    /// Acknowledges call `id` with arguments and attachments.
    pub fn ack(&self, id: u64, args: &[&RawValue], attachments: &[Bytes]) {
        ack_to(self.outbox, self.nsp(), id, args, attachments);
    }

    /// Acknowledges with the answer once `answer` resolves (the socket goes
    /// on reading meanwhile). Without an ack id the answer is dropped.
    pub fn ack_later(&self, id: Option<u64>, answer: BoxFuture<Answer>) {
        let outbox = self.outbox.clone();
        let nsp = self.nsp().to_string();
        self.tracker.spawn(async move {
            let answer = answer.await;
            if let Some(id) = id {
                answer.send(&outbox, &nsp, id);
            }
        });
    }

    /// The task tracker of the server, for work that outlives the call.
    pub fn tracker(&self) -> &TaskTracker {
        self.tracker
    }

    /// The socket's outgoing queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        self.outbox
    }
}

/// An acknowledgement's arguments: JSON text of one value each, binary parts
/// as placeholders indexing `attachments`.
pub struct Answer {
    /// The arguments.
    pub args: Vec<Box<RawValue>>,
    /// Their binary parts.
    pub attachments: Vec<Bytes>,
}

impl Answer {
    /// An answer of one JSON value.
    pub fn value(value: &serde_json::Value) -> Answer {
        Answer {
            args: vec![serde_json::value::to_raw_value(value).expect("a JSON value serializes")],
            attachments: Vec::new(),
        }
    }

    /// Queues the ack packet.
    pub fn send(&self, outbox: &Outbox, nsp: &str, id: u64) {
        let args: Vec<&RawValue> = self.args.iter().map(|a| &**a).collect();
        ack_to(outbox, nsp, id, &args, &self.attachments);
    }
}

fn ack_to(outbox: &Outbox, nsp: &str, id: u64, args: &[&RawValue], attachments: &[Bytes]) {
    let mut s = String::from("4");
    write_ack(&mut s, nsp, id, args, attachments.len());
    push_with_attachments(outbox, s, attachments);
}

fn push_with_attachments(outbox: &Outbox, text: String, attachments: &[Bytes]) {
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::text(text));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    // A full queue closes the outbox; the session notices and ends.
    let _ = outbox.push(&frames);
}
