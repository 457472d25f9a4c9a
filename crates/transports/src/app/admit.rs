//! Admitting a new client, whatever its transport: without a connect hook
//! every client is in, anonymous, under the name it asked for; with one the
//! backend says who it is (user, name, info, rooms to join) or refuses it.
//! Each transport renders a refusal in its own terms (Socket.IO
//! `connect_error` with `data`, `/ws` error and close code, TCP `error` and
//! close); the decision and its counting are here, once.
//!
//! A later sign-in (`/ws` op `auth`, TCP `/auth TOKEN`) asks the same hook
//! ([`Op::Auth`](super::Op::Auth)).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{Map, Value as Json};
use volna_hub::{CloseReason, Codec, Conn, Hub, Identity, Outbox};

use super::Context;
use crate::hooks::{connect_body, ConnectGrant, Hook, HookAnswer};

/// What a transport knows of a client that has just arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Its client id, chosen before it is registered (Socket.IO: the socket
    /// id; otherwise [`Hub::new_client_id`](volna_hub::Hub::new_client_id)).
    pub client: Arc<str>,
    /// `tcp`, `websocket` or `polling`.
    pub transport: &'static str,
    /// `line`, `json` or `socketio`.
    pub protocol: &'static str,
    /// The peer's address, if known.
    pub remote_addr: Option<SocketAddr>,
    /// The display name it asked for.
    pub name: Option<String>,
    /// What it sent to identify itself: the Socket.IO `auth` object, the
    /// `/ws` query's `token`, the `/auth` line's token.
    pub data: Json,
    /// The request headers the hook may see (already filtered).
    pub headers: Map<String, Json>,
}

/// The decision on an [`Arrival`].
pub type Admission = Result<Grant, Refusal>;

/// In: who the client is, the name it takes, the rooms it joins at once.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Who it is.
    pub identity: Identity,
    /// The name it takes (the hook's, else the one it asked for).
    pub name: Option<String>,
    /// Rooms it joins at once.
    pub rooms: Vec<String>,
    /// An anonymous client of a server that wants users: it must sign in
    /// within this long.
    pub sign_in_by: Option<std::time::Duration>,
}

/// Out, with a close code (3000–4999) and a reason for the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `4403` for a backend's `error`, its own code for a `disconnect`,
    /// `4503` when the backend failed.
    pub code: u16,
    /// Why, in words.
    pub reason: String,
}

impl Grant {
    /// Registers the admitted client in namespace `nsp` and joins it to the
    /// granted rooms (a room it cannot join is logged, not fatal).
    pub fn register(
        self,
        hub: &Hub,
        nsp: &str,
        outbox: Arc<Outbox>,
        codec: Arc<dyn Codec>,
    ) -> Conn {
        let expires = self.identity.expires;
        let conn = hub.register_as(nsp, self.name.as_deref(), self.identity, outbox, codec);
        for room in &self.rooms {
            if let Err(e) = conn.join(room) {
                tracing::info!(client = %conn.client(), %room, error = %e, "a room the connect hook granted could not be joined");
            }
        }
        if expires.is_some() {
            watch_expiry(hub, conn.id(), conn.client());
        }
        if let Some(within) = self.sign_in_by {
            require_sign_in(hub, conn.id(), conn.client(), within);
        }
        conn
    }
}

/// The close code of a client the backend refused with an `error`.
pub const REFUSED_BY_BACKEND: u16 = 4403;
/// The close code of a client refused because the backend failed.
pub const BACKEND_UNAVAILABLE: u16 = 4503;

/// Whether new clients wait for the connect hook.
pub fn has_connect_hook(ctx: &Context) -> bool {
    ctx.hooks.is_on(Hook::Connect)
}

/// The headers of `headers` the connect hook is allowed to see.
pub fn passed_headers(ctx: &Context, headers: &HeaderMap) -> Map<String, Json> {
    ctx.hooks
        .passed_headers()
        .iter()
        .filter_map(|h| {
            let v = headers.get(h.as_str())?.to_str().ok()?;
            Some((h.clone(), Json::from(v)))
        })
        .collect()
}

/// The close code of a client refused for want of valid credentials.
pub const UNAUTHORIZED: u16 = 4401;

/// How long a `/ws` or TCP client of a server that refuses anonymous
/// clients has to sign in (`auth`) before it is closed.
pub const SIGN_IN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The token the client sent, if any.
fn token_of(arrival: &Arrival) -> Option<&str> {
    arrival.data.get("token").and_then(Json::as_str)
}

/// Whether the client's token names a key the JWKS URL may have now.
fn wants_fresh_keys(ctx: &Context, arrival: &Arrival) -> bool {
    match (&ctx.tokens, token_of(arrival)) {
        (Some(tokens), Some(token)) => tokens.wants_refresh(token),
        _ => false,
    }
}

/// What the client's token says, if it sent one and the server has keys:
/// `Ok(None)` when there is nothing to check.
fn from_token(ctx: &Context, arrival: &Arrival) -> Result<Option<Grant>, Refusal> {
    let Some(tokens) = &ctx.tokens else {
        return Ok(None);
    };
    let Some(token) = token_of(arrival) else {
        return Ok(None);
    };
    let claims = tokens.verify(token).map_err(|e| Refusal {
        code: UNAUTHORIZED,
        reason: e.to_string(),
    })?;
    Ok(Some(Grant {
        identity: Identity {
            client: Some(arrival.client.clone()),
            user: Some(Arc::from(claims.user)),
            info: claims
                .info
                .and_then(|i| serde_json::value::to_raw_value(&i).ok())
                .map(Arc::from),
            transport: arrival.transport,
            expires: Some(claims.expires),
            rooms: claims.rooms.map(Arc::from),
        },
        name: claims.name.or_else(|| arrival.name.clone()),
        rooms: Vec::new(),
        sign_in_by: None,
    }))
}

/// An anonymous client: in, unless the server refuses anonymous clients —
/// then a client that can still sign in (TCP, `/ws`) is in until it does
/// (or [`SIGN_IN_WITHIN`] passes), any other refused.
fn anonymous(ctx: &Context, arrival: &Arrival) -> Admission {
    let can_sign_in_later = arrival.protocol != "socketio";
    if !ctx.anonymous && !can_sign_in_later {
        return Err(Refusal {
            code: UNAUTHORIZED,
            reason: "unauthorized: this server admits signed-in users only; send a token".into(),
        });
    }
    Ok(Grant {
        identity: Identity {
            client: Some(arrival.client.clone()),
            transport: arrival.transport,
            ..Identity::default()
        },
        name: arrival.name.clone(),
        rooms: Vec::new(),
        sign_in_by: (!ctx.anonymous).then_some(SIGN_IN_WITHIN),
    })
}

/// The decision without waiting, when there is no connect hook: the
/// token's identity, or an anonymous client. `None`: the hook must be asked
/// ([`admit`]).
pub fn admit_now(ctx: &Context, arrival: &Arrival) -> Option<Admission> {
    if has_connect_hook(ctx) || wants_fresh_keys(ctx, arrival) {
        return None;
    }
    Some(decide_now(ctx, arrival))
}

/// [`admit_now`]'s decision, with the keys as they are.
fn decide_now(ctx: &Context, arrival: &Arrival) -> Admission {
    let admission = match from_token(ctx, arrival) {
        Ok(Some(grant)) => Ok(grant),
        Ok(None) => anonymous(ctx, arrival),
        Err(refusal) => Err(refusal),
    };
    if admission.is_err() {
        super::count_bad_input(&ctx.hub);
    }
    admission
}

/// Decides on a new client: its token checked, then the connect hook asked
/// (when there is one). A refusal is counted as bad input.
pub async fn admit(ctx: &Context, arrival: Arrival) -> Admission {
    if wants_fresh_keys(ctx, &arrival) {
        if let (Some(tokens), Some(token)) = (&ctx.tokens, token_of(&arrival)) {
            tokens.refresh_for(token).await;
        }
    }
    if !has_connect_hook(ctx) {
        return decide_now(ctx, &arrival);
    }
    let from_token = match from_token(ctx, &arrival) {
        Ok(grant) => grant,
        Err(refusal) => {
            super::count_bad_input(&ctx.hub);
            return Err(refusal);
        }
    };
    let transport = arrival.transport;
    let body = connect_body(
        &arrival.client,
        arrival.transport,
        arrival.protocol,
        arrival.remote_addr,
        arrival.name.as_deref(),
        arrival.data,
        arrival.headers,
    );
    let admission = match ctx.hooks.call(Hook::Connect, &body).await {
        Ok(HookAnswer::Result(result)) => {
            // The hook has the last word; what it leaves out, the token says.
            let hook = ConnectGrant::from_result(&result);
            let token = from_token.map(|g| (g.identity, g.name));
            let (token_id, token_name) = token.unzip();
            let token_id = token_id.unwrap_or_default();
            let user = hook.user.or(token_id.user);
            if user.is_none() && !ctx.anonymous && arrival.protocol == "socketio" {
                super::count_bad_input(&ctx.hub);
                return Err(Refusal {
                    code: UNAUTHORIZED,
                    reason: "unauthorized: this server admits signed-in users only".into(),
                });
            }
            let sign_in_by = (user.is_none() && !ctx.anonymous).then_some(SIGN_IN_WITHIN);
            Ok(Grant {
                identity: Identity {
                    client: Some(arrival.client),
                    user,
                    info: hook.info.or(token_id.info),
                    transport,
                    expires: token_id.expires,
                    rooms: token_id.rooms,
                },
                name: hook.name.or(token_name.flatten()).or(arrival.name),
                rooms: hook.rooms,
                sign_in_by,
            })
        }
        Ok(HookAnswer::Error { message, .. }) => Err(Refusal {
            code: REFUSED_BY_BACKEND,
            reason: message,
        }),
        Ok(HookAnswer::Disconnect { code, reason }) => Err(Refusal { code, reason }),
        Err(failure) => Err(Refusal {
            code: BACKEND_UNAVAILABLE,
            reason: format!("cannot admit you now: {failure}"),
        }),
    };
    if admission.is_err() {
        super::count_bad_input(&ctx.hub);
    }
    admission
}

/// Disconnects connection `id` (`token-expired`) once its credentials
/// expire, unless they were renewed by then (it looks again each time).
pub fn watch_expiry(hub: &Hub, id: volna_hub::ConnId, client: Arc<str>) {
    let hub = hub.clone();
    tokio::spawn(async move {
        loop {
            let Some(expires) = hub.expires(id) else {
                return; // gone, or no longer expiring
            };
            let now = volna_hub::now_ms() / 1000;
            if expires <= now {
                hub.disconnect(
                    None,
                    Some(&client),
                    CloseReason::Disconnected {
                        code: UNAUTHORIZED,
                        reason: "token-expired: send a fresh token (refresh) before it expires"
                            .into(),
                    },
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(expires - now)).await;
        }
    });
}

/// Disconnects connection `id` (`unauthorized`) unless it signed in within
/// `within`.
fn require_sign_in(
    hub: &Hub,
    id: volna_hub::ConnId,
    client: Arc<str>,
    within: std::time::Duration,
) {
    let hub = hub.clone();
    tokio::spawn(async move {
        tokio::time::sleep(within).await;
        if hub.client_info(id).is_some_and(|c| c.user.is_empty()) {
            hub.disconnect(
                None,
                Some(&client),
                CloseReason::Disconnected {
                    code: UNAUTHORIZED,
                    reason: "unauthorized: not signed in in time".into(),
                },
            );
        }
    });
}
