//! The publish loop: drains the queue of [`Out`] items (this node's
//! broadcasts, heartbeats, answers to requests) and publishes them to Redis
//! in order, up to 512 per pipelined round trip. While Redis is down what is
//! queued is dropped and counted; on shutdown what is queued is flushed once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::shared::{Out, Shared};
use crate::wire::{self, Channels};

/// Publishes queued events in order, many per round trip.
pub(crate) async fn publish_loop(
    shared: Arc<Shared>,
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
            publish_batch(&shared, &mut publisher, &mut batch).await;
        }
        if stopping {
            break;
        }
    }
}

/// Publishes `batch` in one pipeline (or drops it, counted, while Redis is
/// down) and empties it.
async fn publish_batch(shared: &Shared, publisher: &mut ConnectionManager, batch: &mut Vec<Out>) {
    let n = batch.len() as u64;
    if !shared.up.load(Ordering::Acquire) {
        shared
            .counters
            .publish_dropped
            .fetch_add(n, Ordering::Relaxed);
        batch.clear();
        return;
    }
    let mut pipe = redis::pipe();
    for item in batch.drain(..) {
        match item {
            Out::Event(ev) => {
                let (nsp, room, payload) = wire::encode_outgoing(&shared.uid, &ev);
                let channel = match shared.channels.get(&*nsp) {
                    Some(ch) => ch.for_rooms(&[&room]),
                    None => Channels::new(&shared.config.prefix, &nsp).for_rooms(&[&room]),
                };
                pipe.publish(channel, payload).ignore();
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
        }
    }
}
