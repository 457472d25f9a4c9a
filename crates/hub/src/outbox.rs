//! The bounded outgoing queue of one connection.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

/// One unit a transport writes: a text or a binary frame. For the TCP line
/// protocol a text frame is one line including its `\n`; for WebSocket
/// transports it is one WebSocket message; for Engine.IO it is one encoded
/// Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Bytes),
    Binary(Bytes),
}

impl Frame {
    /// The payload bytes.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// A text frame from a `String`.
    pub fn text(s: impl Into<String>) -> Frame {
        Frame::Text(Bytes::from(s.into()))
    }
}

/// Why a connection was closed by the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its outgoing queue overflowed: it does not read fast enough.
    SlowConsumer { frames: usize, bytes: usize },
    /// The server is shutting down.
    ServerShutdown,
    /// The client asked to leave.
    ClientQuit,
    /// The client broke the protocol in a way that cannot be recovered.
    ProtocolError(String),
    /// The client stopped answering heartbeats.
    Timeout,
    /// The transport moved elsewhere or the peer went away.
    TransportClosed,
}

impl CloseReason {
    /// A short, stable code, e.g. `slow-consumer`.
    pub fn code(&self) -> &'static str {
        match self {
            CloseReason::SlowConsumer { .. } => "slow-consumer",
            CloseReason::ServerShutdown => "server-shutdown",
            CloseReason::ClientQuit => "client-quit",
            CloseReason::ProtocolError(_) => "protocol-error",
            CloseReason::Timeout => "timeout",
            CloseReason::TransportClosed => "transport-closed",
        }
    }

    /// Whether frames still queued are dropped (true) or flushed before the
    /// connection closes (false).
    pub fn discards_queue(&self) -> bool {
        matches!(self, CloseReason::SlowConsumer { .. })
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::SlowConsumer { frames, bytes } => write!(
                f,
                "slow-consumer: you did not read fast enough and your outgoing queue \
                 overflowed ({frames} frames, {bytes} bytes queued); disconnected"
            ),
            CloseReason::ServerShutdown => f.write_str("server-shutdown: the server is going away"),
            CloseReason::ClientQuit => f.write_str("client-quit: goodbye"),
            CloseReason::ProtocolError(why) => write!(f, "protocol-error: {why}"),
            CloseReason::Timeout => f.write_str("timeout: no heartbeat from the client"),
            CloseReason::TransportClosed => f.write_str("transport-closed"),
        }
    }
}

/// The bounds of an [`Outbox`].
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Most frames queued. Defaults to 1024.
    pub max_frames: usize,
    /// Most payload bytes queued. Defaults to 4 MiB.
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_frames: 1024,
            max_bytes: 4 << 20,
        }
    }
}

/// A connection's socket, written to directly by [`Outbox::push`] when
/// nothing is queued and no writer is busy: the pusher's thread makes the
/// `write` itself instead of waking the connection's writer task (see
/// [`Outbox::set_direct`]).
pub trait DirectSink: Send + Sync {
    /// Writes as much of `frames` as the socket takes right now, without
    /// blocking, starting `skip` bytes into the first frame's wire encoding.
    /// Returns the wire bytes written; `WouldBlock` counts as 0.
    fn try_write_frames(&self, frames: &[Frame], skip: usize) -> io::Result<usize>;

    /// Bytes of one frame on the wire (its framing included).
    fn wire_len(&self, frame: &Frame) -> usize;
}

/// Why [`Outbox::push`] did not queue the frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue was full; the outbox is now closed as a slow consumer.
    #[error("outgoing queue full")]
    Full,
    /// The outbox was already closed.
    #[error("connection closed")]
    Closed,
}

/// A connection's bounded queue of frames waiting to be written.
///
/// Any task may [`push`](Outbox::push); exactly one writer task takes frames
/// out with [`next_batch`](Outbox::next_batch), which hands over everything
/// queued at once so the writer can put many frames into one `write`.
///
/// **Policy.** A push that would take the queue past
/// [`OutboxLimits::max_frames`] or [`OutboxLimits::max_bytes`] closes the
/// outbox with [`CloseReason::SlowConsumer`]: queued frames are dropped, the
/// writer is woken to tell the client why and close the connection, and the
/// pusher is never blocked. A receiver that cannot keep up is therefore
/// disconnected visibly instead of silently losing messages or slowing the
/// room down.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the single writer when frames arrive or the outbox closes.
    notify: Notify,
    /// Wakes everyone waiting in [`Outbox::wait_closed`].
    closed_notify: Notify,
    limits: OutboxLimits,
}

struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    closed: Option<CloseReason>,
    /// Where pushes write directly when they can (see [`Outbox::set_direct`]).
    direct: Option<Arc<dyn DirectSink>>,
    /// The writer task owns the socket: pushes queue instead of writing.
    writer_busy: bool,
    /// Wire bytes of the first queued frame already written by a direct
    /// write that did not finish it.
    head_written: usize,
}

impl State {
    /// Drops what is queued, except a frame a direct write already began:
    /// it must be finished or the stream's framing breaks.
    fn discard(&mut self) {
        let head = if self.head_written > 0 {
            self.frames.pop_front()
        } else {
            None
        };
        self.frames = VecDeque::new();
        self.bytes = 0;
        if let Some(head) = head {
            self.bytes = head.len();
            self.frames.push_back(head);
        }
    }
}

/// What [`Outbox::next_batch`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Frames were moved into the caller's buffer.
    Frames,
    /// The outbox is closed; the caller's buffer holds whatever was still to
    /// be flushed (nothing if the reason discards the queue).
    Closed(CloseReason),
}

impl Outbox {
    /// A new, empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                closed: None,
                direct: None,
                writer_busy: false,
                head_written: 0,
            }),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            limits,
        }
    }

    /// Queues frames, all or none.
    pub fn push(&self, frames: &[Frame]) -> Result<(), PushError> {
        let added: usize = frames.iter().map(Frame::len).sum();
        let mut st = self.state.lock().unwrap();
        if st.closed.is_some() {
            return Err(PushError::Closed);
        }
        if st.frames.len() + frames.len() > self.limits.max_frames
            || st.bytes + added > self.limits.max_bytes
        {
            let reason = CloseReason::SlowConsumer {
                frames: st.frames.len(),
                bytes: st.bytes,
            };
            st.discard();
            st.closed = Some(reason);
            drop(st);
            self.wake_closed();
            return Err(PushError::Full);
        }
        let was_empty = st.frames.is_empty();
        if was_empty && !st.writer_busy && !frames.is_empty() {
            if let Some(sink) = st.direct.clone() {
                // Nobody else writes while the lock is held and the writer
                // is idle: write on this thread, queue only what is left.
                let written = match sink.try_write_frames(frames, 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(_) => {
                        // The writer finds out and closes the connection.
                        0
                    }
                };
                let mut rest = written;
                let mut first = 0;
                while first < frames.len() {
                    let len = sink.wire_len(&frames[first]);
                    if rest < len {
                        break;
                    }
                    rest -= len;
                    first += 1;
                }
                if first == frames.len() {
                    return Ok(());
                }
                st.head_written = rest;
                st.writer_busy = true;
                let left = &frames[first..];
                st.frames.extend(left.iter().cloned());
                st.bytes += left.iter().map(Frame::len).sum::<usize>();
                drop(st);
                self.notify.notify_one();
                return Ok(());
            }
        }
        st.frames.extend(frames.iter().cloned());
        st.bytes += added;
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Installs the socket that [`push`](Outbox::push) writes to directly
    /// while the queue is empty and the writer task is idle. A transport
    /// that installs one must drain the outbox with
    /// [`next_write_batch`](Outbox::next_write_batch) /
    /// [`try_write_batch`](Outbox::try_write_batch) and hand the socket back
    /// with [`release_writer`](Outbox::release_writer).
    pub fn set_direct(&self, sink: Arc<dyn DirectSink>) {
        self.state.lock().unwrap().direct = Some(sink);
    }

    /// Removes the direct sink (the connection is going away); returns it.
    pub fn clear_direct(&self) -> Option<Arc<dyn DirectSink>> {
        self.state.lock().unwrap().direct.take()
    }

    /// Like [`try_batch`](Outbox::try_batch) for a writer that shares its
    /// socket with direct writes: when it returns something, the writer
    /// owns the socket until [`release_writer`](Outbox::release_writer)
    /// succeeds. The `usize` is how many wire bytes of the first frame were
    /// already written.
    pub fn try_write_batch(&self, out: &mut Vec<Frame>) -> Option<(Batch, usize)> {
        let mut st = self.state.lock().unwrap();
        if st.frames.is_empty() && st.closed.is_none() {
            return None;
        }
        st.writer_busy = true;
        let skip = std::mem::take(&mut st.head_written);
        out.extend(st.frames.drain(..));
        st.bytes = 0;
        if st.frames.capacity() > 64 {
            st.frames = VecDeque::new();
        }
        let batch = match &st.closed {
            Some(r) => Batch::Closed(r.clone()),
            None => Batch::Frames,
        };
        Some((batch, skip))
    }

    /// Waits for [`try_write_batch`](Outbox::try_write_batch) to find
    /// something.
    ///
    /// # Cancel safety
    /// Cancel safe: frames are only moved once the wait is over.
    pub async fn next_write_batch(&self, out: &mut Vec<Frame>) -> (Batch, usize) {
        loop {
            if let Some(b) = self.try_write_batch(out) {
                return b;
            }
            self.notify.notified().await;
        }
    }

    /// The writer takes the socket (to write something of its own, e.g. a
    /// WebSocket pong): direct writes queue until it is released.
    pub fn claim_writer(&self) {
        self.state.lock().unwrap().writer_busy = true;
    }

    /// The writer wrote everything it took: if nothing new is queued, the
    /// socket goes back to direct writes (true); otherwise the writer keeps
    /// it and must take the next batch (false).
    pub fn release_writer(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.frames.is_empty() && st.closed.is_none() {
            st.writer_busy = false;
            true
        } else {
            false
        }
    }

    /// Queues one frame.
    pub fn push_one(&self, frame: Frame) -> Result<(), PushError> {
        self.push(std::slice::from_ref(&frame))
    }

    /// Closes the outbox. The first reason wins; returns false if it was
    /// already closed.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.closed.is_some() {
            return false;
        }
        if reason.discards_queue() {
            st.discard();
        }
        st.closed = Some(reason);
        drop(st);
        self.wake_closed();
        true
    }

    fn wake_closed(&self) {
        self.notify.notify_one();
        self.closed_notify.notify_waiters();
    }

    /// Resolves once the outbox is closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_closed(&self) -> CloseReason {
        loop {
            let mut notified = std::pin::pin!(self.closed_notify.notified());
            notified.as_mut().enable();
            if let Some(reason) = self.closed() {
                return reason;
            }
            notified.await;
        }
    }

    /// The reason it was closed, if it was.
    pub fn closed(&self) -> Option<CloseReason> {
        self.state.lock().unwrap().closed.clone()
    }

    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().frames.len()
    }

    /// True when no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts frames taken by a batch back at the head of the queue, in
    /// order, for a transport that could only send part of a batch (e.g. a
    /// long-polling response capped in packets). Bounds are not checked:
    /// these frames were already admitted. Does nothing once the queue was
    /// discarded by a slow-consumer close.
    pub fn requeue_front(&self, frames: Vec<Frame>) {
        let mut st = self.state.lock().unwrap();
        if st.closed.as_ref().is_some_and(CloseReason::discards_queue) {
            return;
        }
        for f in frames.into_iter().rev() {
            st.bytes += f.len();
            st.frames.push_front(f);
        }
    }

    /// Takes every queued frame without waiting; returns the close reason if
    /// closed. Used by transports that poll (Engine.IO long-polling).
    pub fn try_batch(&self, out: &mut Vec<Frame>) -> Option<Batch> {
        let mut st = self.state.lock().unwrap();
        if !st.frames.is_empty() {
            out.extend(st.frames.drain(..));
            st.bytes = 0;
            if st.frames.capacity() > 64 {
                st.frames = VecDeque::new();
            }
            return Some(match &st.closed {
                Some(r) => Batch::Closed(r.clone()),
                None => Batch::Frames,
            });
        }
        st.closed.clone().map(Batch::Closed)
    }

    /// Waits for frames or for the close, then moves every queued frame into
    /// `out`.
    ///
    /// # Cancel safety
    /// Cancel safe: frames are only moved once the wait is over.
    pub async fn next_batch(&self, out: &mut Vec<Frame>) -> Batch {
        loop {
            if let Some(b) = self.try_batch(out) {
                return b;
            }
            self.notify.notified().await;
        }
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock().unwrap();
        f.debug_struct("Outbox")
            .field("frames", &st.frames.len())
            .field("bytes", &st.bytes)
            .field("closed", &st.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(frames: usize, bytes: usize) -> OutboxLimits {
        OutboxLimits {
            max_frames: frames,
            max_bytes: bytes,
        }
    }

    #[tokio::test]
    async fn batches_everything_queued() {
        let ob = Outbox::new(OutboxLimits::default());
        ob.push(&[Frame::text("a"), Frame::text("b")]).unwrap();
        ob.push_one(Frame::text("c")).unwrap();
        let mut out = Vec::new();
        assert_eq!(ob.next_batch(&mut out).await, Batch::Frames);
        assert_eq!(out.len(), 3);
        assert!(ob.is_empty());
    }

    #[tokio::test]
    async fn overflow_closes_as_slow_consumer() {
        let ob = Outbox::new(limits(2, 1000));
        ob.push_one(Frame::text("a")).unwrap();
        ob.push_one(Frame::text("b")).unwrap();
        assert_eq!(ob.push_one(Frame::text("c")), Err(PushError::Full));
        assert_eq!(ob.push_one(Frame::text("d")), Err(PushError::Closed));
        let mut out = Vec::new();
        match ob.next_batch(&mut out).await {
            Batch::Closed(CloseReason::SlowConsumer { frames: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            out.is_empty(),
            "queued frames of a slow consumer are dropped"
        );
    }

    #[tokio::test]
    async fn byte_bound() {
        let ob = Outbox::new(limits(100, 5));
        ob.push_one(Frame::text("abc")).unwrap();
        assert_eq!(ob.push_one(Frame::text("abc")), Err(PushError::Full));
    }

    #[tokio::test]
    async fn shutdown_flushes_queue() {
        let ob = Outbox::new(OutboxLimits::default());
        ob.push_one(Frame::text("last")).unwrap();
        assert!(ob.close(CloseReason::ServerShutdown));
        assert!(!ob.close(CloseReason::ClientQuit));
        let mut out = Vec::new();
        assert_eq!(
            ob.next_batch(&mut out).await,
            Batch::Closed(CloseReason::ServerShutdown)
        );
        assert_eq!(out, vec![Frame::text("last")]);
    }

    #[tokio::test]
    async fn requeued_frames_come_first() {
        let ob = Outbox::new(OutboxLimits::default());
        ob.push(&[Frame::text("a"), Frame::text("b"), Frame::text("c")])
            .unwrap();
        let mut out = Vec::new();
        ob.try_batch(&mut out);
        let rest = out.split_off(1);
        ob.push_one(Frame::text("d")).unwrap();
        ob.requeue_front(rest);
        let mut again = Vec::new();
        ob.try_batch(&mut again);
        assert_eq!(
            again,
            vec![Frame::text("b"), Frame::text("c"), Frame::text("d")]
        );
    }

    #[tokio::test]
    async fn wakes_waiting_writer() {
        let ob = std::sync::Arc::new(Outbox::new(OutboxLimits::default()));
        let ob2 = ob.clone();
        let waiter = tokio::spawn(async move {
            let mut out = Vec::new();
            ob2.next_batch(&mut out).await;
            out
        });
        tokio::task::yield_now().await;
        ob.push_one(Frame::text("x")).unwrap();
        assert_eq!(waiter.await.unwrap(), vec![Frame::text("x")]);
    }
}
