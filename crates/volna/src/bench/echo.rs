//! `volna bench echo`: clients doing round trips with acks, one at a time
//! each; round trips/s, latency percentiles, server CPU per round trip.
//! With `--rpc EVENT` the round trip is that event, answered by the
//! server's rpc hook (e.g. `volna bench hook-backend`): the difference with
//! a plain echo in the same run is what the hook adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{find_marker, payload, Received};
use super::common::Common;
use super::members::{connect_members, Member};
use super::procfs;
use super::progress::progress;
use super::report::{add_latency, new_histogram, summarize_failures, Report};

pub(super) async fn run(
    common: &Common,
    n: usize,
    messages: u64,
    size: usize,
    rpc: Option<String>,
) -> anyhow::Result<Report> {
    let target = common.target()?;
    let bar = progress(common.quiet, n as u64, "connecting");
    let (members, failures, _) = connect_members(common, &common.targets()?, n, &bar).await;
    bar.finish_and_clear();
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {n} clients failed: {}",
        failures.len(),
        failures[0]
    );
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress(common.quiet, messages * n as u64, "round trips");
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let cpu_before = common.pid.and_then(procfs::cpu_time);
    let base = Instant::now();
    let proto = target.proto;
    let mut tasks = Vec::new();
    for Member { mut tx, mut rx } in members {
        let done = done.clone();
        let rpc = rpc.clone();
        let room = common.room.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            for k in 0..messages {
                let ack = k + 100;
                let text = payload(k, base.elapsed().as_micros() as u64, size);
                let sent = Instant::now();
                match &rpc {
                    Some(event) => tx.emit_acked(&room, event, &text, ack).await?,
                    None => tx.echo(&text, ack).await?,
                }
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), rx.next(proto)).await {
                        Err(_) => anyhow::bail!("no echo reply within 10 s"),
                        Ok(r) => match r? {
                            Received::Frame(f) => {
                                if find_marker(&f).is_some_and(|(seq, _)| seq == k) {
                                    break;
                                }
                            }
                            Received::Ping => tx.pong().await?,
                            Received::Closed => anyhow::bail!("closed during echo"),
                        },
                    }
                }
                let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = new_histogram();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(h) => hist.add(&h).expect("same bounds"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let elapsed = base.elapsed();
    let cpu_after = common.pid.and_then(procfs::cpu_time);
    ticker.abort();
    bar.finish_and_clear();
    let total = done.load(Ordering::Relaxed);
    let mut report = Report::new(format!(
        "{} {} ({n} clients × {messages} round trips, {size} B)",
        rpc.as_ref().map_or_else(
            || "echo".to_string(),
            |e| format!("rpc {e} through the hook,")
        ),
        target.url
    ));
    report.add("round trips", total);
    summarize_failures(&mut report, &errors);
    report.add("round trips/s", total as f64 / elapsed.as_secs_f64());
    add_latency(&mut report, "rtt", &hist);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        if total > 0 {
            report.add(
                "server CPU per round trip (us)",
                (b - a).as_secs_f64() * 1e6 / total as f64,
            );
        }
    }
    Ok(report)
}
