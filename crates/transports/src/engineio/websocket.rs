//! The WebSocket transport, and the upgrade of a polling session to it.
//!
//! Two implementations with the same Engine.IO behaviour:
//! - the **raw** one (the default when the HTTP server is
//!   [`crate::rawws::serve`]): the upgraded `TcpStream` itself, framed by
//!   [`crate::rawws`]; no buffer is held while idle, and the session's
//!   outbox writes straight to the socket when nothing is queued (see
//!   [`volna_hub::DirectSink`]), its writer task coalescing the rest into
//!   vectored writes;
//! - axum's WebSocket (tokio-tungstenite), used when the raw path is off
//!   (`EngineConfig::raw_websocket`; `volna serve --raw-websocket false`) or the
//!   connection did not come through [`crate::rawws::serve`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use volna_hub::{Batch, CloseReason, Frame};
use volna_protocols::engineio::Packet;

use super::{Engine, Session, TransportKind};
use crate::rawws::{self, Msg, ReadEnd, Reader, WsSocket};

/// How long the writer may take to flush what is queued once the session is
/// closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

type Tx = SplitSink<WebSocket, Message>;
type Rx = SplitStream<WebSocket>;

fn configure(engine: &Engine, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    let max = engine.config.max_payload.max(1);
    ws.max_message_size(max).max_frame_size(max)
}

/// What the raw path needs of an upgrade request.
pub(super) struct RawUpgrade {
    key: Bytes,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// The raw path for this request, if it is on and the request is a valid
/// WebSocket upgrade served by [`rawws::serve`]. Call before axum's
/// extractor takes the upgrade out of the request.
pub(super) fn raw_request(engine: &Engine, parts: &Parts) -> Option<RawUpgrade> {
    if !engine.config.raw_websocket || parts.extensions.get::<rawws::RawCapable>().is_none() {
        return None;
    }
    let key = rawws::check_upgrade(&parts.method, parts.version, &parts.headers)?;
    let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>()?.clone();
    Some(RawUpgrade { key, on_upgrade })
}

/// A handshake made directly over WebSocket.
pub(super) fn handshake(
    engine: &Arc<Engine>,
    ws: WebSocketUpgrade,
    raw: Option<RawUpgrade>,
) -> Response {
    if let Some(raw) = raw {
        let resp = rawws::switching_protocols(&raw.key);
        let engine2 = engine.clone();
        engine.tracker.spawn(async move {
            let Some((stream, pre)) = rawws::take_stream(raw.on_upgrade).await else {
                return;
            };
            let sock = Arc::new(WsSocket::new(stream));
            let reader = Reader::new(engine2.config.max_payload, pre);
            let session = engine2.create_session(TransportKind::WebSocket);
            // Its own task: the handshake's state is not kept beside it.
            engine2.tracker.spawn(run_raw(session, sock, reader));
        });
        return resp;
    }
    let engine = engine.clone();
    configure(&engine, ws).on_upgrade(move |socket| {
        let tracker = engine.tracker.clone();
        tracker.track_future(async move {
            let session = engine.create_session(TransportKind::WebSocket);
            let (tx, rx) = socket.split();
            run(session, tx, rx).await;
        })
    })
}

/// A WebSocket joining a polling session (`?sid=`): the probe, then the
/// switch.
pub(super) fn upgrade(
    engine: &Arc<Engine>,
    session: Arc<Session>,
    ws: WebSocketUpgrade,
    raw: Option<RawUpgrade>,
) -> Response {
    if let Some(raw) = raw {
        let resp = rawws::switching_protocols(&raw.key);
        let engine2 = engine.clone();
        engine.tracker.spawn(async move {
            let Some((stream, pre)) = rawws::take_stream(raw.on_upgrade).await else {
                return;
            };
            let sock = Arc::new(WsSocket::new(stream));
            let mut reader = Reader::new(engine2.config.max_payload, pre);
            if !session.begin_upgrade() {
                // Already upgraded or upgrading: the reference server closes
                // the newcomer.
                let _ = sock.write_close(rawws::CLOSE_NORMAL, "").await;
                return;
            }
            if probe_raw(&engine2, &session, &sock, &mut reader).await {
                engine2.tracker.spawn(run_raw(session, sock, reader));
            } else {
                session.abort_upgrade();
                let _ = sock.write_close(rawws::CLOSE_NORMAL, "").await;
            }
        });
        return resp;
    }
    let engine = engine.clone();
    configure(&engine, ws).on_upgrade(move |mut socket| {
        let tracker = engine.tracker.clone();
        tracker.track_future(async move {
            if !session.begin_upgrade() {
                // Already upgraded or upgrading: the reference server closes
                // the newcomer.
                let _ = socket.send(close_message(1000, "")).await;
                return;
            }
            let (mut tx, mut rx) = socket.split();
            if probe(&engine, &session, &mut tx, &mut rx).await {
                run(session, tx, rx).await;
            } else {
                session.abort_upgrade();
                let _ = tx.send(close_message(1000, "")).await;
            }
        })
    })
}

/// Runs the upgrade dance; true once `5` arrived and the session switched.
async fn probe(engine: &Engine, session: &Arc<Session>, tx: &mut Tx, rx: &mut Rx) -> bool {
    let deadline = tokio::time::sleep(engine.config.upgrade_timeout);
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            msg = rx.next() => msg,
            _ = &mut deadline => return false,
            _ = session.closed() => return false,
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return false,
        };
        match Packet::decode_text(text.as_str()) {
            Ok(Packet::Ping(Some(data))) if data == "probe" => {
                if tx
                    .send(Message::Text(Utf8Bytes::from_static("3probe")))
                    .await
                    .is_err()
                {
                    return false;
                }
                session.probed();
            }
            Ok(Packet::Upgrade) => return session.complete_upgrade(),
            _ => return false,
        }
    }
}

/// Serves a session whose transport is this WebSocket until it closes.
async fn run(session: Arc<Session>, mut tx: Tx, mut rx: Rx) {
    let writer = write_loop(&session, &mut tx);
    let reader = read_loop(&session, &mut rx);
    tokio::pin!(writer, reader);
    tokio::select! {
        _ = &mut writer => {}
        _ = &mut reader => {
            let _ = tokio::time::timeout(FLUSH_GRACE, &mut writer).await;
        }
        _ = session.closed() => {
            let _ = tokio::time::timeout(FLUSH_GRACE, &mut writer).await;
        }
    }
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Drains the outbox into the socket, one flush per batch.
async fn write_loop(session: &Session, tx: &mut Tx) {
    let mut batch = Vec::new();
    loop {
        let result = session.outbox().next_batch(&mut batch).await;
        for frame in batch.drain(..) {
            let msg = match frame {
                Frame::Text(text) => match Utf8Bytes::try_from(text) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                },
                Frame::Binary(data) => Message::Binary(data),
            };
            if tx.feed(msg).await.is_err() {
                session.close(CloseReason::TransportClosed);
                return;
            }
        }
        if tx.flush().await.is_err() {
            session.close(CloseReason::TransportClosed);
            return;
        }
        if let Batch::Closed(reason) = result {
            let _ = tx
                .send(close_message(
                    crate::close::websocket_close_code(&reason),
                    reason.code(),
                ))
                .await;
            return;
        }
    }
}

/// Decodes what the client sends and hands it to the session.
async fn read_loop(session: &Session, rx: &mut Rx) {
    let engine = session.engine();
    while let Some(msg) = rx.next().await {
        let packet = match msg {
            Ok(Message::Text(text)) => match Packet::decode_text_shared(Bytes::from(text)) {
                Ok(packet) => packet,
                Err(e) => {
                    engine.bump_bad_input();
                    session.protocol_error(format!("invalid packet: {e}"));
                    return;
                }
            },
            Ok(Message::Binary(data)) => Packet::Binary(data),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => break,
            Err(e) => {
                let text = e.to_string();
                if text.contains("too long") || text.contains("too big") {
                    engine.bump_bad_input();
                    session.protocol_error("message larger than maxPayload");
                    return;
                }
                tracing::debug!(sid = %session.sid(), error = %text, "engine.io websocket error");
                break;
            }
        };
        session.on_packet(packet);
        if session.is_closed() {
            return;
        }
    }
    session.close(CloseReason::TransportClosed);
}

// ---------------------------------------------------------------------------
// The raw path
// ---------------------------------------------------------------------------

/// How long a closing connection waits for the client's close frame (or
/// EOF) after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The upgrade dance over a raw WebSocket; true once `5` arrived and the
/// session switched.
async fn probe_raw(
    engine: &Engine,
    session: &Arc<Session>,
    sock: &WsSocket,
    reader: &mut Reader,
) -> bool {
    let deadline = tokio::time::sleep(engine.config.upgrade_timeout);
    tokio::pin!(deadline);
    loop {
        let mut got = None;
        let mut on = |m| {
            got = Some(m);
            false
        };
        let end = tokio::select! {
            end = reader.run(sock.stream(), &mut on) => end,
            _ = &mut deadline => return false,
            _ = session.closed() => return false,
        };
        if !matches!(end, ReadEnd::Stopped) {
            return false;
        }
        let text = match got {
            Some(Msg::Text(text)) => text,
            Some(Msg::Ping(payload)) => {
                // Nobody else writes to this socket yet.
                if sock.write_control(rawws::OP_PONG, &payload).await.is_err() {
                    return false;
                }
                continue;
            }
            Some(Msg::Pong) => continue,
            _ => return false,
        };
        let Ok(text) = std::str::from_utf8(&text) else {
            return false;
        };
        match Packet::decode_text(text) {
            Ok(Packet::Ping(Some(data))) if data == "probe" => {
                if sock.write_text("3probe").await.is_err() {
                    return false;
                }
                session.probed();
            }
            Ok(Packet::Upgrade) => return session.complete_upgrade(),
            _ => return false,
        }
    }
}

/// Serves a session whose transport is this raw WebSocket until it closes.
async fn run_raw(session: Arc<Session>, sock: Arc<WsSocket>, mut reader: Reader) {
    let engine = session.engine();
    engine
        .flusher
        .start(&engine.tracker, engine.shutdown.clone());
    sock.install(session.outbox(), engine.flusher.clone());
    {
        let writer = write_loop_raw(&session, &sock);
        let reader = read_loop_raw(&session, &sock, &mut reader);
        tokio::pin!(writer, reader);
        let (mut writer_done, mut reader_done) = (false, false);
        tokio::select! {
            _ = &mut writer => writer_done = true,
            _ = &mut reader => reader_done = true,
            _ = session.closed() => {}
        }
        // One timer for both graces, boxed: only a closing connection
        // needs it, so idle ones do not carry it in their task.
        let mut grace = Box::pin(tokio::time::sleep(FLUSH_GRACE));
        if !writer_done {
            tokio::select! {
                _ = &mut writer => {}
                _ = &mut grace => {}
            }
        }
        if !reader_done {
            grace
                .as_mut()
                .reset(tokio::time::Instant::now() + CLOSE_WAIT);
            tokio::select! {
                _ = &mut reader => {}
                _ = &mut grace => {}
            }
        }
    }
    session.outbox().clear_direct();
}

/// Writes what the outbox holds whenever direct writes could not: after a
/// short write, for frames pushed while it was writing, for pongs and for
/// the final close.
async fn write_loop_raw(session: &Session, sock: &WsSocket) {
    let outbox = session.outbox();
    let mut batch = Vec::new();
    loop {
        let (result, skip) = outbox.next_write_batch(&mut batch).await;
        // The socket is ours until release_writer.
        // The writes below are boxed: they are rare (a short write, a pong,
        // the close), and inline they would triple the size of every idle
        // connection's task.
        if let Some(payload) = sock.take_pong() {
            if Box::pin(sock.write_control(rawws::OP_PONG, &payload))
                .await
                .is_err()
            {
                session.close(CloseReason::TransportClosed);
                return;
            }
        }
        if !batch.is_empty() {
            if Box::pin(sock.write_frames(&batch, skip)).await.is_err() {
                session.close(CloseReason::TransportClosed);
                return;
            }
            // Nothing kept while idle.
            batch = Vec::new();
        }
        if let Batch::Closed(reason) = result {
            let code = sock
                .close_code()
                .unwrap_or_else(|| crate::close::websocket_close_code(&reason));
            let _ = Box::pin(sock.write_close(code, reason.code())).await;
            return;
        }
        outbox.release_writer();
    }
}

/// Decodes what the client sends and hands it to the session; once the
/// session is closed, only waits for the client's close (or EOF).
async fn read_loop_raw(session: &Session, sock: &WsSocket, reader: &mut Reader) {
    let engine = session.engine();
    let mut on = |msg: Msg| -> bool {
        if session.is_closed() {
            return true;
        }
        let packet = match msg {
            Msg::Text(text) => match Packet::decode_text_shared(text) {
                Ok(packet) => packet,
                Err(e) => {
                    engine.bump_bad_input();
                    session.protocol_error(format!("invalid packet: {e}"));
                    return false;
                }
            },
            Msg::Binary(data) => Packet::Binary(data),
            Msg::Ping(payload) => {
                sock.queue_pong(payload);
                session.outbox().claim_writer();
                return true;
            }
            Msg::Pong => return true,
        };
        session.on_packet(packet);
        true
    };
    match reader.run(sock.stream(), &mut on).await {
        // Stopped: the session was closed for an invalid packet.
        ReadEnd::Stopped => {}
        ReadEnd::Fail(code, why) => {
            engine.bump_bad_input();
            sock.set_close_code(code);
            if code == rawws::CLOSE_TOO_BIG {
                session.protocol_error("message larger than maxPayload");
            } else {
                session.protocol_error(why);
            }
        }
        ReadEnd::Eof | ReadEnd::Closed(_) | ReadEnd::Io(_) => {
            session.close(CloseReason::TransportClosed);
        }
    }
}
