//! The direct-write seam of an [`Outbox`], used by the raw WebSocket path:
//! a [`DirectSink`] lets a push write the socket itself, or schedule one
//! flush for many connections, instead of waking the connection's writer
//! task; [`Outbox::push_paced`] holds broadcasts to a busy connection so
//! that one write carries many of them. The queue itself, its bounds and
//! its close are in the parent module.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, MutexGuard};

use super::clock::clock_ms;
use super::{Batch, Frame, Outbox, PushError, State};

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
    /// (a [`clock_ms`] time; [`clock_instant`](super::clock_instant) gives
    /// the tokio instant to sleep until): the outbox is being paced.
    /// Calling [`Outbox::flush_direct`] earlier is harmless (less
    /// coalescing).
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

/// The direct-write and pacing part of an outbox's state (under the same
/// lock as its queue).
pub(super) struct Direct {
    /// Where pushes write directly when they can (see [`Outbox::set_direct`]).
    pub(super) sink: Option<Arc<dyn DirectSink>>,
    /// Who writes (meaningful once a direct sink is installed).
    owner: Owner,
    /// Wire bytes of the first queued frame already written by a direct
    /// write that did not finish it.
    pub(super) head_written: usize,
    /// Pacing: paced pushes write at most once per this many ms (0: never
    /// held).
    hold_ms: u32,
    /// When the socket was last written to ([`clock_ms`]).
    last_write_ms: u32,
    /// Frames the last direct write carried (saturating).
    last_batch: u16,
}

impl Direct {
    /// No sink, nobody writing, never written.
    pub(super) fn new() -> Direct {
        Direct {
            sink: None,
            owner: Owner::Idle,
            head_written: 0,
            hold_ms: 0,
            last_write_ms: 0,
            last_batch: 0,
        }
    }
}

impl Outbox {
    /// Queues frames, all or none, that may wait a little to share a write
    /// with the ones that follow: broadcasts. With a direct sink installed
    /// with a hold (see [`set_direct`](Outbox::set_direct)), a connection
    /// that was written to less than a third of the hold ago is flushed
    /// when the hold since that write is over (or once 64 frames or 64 KiB
    /// wait, `HOLD_MAX_FRAMES` / `HOLD_MAX_BYTES`), so a busy connection
    /// costs one write per hold instead of one per frame, and a quiet one
    /// is written at once. A connection whose last write carried 8 frames
    /// or more (`BUSY_FRAMES`) is held twice as long (`BUSY_HOLD_FACTOR`).
    /// Anything pushed with [`push`](Outbox::push) flushes the held frames
    /// with it.
    pub fn push_paced(&self, frames: &[Frame]) -> Result<(), PushError> {
        self.push_inner(frames, true)
    }

    /// After a push queued frames to an outbox with a direct sink: writes
    /// them, schedules a flush, holds them or wakes the writer task,
    /// depending on who writes and whether the push may wait (`paced`).
    pub(super) fn dispatch_direct(
        &self,
        mut st: MutexGuard<'_, State>,
        was_empty: bool,
        paced: bool,
    ) {
        match st.direct.owner {
            Owner::Idle => {
                if paced && st.direct.hold_ms > 0 {
                    let d = &st.direct;
                    let since = clock_ms().wrapping_sub(d.last_write_ms);
                    if since < d.hold_ms / 3 {
                        let hold = if d.last_batch >= BUSY_FRAMES {
                            d.hold_ms * BUSY_HOLD_FACTOR
                        } else {
                            d.hold_ms
                        };
                        let deadline = d.last_write_ms.wrapping_add(hold);
                        st.direct.owner = Owner::Held;
                        let sink = st.direct.sink.clone().unwrap();
                        drop(st);
                        sink.schedule_at(deadline);
                        return;
                    }
                }
                st.direct.owner = Owner::Flush;
                if !paced {
                    // A reply to an idle connection: written right here, by
                    // whoever answers, instead of waking another task for
                    // one frame.
                    drop(st);
                    self.flush_direct();
                    return;
                }
                let sink = st.direct.sink.clone().unwrap();
                drop(st);
                sink.schedule();
            }
            Owner::Held if !paced => {
                // A reply takes the held broadcasts along, at once.
                st.direct.owner = Owner::Flush;
                drop(st);
                self.flush_direct();
            }
            Owner::Held => {
                if st.frames.len() >= HOLD_MAX_FRAMES || st.bytes >= HOLD_MAX_BYTES {
                    st.direct.owner = Owner::Flush;
                    let sink = st.direct.sink.clone().unwrap();
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
        st.direct.sink = Some(sink);
        st.direct.hold_ms = hold_ms;
        if st.direct.owner == Owner::Idle && !st.frames.is_empty() {
            // Already queued: the writer task sends it.
            st.direct.owner = Owner::Task;
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Removes the direct sink (the connection is going away); returns it.
    pub fn clear_direct(&self) -> Option<Arc<dyn DirectSink>> {
        self.state.lock().unwrap().direct.sink.take()
    }

    /// The scheduled flush (see [`DirectSink::schedule`] and
    /// [`DirectSink::schedule_at`]): writes what is queued with non-blocking
    /// writes while holding the lock. Whatever the socket does not take
    /// right away, and the close, are left to the writer task, which is
    /// woken. Returns the frames written.
    pub fn flush_direct(&self) -> usize {
        let mut st = self.state.lock().unwrap();
        if !matches!(st.direct.owner, Owner::Flush | Owner::Held) {
            return 0;
        }
        st.direct.owner = Owner::Flush;
        let Some(sink) = st.direct.sink.clone() else {
            st.direct.owner = Owner::Task;
            drop(st);
            self.notify.notify_one();
            return 0;
        };
        let mut done = 0;
        while st.closed.is_none() && !st.frames.is_empty() {
            let skip = st.direct.head_written;
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
            st.direct.head_written = rest;
            done += whole;
            if written > 0 {
                st.direct.last_write_ms = clock_ms();
                st.direct.last_batch = u16::try_from(whole).unwrap_or(u16::MAX);
            }
            if written == 0 || rest > 0 {
                // The socket is full: the writer task waits for it.
                break;
            }
        }
        if st.frames.is_empty() && st.closed.is_none() {
            st.direct.owner = Owner::Idle;
            // An idle connection keeps no queue buffer: one allocation per
            // burst costs far less than the write it goes with.
            st.frames = VecDeque::new();
            return done;
        }
        st.direct.owner = Owner::Task;
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
            if st.direct.sink.is_some() {
                // The socket is handed over (possibly with nothing queued,
                // after claim_writer) or the writer keeps waiting.
                if st.direct.owner != Owner::Task {
                    return None;
                }
            } else if st.frames.is_empty() {
                return None;
            }
        }
        st.direct.owner = Owner::Task;
        let skip = std::mem::take(&mut st.direct.head_written);
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
        self.state.lock().unwrap().direct.owner = Owner::Task;
        self.notify.notify_one();
    }

    /// The writer wrote everything it took: if nothing new is queued, the
    /// socket goes back to direct writes (true); otherwise the writer keeps
    /// it and must take the next batch (false).
    pub fn release_writer(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.frames.is_empty() && st.closed.is_none() {
            st.direct.owner = Owner::Idle;
            st.direct.last_write_ms = clock_ms();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::outbox::{CloseReason, OutboxLimits};

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
        let ob = Outbox::new(OutboxLimits {
            max_frames: 2,
            max_bytes: 1000,
        });
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
}
