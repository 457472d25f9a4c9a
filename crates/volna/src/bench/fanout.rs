//! `volna bench fanout`: members in one room (or spread over `--rooms`),
//! in one process or several, some of them publishing at a rate (or as
//! fast as they can) after an optional hold; deliveries/s, lost messages,
//! latency percentiles, server CPU per delivery. (`bench/compare.py` also
//! runs it unpaced as its "burst".)

use super::common::Common;
use super::report::{add_latency, Report};
use super::swarm::{self, Plan};

pub(super) async fn run(common: &Common, plan: Plan, hold: f64) -> anyhow::Result<Option<Report>> {
    let n = plan.clients;
    anyhow::ensure!(
        n >= 1 && plan.publishers >= 1 && plan.publishers <= n,
        "need 1 <= publishers <= clients"
    );
    // Let the join presence traffic settle before measuring.
    let hold = hold.max(0.3);
    let Some((merged, timeline)) = swarm::run(common, &plan, hold).await? else {
        return Ok(None);
    };
    let m = &merged.part;
    // A few members that could not join do not void the run: the report
    // says how many failed and why. More than 1 % failed, and it stops.
    anyhow::ensure!(
        m.failures * 100 <= n as u64,
        "{} of {n} members failed to join: {}",
        m.failures,
        m.first_failure.as_deref().unwrap_or("")
    );
    let rooms = if common.rooms > 1 {
        format!(" in {} rooms", common.rooms)
    } else {
        String::new()
    };
    let mut report = Report::new(format!(
        "fanout {} ({n} members{rooms}, {} publisher(s), {} msgs of {} B, rate {})",
        swarm::label(common),
        plan.publishers,
        plan.messages,
        plan.size,
        if plan.rate > 0.0 {
            format!("{}/s", plan.rate)
        } else {
            "max".into()
        }
    ));
    report.add("members that failed to join", m.failures);
    if let Some(first) = &m.first_failure {
        report.add("first join failure", first.clone());
    }
    report.add("expected deliveries", m.expected);
    report.add("delivered", m.delivered);
    report.add("lost", m.expected.saturating_sub(m.delivered));
    report.add("members short of messages", m.short_members);
    report.add("publish seconds", m.publish_seconds);
    report.add(
        "deliveries/s",
        m.delivered as f64 / m.deliver_seconds.max(1e-9),
    );
    add_latency(&mut report, "latency", &merged.latency);
    merged.add_connects(&mut report);
    if let (Some(a), Some(b)) = (timeline.held.cpu, timeline.end.cpu) {
        let cpu = (b - a).as_secs_f64();
        report.add("server CPU seconds", cpu);
        if m.delivered > 0 {
            report.add(
                "server CPU per delivery (us)",
                cpu * 1e6 / m.delivered as f64,
            );
        }
    }
    if let Some(rss) = timeline.end.rss {
        report.add("server RSS (MiB)", rss as f64 / 1048576.0);
    }
    Ok(Some(report))
}
