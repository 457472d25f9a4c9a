//! The queue is bounded: when it is full a submission fails at once with `busy`.

mod common;

use common::{occupy, pool, wait_for};

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use volna_media::ImageError;

#[tokio::test]
async fn full_queue_answers_busy_on_the_first_poll() {
    let pool = pool(1, 1);
    let (release, blocker) = occupy(&pool).await;

    // One job fits in the queue.
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.thumbnail(common::png(64, 64)).await }
    });
    wait_for("the job to be queued", || pool.stats().queue_depth == 1).await;

    // The next one is refused without waiting: the very first poll is `Ready(Err(Busy))`.
    let mut refused = pin!(pool.thumbnail(common::png(64, 64)));
    let poll = refused
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(poll, Poll::Ready(Err(ImageError::Busy))),
        "{poll:?}"
    );
    let busy = ImageError::Busy;
    assert_eq!(busy.code(), "busy");
    assert!(busy.is_retryable());
    assert_eq!(pool.stats().rejected_busy, 1);
    assert_eq!(pool.stats().queue_depth, 1, "nothing piled up");

    release.send(()).unwrap();
    blocker.await.unwrap();
    let t = queued.await.unwrap().expect("the queued job still runs");
    assert_eq!((t.width, t.height), (64, 64));

    let stats = pool.stats();
    assert_eq!((stats.done, stats.failed, stats.rejected_busy), (2, 0, 1));
    assert_eq!(stats.queue_depth, 0);

    // With room again, work is accepted again.
    assert!(pool.thumbnail(common::png(8, 8)).await.is_ok());
}

#[tokio::test]
async fn many_large_decodes_at_once_overflow_a_small_pool() {
    let pool = pool(1, 1);
    let big = common::jpeg(2000, 2000); // tens of milliseconds of decoding each
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (pool, big) = (pool.clone(), big.clone());
            tokio::spawn(async move { pool.thumbnail(big).await })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(t) => {
                assert_eq!((t.thumb_width, t.thumb_height), (256, 256));
                ok += 1;
            }
            Err(ImageError::Busy) => busy += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // All 12 were submitted in one pass of the scheduler, while one worker decoded the first:
    // at most the running job and one queued job were accepted.
    assert!(ok >= 1, "ok {ok}");
    assert!(busy >= 1, "busy {busy}");
    assert_eq!(ok + busy, 12);
    let stats = pool.stats();
    assert_eq!(stats.rejected_busy, busy);
    assert_eq!(stats.done, ok);
    assert!(stats.work_us > 0);
}

#[tokio::test]
async fn bad_input_never_takes_a_queue_slot() {
    let pool = pool(1, 1);
    let (release, blocker) = occupy(&pool).await;
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.thumbnail(common::png(16, 16)).await }
    });
    wait_for("the job to be queued", || pool.stats().queue_depth == 1).await;

    // Size and format are judged on the caller's side: these are answered even though the queue
    // is full, and with their own error rather than `busy`.
    let e = pool
        .thumbnail(bytes::Bytes::from_static(b"not an image"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unsupported-format");
    let e = pool
        .thumbnail(bytes::Bytes::from(vec![0u8; 9 * 1024 * 1024]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "too-large");
    assert_eq!(pool.stats().rejected_busy, 0);

    release.send(()).unwrap();
    blocker.await.unwrap();
    queued.await.unwrap().unwrap();
}

#[tokio::test]
async fn failures_are_counted() {
    let pool = pool(2, 4);
    let corrupt = {
        let b = common::png(100, 100);
        b.slice(..b.len() / 2)
    };
    let e = pool.thumbnail(corrupt).await.unwrap_err();
    assert_eq!(e.code(), "corrupt-image");
    let e = pool
        .thumbnail(common::png_bomb_header(100_000, 100_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "too-many-pixels");
    pool.thumbnail(common::gif(10, 10)).await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.done, stats.failed), (1, 2));
    assert_eq!(stats.workers, 2);
}
