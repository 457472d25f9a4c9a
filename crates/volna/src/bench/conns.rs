//! `volna bench conns`: open many connections (in one process or several),
//! join a room, hold them; connect rate, failures, survivors of the hold,
//! server RSS and CPU per connection, the generator's own memory.

use super::common::Common;
use super::report::Report;
use super::swarm::{self, Plan};

pub(super) async fn run(common: &Common, n: usize, hold: f64) -> anyhow::Result<Option<Report>> {
    let plan = Plan {
        clients: n,
        publishers: 0,
        messages: 0,
        rate: 0.0,
        size: 0,
        drain: 0.0,
        event: None,
    };
    let Some((merged, timeline)) = swarm::run(common, &plan, hold).await? else {
        return Ok(None);
    };
    let mut report = Report::new(format!("conns {} ({n} clients)", swarm::label(common)));
    merged.add_connects(&mut report);
    let held = merged.part.joined;
    if let (Some(a), Some(b)) = (timeline.start.rss, timeline.held.rss) {
        report.add("server RSS before (MiB)", a as f64 / 1048576.0);
        report.add("server RSS after (MiB)", b as f64 / 1048576.0);
        if held > 0 {
            report.add(
                "server RSS per connection (KiB)",
                (b.saturating_sub(a)) as f64 / held as f64 / 1024.0,
            );
        }
    }
    if let (Some(a), Some(b)) = (timeline.start.cpu, timeline.joined.cpu) {
        if held > 0 {
            report.add(
                "server CPU per connect (us)",
                (b - a).as_secs_f64() * 1e6 / held as f64,
            );
        }
    }
    Ok(Some(report))
}
