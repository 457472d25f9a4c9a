//! Helpers for the hub's unit tests: a codec that writes events as short
//! text lines and counts its calls, and shortcuts to register a connection
//! and drain what it was sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::conn::Conn;
use super::state::Hub;
use crate::event::{Codec, Event};
use crate::outbox::{Frame, Outbox, OutboxLimits};

/// Encodes events as short text lines and counts how often it is called.
pub(super) struct TestCodec {
    key: u64,
    pub(super) calls: AtomicU64,
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

pub(super) fn codec(key: u64) -> Arc<TestCodec> {
    Arc::new(TestCodec {
        key,
        calls: AtomicU64::new(0),
    })
}

pub(super) fn conn(hub: &Hub, name: &str, codec: Arc<TestCodec>, limits: OutboxLimits) -> Conn {
    hub.register("/", Some(name), Arc::new(Outbox::new(limits)), codec)
}

pub(super) fn drain(c: &Conn) -> Vec<String> {
    let mut out = Vec::new();
    let _ = c.outbox().try_batch(&mut out);
    out.iter()
        .map(|f| String::from_utf8(f.bytes().to_vec()).unwrap())
        .collect()
}
