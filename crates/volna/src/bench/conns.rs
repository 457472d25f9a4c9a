//! `volna bench conns`: open many connections, join a room, hold them;
//! connect rate, failures, survivors of the hold, server RSS and CPU per
//! connection.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::Target;
use super::common::Common;
use super::members::{connect_members_with, join_one};
use super::procfs;
use super::progress::progress;
use super::report::{summarize_failures, Report};

pub(super) async fn run(common: &Common, n: usize, hold: f64) -> anyhow::Result<Report> {
    let target = Target::of(common)?;
    // Fail fast with a clear message if the target is down or speaks
    // something else.
    let probe = join_one(&target, &common.room, None).await?;
    drop(probe);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = common.pid.and_then(procfs::rss_bytes);
    let cpu_before = common.pid.and_then(procfs::cpu_time);
    let bar = progress(common.quiet, n as u64, "connecting");
    let stop = CancellationToken::new();
    let (joined, failures, took, holders) =
        connect_members_with(common, &target, n, &bar, Some(stop.clone())).await;
    bar.finish_and_clear();
    let cpu_after = common.pid.and_then(procfs::cpu_time);
    let held = joined.len();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let rss_after = common.pid.and_then(procfs::rss_bytes);
    stop.cancel();
    let mut survived = 0;
    for h in holders {
        if h.await.unwrap_or(false) {
            survived += 1;
        }
    }
    let mut report = Report::new(format!("conns {} ({} clients)", target.url, n));
    report.add("connected+joined", held as u64);
    summarize_failures(&mut report, &failures);
    report.add("still open after hold", survived as u64);
    report.add("seconds to connect all", took.as_secs_f64());
    report.add("connects/s", held as f64 / took.as_secs_f64());
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        report.add("server RSS before (MiB)", a as f64 / 1048576.0);
        report.add("server RSS after (MiB)", b as f64 / 1048576.0);
        if held > 0 {
            report.add(
                "server RSS per connection (KiB)",
                (b.saturating_sub(a)) as f64 / held as f64 / 1024.0,
            );
        }
    }
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        if held > 0 {
            report.add(
                "server CPU per connect (us)",
                (b - a).as_secs_f64() * 1e6 / held as f64,
            );
        }
    }
    Ok(report)
}
