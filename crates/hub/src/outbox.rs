//! The bounded outgoing queue of one connection.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

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

/// Milliseconds on a process-wide monotonic clock, wrapping after ~49 days
/// (compare with `wrapping_sub`). Pacing ([`Outbox::push_paced`]) and
/// [`DirectSink::schedule_at`] deadlines use it.
pub fn clock_ms() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Starts well past 0, the "last written" of an outbox never written, so
    // that such an outbox never looks busy.
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u32;
    ms.wrapping_add(1 << 24)
}

/// A held connection is flushed at once, hold or not, when this many frames
/// wait (far below any queue bound, so pacing never makes a slow consumer)…
const HOLD_MAX_FRAMES: usize = 64;
/// …or this many bytes.
const HOLD_MAX_BYTES: usize = 64 << 10;
/// A connection whose last write carried at least this many frames is
/// busy: its next hold is [`BUSY_HOLD_FACTOR`] times longer.
const BUSY_FRAMES: u16 = 8;
/// See [`BUSY_FRAMES`].
const BUSY_HOLD_FACTOR: u32 = 2;

/// A connection's socket that frames can be written to without its writer
/// task (see [`Outbox::set_direct`]).
///
/// With a sink installed, a push that finds the queue empty and nobody
/// writing queues its frames and calls [`schedule`](DirectSink::schedule)
/// instead of waking the connection's writer task; something that flushes
/// many connections in turn (one task for the whole server) then calls
/// [`Outbox::flush_direct`], which writes everything queued in one
/// non-blocking vectored write. Frames pushed before that flush share its
/// write, so the busier the server, the more frames per syscall. Only when
/// the socket cannot take everything does the writer task take over.
pub trait DirectSink: Send + Sync {
    /// Writes as much of `frames` as the socket takes right now, without
    /// blocking, starting `skip` bytes into the first frame's wire encoding.
    /// Returns the wire bytes written; it may write only a prefix of
    /// `frames` even when the socket has room (a cap on slices per call).
    fn try_write_frames(&self, frames: &[Frame], skip: usize) -> io::Result<usize>;

    /// Bytes of one frame on the wire (its framing included).
    fn wire_len(&self, frame: &Frame) -> usize;

    /// Arranges for [`Outbox::flush_direct`] to be called soon on the
    /// outbox this sink is installed in. Called without the outbox's lock.
    fn schedule(&self);

    /// Like [`schedule`](DirectSink::schedule), but not before `deadline`
    /// (a [`clock_ms`] time): the outbox is being paced. Calling
    /// [`Outbox::flush_direct`] earlier is harmless (less coalescing).
    fn schedule_at(&self, deadline: u32);
}

/// Who may write to a connection with a [`DirectSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Nobody: the next push schedules a flush.
    Idle,
    /// A flush is scheduled for later (pacing); a push that cannot wait
    /// turns it into [`Owner::Flush`].
    Held,
    /// A flush is scheduled; it writes under the lock, so anyone holding the
    /// lock may still take over.
    Flush,
    /// The writer task writes (outside the lock) until it releases.
    Task,
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
    /// Who writes (meaningful once a direct sink is installed).
    owner: Owner,
    /// Wire bytes of the first queued frame already written by a direct
    /// write that did not finish it.
    head_written: usize,
    /// Pacing: paced pushes write at most once per this many ms (0: never
    /// held).
    hold_ms: u32,
    /// When the socket was last written to ([`clock_ms`]).
    last_write_ms: u32,
    /// Frames the last direct write carried (saturating).
    last_batch: u16,
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
                owner: Owner::Idle,
                head_written: 0,
                hold_ms: 0,
                last_write_ms: 0,
                last_batch: 0,
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

    /// Queues frames, all or none, that may wait a little to share a write
    /// with the ones that follow: broadcasts. With a direct sink installed
    /// with a hold (see [`set_direct`](Outbox::set_direct)), a connection
    /// that was written to less than the hold ago is flushed when the hold
    /// is over (or once [`HOLD_MAX_FRAMES`] frames wait), so a busy
    /// connection costs one write per hold instead of one per frame, and a
    /// quiet one is written at once. A connection whose last write carried
    /// [`BUSY_FRAMES`] or more is held [`BUSY_HOLD_FACTOR`] times longer. Anything pushed with
    /// [`push`](Outbox::push) flushes the held frames with it.
    pub fn push_paced(&self, frames: &[Frame]) -> Result<(), PushError> {
        self.push_inner(frames, true)
    }

    fn push_inner(&self, frames: &[Frame], paced: bool) -> Result<(), PushError> {
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
        st.frames.extend(frames.iter().cloned());
        st.bytes += added;
        if st.direct.is_none() {
            drop(st);
            if was_empty {
                self.notify.notify_one();
            }
            return Ok(());
        }
        match st.owner {
            Owner::Idle => {
                if paced && st.hold_ms > 0 {
                    let since = clock_ms().wrapping_sub(st.last_write_ms);
                    if since < st.hold_ms / 3 {
                        let hold = if st.last_batch >= BUSY_FRAMES {
                            st.hold_ms * BUSY_HOLD_FACTOR
                        } else {
                            st.hold_ms
                        };
                        let deadline = st.last_write_ms.wrapping_add(hold);
                        st.owner = Owner::Held;
                        let sink = st.direct.clone().unwrap();
                        drop(st);
                        sink.schedule_at(deadline);
                        return Ok(());
                    }
                }
                st.owner = Owner::Flush;
                if !paced {
                    // A reply to an idle connection: written right here, by
                    // whoever answers, instead of waking another task for
                    // one frame.
                    drop(st);
                    self.flush_direct();
                    return Ok(());
                }
                let sink = st.direct.clone().unwrap();
                drop(st);
                sink.schedule();
            }
            Owner::Held if !paced => {
                // A reply takes the held broadcasts along, at once.
                st.owner = Owner::Flush;
                drop(st);
                self.flush_direct();
            }
            Owner::Held => {
                if st.frames.len() >= HOLD_MAX_FRAMES || st.bytes >= HOLD_MAX_BYTES {
                    st.owner = Owner::Flush;
                    let sink = st.direct.clone().unwrap();
                    drop(st);
                    sink.schedule();
                }
            }
            Owner::Flush => {}
            Owner::Task => {
                drop(st);
                if was_empty {
                    self.notify.notify_one();
                }
            }
        }
        Ok(())
    }

    /// Installs the socket that queued frames are written to without the
    /// writer task (see [`DirectSink`]). A transport that installs one must
    /// drain the outbox with [`next_write_batch`](Outbox::next_write_batch)
    /// / [`try_write_batch`](Outbox::try_write_batch) and hand the socket
    /// back with [`release_writer`](Outbox::release_writer).
    ///
    /// `hold_ms` paces [`push_paced`](Outbox::push_paced) (0: no pacing).
    pub fn set_direct(&self, sink: Arc<dyn DirectSink>, hold_ms: u32) {
        let mut st = self.state.lock().unwrap();
        st.direct = Some(sink);
        st.hold_ms = hold_ms;
        if st.owner == Owner::Idle && !st.frames.is_empty() {
            // Already queued: the writer task sends it.
            st.owner = Owner::Task;
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Removes the direct sink (the connection is going away); returns it.
    pub fn clear_direct(&self) -> Option<Arc<dyn DirectSink>> {
        self.state.lock().unwrap().direct.take()
    }

    /// The scheduled flush (see [`DirectSink::schedule`] and
    /// [`DirectSink::schedule_at`]): writes what is queued with non-blocking
    /// writes while holding the lock. Whatever the socket does not take
    /// right away, and the close, are left to the writer task, which is
    /// woken. Returns the frames written.
    pub fn flush_direct(&self) -> usize {
        let mut st = self.state.lock().unwrap();
        if !matches!(st.owner, Owner::Flush | Owner::Held) {
            return 0;
        }
        st.owner = Owner::Flush;
        let Some(sink) = st.direct.clone() else {
            st.owner = Owner::Task;
            drop(st);
            self.notify.notify_one();
            return 0;
        };
        let mut done = 0;
        while st.closed.is_none() && !st.frames.is_empty() {
            let skip = st.head_written;
            let queued = st.frames.make_contiguous();
            // On WouldBlock, or an error the writer task will meet again: 0.
            let written: usize = sink.try_write_frames(queued, skip).unwrap_or_default();
            let mut rest = skip + written;
            let mut whole = 0;
            let mut whole_bytes = 0;
            for f in queued.iter() {
                let len = sink.wire_len(f);
                if rest < len {
                    break;
                }
                rest -= len;
                whole += 1;
                whole_bytes += f.len();
            }
            st.frames.drain(..whole);
            st.bytes -= whole_bytes;
            st.head_written = rest;
            done += whole;
            if written > 0 {
                st.last_write_ms = clock_ms();
                st.last_batch = u16::try_from(whole).unwrap_or(u16::MAX);
            }
            if written == 0 || rest > 0 {
                // The socket is full: the writer task waits for it.
                break;
            }
        }
        if st.frames.is_empty() && st.closed.is_none() {
            st.owner = Owner::Idle;
            // An idle connection keeps no queue buffer: one allocation per
            // burst costs far less than the write it goes with.
            st.frames = VecDeque::new();
            return done;
        }
        st.owner = Owner::Task;
        drop(st);
        self.notify.notify_one();
        done
    }

    /// Like [`try_batch`](Outbox::try_batch) for a writer that shares its
    /// socket with direct writes: when it returns something, the writer
    /// owns the socket until [`release_writer`](Outbox::release_writer)
    /// succeeds. The `usize` is how many wire bytes of the first frame were
    /// already written. With a direct sink, frames are only handed over
    /// once the writer was given the socket (a flush could not finish, or
    /// [`claim_writer`](Outbox::claim_writer)) or the outbox is closed.
    pub fn try_write_batch(&self, out: &mut Vec<Frame>) -> Option<(Batch, usize)> {
        let mut st = self.state.lock().unwrap();
        if st.closed.is_none() {
            if st.direct.is_some() {
                // The socket is handed over (possibly with nothing queued,
                // after claim_writer) or the writer keeps waiting.
                if st.owner != Owner::Task {
                    return None;
                }
            } else if st.frames.is_empty() {
                return None;
            }
        }
        st.owner = Owner::Task;
        let skip = std::mem::take(&mut st.head_written);
        out.extend(std::mem::take(&mut st.frames));
        st.bytes = 0;
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

    /// Hands the socket to the writer task and wakes it, so that it writes
    /// something of its own (e.g. a WebSocket pong): with a direct sink,
    /// its [`next_write_batch`](Outbox::next_write_batch) then returns even
    /// if nothing is queued. A scheduled flush finds nothing to do.
    pub fn claim_writer(&self) {
        self.state.lock().unwrap().owner = Owner::Task;
        self.notify.notify_one();
    }

    /// The writer wrote everything it took: if nothing new is queued, the
    /// socket goes back to direct writes (true); otherwise the writer keeps
    /// it and must take the next batch (false).
    pub fn release_writer(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.frames.is_empty() && st.closed.is_none() {
            st.owner = Owner::Idle;
            st.last_write_ms = clock_ms();
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

    /// A socket taking at most `room` bytes; wire = 1 byte of framing +
    /// payload.
    #[derive(Default)]
    struct Sink {
        room: Mutex<usize>,
        wrote: Mutex<Vec<u8>>,
        scheduled: Mutex<usize>,
        held: Mutex<Vec<u32>>,
    }

    impl DirectSink for Sink {
        fn try_write_frames(&self, frames: &[Frame], skip: usize) -> io::Result<usize> {
            let mut wire = Vec::new();
            for f in frames {
                wire.push(b'|');
                wire.extend_from_slice(f.bytes());
            }
            let mut room = self.room.lock().unwrap();
            let n = (wire.len() - skip).min(*room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            *room -= n;
            self.wrote
                .lock()
                .unwrap()
                .extend_from_slice(&wire[skip..skip + n]);
            Ok(n)
        }

        fn wire_len(&self, frame: &Frame) -> usize {
            1 + frame.len()
        }

        fn schedule(&self) {
            *self.scheduled.lock().unwrap() += 1;
        }

        fn schedule_at(&self, deadline: u32) {
            self.held.lock().unwrap().push(deadline);
        }
    }

    fn sink(room: usize) -> Arc<Sink> {
        let sink = Arc::new(Sink::default());
        *sink.room.lock().unwrap() = room;
        sink
    }

    #[tokio::test]
    async fn scheduled_flushes_coalesce_and_hand_over_when_full() {
        let ob = Outbox::new(OutboxLimits::default());
        let sink = sink(10);
        ob.set_direct(sink.clone(), 0);
        ob.push_paced(&[Frame::text("ab")]).unwrap();
        ob.push_paced(&[Frame::text("cd")]).unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 1, "one flush for both");
        let mut out = Vec::new();
        assert!(ob.try_write_batch(&mut out).is_none(), "the flush owns it");
        assert_eq!(ob.flush_direct(), 2);
        assert!(ob.is_empty());
        // 4 bytes of room left: "|ef" goes, "gh" is cut after "|".
        ob.push_paced(&[Frame::text("ef"), Frame::text("gh")])
            .unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 2);
        assert_eq!(ob.flush_direct(), 1);
        assert_eq!(ob.len(), 1);
        // The writer task owns the socket now: pushes queue.
        *sink.room.lock().unwrap() = 100;
        ob.push_one(Frame::text("ij")).unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 2);
        let (batch, skip) = ob.next_write_batch(&mut out).await;
        assert_eq!(batch, Batch::Frames);
        assert_eq!((out.len(), skip), (2, 1));
        assert_eq!(sink.try_write_frames(&out, skip).unwrap(), 5);
        assert!(ob.release_writer());
        // A reply to an idle connection is written by the pusher itself.
        ob.push_one(Frame::text("kl")).unwrap();
        assert_eq!(&sink.wrote.lock().unwrap()[..], b"|ab|cd|ef|gh|ij|kl");
        assert_eq!(
            *sink.scheduled.lock().unwrap(),
            2,
            "nothing scheduled for it"
        );
        assert_eq!(ob.flush_direct(), 0);
        assert!(ob.is_empty());
        assert!(ob.clear_direct().is_some());
    }

    #[tokio::test]
    async fn paced_pushes_wait_for_the_hold_and_replies_take_them_along() {
        let ob = Outbox::new(OutboxLimits::default());
        let sink = self::sink(1 << 20);
        ob.set_direct(sink.clone(), 10_000);
        // Never written: the first broadcast goes at once.
        ob.push_paced(&[Frame::text("a")]).unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 1);
        assert_eq!(ob.flush_direct(), 1);
        // Written just now: broadcasts are held until the hold is over, with
        // one deadline for all of them.
        ob.push_paced(&[Frame::text("b")]).unwrap();
        ob.push_paced(&[Frame::text("c")]).unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 1);
        let held = sink.held.lock().unwrap().clone();
        assert_eq!(held.len(), 1);
        let ahead = held[0].wrapping_sub(clock_ms());
        assert!(
            (9_000..=10_000).contains(&ahead),
            "deadline {ahead} ms ahead"
        );
        // A reply cannot wait: it writes what was held with it, in order,
        // right away.
        ob.push(&[Frame::text("r")]).unwrap();
        assert_eq!(*sink.scheduled.lock().unwrap(), 1);
        assert_eq!(&sink.wrote.lock().unwrap()[..], b"|a|b|c|r");
        assert!(ob.is_empty());
        // The held deadline firing late finds nothing to do.
        assert_eq!(ob.flush_direct(), 0);

        // A hold never fills the queue: past HOLD_MAX_FRAMES it flushes.
        let ob = Outbox::new(OutboxLimits::default());
        let sink = self::sink(1 << 20);
        ob.set_direct(sink.clone(), 10_000);
        ob.push_paced(&[Frame::text("0")]).unwrap();
        ob.flush_direct();
        for _ in 0..HOLD_MAX_FRAMES {
            ob.push_paced(&[Frame::text("x")]).unwrap();
        }
        assert_eq!(
            *sink.scheduled.lock().unwrap(),
            2,
            "held, then flushed when full"
        );
        assert_eq!(ob.flush_direct(), HOLD_MAX_FRAMES);

        // Without a hold, broadcasts go at once.
        let ob = Outbox::new(OutboxLimits::default());
        let sink = self::sink(1 << 20);
        ob.set_direct(sink.clone(), 0);
        for _ in 0..3 {
            ob.push_paced(&[Frame::text("y")]).unwrap();
            assert_eq!(ob.flush_direct(), 1);
        }
        assert_eq!(*sink.scheduled.lock().unwrap(), 3);
        assert!(sink.held.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn close_goes_to_the_writer_and_slow_close_keeps_a_started_frame() {
        let ob = Outbox::new(limits(2, 1000));
        let sink = sink(2);
        ob.set_direct(sink.clone(), 0);
        ob.push_one(Frame::text("abc")).unwrap();
        assert_eq!(ob.flush_direct(), 0);
        ob.push_one(Frame::text("d")).unwrap();
        assert_eq!(ob.push_one(Frame::text("e")), Err(PushError::Full));
        let mut out = Vec::new();
        match ob.next_write_batch(&mut out).await {
            (Batch::Closed(CloseReason::SlowConsumer { .. }), 2) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(out, vec![Frame::text("abc")], "the started frame is kept");
        assert!(!ob.release_writer());

        // A flush scheduled before a close leaves the close to the writer.
        let ob = Outbox::new(OutboxLimits::default());
        ob.set_direct(sink.clone(), 0);
        ob.push_paced(&[Frame::text("x")]).unwrap();
        ob.close(CloseReason::ServerShutdown);
        assert_eq!(ob.flush_direct(), 0);
        out.clear();
        assert_eq!(
            ob.next_write_batch(&mut out).await,
            (Batch::Closed(CloseReason::ServerShutdown), 0)
        );
        assert_eq!(out, vec![Frame::text("x")]);

        // A claimed writer gets what is queued.
        let ob = Outbox::new(OutboxLimits::default());
        ob.set_direct(sink.clone(), 0);
        ob.push_paced(&[Frame::text("y")]).unwrap();
        ob.claim_writer();
        assert_eq!(ob.flush_direct(), 0);
        out.clear();
        assert!(ob.try_write_batch(&mut out).is_some());
        assert_eq!(out.len(), 1);
        assert!(ob.release_writer());
        assert!(ob.try_write_batch(&mut out).is_none());
        // Claimed with nothing queued: the writer still gets its turn.
        ob.claim_writer();
        out.clear();
        assert_eq!(ob.next_write_batch(&mut out).await, (Batch::Frames, 0));
        assert!(out.is_empty());
        assert!(ob.release_writer());
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
