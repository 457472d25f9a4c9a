//! `volna bench fanout`: members in one room, some of them publishing at a
//! rate (or as fast as they can); deliveries/s, lost messages, latency
//! percentiles, server CPU per delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::client::{find_marker, payload, Received, Target};
use super::common::Common;
use super::members::{connect_members, join_one, Member};
use super::procfs;
use super::progress::progress;
use super::report::{add_latency, new_histogram, Report};

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    common: &Common,
    n: usize,
    publishers: usize,
    messages: u64,
    rate: f64,
    size: usize,
    drain: f64,
    event: Option<String>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        n >= 1 && publishers >= 1 && publishers <= n,
        "need 1 <= publishers <= clients"
    );
    let target = Target::parse(&common.url)?;
    let probe = join_one(&target, &common.room, None).await?;
    drop(probe);
    let bar = progress(common.quiet, n as u64, "joining");
    let (members, failures, _) = connect_members(common, &target, n, &bar).await;
    bar.finish_and_clear();
    // A few members that could not join do not void the run: it goes on
    // with the others, and the report says how many failed and why. Too few
    // to publish, or more than 1 % failed, and it stops.
    anyhow::ensure!(
        members.len() >= publishers && failures.len() * 100 <= n,
        "{} of {n} members failed to join: {}",
        failures.len(),
        failures.first().map_or("", String::as_str)
    );
    let requested = n;
    let n = members.len();
    // Let the join presence traffic settle before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let proto = target.proto;
    let mut receivers = Vec::with_capacity(n);
    let mut pub_tx = Vec::with_capacity(publishers);
    for (i, Member { tx, mut rx }) in members.into_iter().enumerate() {
        let tx = Arc::new(Mutex::new(tx));
        if i < publishers {
            pub_tx.push(tx.clone());
        }
        let delivered = delivered.clone();
        let stop = stop.clone();
        receivers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut got: u64 = 0;
            loop {
                let frame = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = rx.next(proto) => r,
                };
                match frame {
                    Ok(Received::Frame(f)) => {
                        if let Some((_seq, sent)) = find_marker(&f) {
                            let now = base.elapsed().as_micros() as u64;
                            let _ = hist.record(now.saturating_sub(sent).max(1));
                            got += 1;
                            delivered.fetch_add(1, Ordering::Relaxed);
                            if got == messages {
                                break;
                            }
                        }
                    }
                    Ok(Received::Ping) => {
                        let _ = tx.lock().await.pong().await;
                    }
                    Ok(Received::Closed) | Err(_) => break,
                }
            }
            (hist, got)
        }));
    }
    let expected = messages * n as u64;
    let cpu_before = common.pid.and_then(procfs::cpu_time);
    let bar = progress(common.quiet, expected, "deliveries");
    let ticker = {
        let bar = bar.clone();
        let delivered = delivered.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(delivered.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut pubs = Vec::new();
    let per_pub = messages / publishers as u64;
    let extra = messages % publishers as u64;
    for (p, tx) in pub_tx.into_iter().enumerate() {
        let count = per_pub + u64::from((p as u64) < extra);
        let room = common.room.clone();
        let event = event.clone();
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(publishers as f64 / rate));
        pubs.push(tokio::spawn(async move {
            let mut ticker = interval.map(|d| {
                let mut t = tokio::time::interval(d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            for k in 0..count {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let seq = k * publishers as u64 + p as u64;
                let text = payload(seq, base.elapsed().as_micros() as u64, size);
                tx.lock()
                    .await
                    .publish(&room, &text, event.as_deref())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in pubs {
        p.await??;
    }
    let publish_time = started.elapsed();
    // Wait for every delivery, or until nothing has arrived for `drain` s.
    let mut last = delivered.load(Ordering::Relaxed);
    let mut idle_since = Instant::now();
    while last < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            idle_since = Instant::now();
        } else if idle_since.elapsed() > Duration::from_secs_f64(drain) {
            break;
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = common.pid.and_then(procfs::cpu_time);
    stop.cancel();
    ticker.abort();
    bar.finish_and_clear();
    let mut hist = new_histogram();
    let mut short_members = 0;
    for r in receivers {
        let (h, got) = r.await?;
        hist.add(&h).expect("same bounds");
        if got < messages {
            short_members += 1;
        }
    }
    let got = delivered.load(Ordering::Relaxed);
    let mut report =
        Report::new(format!(
        "fanout {} ({n} members, {publishers} publisher(s), {messages} msgs of {size} B, rate {})",
        target.url,
        if rate > 0.0 { format!("{rate}/s") } else { "max".into() }
    ));
    report.add("members that failed to join", (requested - n) as u64);
    if let Some(first) = failures.first() {
        report.add("first join failure", first.clone());
    }
    report.add("expected deliveries", expected);
    report.add("delivered", got);
    report.add("lost", expected.saturating_sub(got));
    report.add("members short of messages", short_members as u64);
    report.add("publish seconds", publish_time.as_secs_f64());
    report.add("deliveries/s", got as f64 / elapsed.as_secs_f64());
    add_latency(&mut report, "latency", &hist);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let cpu = (b - a).as_secs_f64();
        report.add("server CPU seconds", cpu);
        if got > 0 {
            report.add("server CPU per delivery (us)", cpu * 1e6 / got as f64);
        }
    }
    if let Some(rss) = common.pid.and_then(procfs::rss_bytes) {
        report.add("server RSS (MiB)", rss as f64 / 1048576.0);
    }
    Ok(report)
}
