//! The receiving side of a fan-out: every member counts the marked
//! messages it gets and records their latency, until it has them all or the
//! run stops. Shared by `fanout` (members publish) and `api` (the server API
//! publishes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{find_marker, Proto, Received, Rx, Tx};
use super::common::now_micros;
use super::members::Member;
use super::report::new_histogram;

/// What every member's receive loop adds to.
#[derive(Clone)]
pub(super) struct Counts {
    /// Marked messages received so far, by every member.
    delivered: Arc<AtomicU64>,
    /// Members the server (or the network) closed so far.
    closed: Arc<AtomicU64>,
    /// Every member's latencies: one histogram for all (one per member
    /// would cost ~200 KiB each).
    latency: Arc<std::sync::Mutex<Histogram<u64>>>,
    stop: CancellationToken,
}

impl Counts {
    pub(super) fn new() -> Counts {
        Counts {
            delivered: Arc::new(AtomicU64::new(0)),
            closed: Arc::new(AtomicU64::new(0)),
            latency: Arc::new(std::sync::Mutex::new(new_histogram())),
            stop: CancellationToken::new(),
        }
    }

    /// A member's receive loop: counts the marked messages (stamped with
    /// [`now_micros`]) it gets until it has `messages`, and answers pings
    /// meanwhile, until stopped or closed. Whether it got them all.
    pub(super) async fn receive(
        self,
        tx: Arc<Mutex<Tx>>,
        mut rx: Rx,
        proto: Proto,
        messages: u64,
    ) -> bool {
        let mut got: u64 = 0;
        loop {
            let frame = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = rx.next(proto) => r,
            };
            match frame {
                Ok(Received::Frame(f)) => {
                    if let Some((_seq, sent)) = find_marker(&f) {
                        let took = now_micros().saturating_sub(sent).max(1);
                        let _ = self.latency.lock().unwrap().record(took);
                        got += 1;
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                        if got == messages {
                            break;
                        }
                    }
                }
                Ok(Received::Ping) => {
                    let _ = tx.lock().await.pong().await;
                }
                Ok(Received::Closed) | Err(_) => {
                    self.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        got >= messages
    }
}

/// The members' receive loops.
pub(super) struct Deliveries {
    counts: Counts,
    tasks: Vec<JoinHandle<bool>>,
}

impl Deliveries {
    /// Loops already running (see [`Counts::receive`]).
    pub(super) fn of(counts: Counts, tasks: Vec<JoinHandle<bool>>) -> Deliveries {
        Deliveries { counts, tasks }
    }

    /// Starts a receive loop per member, the `i`th expecting `expect[i]`
    /// marked messages. Returns the loops and every member's sending half
    /// (shared with its loop).
    pub(super) fn spawn(
        members: Vec<Member>,
        proto: Proto,
        expect: &[u64],
    ) -> (Deliveries, Vec<Arc<Mutex<Tx>>>) {
        let counts = Counts::new();
        let mut tasks = Vec::with_capacity(members.len());
        let mut senders = Vec::with_capacity(members.len());
        for (Member { tx, rx }, &messages) in members.into_iter().zip(expect) {
            let tx = Arc::new(Mutex::new(tx));
            senders.push(tx.clone());
            tasks.push(tokio::spawn(
                counts.clone().receive(tx, rx, proto, messages),
            ));
        }
        (Deliveries::of(counts, tasks), senders)
    }

    /// Members closed so far.
    pub(super) fn closed(&self) -> u64 {
        self.counts.closed.load(Ordering::Relaxed)
    }

    /// Shows the deliveries on `bar` until the returned task is aborted.
    pub(super) fn show_on(&self, bar: &indicatif::ProgressBar) -> JoinHandle<()> {
        let bar = bar.clone();
        let delivered = self.counts.delivered.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(delivered.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Waits for `expected` deliveries in all, or until none has arrived for
    /// `drain` seconds.
    pub(super) async fn wait(&self, expected: u64, drain: f64) {
        let mut last = self.counts.delivered.load(Ordering::Relaxed);
        let mut idle_since = Instant::now();
        while last < expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.counts.delivered.load(Ordering::Relaxed);
            if now != last {
                last = now;
                idle_since = Instant::now();
            } else if idle_since.elapsed() > Duration::from_secs_f64(drain) {
                break;
            }
        }
    }

    /// Stops the loops: the latencies of every delivery, the deliveries and
    /// how many members got fewer than all messages.
    pub(super) async fn finish(self) -> anyhow::Result<(Histogram<u64>, u64, usize)> {
        self.counts.stop.cancel();
        let mut short = 0;
        for t in self.tasks {
            if !t.await? {
                short += 1;
            }
        }
        let hist = self.counts.latency.lock().unwrap().clone();
        Ok((hist, self.counts.delivered.load(Ordering::Relaxed), short))
    }
}
