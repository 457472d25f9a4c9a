//! Event-loop lag: how late a task that asked to wake at time T actually runs.
//!
//! A ticker task sleeps until a deadline, notes how far past the deadline it woke, and sleeps again.
//! On an idle runtime that is the timer's own granularity (tokio's timer ticks in whole
//! milliseconds, so expect 0–1 ms). Anything above it is time the runtime's threads spent on
//! something other than scheduling ready tasks: a blocking call, a long poll, CPU-bound work that
//! should have gone to the [`ImagePool`](crate::ImagePool). Every other task on that runtime (a
//! socket read, a broadcast) is delayed by about as much.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest lag the histogram resolves; longer stalls are recorded as this (and are an outage anyway).
const MAX_TRACKED_US: u64 = 60_000_000;

/// Measures the lag of the tokio runtime it was started on, for as long as it runs.
///
/// Clones share the same statistics and the same ticker. The ticker stops on [`LagMonitor::stop`] or
/// when the last clone is dropped.
///
/// The window is cumulative: since start or the last [`LagMonitor::reset`]. A benchmark resets
/// between phases; a server can log one [`LagSnapshot`] on shutdown.
#[derive(Clone)]
pub struct LagMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    // Why hdrhistogram and not a hand-rolled one: it is already in the workspace for the benchmark,
    // it costs two small dependencies without its default features, its percentiles have a known
    // error bound (3 significant digits here), and the lag figures and the benchmark's latency
    // figures then come from the same arithmetic.
    //
    // A std Mutex: the ticker holds it for one `record`, readers for one summary; never across
    // an `.await`.
    histogram: Arc<Mutex<Samples>>,
    task: Mutex<Option<JoinHandle<()>>>,
    interval: Duration,
}

/// A summary of the lag samples in the current window, in microseconds.
///
/// Also usable for any latency histogram: see [`LagSnapshot::from_histogram`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagSnapshot {
    /// Number of wake-ups measured.
    pub samples: u64,
    /// Mean lag.
    pub mean_us: u64,
    /// Median lag.
    pub p50_us: u64,
    /// 99th percentile lag.
    pub p99_us: u64,
    /// Worst lag.
    pub max_us: u64,
}

/// The lag samples: the current window (which [`LagMonitor::reset`] starts
/// again) and every sample since start (for Prometheus, whose histograms
/// only grow).
struct Samples {
    window: Histogram<u64>,
    total: Histogram<u64>,
}

/// Every sample since start in buckets, as a Prometheus histogram holds
/// them ([`LagMonitor::buckets`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagBuckets {
    /// `(upper bound in seconds, samples in this bucket alone)`, the last
    /// bound infinite.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the samples, in seconds.
    pub sum_seconds: f64,
    /// Number of samples.
    pub count: u64,
}

impl LagSnapshot {
    /// Summarise a histogram of microsecond values.
    pub fn from_histogram(h: &Histogram<u64>) -> LagSnapshot {
        if h.is_empty() {
            return LagSnapshot::default();
        }
        LagSnapshot {
            samples: h.len(),
            mean_us: h.mean().round() as u64,
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

impl fmt::Display for LagSnapshot {
    /// `1234 samples, mean 0.4 ms, p50 0.3 ms, p99 1.1 ms, max 2.0 ms`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "{} samples, mean {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.samples,
            ms(self.mean_us),
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.max_us)
        )
    }
}

impl LagMonitor {
    /// The interval used by volna unless configured otherwise: 10 ms.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

    /// Start measuring the runtime this is called on (spawns the ticker with `tokio::spawn`).
    ///
    /// # Panics
    /// When called outside a tokio runtime, like `tokio::spawn`.
    pub fn start(interval: Duration) -> LagMonitor {
        LagMonitor::start_on(&Handle::current(), interval)
    }

    /// Start measuring the runtime behind `runtime`.
    pub fn start_on(runtime: &Handle, interval: Duration) -> LagMonitor {
        let interval = interval.max(Duration::from_millis(1));
        let histogram = Arc::new(Mutex::new(Samples {
            window: new_histogram(),
            total: new_histogram(),
        }));
        let task = runtime.spawn(tick(histogram.clone(), interval));
        LagMonitor {
            inner: Arc::new(Inner {
                histogram,
                task: Mutex::new(Some(task)),
                interval,
            }),
        }
    }

    /// The summary of the current window.
    pub fn snapshot(&self) -> LagSnapshot {
        LagSnapshot::from_histogram(&lock(&self.inner.histogram).window)
    }

    /// Every sample since start, in buckets with these upper bounds (in
    /// microseconds, increasing; an infinite one is added).
    pub fn buckets(&self, bounds_us: &[u64]) -> LagBuckets {
        let samples = lock(&self.inner.histogram);
        let h = &samples.total;
        let mut buckets = Vec::with_capacity(bounds_us.len() + 1);
        let mut low = 0;
        for &bound in bounds_us {
            let n = if bound < low {
                0
            } else {
                h.count_between(low, bound)
            };
            buckets.push((bound as f64 / 1e6, n));
            low = bound + 1;
        }
        buckets.push((f64::INFINITY, h.count_between(low, h.high())));
        LagBuckets {
            buckets,
            sum_seconds: h.mean() * h.len() as f64 / 1e6,
            count: h.len(),
        }
    }

    /// Start a new window: forget every sample so far (of the window; not
    /// of [`buckets`](Self::buckets)).
    pub fn reset(&self) {
        lock(&self.inner.histogram).window.reset();
    }

    /// Stop the ticker. The statistics stay readable. Calling it again does nothing.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// The ticker's interval.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }
}

impl fmt::Debug for LagMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagMonitor")
            .field("interval", &self.inner.interval)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Inner {
    fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("constant bounds are valid")
}

async fn tick(histogram: Arc<Mutex<Samples>>, interval: Duration) {
    let mut deadline = Instant::now() + interval;
    loop {
        tokio::time::sleep_until(deadline).await;
        let woke = Instant::now();
        let lag = woke.saturating_duration_since(deadline);
        let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        let mut samples = lock(&histogram);
        samples.window.saturating_record(lag_us.min(MAX_TRACKED_US));
        samples.total.saturating_record(lag_us.min(MAX_TRACKED_US));
        drop(samples);
        // The next deadline counts from when we woke, not from the missed one: a 200 ms stall is
        // one 200 ms sample, not one plus a burst of catch-up ticks that would dilute the mean.
        deadline = woke + interval;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only a histogram update or read happens under these locks; a poisoned one is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_of_known_values() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let s = LagSnapshot::from_histogram(&h);
        assert_eq!(s.samples, 1000);
        assert_eq!(s.max_us, 1000);
        assert!((499..=501).contains(&s.mean_us), "{s:?}");
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((989..=991).contains(&s.p99_us), "{s:?}");
    }

    #[test]
    fn empty_snapshot_is_zero() {
        assert_eq!(
            LagSnapshot::from_histogram(&new_histogram()),
            LagSnapshot::default()
        );
    }

    #[test]
    fn display_in_milliseconds() {
        let s = LagSnapshot {
            samples: 3,
            mean_us: 1500,
            p50_us: 1000,
            p99_us: 2000,
            max_us: 250_000,
        };
        assert_eq!(
            s.to_string(),
            "3 samples, mean 1.5 ms, p50 1.0 ms, p99 2.0 ms, max 250.0 ms"
        );
    }
}
