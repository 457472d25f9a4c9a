//! Requests between servers on `<prefix>-request#<nsp>#`, answered on
//! `<prefix>-response#<nsp>#`, as `@socket.io/redis-adapter` makes them:
//!
//! - asked by this node: the cluster-wide `who` ([`remote_who`], sent as a
//!   `fetchSockets`) and the Admin UI's socket list ([`remote_fetch`] of
//!   every socket), whose replies are gathered in [`Shared::pending`] by
//!   [`on_response`];
//! - asked by other servers and answered here ([`on_request`]):
//!   `fetchSockets`, `allSockets`, `allRooms`, and broadcasts expecting
//!   acks (delivered, answered with a client count of 0).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tokio::sync::oneshot;
use volna_hub::{ClientInfo, CloseReason, Hub, RemoteMembers};

use crate::counters::bump;
use crate::local::{deliver, local_members};
use crate::shared::{random_id, Out, Pending, Shared};
use crate::wire::{self, RemoteEvent};

/// Members of `room` on the other servers: asks them on the request
/// channel (as `fetchSockets` does) and waits for as many answers as there
/// are other subscribers, at most the request timeout.
pub(crate) async fn remote_who(shared: &Arc<Shared>, nsp: &str, room: &str) -> RemoteMembers {
    bump(&shared.counters.who_requests);
    remote_fetch(shared, nsp, vec![room.to_string()]).await
}

/// The sockets of namespace `nsp` on the other servers that are in any of
/// `rooms` (all of them when empty), as `fetchSockets` asks: the request
/// behind [`remote_who`] and the Admin UI's socket list.
pub(crate) async fn remote_fetch(
    shared: &Arc<Shared>,
    nsp: &str,
    rooms: Vec<String>,
) -> RemoteMembers {
    let partial = || {
        bump(&shared.counters.who_partial);
        RemoteMembers {
            partial: true,
            ..RemoteMembers::default()
        }
    };
    if !shared.up.load(Ordering::Acquire) {
        return partial();
    }
    let Some(ch) = shared.channels.get(nsp) else {
        return RemoteMembers::default();
    };
    let mut publisher = shared.publisher.clone();
    let numsub = tokio::time::timeout(
        shared.config.request_timeout,
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&ch.request)
            .query_async::<redis::Value>(&mut publisher),
    )
    .await;
    let subscribers = match numsub {
        Ok(Ok(v)) => numsub_count(&v),
        _ => return partial(),
    };
    let expected = subscribers.saturating_sub(1);
    if expected == 0 {
        return RemoteMembers::default();
    }
    let request_id = random_id(10);
    let (done_tx, done_rx) = oneshot::channel();
    shared.pending.lock().unwrap().insert(
        request_id.clone(),
        Pending {
            expected,
            got: 0,
            names: Vec::new(),
            clients: Vec::new(),
            sockets: Vec::new(),
            done: Some(done_tx),
        },
    );
    let request = json!({
        "uid": shared.uid,
        "requestId": request_id,
        "type": wire::request::REMOTE_FETCH,
        "opts": {"rooms": rooms, "except": []},
    })
    .to_string();
    let sent = tokio::time::timeout(
        shared.config.request_timeout,
        redis::cmd("PUBLISH")
            .arg(&ch.request)
            .arg(request)
            .query_async::<()>(&mut publisher),
    )
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = tokio::time::timeout(shared.config.request_timeout, done_rx).await;
    }
    let p = shared.pending.lock().unwrap().remove(&request_id);
    let Some(p) = p else {
        return partial();
    };
    if p.got < p.expected {
        bump(&shared.counters.who_partial);
    }
    RemoteMembers {
        names: p.names,
        clients: p.clients,
        sockets: p.sockets,
        partial: p.got < p.expected,
    }
}

/// The count in a `PUBSUB NUMSUB channel` reply (RESP2 array or RESP3 map).
fn numsub_count(v: &redis::Value) -> usize {
    let as_n = |v: &redis::Value| match v {
        redis::Value::Int(n) => Some(*n as usize),
        _ => None,
    };
    match v {
        redis::Value::Array(items) => items.get(1).and_then(as_n).unwrap_or(0),
        redis::Value::Map(pairs) => pairs.first().and_then(|(_, n)| as_n(n)).unwrap_or(0),
        _ => 0,
    }
}

/// Answers another server's request on namespace `nsp`'s request channel
/// (this node's own requests, known by uid or request id, are skipped).
/// The answer is queued for the publish loop.
pub(crate) fn on_request(shared: &Shared, hub: &Hub, nsp: &str, payload: &[u8]) {
    let Some((req, _)) = wire::decode_control(payload) else {
        bump(&shared.counters.decode_errors);
        return;
    };
    let kind = req.get("type").and_then(Json::as_u64);
    let request_id = req
        .get("requestId")
        .and_then(Json::as_str)
        .map(str::to_string);
    if req.get("uid").and_then(Json::as_str) == Some(&shared.uid) {
        return;
    }
    if let Some(id) = &request_id {
        if shared.pending.lock().unwrap().contains_key(id) {
            return;
        }
    }
    let rooms_of = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| match r {
                        Json::String(s) => Some(s.clone()),
                        Json::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let opts = req.get("opts");
    let response = match kind {
        Some(wire::request::REMOTE_FETCH) => {
            let rooms = rooms_of(opts.and_then(|o| o.get("rooms")));
            let except = rooms_of(opts.and_then(|o| o.get("except")));
            if rooms.is_empty() {
                let sockets = all_sockets(hub, nsp, &except);
                json!({"requestId": request_id, "sockets": sockets})
            } else {
                let sockets: Vec<Json> = local_members(hub, nsp, &rooms, &except)
                .into_iter()
                .filter_map(|(id, name, rooms)| {
                    // The id is the client id (a Socket.IO socket's id), as
                    // Node answers with socket ids.
                    let client = hub.client_info(id)?;
                    Some(json!({
                        "id": &*client.client,
                        "handshake": {"headers": {}, "query": {}, "auth": {}, "address": "", "time": "", "issued": 0, "url": "", "xdomain": false, "secure": false},
                        "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
                        "data": {"name": &*name, "user": &*client.user, "volna": true},
                    }))
                })
                .collect();
                json!({"requestId": request_id, "sockets": sockets})
            }
        }
        Some(wire::request::SOCKETS) => {
            let rooms = rooms_of(req.get("rooms"));
            let ids: Vec<String> = local_members(hub, nsp, &rooms, &[])
                .into_iter()
                .filter_map(|(id, _, _)| hub.client_info(id))
                .map(|c| c.client.to_string())
                .collect();
            json!({"requestId": request_id, "sockets": ids})
        }
        Some(wire::request::ALL_ROOMS) => {
            let rooms: Vec<String> = hub
                .rooms(nsp)
                .into_iter()
                .map(|r| r.name.to_string())
                .collect();
            json!({"requestId": request_id, "rooms": rooms})
        }
        Some(wire::request::REMOTE_DISCONNECT) => {
            // `io.in(rooms).disconnectSockets()` from another server, or
            // the server API's `disconnect` on another volna node (which
            // adds its code and reason); nobody waits for an answer.
            let rooms = rooms_of(opts.and_then(|o| o.get("rooms")));
            let targets: Vec<&str> = rooms.iter().map(String::as_str).collect();
            let volna = req.get("volna");
            let code = volna
                .and_then(|v| v.get("code"))
                .and_then(Json::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(4000);
            let reason = volna
                .and_then(|v| v.get("reason"))
                .and_then(Json::as_str)
                .unwrap_or("disconnected by the server")
                .to_string();
            if !targets.is_empty() {
                hub.disconnect_in(nsp, &targets, CloseReason::Disconnected { code, reason });
            }
            return;
        }
        Some(wire::request::BROADCAST) => {
            // A broadcast expecting acks: volna sockets get the event
            // (their acks are not collected), and this node says it
            // waits for none.
            if let Some((rooms, except, event)) = wire::decode_request_packet(payload) {
                let nsp_arc: Arc<str> = Arc::from(nsp);
                let event = match event {
                    RemoteEvent::Emit(mut e) => {
                        e.nsp = nsp_arc;
                        RemoteEvent::Emit(e)
                    }
                    other => other,
                };
                deliver(hub, nsp, &rooms, &except, &event);
                bump(&shared.counters.received);
            }
            json!({"type": wire::request::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": 0})
        }
        _ => {
            tracing::debug!(?kind, "ignoring a cluster request volna does not serve");
            return;
        }
    };
    let Some(ch) = shared.channels.get(nsp) else {
        return;
    };
    bump(&shared.counters.requests_answered);
    let _ = shared.tx.try_send(Out::Raw {
        channel: ch.response.clone(),
        payload: response.to_string().into_bytes(),
    });
}

/// Every socket of namespace `nsp` on this node but those in a room of
/// `except`, as `fetchSockets()` answers: `rooms` starts with the socket's
/// own room (its id), and `data._admin` has what the Admin UI shows of a
/// socket of another server (`clientId`, `transport`), as
/// `@socket.io/admin-ui` keeps it there.
fn all_sockets(hub: &Hub, nsp: &str, except: &[String]) -> Vec<Json> {
    hub.connections()
        .into_iter()
        .filter(|c| &*c.nsp == nsp)
        .filter(|c| !c.rooms.iter().any(|r| except.iter().any(|e| **r == **e)))
        .map(|c| {
            let mut rooms: Vec<&str> = vec![&c.client];
            rooms.extend(c.rooms.iter().map(|r| &**r));
            let time = volna_protocols::line::Timestamp(c.since).to_string();
            json!({
                "id": &*c.client,
                "handshake": {"headers": {}, "query": {}, "auth": {}, "address": "", "time": time, "issued": c.since, "url": "", "xdomain": false, "secure": false},
                "rooms": rooms,
                "data": {
                    "name": &*c.name,
                    "user": c.user.as_deref().unwrap_or(""),
                    "protocol": c.protocol,
                    "volna": true,
                    "_admin": {"clientId": &*c.client, "transport": c.transport},
                },
            })
        })
        .collect()
}

/// A reply on a response channel: counted towards the [`Pending`] request
/// it answers (if this node is still waiting), its sockets' names kept.
pub(crate) fn on_response(shared: &Shared, payload: &[u8]) {
    let Some((resp, _)) = wire::decode_control(payload) else {
        return;
    };
    let Some(id) = resp.get("requestId").and_then(Json::as_str) else {
        return;
    };
    let mut pending = shared.pending.lock().unwrap();
    let Some(p) = pending.get_mut(id) else {
        return;
    };
    p.got += 1;
    if let Some(sockets) = resp.get("sockets").and_then(Json::as_array) {
        for s in sockets {
            let data = s.get("data");
            let field = |key: &str| data.and_then(|d| d.get(key)).and_then(Json::as_str);
            let id = s.get("id").and_then(Json::as_str);
            let Some(name) = field("name").or(id) else {
                continue;
            };
            let name: Arc<str> = Arc::from(name);
            p.sockets.push(s.clone());
            p.names.push(name.clone());
            p.clients.push(ClientInfo {
                client: Arc::from(id.unwrap_or("")),
                user: Arc::from(field("user").unwrap_or("")),
                name,
                info: None,
            });
        }
    }
    if p.got >= p.expected {
        if let Some(done) = p.done.take() {
            let _ = done.send(());
        }
    }
}

/// Asks the other servers of namespace `nsp` to disconnect the sockets of
/// `targets`, as `disconnectSockets(true)` does, with volna's code and
/// reason alongside.
pub(crate) fn remote_disconnect(
    shared: &Shared,
    nsp: &str,
    targets: Vec<String>,
    code: u16,
    reason: String,
) {
    let Some(ch) = shared.channels.get(nsp) else {
        return;
    };
    let request = json!({
        "uid": shared.uid,
        "type": wire::request::REMOTE_DISCONNECT,
        "opts": {"rooms": targets, "except": []},
        "close": true,
        "volna": {"code": code, "reason": reason},
    });
    if shared
        .tx
        .try_send(Out::Raw {
            channel: ch.request.clone(),
            payload: request.to_string().into_bytes(),
        })
        .is_err()
    {
        bump(&shared.counters.publish_dropped);
    }
}
