//! The lag monitor sees a blocked event loop, and stays quiet on an idle one.
//! Timing assertions are deliberately generous: the test machine may be busy.

use std::time::Duration;

use volna_media::{LagMonitor, LagSnapshot};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_blocked_loop_shows_as_lag() {
    current_thread().block_on(async {
        let lag = LagMonitor::start(LagMonitor::DEFAULT_INTERVAL);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The mistake the monitor exists to catch: a blocking call inside a task.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = lag.snapshot();
        eprintln!("blocked: {s}");
        assert!(s.max_us >= 150_000, "{s}");
        assert!(s.max_us < 10_000_000, "{s}");
        assert!(s.samples >= 3, "{s}");
        assert!(s.mean_us <= s.max_us && s.p50_us <= s.p99_us && s.p99_us <= s.max_us);
    });
}

#[test]
fn an_idle_loop_shows_little_lag() {
    current_thread().block_on(async {
        let lag = LagMonitor::start(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = lag.snapshot();
        eprintln!("idle: {s}");
        assert!(s.samples >= 10, "{s}");
        // Timer granularity is 1 ms; allow a lot more for a loaded machine.
        assert!(s.p50_us < 20_000, "{s}");
    });
}

#[test]
fn reset_clones_and_stop() {
    current_thread().block_on(async {
        let lag = LagMonitor::start(Duration::from_millis(2));
        let clone = lag.clone();
        assert_eq!(lag.interval(), Duration::from_millis(2));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(clone.snapshot().samples > 0, "clones share the statistics");

        lag.reset();
        assert_eq!(clone.snapshot(), LagSnapshot::default());

        tokio::time::sleep(Duration::from_millis(20)).await;
        clone.stop();
        clone.stop(); // idempotent
        tokio::time::sleep(Duration::from_millis(5)).await;
        let frozen = lag.snapshot();
        assert!(frozen.samples > 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(lag.snapshot(), frozen, "no samples after stop");
    });
}

#[test]
fn works_on_a_multi_thread_runtime_via_its_handle() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lag = LagMonitor::start_on(rt.handle(), Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(100));
    let s = lag.snapshot();
    assert!(s.samples >= 3, "{s}");
    drop(lag); // the last clone stops the ticker
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn dropping_the_last_clone_stops_the_ticker() {
    current_thread().block_on(async {
        let lag = LagMonitor::start(Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(lag);
        tokio::task::yield_now().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        for _ in 0..100 {
            if metrics.num_alive_tasks() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the ticker task is still alive");
    });
}
