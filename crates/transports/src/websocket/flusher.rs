//! One task that writes the outboxes of many WebSocket connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{clock_instant, clock_ms, Outbox};

/// Writes the outboxes of many connections in turn, from one task: a push
/// to an idle connection schedules its outbox here instead of waking the
/// connection's own writer task (see [`DirectSink`](volna_hub::DirectSink)). While the flusher
/// works through a fan-out, later messages pile up behind it, so a busy
/// server writes several frames per syscall.
///
/// Paced pushes (broadcasts, see `Outbox::push_paced`) to a connection
/// written to less than the hold ago wait in a timer wheel with one slot
/// per millisecond until the hold is over: each write then carries every
/// frame of the hold.
pub struct Flusher {
    dirty: Mutex<Vec<Arc<Outbox>>>,
    held: Mutex<Wheel>,
    notify: Notify,
    started: AtomicBool,
    hold_ms: u32,
}

/// Outboxes flushed between two yields of the flusher task.
const FLUSHES_PER_YIELD: usize = 128;

/// Slots of the hold wheel, one per millisecond: more than the longest hold
/// (a busy connection is held twice [`MAX_HOLD_MS`]).
const WHEEL_SLOTS: u32 = 1024;

/// The longest hold accepted, in milliseconds.
pub const MAX_HOLD_MS: u32 = 300;

/// Held outboxes by deadline (`clock_ms` times).
struct Wheel {
    slots: Vec<Vec<(u32, Arc<Outbox>)>>,
    /// Entries in all slots.
    count: usize,
    /// The first millisecond not yet collected.
    cursor: u32,
    /// The flusher waits for a notification (it is not working through a
    /// batch, after which it looks at the wheel anyway)…
    sleeping: bool,
    /// …and its timer, if any, fires then.
    wake_at: Option<u32>,
}

/// `a` is at or before `b` on the wrapping millisecond clock.
fn not_after(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < u32::MAX / 2
}

impl Wheel {
    /// Adds an entry; true if the flusher must be woken to notice it.
    fn insert(&mut self, deadline: u32, outbox: Arc<Outbox>) -> bool {
        let now = clock_ms();
        if self.count == 0 {
            self.cursor = now;
        }
        // Never behind the cursor (the slot would not be seen for a lap).
        let deadline = if not_after(deadline, self.cursor) {
            self.cursor
        } else {
            deadline
        };
        self.slots[(deadline % WHEEL_SLOTS) as usize].push((deadline, outbox));
        self.count += 1;
        if !self.sleeping || self.wake_at.is_some_and(|w| not_after(w, deadline)) {
            return false;
        }
        self.wake_at = Some(deadline);
        true
    }

    /// Moves the entries due at `now` into `out`.
    fn collect(&mut self, now: u32, out: &mut Vec<Arc<Outbox>>) {
        self.sleeping = false;
        self.wake_at = None;
        let mut steps = 0;
        while self.count > 0 && not_after(self.cursor, now) && steps < WHEEL_SLOTS {
            let slot = &mut self.slots[(self.cursor % WHEEL_SLOTS) as usize];
            let before = slot.len();
            slot.retain(|(deadline, outbox)| {
                if not_after(*deadline, now) {
                    out.push(outbox.clone());
                    false
                } else {
                    true
                }
            });
            self.count -= before - slot.len();
            if slot.is_empty() && slot.capacity() > 1024 {
                *slot = Vec::new();
            }
            self.cursor = self.cursor.wrapping_add(1);
            steps += 1;
        }
    }

    /// The earliest deadline waiting, if any.
    fn next(&self) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        (0..WHEEL_SLOTS)
            .map(|i| self.cursor.wrapping_add(i))
            .find(|t| {
                self.slots[(t % WHEEL_SLOTS) as usize]
                    .iter()
                    .any(|(d, _)| d == t)
            })
            .or(Some(self.cursor))
    }
}

impl Flusher {
    /// A flusher that holds paced pushes for `hold` (see [`MAX_HOLD_MS`]);
    /// [`start`](Flusher::start) runs it.
    pub fn new(hold: Duration) -> Arc<Flusher> {
        Arc::new(Flusher {
            dirty: Mutex::new(Vec::new()),
            held: Mutex::new(Wheel {
                slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
                count: 0,
                cursor: 0,
                sleeping: false,
                wake_at: None,
            }),
            notify: Notify::new(),
            started: AtomicBool::new(false),
            hold_ms: (hold.as_millis() as u32).min(MAX_HOLD_MS),
        })
    }

    /// The hold, in milliseconds.
    pub fn hold_ms(&self) -> u32 {
        self.hold_ms
    }

    /// Spawns its task (once) on `tracker`; it ends at `shutdown`, after
    /// which connections flush through their own writer tasks.
    pub fn start(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tracker.spawn(self.clone().run(shutdown));
        }
    }

    pub(super) fn schedule(&self, outbox: Arc<Outbox>) {
        let mut dirty = self.dirty.lock().unwrap();
        let was_empty = dirty.is_empty();
        dirty.push(outbox);
        drop(dirty);
        if was_empty {
            self.notify.notify_one();
        }
    }

    pub(super) fn schedule_at(&self, outbox: Arc<Outbox>, deadline: u32) {
        let wake = self.held.lock().unwrap().insert(deadline, outbox);
        if wake {
            self.notify.notify_one();
        }
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut work = Vec::new();
        loop {
            std::mem::swap(&mut *self.dirty.lock().unwrap(), &mut work);
            let now = clock_ms();
            let next = {
                let mut held = self.held.lock().unwrap();
                held.collect(now, &mut work);
                if work.is_empty() {
                    let next = held.next();
                    held.sleeping = true;
                    held.wake_at = next;
                    next
                } else {
                    None
                }
            };
            if work.is_empty() {
                if work.capacity() > 4096 {
                    work = Vec::new();
                }
                let until = next.map(|t| {
                    let ahead = t.wrapping_sub(now).min(WHEEL_SLOTS);
                    clock_instant(now.wrapping_add(ahead))
                });
                tokio::select! {
                    _ = self.notify.notified() => continue,
                    _ = async { tokio::time::sleep_until(until.unwrap()).await }, if until.is_some() => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            let mut n = 0;
            while let Some(outbox) = work.pop() {
                outbox.flush_direct();
                n += 1;
                if n % FLUSHES_PER_YIELD == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::WsSocket;
    use tokio::net::{TcpListener, TcpStream};
    use volna_hub::Frame;

    fn wheel() -> Wheel {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            count: 0,
            cursor: 0,
            sleeping: false,
            wake_at: None,
        }
    }

    #[test]
    fn wheel_hands_out_entries_when_due_and_wakes_a_sleeper_for_earlier_ones() {
        let mut w = wheel();
        let ob = |n: usize| {
            Arc::new(Outbox::new(volna_hub::OutboxLimits {
                max_frames: n,
                ..Default::default()
            }))
        };
        let now = clock_ms();
        assert!(!w.insert(now + 30, ob(1)), "a working flusher looks anyway");
        w.insert(now + 10, ob(2));
        w.insert(now + 10, ob(3));
        assert_eq!(w.next(), Some(now + 10));
        let mut out = Vec::new();
        w.collect(now + 9, &mut out);
        assert!(out.is_empty());
        w.collect(now + 10, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(w.next(), Some(now + 30));
        // Asleep until +30: an entry due earlier must wake it, a later one not.
        w.sleeping = true;
        w.wake_at = Some(now + 30);
        assert!(!w.insert(now + 40, ob(4)));
        assert!(w.insert(now + 20, ob(5)));
        assert!(!w.insert(now + 25, ob(6)), "already woken for +20");
        // Asleep with no timer: any entry wakes it.
        out.clear();
        w.collect(now + 1000, &mut out);
        assert_eq!(out.len(), 4, "a late flusher gets everything overdue");
        assert_eq!(w.count, 0);
        w.sleeping = true;
        w.wake_at = None;
        assert!(w.insert(clock_ms() + 5, ob(7)));
        // A deadline already past is due at once.
        let mut w = wheel();
        let now = clock_ms();
        w.insert(now.wrapping_sub(50), ob(8));
        out.clear();
        w.collect(now, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn held_broadcasts_are_written_when_the_hold_ends_and_replies_take_them_along() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let flusher = Flusher::new(Duration::from_millis(u64::from(MAX_HOLD_MS)));
        flusher.start(&tracker, shutdown.clone());
        let outbox = Arc::new(Outbox::new(volna_hub::OutboxLimits::default()));
        let ws = Arc::new(WsSocket::new(server));
        ws.install(&outbox, flusher.clone());
        let wire = |texts: &[&str]| {
            let mut v = Vec::new();
            for t in texts {
                v.extend_from_slice(&[0x81, t.len() as u8]);
                v.extend_from_slice(t.as_bytes());
            }
            v
        };
        async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
            let mut buf = vec![0u8; n];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
                .await
                .expect("frames arrive")
                .unwrap();
            buf
        }
        // Quiet connection: the first broadcast goes at once.
        outbox.push_paced(&[Frame::text("one")]).unwrap();
        let first = tokio::time::Instant::now();
        assert_eq!(read_n(&mut client, 5).await, wire(&["one"]));
        // Busy: the next ones are held, then written together.
        outbox.push_paced(&[Frame::text("two")]).unwrap();
        outbox.push_paced(&[Frame::text("three")]).unwrap();
        assert_eq!(read_n(&mut client, 12).await, wire(&["two", "three"]));
        assert!(
            first.elapsed() >= Duration::from_millis(u64::from(MAX_HOLD_MS) - 20),
            "held for the hold"
        );
        // Held frames go out with a reply, which does not wait.
        outbox.push_paced(&[Frame::text("four")]).unwrap();
        outbox.push(&[Frame::text("ack")]).unwrap();
        let reply = tokio::time::Instant::now();
        assert_eq!(read_n(&mut client, 11).await, wire(&["four", "ack"]));
        assert!(
            reply.elapsed() < Duration::from_millis(u64::from(MAX_HOLD_MS) / 2),
            "a reply is not held"
        );
        shutdown.cancel();
    }
}
