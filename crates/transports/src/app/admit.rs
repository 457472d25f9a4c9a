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
use volna_hub::{Codec, Conn, Hub, Identity, Outbox};

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
        let conn = hub.register_as(nsp, self.name.as_deref(), self.identity, outbox, codec);
        for room in &self.rooms {
            if let Err(e) = conn.join(room) {
                tracing::info!(client = %conn.client(), %room, error = %e, "a room the connect hook granted could not be joined");
            }
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

/// The decision without waiting, when there is no connect hook: every
/// client in, anonymous, under the name it asked for. `None`: the hook must
/// be asked ([`admit`]).
pub fn admit_now(ctx: &Context, arrival: &Arrival) -> Option<Admission> {
    if has_connect_hook(ctx) {
        return None;
    }
    Some(Ok(Grant {
        identity: Identity {
            client: Some(arrival.client.clone()),
            transport: arrival.transport,
            ..Identity::default()
        },
        name: arrival.name.clone(),
        rooms: Vec::new(),
    }))
}

/// Decides on a new client: at once without a connect hook, else after
/// asking it. A refusal is counted as bad input.
pub async fn admit(ctx: &Context, arrival: Arrival) -> Admission {
    if let Some(admission) = admit_now(ctx, &arrival) {
        return admission;
    }
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
            let grant = ConnectGrant::from_result(&result);
            Ok(Grant {
                identity: Identity {
                    client: Some(arrival.client),
                    user: grant.user,
                    info: grant.info,
                    transport,
                },
                name: grant.name.or(arrival.name),
                rooms: grant.rooms,
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
