//! The WebSocket transport, and the upgrade of a polling session to it.
//!
//! The upgraded `TcpStream` itself, framed by [`crate::websocket`]: no
//! buffer is held while idle, and the session's outbox writes straight to
//! the socket when nothing is queued (see [`volna_hub::DirectSink`]), its
//! writer task coalescing the rest into vectored writes.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use volna_hub::{Batch, CloseReason};
use volna_protocols::engineio::Packet;
use volna_protocols::websocket::{CLOSE_NORMAL, CLOSE_TOO_BIG, OP_PONG};

use super::{Engine, Handshake, Session, TransportKind};
use crate::websocket::{Message, ReadEnd, Reader, Upgrade, WsSocket};

/// How long the writer may take to flush what is queued once the session is
/// closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Answers the upgrade and, once the socket is ours, runs `then` on it in
/// a task of the engine.
fn accept<F, Fut>(engine: &Arc<Engine>, upgrade: Upgrade, then: F) -> Response
where
    F: FnOnce(Arc<Engine>, Arc<WsSocket>, Reader) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let place = upgrade.place();
    let (resp, stream) = upgrade.accept();
    let engine2 = engine.clone();
    engine.tracker.spawn(async move {
        let Some((stream, pre)) = stream.await else {
            return;
        };
        let reader = Reader::new(engine2.config.max_payload, pre);
        then(
            engine2,
            Arc::new(WsSocket::new(stream).holding(place)),
            reader,
        )
        .await;
    });
    resp
}

/// A handshake made directly over WebSocket.
pub(super) fn handshake(engine: &Arc<Engine>, upgrade: Upgrade, handshake: Handshake) -> Response {
    accept(engine, upgrade, |engine, sock, reader| async move {
        let session = engine.create_session(TransportKind::WebSocket, handshake);
        // Its own task: the handshake's state is not kept beside it.
        engine.tracker.spawn(run(session, sock, reader));
    })
}

/// A WebSocket joining a polling session (`?sid=`): the probe, then the
/// switch.
pub(super) fn upgrade(engine: &Arc<Engine>, session: Arc<Session>, upgrade: Upgrade) -> Response {
    accept(engine, upgrade, |engine, sock, mut reader| async move {
        if !session.begin_upgrade() {
            // Already upgraded or upgrading: the reference server closes
            // the newcomer.
            let _ = sock.write_close(CLOSE_NORMAL, "").await;
            return;
        }
        if probe(&engine, &session, &sock, &mut reader).await {
            engine.tracker.spawn(run(session, sock, reader));
        } else {
            session.abort_upgrade();
            let _ = sock.write_close(CLOSE_NORMAL, "").await;
        }
    })
}

/// How long a closing connection waits for the client's close frame (or
/// EOF) after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The upgrade dance over the new WebSocket; true once `5` arrived and the
/// session switched.
async fn probe(
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
            Some(Message::Text(text)) => text,
            Some(Message::Ping(payload)) => {
                // Nobody else writes to this socket yet.
                if sock.write_control(OP_PONG, &payload).await.is_err() {
                    return false;
                }
                continue;
            }
            Some(Message::Pong) => continue,
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

/// Serves a session whose transport is this WebSocket until it closes.
async fn run(session: Arc<Session>, sock: Arc<WsSocket>, mut reader: Reader) {
    let engine = session.engine();
    engine
        .flusher
        .start(&engine.tracker, engine.shutdown.clone());
    sock.install(session.outbox(), engine.flusher.clone());
    {
        let writer = write_loop(&session, &sock);
        let reader = read_loop(&session, &sock, &mut reader);
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
async fn write_loop(session: &Session, sock: &WsSocket) {
    let outbox = session.outbox();
    let mut batch = Vec::new();
    loop {
        let (result, skip) = outbox.next_write_batch(&mut batch).await;
        // The socket is ours until release_writer.
        // The writes below are boxed: they are rare (a short write, a pong,
        // the close), and inline they would triple the size of every idle
        // connection's task.
        if sock.has_queued_controls() && Box::pin(sock.write_queued_controls()).await.is_err() {
            session.close(CloseReason::TransportClosed);
            return;
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
async fn read_loop(session: &Session, sock: &WsSocket, reader: &mut Reader) {
    let engine = session.engine();
    let mut on = |msg: Message| -> bool {
        if session.is_closed() {
            return true;
        }
        if let Message::Text(data) | Message::Binary(data) = &msg {
            engine.count_received(data.len());
        }
        let packet = match msg {
            Message::Text(text) => match Packet::decode_text_shared(text) {
                Ok(packet) => packet,
                Err(e) => {
                    engine.bump_bad_input();
                    session.protocol_error(format!("invalid packet: {e}"));
                    return false;
                }
            },
            Message::Binary(data) => Packet::Binary(data),
            Message::Ping(payload) => {
                sock.queue_pong(payload);
                session.outbox().claim_writer();
                return true;
            }
            Message::Pong | Message::Close(_) => return true,
        };
        session.on_packet(packet);
        true
    };
    match reader.run(sock.stream(), &mut on).await {
        // Stopped: the session was closed for an invalid packet.
        ReadEnd::Stopped => {}
        // The session closed first and the client answered its close (a
        // code only a server may send, such as 1012, echoed): the closing
        // handshake, not a violation.
        ReadEnd::Fail(_) if session.is_closed() => {}
        ReadEnd::Fail(v) => {
            engine.bump_bad_input();
            sock.set_close_code(v.code);
            if v.code == CLOSE_TOO_BIG {
                session.protocol_error("message larger than maxPayload");
            } else {
                session.protocol_error(v.reason);
            }
        }
        ReadEnd::Eof | ReadEnd::Closed(_) | ReadEnd::Io(_) => {
            session.close(CloseReason::TransportClosed);
        }
    }
}
