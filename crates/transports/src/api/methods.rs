//! The server API's methods, each in Centrifugo's request and result
//! shapes, applied to the hub of namespace `/` (where TCP, `/ws` and the
//! default Socket.IO namespace meet).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};
use volna_hub::{glob_matches, ClientInfo, CloseReason, Data, ServerPublish, USER_ROOM_PREFIX};
use volna_protocols::json::placeholder;

use super::{ApiError, ApiState};
use crate::app::{event_name, MAX_HISTORY};

/// The namespace the API works on.
const NAMESPACE: &str = "/";

/// Longest channel name the API takes.
const MAX_CHANNEL: usize = 255;

/// Most commands in one `batch`.
const MAX_BATCH: usize = 1000;

/// The methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Publish,
    Broadcast,
    Presence,
    PresenceStats,
    History,
    Channels,
    Disconnect,
    Info,
    Batch,
}

impl Method {
    /// Its name in the API's paths and in `/metrics`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::Channels => "channels",
            Method::Disconnect => "disconnect",
            Method::Info => "info",
            Method::Batch => "batch",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Method> {
        Some(match name {
            "publish" => Method::Publish,
            "broadcast" => Method::Broadcast,
            "presence" => Method::Presence,
            "presence_stats" => Method::PresenceStats,
            "history" => Method::History,
            "channels" => Method::Channels,
            "disconnect" => Method::Disconnect,
            "info" => Method::Info,
            "batch" => Method::Batch,
            _ => return None,
        })
    }
}

/// Runs one method (not `batch`) on its parameters.
pub(super) async fn run(
    state: &ApiState,
    method: Method,
    params: &RawValue,
) -> Result<Json, ApiError> {
    match method {
        Method::Publish => publish(state, decode(params)?, decode(params)?),
        Method::Broadcast => broadcast(state, decode(params)?, decode(params)?),
        Method::Presence => presence(state, decode(params)?).await,
        Method::PresenceStats => presence_stats(state, decode(params)?).await,
        Method::History => history(state, decode(params)?),
        Method::Channels => channels(state, decode(params)?),
        Method::Disconnect => disconnect(state, decode(params)?),
        Method::Info => Ok(info(state)),
        Method::Batch => Err(ApiError::bad_request("a batch cannot hold a batch")),
    }
}

/// `batch`'s parameters.
#[derive(Deserialize)]
struct BatchParams<'a> {
    #[serde(borrow)]
    commands: Vec<std::collections::BTreeMap<String, &'a RawValue>>,
}

/// `batch {commands: [{<method>: params}…], parallel?}` →
/// `{"replies": [{<method>: result} | {"error": …}…]}`, in order.
pub(super) async fn batch(state: &ApiState, params: &RawValue) -> Json {
    let commands = match decode::<BatchParams<'_>>(params) {
        Ok(p) if p.commands.len() <= MAX_BATCH => p.commands,
        Ok(_) => {
            let e = ApiError::new(
                ApiError::LIMIT_EXCEEDED,
                format!("at most {MAX_BATCH} commands per batch"),
            );
            return e.json();
        }
        Err(_) => return ApiError::bad_request("batch needs a list of commands").json(),
    };
    let mut replies = Vec::with_capacity(commands.len());
    for command in commands {
        let reply = match command.iter().next().filter(|_| command.len() == 1) {
            Some((name, params)) => match Method::from_name(name).filter(|m| *m != Method::Batch) {
                Some(m) => match Box::pin(run(state, m, params)).await {
                    Ok(result) => json!({ name.as_str(): result }),
                    Err(e) => e.json(),
                },
                None => ApiError::new(
                    ApiError::METHOD_NOT_FOUND,
                    format!("method not found: {name}"),
                )
                .json(),
            },
            None => ApiError::bad_request("a command is an object with one method").json(),
        };
        replies.push(reply);
    }
    json!({ "replies": replies })
}

fn decode<'a, T: Deserialize<'a>>(params: &'a RawValue) -> Result<T, ApiError> {
    serde_json::from_str(params.get()).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn channel(name: &str) -> Result<&str, ApiError> {
    if name.is_empty() || name.len() > MAX_CHANNEL || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a channel is 1 to {MAX_CHANNEL} bytes without control characters"
        )));
    }
    Ok(name)
}

/// What `publish` and `broadcast` send: `data` or `b64data`, and `event`,
/// volna's own field (members receive that application event instead of a
/// `message`).
#[derive(Deserialize)]
struct Publication {
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    event: Option<String>,
}

/// `broadcast`'s channels.
#[derive(Deserialize)]
struct ChannelList {
    channels: Vec<String>,
}

/// The body of a publish: `data` as JSON, or `b64data` as one binary part
/// (a Buffer for Socket.IO clients, an attachment on `/ws`).
fn body(data: Option<Box<RawValue>>, b64data: Option<String>) -> Result<Data, ApiError> {
    match (data, b64data) {
        (_, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("b64data is not base64: {e}")))?;
            Ok(Data {
                json: placeholder(0),
                attachments: vec![Bytes::from(bytes)],
            })
        }
        (Some(json), None) => Ok(Data {
            json,
            attachments: Vec::new(),
        }),
        (None, None) => Err(ApiError::bad_request("publish needs data or b64data")),
    }
}

fn event(name: Option<String>) -> Result<Option<Arc<str>>, ApiError> {
    name.map(|n| event_name(&n).map_err(|e| ApiError::bad_request(e.message)))
        .transpose()
}

fn publish_one(
    state: &ApiState,
    target: &str,
    event: Option<Arc<str>>,
    data: Data,
) -> Result<Json, ApiError> {
    let target = channel(target)?;
    Ok(
        match state.hub.publish_server(NAMESPACE, target, event, data) {
            ServerPublish::Room { message, epoch } => {
                json!({"offset": message.offset, "epoch": &*epoch})
            }
            ServerPublish::Personal(_) | ServerPublish::Nobody => json!({}),
        },
    )
}

fn publish(state: &ApiState, target: ChannelParams, p: Publication) -> Result<Json, ApiError> {
    let data = body(p.data, p.b64data)?;
    publish_one(state, &target.channel, event(p.event)?, data)
}

fn broadcast(state: &ApiState, targets: ChannelList, p: Publication) -> Result<Json, ApiError> {
    let data = body(p.data, p.b64data)?;
    let event = event(p.event)?;
    let responses: Vec<Json> = targets
        .channels
        .iter()
        .map(
            |ch| match publish_one(state, ch, event.clone(), data.clone()) {
                Ok(result) => json!({ "result": result }),
                Err(e) => e.json(),
            },
        )
        .collect();
    Ok(json!({ "responses": responses }))
}

#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

/// The members of a room on every node: this node's, then the others'
/// (their answers to a `fetchSockets`, which carry client id, user and
/// name but not `conn_info`).
async fn members(state: &ApiState, name: &str) -> Result<Vec<ClientInfo>, ApiError> {
    if !state.hub.policy(NAMESPACE, name).presence {
        return Err(ApiError::new(
            ApiError::NOT_AVAILABLE,
            format!("presence is off in {name}"),
        ));
    }
    let mut clients = state.hub.presence(NAMESPACE, name).unwrap_or_default();
    if let Some(adapter) = state.hub.adapter() {
        clients.extend(adapter.who(NAMESPACE, name).await.clients);
    }
    Ok(clients)
}

async fn presence(state: &ApiState, p: ChannelParams) -> Result<Json, ApiError> {
    let name = channel(&p.channel)?;
    let mut presence = Map::new();
    for c in members(state, name).await? {
        let mut info = json!({"client": &*c.client, "user": &*c.user, "name": &*c.name});
        if let Some(conn_info) = &c.info {
            info["conn_info"] = serde_json::from_str(conn_info.get()).unwrap_or(Json::Null);
        }
        presence.insert(c.client.to_string(), info);
    }
    Ok(json!({ "presence": presence }))
}

async fn presence_stats(state: &ApiState, p: ChannelParams) -> Result<Json, ApiError> {
    let name = channel(&p.channel)?;
    let clients = members(state, name).await?;
    let mut users: Vec<&str> = clients
        .iter()
        .map(|c| &*c.user)
        .filter(|u| !u.is_empty())
        .collect();
    users.sort_unstable();
    users.dedup();
    Ok(json!({"num_clients": clients.len(), "num_users": users.len()}))
}

#[derive(Deserialize)]
struct Position {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize)]
struct HistoryParams {
    channel: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    since: Option<Position>,
    #[serde(default)]
    reverse: Option<bool>,
}

/// `history`: as Centrifugo, no `limit` (or 0) gives only the position,
/// `-1` everything kept; without `since` the stream is read from its
/// oldest kept publication (newest with `reverse`), with `since` from just
/// after it — refused with 112 when `since` is of another epoch.
fn history(state: &ApiState, p: HistoryParams) -> Result<Json, ApiError> {
    let name = channel(&p.channel)?;
    let after = p.since.as_ref().map_or(0, |s| s.offset);
    let Some(stream) = state.hub.stream(NAMESPACE, name, after) else {
        return Ok(json!({"publications": [], "offset": 0, "epoch": ""}));
    };
    if let Some(since) = &p.since {
        if stream.mixed {
            return Err(ApiError::new(
                ApiError::UNRECOVERABLE_POSITION,
                "unrecoverable position: the room's history holds several nodes' messages, each numbered by its node",
            ));
        }
        if since.epoch != *stream.epoch {
            return Err(ApiError::new(
                ApiError::UNRECOVERABLE_POSITION,
                "unrecoverable position: the room's epoch changed",
            ));
        }
    }
    let limit = match p.limit {
        None | Some(0) => 0,
        Some(n) if n < 0 => MAX_HISTORY,
        Some(n) => (n as usize).min(MAX_HISTORY),
    };
    let mut messages = stream.messages;
    if p.reverse.unwrap_or(false) {
        messages.reverse();
    }
    let publications: Vec<Json> = messages
        .iter()
        .take(limit)
        .map(|m| {
            let mut tags = json!({"from": &*m.from.name, "ts": m.ts.to_string()});
            if let Some(event) = &m.event {
                tags["event"] = Json::from(&**event);
            }
            let mut publication = json!({
                "data": serde_json::from_str::<Json>(m.data.json.get()).unwrap_or(Json::Null),
                "offset": m.offset,
                "tags": tags,
            });
            if !m.data.attachments.is_empty() {
                let b64 = base64::engine::general_purpose::STANDARD;
                publication["attachments"] =
                    m.data.attachments.iter().map(|a| b64.encode(a)).collect();
            }
            publication
        })
        .collect();
    Ok(json!({"publications": publications, "offset": stream.offset, "epoch": &*stream.epoch}))
}

#[derive(Deserialize)]
struct ChannelsParams {
    #[serde(default)]
    pattern: Option<String>,
}

fn channels(state: &ApiState, p: ChannelsParams) -> Result<Json, ApiError> {
    let mut channels = Map::new();
    for room in state.hub.rooms(NAMESPACE) {
        if p.pattern
            .as_deref()
            .is_none_or(|g| glob_matches(g, &room.name))
        {
            channels.insert(room.name.to_string(), json!({"num_clients": room.members}));
        }
    }
    Ok(json!({ "channels": channels }))
}

#[derive(Deserialize)]
struct DisconnectHow {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct DisconnectParams {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    disconnect: Option<DisconnectHow>,
}

/// The code a client is disconnected with when the request gives none.
const DEFAULT_DISCONNECT_CODE: u16 = 4000;

fn disconnect(state: &ApiState, p: DisconnectParams) -> Result<Json, ApiError> {
    let user = p.user.as_deref().filter(|u| !u.is_empty());
    let client = p.client.as_deref().filter(|c| !c.is_empty());
    if user.is_none() && client.is_none() {
        return Err(ApiError::bad_request("disconnect needs a user or a client"));
    }
    let how = p.disconnect.unwrap_or(DisconnectHow {
        code: None,
        reason: None,
    });
    let code = how.code.unwrap_or(DEFAULT_DISCONNECT_CODE);
    if !(3000..=4999).contains(&code) {
        return Err(ApiError::bad_request("a disconnect code is 3000 to 4999"));
    }
    let reason = how
        .reason
        .unwrap_or_else(|| "disconnected by the server".into());
    state.hub.disconnect(
        user,
        client,
        CloseReason::Disconnected {
            code,
            reason: reason.clone(),
        },
    );
    if let Some(adapter) = state.hub.adapter() {
        // A client id names one connection; a user's personal room all of
        // the user's connections.
        let target = match (client, user) {
            (Some(client), _) => client.to_string(),
            (None, Some(user)) => format!("{USER_ROOM_PREFIX}{user}"),
            (None, None) => unreachable!("checked above"),
        };
        adapter.disconnect(NAMESPACE, vec![target], code, reason);
    }
    Ok(json!({}))
}

fn info(state: &ApiState) -> Json {
    let mut nodes = vec![state.hub.node_info(
        &state.config.node_uid,
        &state.config.node_name,
        state.started.elapsed(),
    )];
    if let Some(adapter) = state.hub.adapter() {
        nodes.extend(adapter.nodes());
    }
    json!({ "nodes": nodes })
}
