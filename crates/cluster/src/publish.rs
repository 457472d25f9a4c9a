//! The publish loop: drains the queue of [`Out`] items (this node's
//! broadcasts, heartbeats, answers to requests) and publishes them to Redis
//! in order, up to 512 per pipelined round trip. While Redis is down what is
//! queued is dropped and counted; on shutdown what is queued is flushed once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use volna_hub::Hub;

use crate::config::Mode;
use crate::shared::{Out, Shared};
use crate::streams;
use crate::wire::{self, Channels};

/// Publishes queued events in order, many per round trip.
pub(crate) async fn publish_loop(
    shared: Arc<Shared>,
    hub: Hub,
    mut publisher: ConnectionManager,
    mut rx: mpsc::Receiver<Out>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<Out> = Vec::with_capacity(512);
    loop {
        let stopping = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Flush what is queued, once.
                while batch.len() < 8192 {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                true
            }
            n = rx.recv_many(&mut batch, 512) => {
                if n == 0 {
                    break;
                }
                false
            }
        };
        if !batch.is_empty() {
            publish_batch(&shared, &hub, &mut publisher, &mut batch).await;
        }
        if stopping {
            break;
        }
    }
}

/// Publishes `batch` in one pipeline (or drops it, counted, while Redis is
/// down) and empties it. This node's messages waiting for their place in
/// the stream are delivered here at once instead when Redis is down or
/// refuses them: never lost.
async fn publish_batch(
    shared: &Shared,
    hub: &Hub,
    publisher: &mut ConnectionManager,
    batch: &mut Vec<Out>,
) {
    let n = batch.len() as u64;
    let logged = batch.iter().any(|item| matches!(item, Out::Logged { .. }));
    if !shared.up.load(Ordering::Acquire) {
        shared
            .counters
            .publish_dropped
            .fetch_add(n, Ordering::Relaxed);
        batch.clear();
        if logged {
            streams::deliver_unlogged(shared, hub, None);
        }
        return;
    }
    let streams_mode = shared.config.mode == Mode::Streams;
    let mut pipe = redis::pipe();
    for item in batch.drain(..) {
        match item {
            Out::Event(ev) if streams_mode => {
                let (nsp, data) = crate::stream_wire::broadcast_entry(&ev);
                streams::append(&mut pipe, shared, &nsp, &data, None);
            }
            Out::Event(ev) => {
                let (nsp, room, payload) = wire::encode_outgoing(&shared.uid, &ev);
                let channel = match shared.channels.get(&*nsp) {
                    Some(ch) => ch.for_rooms(&[&room]),
                    None => Channels::new(&shared.config.prefix, &nsp).for_rooms(&[&room]),
                };
                pipe.publish(channel, payload).ignore();
            }
            Out::Logged { vseq, msg } => {
                let ev = volna_hub::Outgoing::Message(msg);
                let (nsp, data) = crate::stream_wire::broadcast_entry(&ev);
                streams::append(&mut pipe, shared, &nsp, &data, Some(vseq));
            }
            Out::Session { key, value } => {
                let window = hub.recovery_window().unwrap_or_default();
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(window.as_millis().max(1) as u64)
                    .ignore();
            }
            Out::Raw { channel, payload } => {
                pipe.publish(channel, payload).ignore();
            }
        }
    }
    match pipe.query_async::<()>(publisher).await {
        Ok(()) => {
            shared.counters.published.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            shared
                .counters
                .publish_dropped
                .fetch_add(n, Ordering::Relaxed);
            shared.mark_down(&e);
            if logged {
                streams::deliver_unlogged(shared, hub, None);
            }
        }
    }
}
