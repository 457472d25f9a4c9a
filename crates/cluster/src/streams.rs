//! Streams mode (`@socket.io/redis-streams-adapter` 0.3 on the wire, see
//! [`crate::stream_wire`]): every broadcast is appended to one Redis
//! stream, and every node reads the whole stream in order.
//!
//! - **Writing** (`publish.rs` calls [`append`]): an entry per broadcast,
//!   `XADD <stream> MAXLEN ~ N * uid nsp type data`, pipelined.
//! - **Reading** ([`read_loop`]): `XREAD` from the last id read, on a
//!   connection of its own. Other servers' broadcasts are delivered to the
//!   local members, with the entry id as their offset. A message of this
//!   node's that recovery logs was not delivered when published: the hub
//!   handed it over ([`Adapter::defer_logged`](volna_hub::Adapter)), and it
//!   is delivered here when read back, so every node delivers the log in
//!   one order and a client's last offset says exactly what it has. If the
//!   stream does not give it back within [`DEFER_LIMIT`] (or Redis refused
//!   it) it is delivered without a place and counted: never lost.
//! - **Sessions**: kept with `SET <session prefix><pid> … PX <window>`;
//!   restored ([`RestoreRequest`]) by the reader between two reads: `GET`
//!   and `DEL` the session, check the client's offset is still in the
//!   stream, read what came after it up to the last entry delivered here,
//!   hand that to the socket and wait until it is back in its rooms. The
//!   rest it gets as a member. A Node.js server restores the sessions volna
//!   keeps, and the other way round.
//! - **Redis down**: local delivery goes on (the hub delivers at once while
//!   Redis is down), recovery across nodes answers "no session"; the
//!   reader resumes from its last id when Redis is back, so what other
//!   nodes appended meanwhile is delivered then.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use volna_hub::{Hub, Message, Missed, Restored};

use crate::counters::bump;
use crate::local::accept;
use crate::nodes::Nodes;
use crate::shared::{Restore, RestoreRequest, Shared};
use crate::stream_wire::{self, kind, StreamEntry};
use crate::wire::{RemoteBroadcast, RemoteEvent};

/// How long a message of this node's may wait to be read back before it is
/// delivered here without its place in the stream.
pub(crate) const DEFER_LIMIT: Duration = Duration::from_secs(3);

/// How long one `XREAD` blocks: also how long a recovery may wait for the
/// reader while the stream is idle.
const BLOCK_MS: u64 = 100;

/// How long a recovered socket may take to rejoin its rooms while the
/// reader waits.
const RELEASE_LIMIT: Duration = Duration::from_secs(2);

/// Adds the `XADD` of one entry to `pipe`.
pub(crate) fn append(
    pipe: &mut redis::Pipeline,
    shared: &Shared,
    nsp: &str,
    data: &str,
    vseq: Option<u64>,
) {
    let cmd = pipe
        .cmd("XADD")
        .arg(&shared.config.prefix)
        .arg("MAXLEN")
        .arg("~")
        .arg(shared.config.stream_max_len)
        .arg("*")
        .arg("uid")
        .arg(&shared.uid)
        .arg("nsp")
        .arg(nsp)
        .arg("type")
        .arg(kind::BROADCAST.to_string())
        .arg("data")
        .arg(data);
    if let Some(vseq) = vseq {
        cmd.arg("vseq").arg(vseq);
    }
    cmd.ignore();
}

/// Delivers this node's messages up to `upto` (all with `None`) here
/// without their place in the stream (Redis refused them, or did not give
/// them back in time), oldest first: the order they were published in.
pub(crate) fn deliver_unlogged(shared: &Shared, hub: &Hub, upto: Option<u64>) {
    let mut due: Vec<(u64, crate::shared::Deferred)> = {
        let mut deferred = shared.deferred.lock().unwrap();
        let keys: Vec<u64> = deferred
            .keys()
            .copied()
            .filter(|v| upto.is_none_or(|u| *v <= u))
            .collect();
        keys.into_iter()
            .filter_map(|v| deferred.remove(&v).map(|d| (v, d)))
            .collect()
    };
    due.sort_by_key(|(v, _)| *v);
    for (_, d) in due {
        hub.deliver_logged(&d.msg, d.except);
        bump(&shared.counters.delivered_unlogged);
    }
}

/// A stream id as numbers, for comparing.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, n) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// A stream entry as Redis gives it: its id and its field/value pairs.
type RawEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// The entries of an `XRANGE` reply (or of one stream in an `XREAD`
/// reply): `[[id, [field, value, …]], …]`.
fn entries(reply: &Value) -> Vec<RawEntry> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            let Value::Array(kv) = pair.get(1)? else {
                return None;
            };
            let fields = kv
                .chunks(2)
                .filter_map(|c| Some((bytes(c.first()?)?, bytes(c.get(1)?)?)))
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// The entries of an `XREAD` reply for one stream (nil: none).
fn read_reply(reply: &Value) -> Vec<RawEntry> {
    match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(kv) => kv.get(1).map(entries),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// The stream reader's state.
struct Reader {
    shared: Arc<Shared>,
    hub: Hub,
    nodes: Arc<Mutex<Nodes>>,
    conn: ConnectionManager,
    /// The id of the last entry delivered here.
    last: Option<String>,
}

/// Reads the stream in order until `shutdown`, answering recoveries
/// between reads.
pub(crate) async fn read_loop(
    shared: Arc<Shared>,
    hub: Hub,
    nodes: Arc<Mutex<Nodes>>,
    conn: ConnectionManager,
    mut restores: mpsc::Receiver<RestoreRequest>,
    shutdown: CancellationToken,
) {
    let mut r = Reader {
        shared,
        hub,
        nodes,
        conn,
        last: None,
    };
    let mut waiting: Vec<RestoreRequest> = Vec::new();
    while !shutdown.is_cancelled() {
        r.deliver_overdue();
        if r.last.is_none() {
            match r.start_position().await {
                Ok(id) => {
                    *r.shared.position.lock().unwrap() = Some(Arc::from(id.as_str()));
                    r.last = Some(id);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stream reader: no start position yet");
                    pause(&shutdown, Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        while let Ok(req) = restores.try_recv() {
            waiting.push(req);
        }
        let mut ready = Vec::new();
        for req in std::mem::take(&mut waiting) {
            // A client may have an offset this reader has not reached yet
            // (another node delivered it first): read on before answering.
            let behind = r
                .last
                .as_deref()
                .is_some_and(|last| id_key(&req.offset) > id_key(last));
            if behind && req.since.elapsed() < RELEASE_LIMIT {
                waiting.push(req);
            } else {
                ready.push(req);
            }
        }
        if !ready.is_empty() {
            r.restore(ready).await;
        }
        let last = r.last.clone().unwrap_or_else(|| "0-0".into());
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&r.shared.config.prefix)
            .arg(&last);
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = xread.query_async::<Value>(&mut r.conn) => read,
        };
        match read {
            Ok(reply) => {
                let mut read_any = false;
                for (id, fields) in read_reply(&reply) {
                    r.on_entry(&id, &fields);
                    r.last = Some(id);
                    read_any = true;
                }
                if read_any {
                    *r.shared.position.lock().unwrap() = r.last.as_deref().map(Arc::from);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "stream read failed");
                pause(&shutdown, Duration::from_millis(200)).await;
            }
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

impl Reader {
    /// The id of the stream's newest entry (`0-0` when empty): reading
    /// starts after it, with no gap between finding it and the first read.
    async fn start_position(&mut self) -> redis::RedisResult<String> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.shared.config.prefix)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn)
            .await?;
        Ok(entries(&reply)
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id))
    }

    /// Delivers this node's messages the stream did not give back in time
    /// (and those published before them).
    fn deliver_overdue(&self) {
        let overdue = {
            let deferred = self.shared.deferred.lock().unwrap();
            deferred
                .iter()
                .filter(|(_, d)| d.since.elapsed() > DEFER_LIMIT)
                .map(|(v, _)| *v)
                .max()
        };
        if overdue.is_some() {
            deliver_unlogged(&self.shared, &self.hub, overdue);
        }
    }

    fn on_entry(&mut self, id: &str, fields: &[(Vec<u8>, Vec<u8>)]) {
        let entry = match stream_wire::parse_entry(id, fields) {
            Ok(e) => e,
            Err(e) => {
                bump(&self.shared.counters.decode_errors);
                tracing::debug!(error = %e, "ignoring an unreadable stream entry");
                return;
            }
        };
        if entry.uid == self.shared.uid {
            // Ours: delivered when published, unless it waits for its place.
            if let Some(vseq) = entry.vseq {
                let deferred = self.shared.deferred.lock().unwrap().remove(&vseq);
                if let Some(d) = deferred {
                    if self.hub.recovery_window().is_some() {
                        let _ = d.msg.cluster_offset.set(entry.id.clone());
                    }
                    self.hub.deliver_logged(&d.msg, d.except);
                }
            }
            return;
        }
        if entry.kind != kind::BROADCAST {
            // socketsJoin / socketsLeave / disconnectSockets: not served.
            return;
        }
        let inc = match stream_wire::entry_broadcast(&entry, self.hub.recovery_window().is_some()) {
            Ok(inc) => inc,
            Err(e) => {
                bump(&self.shared.counters.decode_errors);
                tracing::debug!(error = %e, "ignoring an unreadable stream broadcast");
                return;
            }
        };
        accept(&self.shared, &self.hub, &self.nodes, &inc);
    }

    /// Answers the recoveries waiting now, all at once (a node drained
    /// elsewhere sends hundreds together): their sessions and what their
    /// rooms had after each client's offset, up to the last entry delivered
    /// here, fetched concurrently; then waits until every socket is back in
    /// its rooms before reading on.
    async fn restore(&mut self, reqs: Vec<RestoreRequest>) {
        let last = self.last.clone().unwrap_or_else(|| "0-0".into());
        let shared = &self.shared;
        let found = futures_util::future::join_all(
            reqs.iter().map(|req| fetch_session(shared, &last, req)),
        )
        .await;
        let mut releases = Vec::with_capacity(reqs.len());
        for (req, found) in reqs.into_iter().zip(found) {
            let restored = found.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "session restore failed");
                None
            });
            let Some(mut restored) = restored else {
                bump(&shared.counters.sessions_not_restored);
                let _ = req.reply.send(None);
                continue;
            };
            let (released_tx, released) = oneshot::channel::<()>();
            restored.release = Box::new(move || {
                let _ = released_tx.send(());
            });
            if req.reply.send(Some(restored)).is_ok() {
                bump(&shared.counters.sessions_restored);
                releases.push(released);
            }
        }
        let _ = tokio::time::timeout(RELEASE_LIMIT, futures_util::future::join_all(releases)).await;
    }
}

/// One recovery's session (or room) and what it missed after its offset,
/// up to `last`, the last entry delivered here.
async fn fetch_session(
    shared: &Shared,
    last: &str,
    req: &RestoreRequest,
) -> redis::RedisResult<Option<Restored>> {
    if !stream_wire::is_entry_id(&req.offset) {
        return Ok(None);
    }
    let stream = &shared.config.prefix;
    let mut conn = shared.publisher.clone();
    // As the reference: the session is taken (GET and DEL at once) and
    // the offset must still be in the stream, else what the client
    // missed cannot be told.
    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Restore::Session { pid } = &req.what {
        let key = format!("{}{pid}", shared.config.session_prefix);
        pipe.cmd("GET").arg(&key).cmd("DEL").arg(&key).ignore();
    }
    pipe.cmd("XRANGE")
        .arg(stream)
        .arg(&req.offset)
        .arg(&req.offset);
    let (stored, found): (Option<Vec<u8>>, Value) = match req.what {
        Restore::Session { .. } => pipe.query_async(&mut conn).await?,
        Restore::Room { .. } => {
            let (found,): (Value,) = pipe.query_async(&mut conn).await?;
            (None, found)
        }
    };
    if entries(&found).is_empty() {
        return Ok(None);
    }
    let session = match (&req.what, stored) {
        (Restore::Room { room }, _) => stream_wire::StoredSession {
            identity: volna_hub::Identity::default(),
            name: None,
            rooms: vec![Arc::from(room.as_str())],
        },
        (Restore::Session { .. }, None) => return Ok(None),
        (Restore::Session { .. }, Some(stored)) => match stream_wire::decode_session(&stored) {
            Ok(s) => s,
            Err(e) => {
                bump(&shared.counters.decode_errors);
                tracing::debug!(error = %e, "unreadable session");
                return Ok(None);
            }
        },
    };
    // A room resume takes what was sent to that room; a session, what
    // reached any of its rooms or its id (the reference's filter).
    let room_only = matches!(req.what, Restore::Room { .. });
    let sid = session
        .identity
        .client
        .clone()
        .unwrap_or_else(|| Arc::from(""));
    let mut missed = Vec::new();
    if id_key(&req.offset) < id_key(last) {
        let reply: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("({}", req.offset))
            .arg(last)
            .query_async(&mut conn)
            .await?;
        for (id, fields) in entries(&reply) {
            let Ok(entry) = stream_wire::parse_entry(&id, &fields) else {
                continue;
            };
            if let Some(m) = missed_event(&entry, &req.nsp, &session.rooms, &sid, room_only) {
                missed.push(m);
            }
        }
    }
    Ok(Some(Restored {
        identity: session.identity,
        name: session.name,
        rooms: session.rooms,
        missed,
        release: Box::new(|| {}),
    }))
}

/// What an entry gives a restored session of `nsp` in `rooms`, if
/// anything: broadcasts of its namespace to one of its rooms (or to its
/// id, or to everyone), with the entry id as their offset.
fn missed_event(
    entry: &StreamEntry,
    nsp: &str,
    rooms: &[Arc<str>],
    sid: &str,
    room_only: bool,
) -> Option<Missed> {
    if entry.kind != kind::BROADCAST || &*entry.nsp != nsp {
        return None;
    }
    let RemoteBroadcast {
        rooms: to,
        except,
        event,
        ..
    } = stream_wire::entry_broadcast(entry, true).ok()?;
    let reached = if room_only {
        to.iter().any(|r| rooms.iter().any(|x| **x == **r))
    } else {
        stream_wire::reaches(rooms, sid, &to, &except)
    };
    if !reached {
        return None;
    }
    match event {
        RemoteEvent::Message(m) => {
            let _ = m.cluster_offset.set(entry.id.clone());
            Some(Missed::Message(Arc::new(m)))
        }
        RemoteEvent::Emit(e) => Some(Missed::Emit(Arc::new(e))),
        RemoteEvent::Presence(_) => None,
    }
}

/// A message of this node's for the stream to order: kept until read back.
/// Queued even while Redis is down, so that the publish loop delivers it
/// after those published before it (false only when the queue is full).
pub(crate) fn defer(
    shared: &Shared,
    msg: &Arc<Message>,
    except: Option<volna_hub::ConnId>,
) -> bool {
    let vseq = shared.next_vseq.fetch_add(1, Ordering::Relaxed);
    shared.deferred.lock().unwrap().insert(
        vseq,
        crate::shared::Deferred {
            msg: msg.clone(),
            except,
            since: Instant::now(),
        },
    );
    let queued = shared.tx.try_send(crate::shared::Out::Logged {
        vseq,
        msg: msg.clone(),
    });
    if queued.is_err() {
        shared.deferred.lock().unwrap().remove(&vseq);
        bump(&shared.counters.publish_dropped);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_in_both_protocols() {
        let entry = |id: &str| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"uid".to_vec()),
                    Value::BulkString(b"x".to_vec()),
                ]),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"socket.io".to_vec()),
            Value::Array(vec![entry("1-0"), entry("1-1")]),
        ])]);
        let got: Vec<String> = read_reply(&resp2).into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec!["1-0", "1-1"]);
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"socket.io".to_vec()),
            Value::Array(vec![entry("2-0")]),
        )]);
        assert_eq!(read_reply(&resp3).len(), 1);
        assert!(read_reply(&Value::Nil).is_empty());
        assert!(id_key("10-2") > id_key("9-9") && id_key("10-2") < id_key("10-10"));
    }
}
