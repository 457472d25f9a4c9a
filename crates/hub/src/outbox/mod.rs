//! The bounded outgoing queue of one connection ([`Outbox`]) and its
//! slow-consumer policy.
//!
//! - `frame.rs`: what it carries ([`Frame`]) and why it closes
//!   ([`CloseReason`]).
//! - `direct.rs`: the direct-write and pacing seam of the raw WebSocket
//!   path ([`DirectSink`], [`Outbox::set_direct`], [`Outbox::push_paced`],
//!   [`Outbox::flush_direct`], the writer hand-over), a second `impl
//!   Outbox` over the same state.
//! - `clock.rs`: the millisecond clock pacing deadlines are told in
//!   ([`clock_ms`], [`clock_instant`]), on tokio's timeline.

mod clock;
mod direct;
mod frame;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use tokio::sync::Notify;

pub use clock::{clock_instant, clock_ms};
use direct::Direct;
pub use direct::DirectSink;
pub use frame::{CloseReason, Frame};

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
    /// The direct sink, who writes, and pacing.
    direct: Direct,
}

impl State {
    /// Drops what is queued, except a frame a direct write already began:
    /// it must be finished or the stream's framing breaks.
    fn discard(&mut self) {
        let head = if self.direct.head_written > 0 {
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
                direct: Direct::new(),
            }),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            limits,
        }
    }

    /// Queues frames, all or none, to be written as soon as possible: a
    /// reply the client waits for. With a direct sink and nobody writing,
    /// the caller writes them itself (one non-blocking write, no task woken);
    /// what the socket does not take goes to the writer task.
    pub fn push(&self, frames: &[Frame]) -> Result<(), PushError> {
        self.push_inner(frames, false)
    }

    /// [`push`](Outbox::push) (`paced` false) and
    /// [`push_paced`](Outbox::push_paced): admits the frames under the
    /// bounds and queues them; with a direct sink, `direct.rs` decides who
    /// writes them.
    fn push_inner(&self, frames: &[Frame], paced: bool) -> Result<(), PushError> {
        self.push_checked(frames, paced, false).map(|_| ())
    }

    /// Queues `frames`; with `soft`, frames that would take the queue past
    /// half its bound are left out (`Ok(false)`) instead of closing it.
    fn push_checked(&self, frames: &[Frame], paced: bool, soft: bool) -> Result<bool, PushError> {
        let added: usize = frames.iter().map(Frame::len).sum();
        let mut st = self.state.lock().unwrap();
        if st.closed.is_some() {
            return Err(PushError::Closed);
        }
        if soft
            && ((st.frames.len() + frames.len()) * 2 > self.limits.max_frames
                || (st.bytes + added) * 2 > self.limits.max_bytes)
        {
            return Ok(false);
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
        st.frames.extend(frames.iter().cloned());
        st.bytes += added;
        if st.direct.sink.is_some() {
            self.dispatch_direct(st, was_empty, paced);
            return Ok(true);
        }
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(true)
    }

    /// Queues a volatile broadcast (see `RoomPolicy::volatile`): paced as
    /// [`push_paced`](Outbox::push_paced), but only while the queue holds
    /// less than half its bound afterwards. Returns false when the frames
    /// were left out because the connection is behind; the connection is
    /// never closed for them.
    pub fn push_volatile(&self, frames: &[Frame]) -> Result<bool, PushError> {
        self.push_checked(frames, true, true)
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
