//! The operations a backend hook answers or allows: an event for the rpc
//! hook, a publication the publish hook must allow, a sign-in through the
//! connect hook. Each is an [`Applied::Later`]: the future holds ids, not
//! the connection, and the transport awaits or spawns it as its ordering
//! rules require.

use std::sync::Arc;

use serde_json::Value as Json;
use volna_hub::{CloseReason, Conn, Data, HubError};

use super::admit::{self, Arrival, Refusal};
use super::{counted, AppError, Applied, Context, Reply};
use crate::hooks::{
    publish_body, result_data, rpc_body, subscribe_body, Caller, Hook, HookAnswer, HookFailure,
};

/// Who `conn` is, for a hook's body.
fn caller<'a>(conn: &Conn, client: &'a str, user: &'a Option<Arc<str>>) -> Caller<'a> {
    Caller {
        client,
        user: user.as_deref().unwrap_or(""),
        transport: conn.transport(),
    }
}

/// A backend's refusal or failure as the client's error; a `disconnect`
/// answer also disconnects the client.
fn refusal(ctx: &Context, client: &str, answer: Result<HookAnswer, HookFailure>) -> AppError {
    match answer {
        Ok(HookAnswer::Error { code, message }) => AppError {
            backend_code: Some(code),
            ..AppError::new("refused", message)
        },
        Ok(HookAnswer::Disconnect { code, reason }) => {
            ctx.hub.disconnect(
                None,
                Some(client),
                CloseReason::Disconnected {
                    code,
                    reason: reason.clone(),
                },
            );
            AppError::new("refused", reason)
        }
        Ok(HookAnswer::Result(_)) => AppError::new("refused", "the backend said nothing"),
        Err(failure) => AppError::new("hook-unavailable", failure.to_string()),
    }
}

/// An event the rpc hook answers instead of the room relaying it.
pub(super) fn rpc(
    ctx: &Context,
    conn: &Conn,
    event: Arc<str>,
    room: String,
    data: Data,
) -> Applied {
    let ctx = ctx.clone();
    let (client, user) = (conn.client(), conn.user());
    let body = rpc_body(caller(conn, &client, &user), &event, Some(&room), &data);
    Applied::Later(Box::pin(async move {
        let answer = ctx.hooks.call(Hook::Rpc, &body).await;
        let outcome = match answer {
            Ok(HookAnswer::Result(result)) => Ok(Reply::Answered {
                event,
                data: result_data(&result).unwrap_or_else(|| Data {
                    json: serde_json::value::to_raw_value(&Json::Null).expect("null"),
                    attachments: Vec::new(),
                }),
            }),
            other => Err(refusal(&ctx, &client, other)),
        };
        counted(&ctx.hub, outcome)
    }))
}

/// A publication into a room whose policy says `publish = "hook"`: out once
/// the publish hook allows it, with the data it returns if it returns any.
pub(super) fn publish(
    ctx: &Context,
    conn: &Conn,
    room: String,
    event: Option<Arc<str>>,
    data: Data,
    include_self: bool,
) -> Applied {
    let hub = conn.hub();
    if !hub.is_member(conn.nsp(), &room, conn.id()) {
        // Nobody's hook is asked for what the hub would refuse anyway.
        let refused = if hub.who(conn.nsp(), &room).is_some() {
            HubError::NotMember(room)
        } else {
            HubError::NoSuchRoom(room)
        };
        return Applied::Now(counted(hub, Err(refused.into())));
    }
    let ctx = ctx.clone();
    let (id, nsp) = (conn.id(), conn.nsp().clone());
    let (client, user) = (conn.client(), conn.user());
    let body = publish_body(caller(conn, &client, &user), &room, event.as_deref(), &data);
    Applied::Later(Box::pin(async move {
        let answer = ctx.hooks.call(Hook::Publish, &body).await;
        let outcome = match answer {
            Ok(HookAnswer::Result(result)) => {
                let data = result_data(&result).unwrap_or(data);
                ctx.hub
                    .publish_as(id, &nsp, &room, event, data, include_self)
                    .map(Reply::Published)
                    .map_err(AppError::from)
            }
            other => Err(refusal(&ctx, &client, other)),
        };
        counted(&ctx.hub, outcome)
    }))
}

/// A join into a room whose policy says `join = "hook"`: made once the
/// subscribe hook allows it.
pub(super) fn subscribe(
    ctx: &Context,
    conn: &Conn,
    room: String,
    since: Option<volna_hub::Since>,
) -> Applied {
    // Nobody's hook is asked about a name the hub would refuse anyway.
    if let Err(e) = volna_protocols::line::validate_room(&room) {
        return Applied::Now(counted(conn.hub(), Err(HubError::from(e).into())));
    }
    if room.starts_with(volna_hub::USER_ROOM_PREFIX) {
        return Applied::Now(counted(
            conn.hub(),
            Err(HubError::ReservedRoom(room).into()),
        ));
    }
    let ctx = ctx.clone();
    let id = conn.id();
    let (client, user) = (conn.client(), conn.user());
    let body = subscribe_body(caller(conn, &client, &user), &room);
    Applied::Later(Box::pin(async move {
        let answer = ctx.hooks.call(Hook::Subscribe, &body).await;
        let outcome = match answer {
            Ok(HookAnswer::Result(_)) => ctx
                .hub
                .join_approved(id, &room, since.as_ref())
                .map(Reply::Join)
                .map_err(AppError::from),
            other => Err(refusal(&ctx, &client, other)),
        };
        counted(&ctx.hub, outcome)
    }))
}

/// A sign-in, or a fresh token: the token is checked and the connect hook
/// asked (whichever the server has) with what the client sent, and the
/// connection becomes who they say (user, info, name, rooms, expiry). A
/// connection signed in as one user cannot become another.
pub(super) fn auth(ctx: &Context, conn: &Conn, data: Json) -> Applied {
    if !admit::has_connect_hook(ctx) && ctx.tokens.is_none() {
        return Applied::Now(counted(
            &ctx.hub,
            Err(AppError::new(
                "no-auth",
                "this server has neither token keys nor a connect hook: there is nothing to sign in to",
            )),
        ));
    }
    let ctx = ctx.clone();
    let id = conn.id();
    let before = conn.user();
    let arrival = Arrival {
        client: conn.client(),
        transport: conn.transport(),
        protocol: "auth",
        remote_addr: None,
        name: Some(conn.name().to_string()),
        data,
        headers: Default::default(),
    };
    Applied::Later(Box::pin(async move {
        let client = arrival.client.clone();
        match admit::admit(&ctx, arrival).await {
            Ok(grant) if grant.identity.user.is_none() => Err(AppError::new(
                "unauthorized",
                "no identity in what you sent: send a token",
            )),
            Ok(grant) if before.is_some() && grant.identity.user != before => Err(AppError::new(
                "forbidden",
                "you are signed in as another user: a fresh token must be for the same user",
            )),
            Ok(grant) => {
                let user = grant.identity.user.clone();
                let watch = ctx.hub.expires(id).is_none() && grant.identity.expires.is_some();
                ctx.hub.identify(id, grant.identity);
                if watch {
                    admit::watch_expiry(&ctx.hub, id, client.clone());
                }
                if let Some(n) = grant.name.filter(|_| before.is_none()) {
                    if let Err(e) = ctx.hub.rename(id, &n) {
                        tracing::info!(%client, name = %n, error = %e, "the name the token or hook gave could not be taken");
                    }
                }
                for room in &grant.rooms {
                    if let Err(e) = ctx.hub.join_as(id, room) {
                        tracing::info!(%client, %room, error = %e, "a room the connect hook granted could not be joined");
                    }
                }
                Ok(Reply::Identified {
                    user,
                    name: ctx
                        .hub
                        .client_info(id)
                        .map_or_else(|| Arc::from(""), |c| c.name),
                })
            }
            Err(Refusal { code, reason }) => {
                if code != admit::REFUSED_BY_BACKEND
                    && code != admit::BACKEND_UNAVAILABLE
                    && code != admit::UNAUTHORIZED
                {
                    ctx.hub.disconnect(
                        None,
                        Some(&client),
                        CloseReason::Disconnected {
                            code,
                            reason: reason.clone(),
                        },
                    );
                }
                let code = match code {
                    admit::BACKEND_UNAVAILABLE => "hook-unavailable",
                    admit::UNAUTHORIZED if reason.starts_with("token-expired") => "token-expired",
                    admit::UNAUTHORIZED => "unauthorized",
                    _ => "refused",
                };
                // Counted by admit already.
                Err(AppError::new(code, reason))
            }
        }
    }))
}
