//! The receive loop: reads what the subscribed connection pushes and routes
//! it. Broadcasts (pattern `<prefix>#*`) are delivered to the local members
//! they target; heartbeats go to [`Nodes`]; requests and responses to
//! `requests.rs`; what other nodes' observers sent to this node's hub
//! observer. Every heartbeat period the loop also sweeps silent nodes.
//! A lost subscription marks Redis down.

use std::sync::{Arc, Mutex};

use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use volna_hub::Hub;

use crate::counters::bump;
use crate::local::accept;
use crate::nodes::Nodes;
use crate::requests;
use crate::shared::Shared;
use crate::wire;

/// The receive loop's state.
struct Receiver {
    shared: Arc<Shared>,
    hub: Hub,
    nodes: Arc<Mutex<Nodes>>,
}

/// Handles what Redis pushes until `shutdown` (or the push channel closes).
pub(crate) async fn receive_loop(
    shared: Arc<Shared>,
    hub: Hub,
    nodes: Arc<Mutex<Nodes>>,
    mut push_rx: mpsc::UnboundedReceiver<PushInfo>,
    shutdown: CancellationToken,
) {
    let mut sweep = tokio::time::interval(shared.config.heartbeat);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rcv = Receiver { nodes, shared, hub };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            push = push_rx.recv() => match push {
                Some(push) => rcv.on_push(push),
                None => break,
            },
            _ = sweep.tick() => rcv.nodes.lock().unwrap().sweep(),
        }
    }
}

/// The bytes of a pushed string.
fn bulk(v: Option<&redis::Value>) -> Option<&[u8]> {
    match v? {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl Receiver {
    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::PMessage => {
                if let Some(payload) = bulk(push.data.get(2)) {
                    self.on_broadcast(payload);
                }
            }
            PushKind::Message => {
                let (Some(channel), Some(payload)) =
                    (bulk(push.data.first()), bulk(push.data.get(1)))
                else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel);
                if channel == self.shared.heartbeat_channel {
                    self.nodes.lock().unwrap().on_heartbeat(payload);
                    return;
                }
                if channel == self.shared.observers_channel {
                    match wire::decode_observers(payload) {
                        Some((uid, _)) if uid == self.shared.uid => {}
                        Some((_, body)) => self.hub.observe_other_node(body),
                        None => bump(&self.shared.counters.decode_errors),
                    }
                    return;
                }
                let found = self.shared.channels.iter().find_map(|(nsp, ch)| {
                    if channel == ch.request {
                        Some((nsp.clone(), true))
                    } else if channel.starts_with(&ch.response) {
                        Some((nsp.clone(), false))
                    } else {
                        None
                    }
                });
                match found {
                    Some((nsp, true)) => {
                        requests::on_request(&self.shared, &self.hub, &nsp, payload)
                    }
                    Some((_, false)) => requests::on_response(&self.shared, payload),
                    None => {}
                }
            }
            PushKind::Disconnection => {
                self.nodes.lock().unwrap().subscription_lost();
                self.shared.mark_down(&"subscription connection lost");
            }
            _ => {}
        }
    }

    /// A broadcast of another server: delivered to the local members it
    /// targets (this node's own broadcasts are skipped).
    fn on_broadcast(&mut self, payload: &[u8]) {
        let inc = match wire::decode_broadcast(payload) {
            Ok(inc) => inc,
            Err(e) => {
                bump(&self.shared.counters.decode_errors);
                tracing::debug!(error = %e, "ignoring an unreadable broadcast");
                return;
            }
        };
        if inc.uid == self.shared.uid {
            return;
        }
        accept(&self.shared, &self.hub, &self.nodes, &inc);
    }
}
