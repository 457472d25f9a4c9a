//! Shutdown, cancellation and panics: the pool answers every caller and its workers survive bad jobs.

mod common;

use common::{occupy, pool, wait_for};

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use volna_media::ImageError;

#[tokio::test]
async fn shutdown_answers_queued_jobs_and_refuses_new_ones() {
    let pool = pool(1, 4);
    let (release, blocker) = occupy(&pool).await;
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.thumbnail(common::png(32, 32)).await }
    });
    wait_for("the job to be queued", || pool.stats().queue_depth == 1).await;

    pool.shutdown();
    assert_eq!(queued.await.unwrap(), Err(ImageError::ShuttingDown));
    let e = pool.thumbnail(common::png(32, 32)).await.unwrap_err();
    assert_eq!(e, ImageError::ShuttingDown);
    assert_eq!(e.code(), "shutting-down");
    assert!(!e.is_retryable());

    // The job in progress finishes and is answered; then the worker exits.
    release.send(()).unwrap();
    blocker.await.unwrap();
    wait_for("the worker to exit", || pool.stats().workers == 0).await;
}

#[tokio::test]
async fn a_job_whose_caller_left_is_skipped() {
    let pool = pool(1, 4);
    let (release, blocker) = occupy(&pool).await;
    {
        // Poll once (which queues the job), then drop the future, as a closing connection would.
        let mut fut = pin!(pool.thumbnail(common::jpeg(500, 500)));
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        assert_eq!(pool.stats().queue_depth, 1);
    }
    release.send(()).unwrap();
    blocker.await.unwrap();
    wait_for("the abandoned job to be skipped", || {
        pool.stats().cancelled == 1
    })
    .await;
    let stats = pool.stats();
    assert_eq!((stats.done, stats.failed, stats.queue_depth), (1, 0, 0));
}

#[tokio::test]
async fn a_panicking_job_reaches_its_caller_and_the_worker_survives() {
    let pool = pool(1, 4);
    let task = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(|| -> u32 { panic!("boom in a job") }).await }
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic(), "the panic is resumed in the awaiting task");

    // The single worker is still there and serving.
    assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    let t = pool.thumbnail(common::webp(20, 10)).await.unwrap();
    assert_eq!((t.thumb_width, t.thumb_height), (20, 10));
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.failed, stats.done), (1, 1, 2));
}

thread_local! {
    /// Set inside a job; dropped (disconnecting its channel) when the worker thread exits.
    static EXIT_SIGNAL: std::cell::RefCell<Option<std::sync::mpsc::Sender<()>>> =
        const { std::cell::RefCell::new(None) };
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_workers() {
    let pool = pool(1, 4);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    pool.run(move || EXIT_SIGNAL.with(|s| *s.borrow_mut() = Some(tx)))
        .await
        .unwrap();

    let clone = pool.clone();
    drop(pool);
    assert_eq!(clone.run(|| 1).await, Ok(1), "a clone keeps the pool alive");
    assert_eq!(
        rx.try_recv(),
        Err(std::sync::mpsc::TryRecvError::Empty),
        "worker still running"
    );

    drop(clone);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        "the worker thread exited"
    );
}
