//! One `/ws` or `/ws/echo` connection from the upgrade to the last byte:
//! the read loop (messages, pings, the idle timeout, shutdown), the write
//! loop (whatever the outbox could not write directly, pongs and pings, the
//! error frame and close frame that end the connection) and the closing
//! handshake.
//!
//! Both endpoints run the same [`drive`]; they differ only in what a
//! message does (`/ws` applies requests, the echo queues the message back)
//! and in that `/ws` explains a fatal error in a JSON frame first.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volna_hub::{clock_ms, Batch, CloseReason, Frame, Outbox, OutboxLimits, Stats};
use volna_protocols::websocket::{
    Message, Violation, CLOSE_INVALID_DATA, CLOSE_NORMAL, CLOSE_TOO_BIG,
};

use super::render::{close_for, error_json, Obj};
use super::requests::Requests;
use super::{WsConfig, WsState, NAMESPACE};
use crate::app::admit::{self, Arrival, Refusal};
use crate::websocket::{ReadEnd, Reader, WsSocket};

/// "Never", for disabled timers (30 years, well inside `Instant`'s range).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// What is left to do with the stream once the connection stops serving.
enum AfterOpen {
    /// Keep reading (and ignoring) frames so the close handshake can finish.
    Handshake,
    /// The stream has ended or must not be read again.
    Done,
}

/// What woke the read loop.
enum Wake {
    Read(ReadEnd),
    OutboxClosed,
    Shutdown,
    Idle,
    Ping,
}

/// What differs between the endpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/ws`: fatal errors are explained in a JSON error frame first.
    Json,
    /// `/ws/echo`: nothing but echoes and control frames.
    Echo,
}

/// Serves a `/ws` client on an upgraded socket until it is closed.
pub(super) async fn run(sock: Arc<WsSocket>, mut reader: Reader, state: WsState, arrival: Arrival) {
    let cfg = state.config.clone();
    let app = state.http.app.clone();
    let outbox = Arc::new(Outbox::new(cfg.outbox));
    let grant = match admit::admit(&app, arrival).await {
        Ok(grant) => grant,
        Err(Refusal { code, reason }) => {
            // Told in an error frame, then closed with the code.
            outbox.close(CloseReason::Disconnected { code, reason });
            drive(&sock, &mut reader, &outbox, &state, Endpoint::Json, |_| {
                true
            })
            .await;
            return;
        }
    };
    let conn = grant.register(&app.hub, NAMESPACE, outbox.clone(), state.codec.clone());
    tracing::debug!(id = conn.id(), "websocket client connected");
    let welcome = Obj::with_capacity(160)
        .str("type", "welcome")
        .str("server", "volna")
        .str("version", env!("CARGO_PKG_VERSION"))
        .num("id", conn.id())
        .str("name", &conn.name())
        .num("max_message_size", cfg.max_message_size as u64)
        .num("max_attachments", cfg.max_attachments as u64)
        .num(
            "max_image_bytes",
            app.images
                .as_ref()
                .map_or(0, |i| i.pool().limits().max_bytes as u64),
        )
        .finish();
    let _ = outbox.push_one(Frame::text(welcome));
    let mut requests = Requests::new(conn, cfg.clone(), app);
    // Dropping it (once the connection stops serving) leaves the rooms, so
    // others see the leave at once, not after the closing handshake.
    let on = move |msg: Message| {
        match msg {
            // The decoder has checked the UTF-8 of every text message.
            Message::Text(text) => {
                if let Ok(text) = std::str::from_utf8(&text) {
                    requests.on_text(text);
                }
            }
            Message::Binary(bytes) => requests.on_binary(bytes),
            _ => {}
        }
        true
    };
    drive(&sock, &mut reader, &outbox, &state, Endpoint::Json, on).await;
}

/// `GET /ws/echo`: every text and binary message comes back unchanged.
pub(super) async fn run_echo(sock: Arc<WsSocket>, mut reader: Reader, state: WsState) {
    let cfg = state.config.clone();
    // Room for the largest message twice over: the echo must never be a
    // slow consumer of its own client's biggest message.
    let defaults = OutboxLimits::default();
    let outbox = Arc::new(Outbox::new(OutboxLimits {
        max_frames: defaults.max_frames,
        max_bytes: defaults.max_bytes.max(2 * cfg.echo_max_message_size),
    }));
    let echo = outbox.clone();
    let on = move |msg: Message| {
        let frame = match msg {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(bytes) => Frame::Binary(bytes),
            _ => return true,
        };
        let _ = echo.push_one(frame);
        true
    };
    drive(&sock, &mut reader, &outbox, &state, Endpoint::Echo, on).await;
}

/// Installs the socket as `outbox`'s direct sink, reads into `on` and
/// writes the outbox until the connection closes, then finishes the closing
/// handshake within the grace period.
async fn drive<F>(
    sock: &Arc<WsSocket>,
    reader: &mut Reader,
    outbox: &Arc<Outbox>,
    state: &WsState,
    endpoint: Endpoint,
    mut on: F,
) where
    F: FnMut(Message) -> bool + Send,
{
    let (cfg, shutdown) = (&*state.config, &state.http.shutdown);
    let stats = state.http.app.hub.stats();
    state.flusher.start(&state.tracker, shutdown.clone());
    sock.install(outbox, state.flusher.clone());
    let writer = write_loop(sock, outbox, endpoint);
    tokio::pin!(writer);
    let mut writer_done = false;
    let after = {
        let reading = read_loop(
            sock, reader, outbox, cfg, shutdown, stats, endpoint, &mut on,
        );
        tokio::pin!(reading);
        tokio::select! {
            after = &mut reading => after,
            _ = &mut writer => {
                // The socket failed (the outbox is closed by now).
                writer_done = true;
                reading.await
            }
        }
    };
    outbox.close(CloseReason::TransportClosed);
    drop(on);
    let deadline = Instant::now() + cfg.close_grace;
    if !writer_done {
        let _ = tokio::time::timeout_at(deadline, &mut writer).await;
    }
    if let AfterOpen::Handshake = after {
        // Wait for the client's close (or EOF); anything else is ignored.
        let _ = tokio::time::timeout_at(deadline, reader.run(sock.stream(), &mut |_| true)).await;
    }
    outbox.clear_direct();
}

/// Hands messages to `on` while the connection is open; answers pings,
/// sends its own and enforces the idle timeout.
#[allow(clippy::too_many_arguments)]
async fn read_loop<F>(
    sock: &WsSocket,
    reader: &mut Reader,
    outbox: &Outbox,
    cfg: &WsConfig,
    shutdown: &CancellationToken,
    stats: &Stats,
    endpoint: Endpoint,
    on: &mut F,
) -> AfterOpen
where
    F: FnMut(Message) -> bool + Send,
{
    let idle_ms = cfg
        .idle_timeout
        .map(|d| d.as_millis().min(u128::from(u32::MAX / 4)) as u32);
    // When the client last sent anything (a pong too), on the hub's clock.
    let last = AtomicU32::new(clock_ms());
    let idle = tokio::time::sleep(idle_ms.map_or(FAR_FUTURE, ms_duration));
    tokio::pin!(idle);
    let mut ping = cfg.ping_interval.map(|every| {
        let mut i = tokio::time::interval_at(Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let wake = {
            let mut pass = |msg: Message| {
                last.store(clock_ms(), Ordering::Relaxed);
                match msg {
                    Message::Ping(payload) => {
                        sock.queue_pong(payload);
                        outbox.claim_writer();
                        true
                    }
                    Message::Pong | Message::Close(_) => true,
                    msg => {
                        if let Message::Text(data) | Message::Binary(data) = &msg {
                            stats.received_bytes[1].fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        on(msg)
                    }
                }
            };
            tokio::select! {
                end = reader.run(sock.stream(), &mut pass) => Wake::Read(end),
                _ = outbox.wait_closed() => Wake::OutboxClosed,
                _ = shutdown.cancelled() => Wake::Shutdown,
                _ = &mut idle => Wake::Idle,
                _ = tick(&mut ping) => Wake::Ping,
            }
        };
        match wake {
            Wake::Read(ReadEnd::Stopped) => {}
            Wake::Read(ReadEnd::Eof | ReadEnd::Io(_)) => {
                outbox.close(CloseReason::TransportClosed);
                return AfterOpen::Done;
            }
            Wake::Read(ReadEnd::Closed(code)) => {
                // Answer with the client's code, as RFC 6455 §5.5.1 asks.
                sock.set_close_code(code.unwrap_or(CLOSE_NORMAL));
                outbox.close(CloseReason::ClientQuit);
                return AfterOpen::Done;
            }
            Wake::Read(ReadEnd::Fail(_)) if outbox.closed().is_some() => {
                // The server closed first and the client answered its close
                // (a code only a server may send, such as 1012, echoed): the
                // closing handshake, not a violation.
                return AfterOpen::Done;
            }
            Wake::Read(ReadEnd::Fail(violation)) => {
                fail(
                    sock,
                    outbox,
                    stats,
                    endpoint,
                    violation,
                    reader.max_message(),
                );
                // The stream cannot be trusted any more (an oversized frame
                // may still be in flight): stop reading.
                return AfterOpen::Done;
            }
            Wake::OutboxClosed => return AfterOpen::Handshake,
            Wake::Shutdown => {
                outbox.close(CloseReason::ServerShutdown);
                return AfterOpen::Handshake;
            }
            Wake::Idle => {
                let ms = idle_ms.expect("the idle timer runs only with a timeout");
                let since = clock_ms().wrapping_sub(last.load(Ordering::Relaxed));
                if since >= ms {
                    outbox.close(CloseReason::Timeout);
                    return AfterOpen::Handshake;
                }
                idle.as_mut()
                    .reset(Instant::now() + ms_duration(ms - since));
            }
            Wake::Ping => {
                sock.queue_ping();
                outbox.claim_writer();
            }
        }
    }
}

fn ms_duration(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// A client broke the protocol: count it, explain it (on `/ws`) and close
/// with the code the violation calls for.
fn fail(
    sock: &WsSocket,
    outbox: &Outbox,
    stats: &Stats,
    endpoint: Endpoint,
    violation: Violation,
    max_message: usize,
) {
    Stats::bump(&stats.bad_input);
    Stats::bump(&stats.protocol_closes);
    let (code, message) = match violation.code {
        CLOSE_TOO_BIG => (
            "too-large",
            format!(
                "message too large (the limit is {max_message} bytes); the connection is closed"
            ),
        ),
        CLOSE_INVALID_DATA => ("bad-utf8", violation.reason.to_string()),
        _ => ("protocol-error", violation.reason.to_string()),
    };
    if endpoint == Endpoint::Json {
        let _ = outbox.push_one(Frame::text(error_json(None, None, code, &message, true)));
    }
    sock.set_close_code(violation.code);
    outbox.close(CloseReason::ProtocolError(format!("{code}: {message}")));
}

/// Writes what the outbox could not write directly: after a short write,
/// frames pushed while it was writing, pongs and pings; then the close.
async fn write_loop(sock: &WsSocket, outbox: &Outbox, endpoint: Endpoint) {
    let mut batch = Vec::new();
    loop {
        let (result, skip) = outbox.next_write_batch(&mut batch).await;
        // The socket is ours until release_writer.
        if sock.has_queued_controls() && sock.write_queued_controls().await.is_err() {
            outbox.close(CloseReason::TransportClosed);
            return;
        }
        if !batch.is_empty() {
            if sock.write_frames(&batch, skip).await.is_err() {
                outbox.close(CloseReason::TransportClosed);
                return;
            }
            batch.clear();
            if batch.capacity() > 256 {
                batch = Vec::new();
            }
        }
        if let Batch::Closed(reason) = result {
            write_close(sock, &reason, endpoint).await;
            return;
        }
        outbox.release_writer();
    }
}

/// The close frame `reason` calls for (after its error frame, on `/ws`);
/// a client's close is answered with its own code.
async fn write_close(sock: &WsSocket, reason: &CloseReason, endpoint: Endpoint) {
    let (code, why, error) = match close_for(reason) {
        Some(close) => close,
        None => match sock.close_code() {
            Some(code) => (code, String::new(), None),
            // The client left without a close frame: nobody to tell.
            None => return,
        },
    };
    if let (Endpoint::Json, Some(error)) = (endpoint, error) {
        if sock.write_frames(&[Frame::text(error)], 0).await.is_err() {
            return;
        }
    }
    let code = sock.close_code().unwrap_or(code);
    let _ = sock.write_close(code, &why).await;
}

async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
