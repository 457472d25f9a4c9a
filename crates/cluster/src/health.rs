//! Redis health: the probe that pings both connections and makes the
//! subscriptions, the health loop that runs it (every 500 ms while Redis is
//! up, backing off to 5 s while it is down), flips [`Shared::up`] and
//! queues this node's heartbeat, and the figures `/health` shows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;
use volna_hub::Hub;

use crate::counters::{bump, get};
use crate::nodes;
use crate::shared::{Out, Shared};

/// The figures `/health` shows under `cluster`.
pub(crate) fn report(shared: &Shared) -> Json {
    let c = &shared.counters;
    json!({
        "node": shared.uid,
        "redis": if shared.up.load(Ordering::Relaxed) { "up" } else { "down" },
        "prefix": shared.config.prefix,
        "published": get(&c.published),
        "publish_dropped": get(&c.publish_dropped),
        "received": get(&c.received),
        "decode_errors": get(&c.decode_errors),
        "redis_outages": get(&c.redis_outages),
        "probes_slow": get(&c.probes_slow),
        "who_requests": get(&c.who_requests),
        "who_partial": get(&c.who_partial),
        "requests_answered": get(&c.requests_answered),
        "nodes_expired": get(&c.nodes_expired),
        "mode": match shared.config.mode {
            crate::config::Mode::PubSub => "pubsub",
            crate::config::Mode::Streams => "streams",
        },
        "sessions_restored": get(&c.sessions_restored),
        "sessions_not_restored": get(&c.sessions_not_restored),
        "delivered_unlogged": get(&c.delivered_unlogged),
        "waiting_for_the_stream": shared.deferred.lock().unwrap().len(),
    })
}

/// Escapes glob characters for PSUBSCRIBE.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Pings both connections and subscribes if not yet done.
pub(crate) async fn probe(
    shared: &Shared,
    subscriber: &mut ConnectionManager,
) -> redis::RedisResult<()> {
    let mut publisher = shared.publisher.clone();
    redis::cmd("PING").query_async::<()>(&mut publisher).await?;
    redis::cmd("PING").query_async::<()>(subscriber).await?;
    if !shared.subscribed.load(Ordering::Acquire) {
        // Broadcasts come through pub/sub, or (streams mode) the stream.
        if shared.config.mode == crate::config::Mode::PubSub {
            let pattern = format!("{}#*", glob_escape(&shared.config.prefix));
            subscriber.psubscribe(pattern).await?;
        }
        let mut exact = vec![
            shared.heartbeat_channel.clone(),
            shared.observers_channel.clone(),
        ];
        for ch in shared.channels.values() {
            exact.push(ch.request.clone());
            exact.push(ch.response.clone());
            exact.push(format!("{}{}#", ch.response, shared.uid));
        }
        subscriber.subscribe(exact).await?;
        shared.subscribed.store(true, Ordering::Release);
    }
    Ok(())
}

/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How late the probe's own timeout may fire before the loop counts as
/// stalled (and a missing answer as this node's fault, not Redis's).
const STALL: Duration = Duration::from_millis(250);

/// What a probe found, when it found no fault.
enum Probe {
    /// Both connections answered.
    Answered,
    /// No answer in time, but Redis was answering other commands or
    /// delivering broadcasts meanwhile, this node's loop was stalled, or
    /// it is the first such probe: not judged down (yet).
    Late,
}

/// What Redis did for this node so far: publish batches it took and
/// broadcasts it delivered. Any change means it is alive.
fn traffic(shared: &Shared) -> (u64, u64) {
    (
        get(&shared.counters.published),
        get(&shared.counters.received),
    )
}

/// Probes Redis: every 500 ms while up, with backoff (to 5 s) while down.
/// Publishes the heartbeat.
pub(crate) async fn health_loop(
    shared: Arc<Shared>,
    hub: Hub,
    mut subscriber: ConnectionManager,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    let mut last_beat: Option<Instant> = None;
    // Probes in a row that went unanswered with no sign of Redis.
    let mut unanswered = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        let before = traffic(&shared);
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, probe(&shared, &mut subscriber)).await;
        let probed = match answer {
            Ok(Ok(())) => {
                unanswered = 0;
                Ok(Probe::Answered)
            }
            Ok(Err(e)) if !e.is_timeout() => Err(e),
            // No answer in time. A ping waits behind everything queued on
            // its connection, and its answer needs this node's loop to be
            // read: on a node busy with a flood or starved of CPU, that
            // takes longer than the timeout while Redis is fine. Redis is
            // down only if nothing at all came from it meanwhile, the
            // loop was not stalled (the timeout itself fired on time), and
            // the probe before went unanswered too.
            _ => {
                let stalled = started.elapsed() > PROBE_TIMEOUT + STALL;
                if traffic(&shared) != before {
                    unanswered = 0;
                    Ok(Probe::Late)
                } else if stalled {
                    Ok(Probe::Late)
                } else {
                    unanswered += 1;
                    if unanswered >= 2 {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "two probes unanswered and nothing came from redis meanwhile",
                        )))
                    } else {
                        Ok(Probe::Late)
                    }
                }
            }
        };
        match probed {
            Ok(Probe::Late) => {
                bump(&shared.counters.probes_slow);
                tracing::debug!("redis probe late: a busy node, not yet a dead redis");
            }
            Ok(Probe::Answered) => {
                delay = Duration::from_millis(500);
                if !shared.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %shared.uid, "redis reachable again: cross-node delivery resumed");
                }
                if last_beat.is_none_or(|t| t.elapsed() >= shared.config.heartbeat) {
                    last_beat = Some(Instant::now());
                    let _ = shared.tx.try_send(Out::Raw {
                        channel: shared.heartbeat_channel.clone(),
                        payload: nodes::heartbeat(&shared.uid, &nodes::this_node(&shared, &hub))
                            .into_bytes(),
                    });
                }
            }
            Err(e) => {
                shared.mark_down(&e);
                tracing::debug!(error = %e, "redis probe failed");
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("socket.io"), "socket.io");
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }
}
