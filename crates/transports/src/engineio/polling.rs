//! The HTTP long-polling transport: `GET` takes what is queued, `POST`
//! brings packets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::{sleep_until, Instant};
use volna_hub::{Batch, CloseReason, Frame};
use volna_protocols::engineio::{decode_payload_shared, PayloadWriter};

use super::session::PollStop;
use super::{text_body, Engine, ErrorCode, Session};

/// Joins frames into one payload, then an optional final packet.
fn payload(frames: &[Frame], tail: Option<&'static [u8]>) -> Bytes {
    let size: usize = frames.iter().map(|f| f.len() * 4 / 3 + 4).sum::<usize>() + 2;
    let mut w = PayloadWriter::with_capacity(size);
    for frame in frames {
        match frame {
            Frame::Text(text) => w.push_encoded(text),
            Frame::Binary(data) => w.push_binary(data),
        }
    }
    if let Some(tail) = tail {
        w.push_encoded(tail);
    }
    w.into_bytes()
}

/// How a pending poll ends once the session is closed: a client that said
/// goodbye gets a noop (as in the reference server), anyone else a close.
fn close_tail(reason: &CloseReason) -> Option<&'static [u8]> {
    match reason {
        CloseReason::ClientQuit => Some(b"6"),
        _ => Some(b"1"),
    }
}

/// The answer to a polling handshake: the open packet (and anything queued
/// right after it).
pub(super) fn handshake_response(session: &Arc<Session>) -> Response {
    let mut frames = Vec::new();
    let _ = session.outbox().try_batch(&mut frames);
    text_body(StatusCode::OK, payload(&frames, None))
}

/// Frees the poll slot however the request ends. A poll whose request
/// went away before it was answered (the future dropped: the client's
/// connection is gone) closes the session as a transport error, as the
/// reference server does ("poll connection closed prematurely"): the
/// client is reconnecting, perhaps to another node, and its recovery
/// session must be kept now, not after the ping timeout.
struct PollGuard<'a> {
    session: &'a Session,
    generation: u64,
    answered: bool,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.session.end_poll(self.generation);
        if !self.answered {
            self.session.close(CloseReason::TransportClosed);
        }
    }
}

/// Most packets in one long-polling response (see [`poll`]).
const MAX_PACKETS_PER_POLL: usize = 16;

/// `GET`: waits for frames, then answers them as one payload.
pub(super) async fn poll(engine: &Arc<Engine>, session: &Arc<Session>) -> Response {
    let Some(generation) = session.begin_poll() else {
        // Like the reference server: an overlapping poll is an error that
        // closes the session; the pending poll receives a close packet.
        engine.bump_bad_input();
        session.protocol_error("overlapping poll requests");
        return engine.error(ErrorCode::BadRequest, &HeaderMap::new());
    };
    let mut guard = PollGuard {
        session,
        generation,
        answered: false,
    };
    let mut frames = Vec::new();
    let mut closed = false;
    let tail = loop {
        let wake = session.poll_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let noop_at = match session.poll_stop() {
            Some(PollStop::Refuse) => {
                // Upgraded while this poll waited: as if it came after.
                guard.answered = true;
                return engine.error(ErrorCode::BadRequest, &HeaderMap::new());
            }
            Some(PollStop::NoopAt(at)) if Instant::now() >= at => {
                match session.outbox().try_batch(&mut frames) {
                    Some(Batch::Closed(reason)) => {
                        closed = true;
                        break close_tail(&reason);
                    }
                    _ if frames.is_empty() => break Some(&b"6"[..]),
                    _ => break None,
                }
            }
            Some(PollStop::NoopAt(at)) => Some(at),
            None => None,
        };
        tokio::select! {
            batch = session.outbox().next_batch(&mut frames) => match batch {
                Batch::Frames => break None,
                Batch::Closed(reason) => {
                    closed = true;
                    break close_tail(&reason);
                }
            },
            _ = &mut wake => {}
            _ = sleep_until(noop_at.unwrap_or_else(Instant::now)), if noop_at.is_some() => {}
        }
    };
    // python-engineio (the stock Python client) refuses a payload of more
    // than 16 packets and drops the connection; the rest waits for the next
    // poll. Other clients are unaffected: any number of polls is valid.
    let room = if tail.is_some() {
        MAX_PACKETS_PER_POLL - 1
    } else {
        MAX_PACKETS_PER_POLL
    };
    let mut tail = tail;
    if frames.len() > room {
        let rest = frames.split_off(MAX_PACKETS_PER_POLL.min(room));
        session.outbox().requeue_front(rest);
        if closed {
            // The close packet goes out after the last frame, next poll.
            closed = false;
            tail = None;
        }
    }
    if closed {
        // The close was delivered: later requests get `Session ID unknown`.
        session.forget();
    }
    guard.answered = true;
    text_body(StatusCode::OK, payload(&frames, tail))
}

struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

/// `POST`: decodes the payload and hands its packets to the session.
pub(super) async fn data(
    engine: &Arc<Engine>,
    session: &Arc<Session>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let max = engine.config.max_payload;
    let is_binary = headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .eq_ignore_ascii_case(b"application/octet-stream")
    });
    if is_binary {
        // Engine.IO v4 polling payloads are always text.
        engine.bump_bad_input();
        session.protocol_error("binary polling payload");
        return engine.error(ErrorCode::BadRequest, &HeaderMap::new());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        engine.bump_bad_input();
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    if !session.begin_post() {
        engine.bump_bad_input();
        session.protocol_error("overlapping data requests");
        return engine.error(ErrorCode::BadRequest, &HeaderMap::new());
    }
    let _guard = PostGuard(session);
    let body = match axum::body::to_bytes(body, max).await {
        Ok(body) => body,
        Err(_) => {
            engine.bump_bad_input();
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    engine.count_received(body.len());
    let packets = match decode_payload_shared(body, max) {
        Ok(packets) => packets,
        Err(e) => {
            engine.bump_bad_input();
            session.protocol_error(format!("invalid polling payload: {e}"));
            return engine.error(ErrorCode::BadRequest, &HeaderMap::new());
        }
    };
    for packet in packets {
        if session.is_closed() {
            break;
        }
        session.on_packet(packet);
    }
    text_body(StatusCode::OK, Bytes::from_static(b"ok"))
}
