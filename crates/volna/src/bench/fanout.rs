//! `volna bench fanout`: members in one room, some of them publishing at a
//! rate (or as fast as they can); deliveries/s, lost messages, latency
//! percentiles, server CPU per delivery.

use std::time::{Duration, Instant};

use super::client::{payload, Target};
use super::common::Common;
use super::deliveries::Deliveries;
use super::members::{connect_members, join_one};
use super::pacer::Pacer;
use super::procfs;
use super::progress::progress;
use super::report::{add_latency, Report};

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
    let target = Target::of(common)?;
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
    let (deliveries, senders) = Deliveries::spawn(members, target.proto, messages, base);
    let pub_tx: Vec<_> = senders.into_iter().take(publishers).collect();
    let expected = messages * n as u64;
    let cpu_before = common.pid.and_then(procfs::cpu_time);
    let bar = progress(common.quiet, expected, "deliveries");
    let ticker = deliveries.show_on(&bar);
    let started = Instant::now();
    let mut pubs = Vec::new();
    let per_pub = messages / publishers as u64;
    let extra = messages % publishers as u64;
    for (p, tx) in pub_tx.into_iter().enumerate() {
        let count = per_pub + u64::from((p as u64) < extra);
        let room = common.room.clone();
        let event = event.clone();
        pubs.push(tokio::spawn(async move {
            let mut pacer = Pacer::new(rate, publishers);
            for k in 0..count {
                pacer.wait().await;
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
    deliveries.wait(expected, drain).await;
    let elapsed = started.elapsed();
    let cpu_after = common.pid.and_then(procfs::cpu_time);
    ticker.abort();
    bar.finish_and_clear();
    let (hist, got, short_members) = deliveries.finish().await?;
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
