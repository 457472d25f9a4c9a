//! The bounded pool of OS threads that runs CPU-bound jobs off the event loop.
//!
//! A job queue bounded by [`PoolConfig::queue`] feeds [`PoolConfig::workers`] named threads
//! (`volna-image-0`, `volna-image-1`, …). Submitting never waits: a full queue is an immediate
//! [`ImageError::Busy`]. The answer comes back on a `tokio::sync::oneshot`, so the awaiting task
//! sleeps on the event loop like any other I/O wait and the loop's threads never decode a pixel.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::thumb::{make_thumbnail, precheck};
use crate::{ImageError, ImageLimits, Thumbnail};

/// How big the pool is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of worker threads. Defaults to `std::thread::available_parallelism()` (1 if unknown).
    /// At least 1.
    pub workers: usize,
    /// Jobs that may wait for a worker (jobs being worked on do not count). When that many wait, the
    /// next submission fails with [`ImageError::Busy`]. Defaults to 64. At least 1.
    pub queue: usize,
    /// What one image may cost.
    pub limits: ImageLimits,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 64,
            limits: ImageLimits::default(),
        }
    }
}

/// A point-in-time copy of the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Number of worker threads.
    pub workers: u64,
    /// Jobs that finished successfully.
    pub done: u64,
    /// Jobs that finished with an error (a bad image, or a panic caught in the job).
    pub failed: u64,
    /// Submissions refused because the queue was full.
    pub rejected_busy: u64,
    /// Jobs skipped because their caller had stopped waiting before a worker got to them.
    pub cancelled: u64,
    /// Total wall time workers spent inside jobs, in microseconds (close to CPU time: jobs do no I/O).
    pub work_us: u64,
    /// Jobs waiting for a worker now.
    pub queue_depth: u64,
    /// Jobs being worked on now.
    pub running: u64,
}

/// A cheap-to-clone handle to a pool of worker threads for CPU-bound work.
///
/// When the last handle is dropped the pool shuts down as with [`ImagePool::shutdown`]; the worker
/// threads finish their current job and exit on their own (they are never joined from async code).
#[derive(Clone)]
pub struct ImagePool {
    handle: Arc<Handle>,
}

/// Owned by the `ImagePool` clones only, never by workers, so its `Drop` runs when the last user goes.
struct Handle {
    shared: Arc<Shared>,
    limits: ImageLimits,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    capacity: usize,
    counters: Counters,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Runs the work, counts it and sends the answer on the job's oneshot. Dropping a job unrun drops
/// its sender, which the waiting caller reads as [`ImageError::ShuttingDown`].
type Job = Box<dyn FnOnce(&Counters) + Send + 'static>;

/// What comes back from a worker: the job's value, or the payload of its panic.
type Answer<T> = oneshot::Receiver<std::thread::Result<T>>;

#[derive(Default)]
struct Counters {
    workers: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    rejected_busy: AtomicU64,
    cancelled: AtomicU64,
    work_us: AtomicU64,
    queue_depth: AtomicU64,
    running: AtomicU64,
}

impl ImagePool {
    /// Start the worker threads.
    ///
    /// Fails only if the OS refuses to start a thread; threads started before that are told to exit.
    pub fn new(config: PoolConfig) -> std::io::Result<ImagePool> {
        let capacity = config.queue.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            counters: Counters::default(),
        });
        let handle = Arc::new(Handle {
            shared: shared.clone(),
            limits: config.limits,
        });
        for i in 0..config.workers.max(1) {
            let shared = shared.clone();
            // On error `handle` drops here and closes the queue, so the workers already started exit.
            std::thread::Builder::new()
                .name(format!("volna-image-{i}"))
                .spawn(move || worker(&shared))?;
            handle.shared.counters.workers.fetch_add(1, Relaxed);
        }
        Ok(ImagePool { handle })
    }

    /// Decode `bytes` and make a thumbnail on a worker thread, with this pool's [`ImageLimits`].
    ///
    /// Size and format are checked here first (cheap, no decoding), so a non-image never takes a
    /// queue slot. Then the job is queued without waiting: if the queue is full this returns
    /// [`ImageError::Busy`] at once. A panic inside the decoder is caught on the worker and
    /// reported as a corrupt image.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the answer. A job still in the queue is then skipped (and counted
    /// as `cancelled`); one already running finishes and its result is discarded.
    pub async fn thumbnail(&self, bytes: Bytes) -> Result<Thumbnail, ImageError> {
        let format = precheck(&bytes, &self.handle.limits)?;
        let limits = self.handle.limits.clone();
        let answer = self.submit(move || make_thumbnail(&bytes, &limits), Result::is_ok)?;
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(ImageError::Corrupt {
                format,
                reason: "the decoder failed on this image".to_owned(),
            }),
            Err(_) => Err(ImageError::ShuttingDown),
        }
    }

    /// Run any CPU-bound closure on a worker thread, under the same queue bound as thumbnails.
    ///
    /// The only errors are [`ImageError::Busy`] (queue full, `f` was not queued) and
    /// [`ImageError::ShuttingDown`] (the pool closed before `f` ran). A panic in `f` is caught on the
    /// worker, which keeps serving, and resumed in the awaiting task, as if `f` had been called there.
    ///
    /// # Cancel safety
    /// As for [`ImagePool::thumbnail`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, ImageError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let answer = self.submit(f, |_| true)?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(ImageError::ShuttingDown),
        }
    }

    /// Queue `f` without waiting. `ok` tells the counters whether a value is a success.
    fn submit<T, F>(&self, f: F, ok: fn(&T) -> bool) -> Result<Answer<T>, ImageError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c: &Counters| {
            if tx.is_closed() {
                // The caller stopped waiting before a worker got here: skip the work.
                c.cancelled.fetch_add(1, Relaxed);
                return;
            }
            c.running.fetch_add(1, Relaxed);
            let started = Instant::now();
            // A panic (a decoder bug) must not take the worker down: catch it and hand it over.
            let value = catch_unwind(AssertUnwindSafe(f));
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.work_us.fetch_add(micros, Relaxed);
            c.running.fetch_sub(1, Relaxed);
            match &value {
                Ok(v) if ok(v) => c.done.fetch_add(1, Relaxed),
                _ => c.failed.fetch_add(1, Relaxed),
            };
            // Counted before answering (the oneshot orders it), so a caller holding its answer
            // sees its job in `stats()`. The caller may have gone meanwhile; then the value is
            // simply dropped.
            let _ = tx.send(value);
        });
        self.handle.shared.push(job)?;
        Ok(rx)
    }

    /// Stop taking work. Queued jobs are answered with [`ImageError::ShuttingDown`]; jobs being worked
    /// on finish and are answered; then the worker threads exit. Never blocks.
    pub fn shutdown(&self) {
        self.handle.shared.close();
    }

    /// The limits this pool's thumbnails are made under.
    pub fn limits(&self) -> &ImageLimits {
        &self.handle.limits
    }

    /// A copy of the counters.
    pub fn stats(&self) -> PoolStats {
        let c = &self.handle.shared.counters;
        PoolStats {
            workers: c.workers.load(Relaxed),
            done: c.done.load(Relaxed),
            failed: c.failed.load(Relaxed),
            rejected_busy: c.rejected_busy.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            work_us: c.work_us.load(Relaxed),
            queue_depth: c.queue_depth.load(Relaxed),
            running: c.running.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for ImagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePool")
            .field("queue", &self.handle.shared.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    fn push(&self, job: Job) -> Result<(), ImageError> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Err(ImageError::ShuttingDown);
        }
        if q.jobs.len() >= self.capacity {
            drop(q);
            self.counters.rejected_busy.fetch_add(1, Relaxed);
            return Err(ImageError::Busy);
        }
        q.jobs.push_back(job);
        self.counters
            .queue_depth
            .store(q.jobs.len() as u64, Relaxed);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    fn close(&self) {
        let unrun: Vec<Job> = {
            let mut q = lock(&self.queue);
            q.closed = true;
            self.counters.queue_depth.store(0, Relaxed);
            q.jobs.drain(..).collect()
        };
        self.ready.notify_all();
        // Dropped outside the lock: each drop closes a oneshot and wakes its waiting task, which then
        // sees `ShuttingDown`.
        drop(unrun);
    }

    /// The next job, or `None` once the pool is closed.
    fn next(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        loop {
            if q.closed {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                self.counters
                    .queue_depth
                    .store(q.jobs.len() as u64, Relaxed);
                return Some(job);
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn worker(shared: &Shared) {
    while let Some(job) = shared.next() {
        job(&shared.counters);
    }
    shared.counters.workers.fetch_sub(1, Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while one of these locks is held (queue bookkeeping only; jobs run unlocked),
    // so a poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
