//! One scenario from several processes (`--processes N`): this process
//! starts N copies of itself as workers (`--worker K`), each with its share
//! of the clients on its own source addresses, keeps them in step and
//! merges what they report.
//!
//! A worker speaks lines on its stdout: `ready` once its members have
//! joined, `published` once its publishers are done, then `result {json}`
//! (a [`Part`]). It waits for `go` on its stdin before publishing: the
//! parent sends it once every worker is ready and the hold is over.
//!
//! [`Sync`] is a run's clock either way: in a single process it holds for
//! the hold time itself; in a worker it talks to the parent. Both
//! the parent and a single process print `phase: NAME` lines on stderr
//! (`connecting`, `joined`, `held`, `published`, `done`) when quiet, so a
//! script can take its own measurements between phases, and note the
//! server's CPU time and memory at each ([`Timeline`]).

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::common::Common;
use super::procfs;

/// What one process saw.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) joined: u64,
    pub(super) failures: u64,
    pub(super) first_failure: Option<String>,
    /// Seconds from the first connect to the last join answer.
    pub(super) connect_seconds: f64,
    /// Members still open when the hold ended.
    pub(super) open_after_hold: u64,
    pub(super) expected: u64,
    pub(super) delivered: u64,
    /// Members that got fewer messages than published into their room.
    pub(super) short_members: u64,
    /// Seconds its publishers took (0 without publishers).
    pub(super) publish_seconds: f64,
    /// Seconds from the start of publishing to the last delivery counted.
    pub(super) deliver_seconds: f64,
    /// Latencies in microseconds: (value, count) pairs.
    pub(super) latency: Vec<(u64, u64)>,
    /// This process's resident memory at the end of the hold.
    pub(super) rss_bytes: u64,
}

/// The server's CPU time and memory at the phases of a run (`--pid`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Snapshot {
    pub(super) cpu: Option<Duration>,
    pub(super) rss: Option<u64>,
}

impl Snapshot {
    fn of(pid: Option<u32>) -> Snapshot {
        Snapshot {
            cpu: pid.and_then(procfs::cpu_time),
            rss: pid.and_then(procfs::rss_bytes),
        }
    }
}

/// Snapshots at the start, once all joined, at the end of the hold and at
/// the end.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Timeline {
    pub(super) start: Snapshot,
    pub(super) joined: Snapshot,
    pub(super) held: Snapshot,
    pub(super) end: Snapshot,
}

/// A run's clock, in this process.
pub(super) enum Sync {
    /// The whole run is here.
    Alone {
        hold: f64,
        phases: bool,
        pid: Option<u32>,
        timeline: Timeline,
    },
    /// A worker of a parent that says when to go.
    Worker {
        go: tokio::io::Lines<BufReader<tokio::io::Stdin>>,
    },
}

impl Sync {
    /// The clock for `common`'s run, holding `hold` seconds once joined.
    pub(super) fn new(common: &Common, hold: f64) -> Sync {
        if common.worker.is_some() {
            return Sync::Worker {
                go: BufReader::new(tokio::io::stdin()).lines(),
            };
        }
        let sync = Sync::Alone {
            hold,
            phases: common.quiet,
            pid: common.pid,
            timeline: Timeline {
                start: Snapshot::of(common.pid),
                ..Timeline::default()
            },
        };
        sync.phase("connecting");
        sync
    }

    fn phase(&self, name: &str) {
        if let Sync::Alone { phases: true, .. } = self {
            eprintln!("phase: {name}");
        }
    }

    /// Notes the server's figures at one phase of the timeline (alone).
    fn snap(&mut self, which: fn(&mut Timeline) -> &mut Snapshot) {
        if let Sync::Alone { pid, timeline, .. } = self {
            *which(timeline) = Snapshot::of(*pid);
        }
    }

    /// Every member here has joined: holds (alone), or says so and waits
    /// for the parent's `go` (worker).
    pub(super) async fn joined(&mut self) -> anyhow::Result<()> {
        match self {
            Sync::Alone { hold, .. } => {
                let hold = *hold;
                self.snap(|t| &mut t.joined);
                self.phase("joined");
                tokio::time::sleep(Duration::from_secs_f64(hold)).await;
                self.snap(|t| &mut t.held);
                self.phase("held");
                Ok(())
            }
            Sync::Worker { go } => {
                println!("ready");
                while let Some(line) = go.next_line().await? {
                    if line.trim() == "go" {
                        return Ok(());
                    }
                }
                anyhow::bail!("the parent went away before saying go")
            }
        }
    }

    /// This process's publishers are done.
    pub(super) fn published(&self) {
        match self {
            Sync::Alone { .. } => self.phase("published"),
            Sync::Worker { .. } => println!("published"),
        }
    }

    /// The run is over: the timeline (alone), or `None` for a worker, which
    /// prints `part` for its parent instead.
    pub(super) fn done(mut self, part: &Part) -> anyhow::Result<Option<Timeline>> {
        self.snap(|t| &mut t.end);
        self.phase("done");
        match self {
            Sync::Alone { timeline, .. } => Ok(Some(timeline)),
            Sync::Worker { .. } => {
                println!("result {}", serde_json::to_string(part)?);
                Ok(None)
            }
        }
    }
}

/// A worker's line, by worker.
type Said = (usize, anyhow::Result<String>);

/// Runs the scenario of this command line in `common.processes` workers,
/// holding `hold` seconds once all of them joined; their parts and the
/// timeline.
pub(super) async fn run(common: &Common, hold: f64) -> anyhow::Result<(Vec<Part>, Timeline)> {
    let n = common.processes;
    let phase = |name: &str| eprintln!("phase: {name}");
    let mut timeline = Timeline {
        start: Snapshot::of(common.pid),
        ..Timeline::default()
    };
    phase("connecting");
    let exe = std::env::current_exe()?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--quiet" && a != "--json")
        .collect();
    let (tx, mut rx) = mpsc::channel::<Said>(4 * n);
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut inputs: Vec<ChildStdin> = Vec::with_capacity(n);
    for k in 0..n {
        let mut child = Command::new(&exe)
            .args(&args)
            .args(["--worker", &k.to_string(), "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        inputs.push(child.stdin.take().expect("piped"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let said = match lines.next_line().await {
                    Ok(Some(l)) => Ok(l),
                    Ok(None) => Err(anyhow::anyhow!("worker {k} ended without a result")),
                    Err(e) => Err(e.into()),
                };
                // Its result is its last word.
                let last = said.as_ref().map_or(true, |l| l.starts_with("result"));
                if tx.send((k, said)).await.is_err() || last {
                    return;
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    // Lines a worker said ahead of the others, kept for their turn.
    let mut later: Vec<(usize, String)> = Vec::new();
    next(&mut rx, &mut later, n, "ready").await?;
    timeline.joined = Snapshot::of(common.pid);
    phase("joined");
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    timeline.held = Snapshot::of(common.pid);
    phase("held");
    for input in &mut inputs {
        input.write_all(b"go\n").await?;
        input.flush().await?;
    }
    next(&mut rx, &mut later, n, "published").await?;
    phase("published");
    let mut parts = Vec::with_capacity(n);
    for (k, json) in next(&mut rx, &mut later, n, "result").await? {
        parts.push(
            serde_json::from_str::<Part>(&json)
                .map_err(|e| anyhow::anyhow!("worker {k}'s result: {e}"))?,
        );
    }
    timeline.end = Snapshot::of(common.pid);
    phase("done");
    drop(inputs);
    for mut c in children {
        let _ = c.wait().await;
    }
    Ok((parts, timeline))
}

/// Waits until each of the `n` workers said a line starting with `want`:
/// the rest of each such line, by worker. Other lines are kept in `later`
/// (a worker may run a step ahead of the slowest).
async fn next(
    rx: &mut mpsc::Receiver<Said>,
    later: &mut Vec<(usize, String)>,
    n: usize,
    want: &str,
) -> anyhow::Result<Vec<(usize, String)>> {
    let mut got = Vec::with_capacity(n);
    let mut kept = Vec::new();
    for (k, line) in later.drain(..) {
        match line.strip_prefix(want) {
            Some(rest) => got.push((k, rest.trim().to_string())),
            None => kept.push((k, line)),
        }
    }
    *later = kept;
    while got.len() < n {
        let (k, said) = rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the workers went away"))?;
        let line = said?;
        match line.strip_prefix(want) {
            Some(rest) => got.push((k, rest.trim().to_string())),
            None => later.push((k, line)),
        }
    }
    Ok(got)
}
