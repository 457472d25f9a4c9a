//! The requests of one `/ws` connection: text frames decoded, binary
//! frames attached, operations applied through [`crate::app`], replies
//! pushed to the connection's outbox.

use std::sync::Arc;

use bytes::Bytes;
use volna_hub::{Conn, Frame, Stats};

use super::render::{error_json, render};
use super::request::{parse_request, with_parts};
use super::WsConfig;
use crate::app::{Applied, Context, Op};

/// A request waiting for its binary frames.
struct Pending {
    id: Option<String>,
    op: &'static str,
    /// `None` when the request was refused and its frames are only skipped.
    action: Option<Op>,
    expected: usize,
    received: usize,
    bytes: usize,
    parts: Vec<Bytes>,
}

/// Per-connection state of the request reader.
pub(super) struct Requests {
    conn: Conn,
    cfg: Arc<WsConfig>,
    pending: Option<Pending>,
    app: Context,
}

impl Requests {
    /// The requests of `conn`; dropping this drops the connection.
    pub(super) fn new(conn: Conn, cfg: Arc<WsConfig>, app: Context) -> Requests {
        Requests {
            conn,
            cfg,
            pending: None,
            app,
        }
    }

    fn push(&self, frame: Frame) {
        let _ = self.conn.outbox().push_one(frame);
    }

    /// Sends an error frame and counts it as bad input.
    fn error(&self, id: Option<&str>, op: Option<&str>, code: &str, message: &str) {
        Stats::bump(&self.conn.hub().stats().bad_input);
        self.push(Frame::text(error_json(id, op, code, message, false)));
    }

    pub(super) fn on_text(&mut self, text: &str) {
        if let Some(p) = self.pending.take() {
            if p.action.is_some() {
                self.error(
                    p.id.as_deref(),
                    Some(p.op),
                    "missing-attachments",
                    &format!(
                        "the request announced {} binary frames but a text frame came after {}; \
                         the request was dropped",
                        p.expected, p.received
                    ),
                );
            }
        }
        match parse_request(text, &self.cfg) {
            Ok(req) if req.attachments == 0 => {
                self.execute(req.id.as_deref(), req.op, req.action, Vec::new())
            }
            Ok(req) => {
                self.pending = Some(Pending {
                    id: req.id,
                    op: req.op,
                    action: Some(req.action),
                    expected: req.attachments,
                    received: 0,
                    bytes: text.len(),
                    parts: Vec::with_capacity(req.attachments),
                });
            }
            Err(e) => {
                self.error(e.id.as_deref(), e.op, e.code, &e.message);
                if e.skip > 0 {
                    self.pending = Some(Pending {
                        id: e.id,
                        op: e.op.unwrap_or(""),
                        action: None,
                        expected: e.skip,
                        received: 0,
                        bytes: 0,
                        parts: Vec::new(),
                    });
                }
            }
        }
    }

    pub(super) fn on_binary(&mut self, bytes: Bytes) {
        let Some(p) = self.pending.as_mut() else {
            self.error(
                None,
                None,
                "unexpected-binary",
                "a binary frame must follow a request that announces it with \"attachments\":N",
            );
            return;
        };
        p.received += 1;
        p.bytes += bytes.len();
        if p.action.is_some() {
            if p.bytes > self.cfg.max_message_size {
                p.action = None;
                p.parts = Vec::new();
                let (id, op) = (p.id.clone(), p.op);
                self.error(
                    id.as_deref(),
                    Some(op),
                    "too-large",
                    &format!(
                        "the request and its attachments exceed {} bytes",
                        self.cfg.max_message_size
                    ),
                );
            } else {
                p.parts.push(bytes);
            }
        }
        let p = self.pending.as_ref().expect("pending checked above");
        if p.received == p.expected {
            let p = self.pending.take().expect("pending checked above");
            if let Some(action) = p.action {
                self.execute(p.id.as_deref(), p.op, action, p.parts);
            }
        }
    }

    /// Applies a decoded request; its reply (now, or when a cluster-wide
    /// `who` or an image is done) carries the request's id.
    fn execute(&self, id: Option<&str>, op: &'static str, action: Op, parts: Vec<Bytes>) {
        let op_value = with_parts(action, parts);
        match op_value.apply(&self.conn, &self.app) {
            Applied::Now(outcome) => {
                let frames = render(id, op, outcome, &self.cfg, self.in_cluster());
                let _ = self.conn.outbox().push(&frames);
            }
            Applied::Later(answer) => {
                let outbox = self.conn.outbox().clone();
                let id = id.map(str::to_string);
                let cfg = self.cfg.clone();
                let in_cluster = self.in_cluster();
                tokio::spawn(async move {
                    let frames = render(id.as_deref(), op, answer.await, &cfg, in_cluster);
                    let _ = outbox.push(&frames);
                });
            }
        }
    }

    fn in_cluster(&self) -> bool {
        self.conn.hub().adapter().is_some()
    }
}
