//! The application layer: every operation a client can ask for, applied to
//! the hub in one place, whatever transport carried it.
//!
//! A transport only translates: it decodes its wire format into an [`Op`]
//! (TCP lines in `tcp.rs`, `/ws` JSON in `ws/request.rs`, Socket.IO events
//! in `socketio/chat.rs`), calls [`Op::apply`], and renders the [`Reply`] or
//! [`AppError`] back in its own terms. Refusals are counted here, once, as
//! bad input. What a transport adds on top is only its framing: which room
//! a TCP line goes to, a `/ws` request's id, a Socket.IO ack id.
//!
//! Where the backend has a say, the operation waits for it ([`Applied::Later`]):
//! an event a room's policy routes to the rpc hook is answered by the
//! backend instead of relayed; a publication into a room with `publish =
//! "hook"` goes out once the publish hook allows it (with the data it
//! returns, if any); `auth` asks the connect hook.
//!
//! # Layout
//! - `op.rs`: [`Op`], the operations (and their table across transports);
//! - `reply.rs`: [`Reply`] and [`AppError`];
//! - `admit.rs`: admitting a new client ([`admit::admit`]);
//! - `hooked.rs`: the operations the backend's hooks answer or allow;
//! - `tokens.rs`: JWT identity ([`tokens::Tokens`]);
//! - this file: [`Context`] and [`Op::apply`].

pub mod admit;
mod hooked;
mod op;
mod reply;
mod resume;
pub mod tokens;

use volna_hub::{Access, BoxFuture, ClusterWho, Conn, Hub, HubError, Publish, Stats, Verdict};

pub use op::{event_name, Op, MAX_EVENT_NAME, MAX_HISTORY, RESERVED_EVENTS};
pub use reply::{AppError, Reply};

use crate::hooks::{Hook, Hooks};
use crate::images::{self, ImageService};

/// What applying an operation needs besides the connection: shared by every
/// transport of a server.
#[derive(Clone)]
pub struct Context {
    /// The hub.
    pub hub: Hub,
    /// The thumbnail maker; `None` turns image sharing off.
    pub images: Option<ImageService>,
    /// The backend hooks ([`Hooks::none`] when there are none).
    pub hooks: Hooks,
    /// The keys that check clients' tokens; `None`: tokens are not used.
    pub tokens: Option<tokens::Tokens>,
    /// Whether clients without an identity are admitted (the default).
    pub anonymous: bool,
    /// Connections per client address, shared by TCP and HTTP.
    pub ip_gate: crate::ipgate::IpGate,
    /// The counters of `/metrics` this layer and the transports keep.
    pub meters: std::sync::Arc<crate::meters::Meters>,
}

/// The close code of a connection disconnected for flooding.
pub const RATE_LIMITED: u16 = 4429;

/// The result of an operation.
pub type Outcome = Result<Reply, AppError>;

/// An applied operation: answered at once, or later (a cluster-wide `who`
/// waits for the other nodes, an image for the worker pool).
pub enum Applied {
    /// The answer is ready.
    Now(Outcome),
    /// The answer comes when this future resolves. It holds no borrow of the
    /// connection; the transport awaits it or spawns it, as its ordering
    /// rules require.
    Later(BoxFuture<Outcome>),
}

impl Op {
    /// Applies the operation for `conn`. A refusal is counted as bad input.
    ///
    /// An answer that comes later takes one of the connection's places for
    /// pending answers until it is sent: a client cannot pile up backend
    /// calls or image jobs by not waiting for their answers.
    pub fn apply(self, conn: &Conn, ctx: &Context) -> Applied {
        ctx.meters.request(conn.protocol(), self.name());
        match self.apply_unbounded(conn, ctx) {
            Applied::Later(answer) => match conn.begin_pending() {
                // The future has not started: dropped, it did nothing.
                Some(place) => Applied::Later(Box::pin(async move {
                    let outcome = answer.await;
                    drop(place);
                    outcome
                })),
                None => Applied::Now(counted(
                    conn.hub(),
                    Err(AppError::new(
                        "too-many-pending",
                        "too many requests waiting for an answer; wait for some",
                    )),
                )),
            },
            now => now,
        }
    }

    fn apply_unbounded(self, conn: &Conn, ctx: &Context) -> Applied {
        let hub = conn.hub();
        match conn.take_request() {
            Verdict::Allowed => {}
            verdict => {
                let why = "rate-limited: too many requests; slow down";
                if verdict == Verdict::Flooding {
                    hub.disconnect(
                        None,
                        Some(&conn.client()),
                        volna_hub::CloseReason::Disconnected {
                            code: RATE_LIMITED,
                            reason: why.into(),
                        },
                    );
                }
                return Applied::Now(counted(hub, Err(AppError::new("rate-limited", why))));
            }
        }
        if !ctx.anonymous && !matches!(self, Op::Auth { .. }) && conn.user().is_none() {
            // A server for signed-in users: nothing but `auth` before it.
            let why = "unauthorized: sign in first (auth with a token)";
            hub.disconnect(
                None,
                Some(&conn.client()),
                volna_hub::CloseReason::Disconnected {
                    code: admit::UNAUTHORIZED,
                    reason: why.into(),
                },
            );
            return Applied::Now(counted(hub, Err(AppError::new("unauthorized", why))));
        }
        // Who may read a room's members and history: its policy says.
        let read = match &self {
            Op::Who { room } => Some((room, hub.policy(conn.nsp(), room).read_presence)),
            Op::History { room, .. } => Some((room, hub.policy(conn.nsp(), room).read_history)),
            _ => None,
        };
        if let Some((room, access)) = read {
            if let Err(e) = hub.may(conn.id(), access, room) {
                return Applied::Now(counted(hub, Err(e.into())));
            }
        }
        let now = match self {
            Op::Nick { name } => conn.set_name(&name).map(|name| Reply::Nick { name }),
            Op::Join { room, since } => {
                // `join = "hook"` needs the subscribe hook: without it no
                // policy lookup on the way of every join.
                if ctx.hooks.is_on(Hook::Subscribe)
                    && hub.policy(conn.nsp(), &room).join == Access::Hook
                {
                    return hooked::subscribe(ctx, conn, room, since);
                }
                if let Some(log) = since.as_ref().and_then(|s| s.log.clone()) {
                    return resume::across_nodes(conn, room, log);
                }
                match &since {
                    Some(since) => conn.join_since(&room, since),
                    None => conn.join(&room),
                }
                .map(Reply::Join)
            }
            Op::Leave { room } => conn
                .leave(&room)
                .map(|members| Reply::Leave { room, members }),
            Op::Message {
                room,
                data,
                include_self,
            } => {
                // `publish = "hook"` needs the publish hook: without it no
                // policy lookup on the way of every message.
                if ctx.hooks.is_on(Hook::Publish)
                    && hub.policy(conn.nsp(), &room).publish == Publish::Hook
                {
                    return hooked::publish(ctx, conn, room, None, data, include_self);
                }
                conn.publish(&room, data, include_self)
                    .map(Reply::Published)
            }
            Op::Emit {
                event,
                room,
                data,
                include_self,
            } => {
                let (rpc, publish) = (ctx.hooks.is_on(Hook::Rpc), ctx.hooks.is_on(Hook::Publish));
                if rpc || publish {
                    let policy = hub.policy(conn.nsp(), &room);
                    if rpc && policy.routes_to_rpc(&event) {
                        return hooked::rpc(ctx, conn, event, room, data);
                    }
                    if publish && policy.publish == Publish::Hook {
                        return hooked::publish(ctx, conn, room, Some(event), data, include_self);
                    }
                }
                conn.publish_event(&room, event, data, include_self)
                    .map(Reply::Published)
            }
            Op::Auth { data } => return hooked::auth(ctx, conn, data),
            Op::Echo { data } => Ok(Reply::Echo(data)),
            Op::Who { room } if hub.adapter().is_some() => {
                let hub = hub.clone();
                let nsp = conn.nsp().clone();
                return Applied::Later(Box::pin(async move {
                    let who = hub.who_cluster(&nsp, &room).await;
                    counted(&hub, who_reply(room, who))
                }));
            }
            Op::Who { room } => {
                let who = ClusterWho::merge(hub.who(conn.nsp(), &room), None);
                return Applied::Now(counted(hub, who_reply(room, who)));
            }
            Op::Rooms => Ok(Reply::Rooms(hub.rooms(conn.nsp()))),
            Op::History { room, limit } => hub
                .history(conn.nsp(), &room, limit.min(MAX_HISTORY))
                .map(|messages| Reply::History {
                    room: room.clone(),
                    messages,
                })
                .ok_or(HubError::NoSuchRoom(room)),
            Op::Image { room, name, bytes } => {
                let hub = hub.clone();
                let nsp = conn.nsp().clone();
                let from = conn.id();
                let service = ctx.images.clone();
                return Applied::Later(Box::pin(async move {
                    let shared =
                        images::share(&hub, service.as_ref(), from, &nsp, &room, &name, bytes)
                            .await
                            .map(Reply::Published)
                            .map_err(AppError::from);
                    counted(&hub, shared)
                }));
            }
        };
        Applied::Now(counted(hub, now.map_err(AppError::from)))
    }
}

fn who_reply(room: String, who: Option<ClusterWho>) -> Outcome {
    match who {
        Some(who) => Ok(Reply::Who { room, who }),
        None => Err(HubError::NoSuchRoom(room).into()),
    }
}

/// Counts a refusal as bad input.
fn counted(hub: &Hub, outcome: Outcome) -> Outcome {
    if outcome.is_err() {
        Stats::bump(&hub.stats().bad_input);
    }
    outcome
}

/// Counts a request that could not even be decoded into an [`Op`].
pub fn count_bad_input(hub: &Hub) {
    Stats::bump(&hub.stats().bad_input);
}
