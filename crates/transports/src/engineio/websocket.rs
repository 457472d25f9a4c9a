//! The WebSocket transport, and the upgrade of a polling session to it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use volna_hub::{Batch, CloseReason, Frame};
use volna_protocols::engineio::Packet;

use super::{Engine, Session, TransportKind};

/// How long the writer may take to flush what is queued once the session is
/// closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

type Tx = SplitSink<WebSocket, Message>;
type Rx = SplitStream<WebSocket>;

fn configure(engine: &Engine, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    let max = engine.config.max_payload.max(1);
    ws.max_message_size(max).max_frame_size(max)
}

/// A handshake made directly over WebSocket.
pub(super) fn handshake(engine: &Arc<Engine>, ws: WebSocketUpgrade) -> Response {
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
) -> Response {
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

fn close_code(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::ServerShutdown => 1001,
        CloseReason::ProtocolError(_) => 1002,
        CloseReason::SlowConsumer { .. } => 1008,
        _ => 1000,
    }
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
                .send(close_message(close_code(&reason), reason.code()))
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
