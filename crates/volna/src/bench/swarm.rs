//! The engine of `conns` and `fanout`: this process's share of the members
//! joins (spread over targets, rooms and source addresses), holds, then the
//! publishers among them publish and every member counts what it receives.
//! What one process saw is a [`Part`]; the parts of every process of a run
//! are merged into one report ([`Merged`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;

use super::client::payload;
use super::common::{now_micros, Common};
use super::deliveries::{Counts, Deliveries};
use super::members::{connect_share, join_one};
use super::pacer::Pacer;
use super::procfs;
use super::progress::progress;
use super::report::{new_histogram, Report};
use super::workers::{self, Part, Sync, Timeline};

/// What a run does (`fanout`'s options; `conns` publishes nothing).
#[derive(Debug, Clone, clap::Args)]
pub struct Plan {
    /// Members in all, every process together (publishers included).
    #[arg(long, short = 'n', default_value_t = 100)]
    pub(super) clients: usize,
    /// How many members publish: the first ones, each into its own room (of `--rooms`).
    #[arg(long, default_value_t = 1)]
    pub(super) publishers: usize,
    /// Messages published in total.
    #[arg(long, short = 'm', default_value_t = 200)]
    pub(super) messages: u64,
    /// Total publish rate in messages per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub(super) rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub(super) size: usize,
    /// Seconds to wait for stragglers once publishing is done.
    #[arg(long, default_value_t = 5.0)]
    pub(super) drain: f64,
    /// Publish this application event (`emit`) instead of `message`.
    #[arg(long)]
    pub(super) event: Option<String>,
}

impl Plan {
    /// How many messages publisher `p` sends.
    fn sends(&self, p: usize) -> u64 {
        let n = self.publishers.max(1) as u64;
        self.messages / n + u64::from((p as u64) < self.messages % n)
    }

    /// Messages published into each of `rooms` rooms.
    fn per_room(&self, rooms: usize) -> Vec<u64> {
        let rooms = rooms.max(1);
        let mut per = vec![0; rooms];
        for p in 0..self.publishers {
            per[p % rooms] += self.sends(p);
        }
        per
    }
}

/// Runs this process's share of `plan`, `sync` telling it when the hold
/// ends.
pub(super) async fn run_part(
    common: &Common,
    plan: &Plan,
    sync: &mut Sync,
) -> anyhow::Result<Part> {
    let targets = common.targets()?;
    let rooms = common.rooms.max(1);
    anyhow::ensure!(
        plan.publishers <= plan.clients,
        "need publishers <= clients"
    );
    if common.worker.is_none() {
        // Fail fast with a clear message if the target is down or speaks
        // something else.
        drop(join_one(&targets[0], &common.room_of(0), None).await?);
    }
    let (_, count) = common.share(plan.clients);
    let per_room = Arc::new(plan.per_room(rooms));
    let protos: Vec<_> = targets.iter().map(|t| t.proto).collect();
    let counts = Counts::new();
    let bar = progress(common.quiet, count as u64, "joining");
    let joined = {
        let (counts, per_room) = (counts.clone(), per_room.clone());
        connect_share(common, &targets, plan.clients, &bar, move |g, m| {
            let tx = Arc::new(Mutex::new(m.tx));
            let messages = per_room[g % rooms];
            let proto = protos[g % protos.len()];
            let task = tokio::spawn(counts.clone().receive(tx.clone(), m.rx, proto, messages));
            (tx, task, messages)
        })
        .await
    };
    bar.finish_and_clear();
    let mut globals = Vec::with_capacity(joined.members.len());
    let mut tasks = Vec::with_capacity(joined.members.len());
    let mut publishers = Vec::new();
    let mut expected = 0;
    for (g, (tx, task, messages)) in joined.members {
        globals.push(g);
        tasks.push(task);
        expected += messages;
        if g < plan.publishers {
            publishers.push((g, tx));
        }
    }
    let deliveries = Deliveries::of(counts, tasks);
    let (start, count) = common.share(plan.clients);
    let mine = (start..start + count)
        .filter(|g| *g < plan.publishers)
        .count();
    anyhow::ensure!(
        publishers.len() == mine,
        "{} of this process's {mine} publishers could not join: {}",
        mine - publishers.len(),
        joined.failures.first().map_or("", String::as_str)
    );
    sync.joined().await?;
    let open_after_hold = globals.len() as u64 - deliveries.closed();
    let rss_bytes = procfs::rss_bytes(std::process::id()).unwrap_or(0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, tx) in publishers {
        let (plan, room) = (plan.clone(), common.room_of(p));
        tasks.push(tokio::spawn(async move {
            let mut pacer = Pacer::new(plan.rate, plan.publishers);
            for k in 0..plan.sends(p) {
                pacer.wait().await;
                let seq = k * plan.publishers as u64 + p as u64;
                let text = payload(seq, now_micros(), plan.size);
                tx.lock()
                    .await
                    .publish(&room, &text, plan.event.as_deref())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    let bar = progress(common.quiet, expected, "deliveries");
    let ticker = deliveries.show_on(&bar);
    for t in tasks {
        t.await??;
    }
    let publish_seconds = started.elapsed().as_secs_f64();
    sync.published();
    deliveries.wait(expected, plan.drain).await;
    let deliver_seconds = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    let (hist, delivered, short) = deliveries.finish().await?;
    Ok(Part {
        joined: globals.len() as u64,
        failures: joined.failures.len() as u64,
        first_failure: joined.failures.into_iter().next(),
        connect_seconds: joined.took.as_secs_f64(),
        open_after_hold,
        expected,
        delivered,
        short_members: short as u64,
        publish_seconds: if plan.publishers > 0 && mine > 0 {
            publish_seconds
        } else {
            0.0
        },
        deliver_seconds,
        latency: hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
        rss_bytes,
    })
}

/// Runs `plan` in this process, or in `--processes` workers; `hold`
/// seconds pass between the last join and the first publish. The merged
/// parts and the server's timeline, or `None` in a worker (which printed
/// its part for the parent).
pub(super) async fn run(
    common: &Common,
    plan: &Plan,
    hold: f64,
) -> anyhow::Result<Option<(Merged, Timeline)>> {
    if common.processes > 1 && common.worker.is_none() {
        let (parts, timeline) = workers::run(common, hold).await?;
        return Ok(Some((Merged::of(parts), timeline)));
    }
    let mut sync = Sync::new(common, hold);
    let part = run_part(common, plan, &mut sync).await?;
    Ok(sync
        .done(&part)?
        .map(|timeline| (Merged::of(vec![part]), timeline)))
}

/// The targets of `common`, for report titles.
pub(super) fn label(common: &Common) -> String {
    common
        .targets()
        .map(|ts| {
            ts.iter()
                .map(|t| t.url.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The parts of every process, merged.
pub(super) struct Merged {
    pub(super) processes: usize,
    pub(super) part: Part,
    pub(super) latency: hdrhistogram::Histogram<u64>,
}

impl Merged {
    pub(super) fn of(parts: Vec<Part>) -> Merged {
        let mut latency = new_histogram();
        let processes = parts.len();
        let mut m = Part::default();
        for p in parts {
            for (v, c) in &p.latency {
                let _ = latency.record_n(*v, *c);
            }
            m.joined += p.joined;
            m.failures += p.failures;
            m.first_failure = m.first_failure.or(p.first_failure);
            m.connect_seconds = m.connect_seconds.max(p.connect_seconds);
            m.open_after_hold += p.open_after_hold;
            m.expected += p.expected;
            m.delivered += p.delivered;
            m.short_members += p.short_members;
            m.publish_seconds = m.publish_seconds.max(p.publish_seconds);
            m.deliver_seconds = m.deliver_seconds.max(p.deliver_seconds);
            m.rss_bytes += p.rss_bytes;
        }
        Merged {
            processes,
            part: m,
            latency,
        }
    }

    /// The rows about connecting and holding.
    pub(super) fn add_connects(&self, report: &mut Report) {
        let p = &self.part;
        report.add("connected+joined", p.joined);
        report.add("failures", p.failures);
        if let Some(first) = &p.first_failure {
            report.add("first failure", first.clone());
        }
        report.add("still open after hold", p.open_after_hold);
        report.add("seconds to connect all", p.connect_seconds);
        if p.connect_seconds > 0.0 {
            report.add("connects/s", p.joined as f64 / p.connect_seconds);
        }
        report.add("generator processes", self.processes as u64);
        report.add("generator RSS (MiB)", p.rss_bytes as f64 / 1048576.0);
        if p.joined > 0 {
            report.add(
                "generator RSS per connection (KiB)",
                p.rss_bytes as f64 / p.joined as f64 / 1024.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_shared_by_publishers_and_rooms() {
        let plan = Plan {
            clients: 10,
            publishers: 3,
            messages: 10,
            rate: 0.0,
            size: 64,
            drain: 1.0,
            event: None,
        };
        assert_eq!((0..3).map(|p| plan.sends(p)).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!(plan.per_room(1), [10]);
        assert_eq!(plan.per_room(2), [7, 3]);
        assert_eq!(plan.per_room(4), [4, 3, 3, 0]);
    }

    #[test]
    fn parts_merge_into_totals_and_one_latency() {
        let part = |joined, lat: u64| Part {
            joined,
            expected: joined,
            delivered: joined,
            connect_seconds: joined as f64,
            latency: vec![(lat, joined)],
            ..Part::default()
        };
        let m = Merged::of(vec![part(3, 1000), part(1, 9000)]);
        assert_eq!((m.processes, m.part.joined, m.part.delivered), (2, 4, 4));
        assert_eq!(m.part.connect_seconds, 3.0);
        assert_eq!(m.latency.len(), 4);
        assert!(m.latency.max() >= 9000);
    }
}
