//! The work runs on the pool's own OS threads, never on a tokio runtime thread.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use volna_media::{make_thumbnail, ImageLimits, ImagePool, LagMonitor, PoolConfig};

fn pool(workers: usize) -> ImagePool {
    ImagePool::new(PoolConfig {
        workers,
        queue: 8,
        limits: ImageLimits::default(),
    })
    .expect("worker threads")
}

#[test]
fn jobs_run_on_named_pool_threads_not_on_tokio_workers() {
    let runtime_threads: Arc<Mutex<HashSet<ThreadId>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-tokio-worker")
        .on_thread_start({
            let set = runtime_threads.clone();
            move || {
                set.lock().unwrap().insert(std::thread::current().id());
            }
        })
        .enable_all()
        .build()
        .unwrap();
    let pool = pool(2);

    let seen = rt.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            // Submitted from inside a runtime task, as a transport would.
            let task = tokio::spawn(async move {
                let caller = std::thread::current().id();
                let (worker, name) = pool
                    .run(|| {
                        let t = std::thread::current();
                        (t.id(), t.name().map(str::to_owned))
                    })
                    .await
                    .unwrap();
                (caller, worker, name)
            });
            seen.push(task.await.unwrap());
        }
        seen
    });

    let runtime_threads = runtime_threads.lock().unwrap();
    assert!(!runtime_threads.is_empty());
    for (caller, worker, name) in seen {
        assert!(
            runtime_threads.contains(&caller),
            "the caller was a tokio worker"
        );
        assert!(!runtime_threads.contains(&worker), "the job was not");
        assert_ne!(
            worker,
            std::thread::current().id(),
            "nor the block_on thread"
        );
        let name = name.expect("pool threads are named");
        assert!(name.starts_with("volna-image-"), "{name}");
    }
}

#[test]
fn a_current_thread_runtime_keeps_running_while_a_thumbnail_is_made() {
    // On a single-threaded runtime anything CPU-bound done inline would stop every other task.
    // Awaiting the pool instead leaves the runtime free: a 1 ms ticker keeps ticking throughout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = pool(1);
    let big = common::jpeg(2000, 2000);
    rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        let t = pool.thumbnail(big).await.unwrap();
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert_eq!((t.width, t.height), (2000, 2000));
        let work_ms = pool.stats().work_us / 1000;
        assert!(
            work_ms >= 5,
            "the job should take a while (took {work_ms} ms)"
        );
        assert!(
            during >= 2,
            "the runtime ran other tasks while the job took {work_ms} ms ({during} ticks)"
        );
    });
}

#[test]
fn inline_work_shows_as_lag_and_pool_work_does_not() {
    // The same thumbnails, made inline on the event loop and then on the pool, with the lag
    // monitor watching. Inline, the loop stalls for as long as a thumbnail takes; on the pool it
    // does not. Assertions are generous: the machine may be busy with other work.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = pool(1);
    let big = common::jpeg(3000, 2000);
    let limits = ImageLimits::default();
    rt.block_on(async {
        let lag = LagMonitor::start(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(20)).await;

        lag.reset();
        let mut slowest_inline = Duration::ZERO;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            make_thumbnail(&big, &limits).unwrap(); // blocks the loop: the counter-example
            slowest_inline = slowest_inline.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let inline = lag.snapshot();

        lag.reset();
        for _ in 0..3 {
            pool.thumbnail(big.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let pooled = lag.snapshot();
        lag.stop();

        let job_us = slowest_inline.as_micros() as u64;
        eprintln!("job {job_us} us; inline lag: {inline}; pool lag: {pooled}");
        assert!(job_us >= 20_000, "the job should be heavy enough to see");
        assert!(
            inline.max_us >= job_us / 2,
            "inline work shows as lag: {inline}"
        );
        assert!(
            pooled.max_us < inline.max_us / 2,
            "pool work does not: {pooled} vs {inline}"
        );
    });
}
