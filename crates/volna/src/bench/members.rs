//! Setting up rooms: connecting this process's share of the clients
//! (bounded concurrency, spread over the targets, the rooms and the source
//! addresses [`Common`] chooses) and joining each to its room.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use super::client::{connect, is_join_reply, Proto, Received, Rx, Target, Tx};
use super::common::Common;

/// A connected member that has joined its room.
pub(super) struct Member {
    pub(super) tx: Tx,
    pub(super) rx: Rx,
}

/// This process's members (as `after` made them), each with its global
/// index (which decides its target and room), and why the others could not
/// join.
pub(super) struct Joined<T> {
    pub(super) members: Vec<(usize, T)>,
    pub(super) failures: Vec<String>,
    /// From the first connect to the last answer.
    pub(super) took: Duration,
}

/// Connects this process's share of `n` clients (at most
/// `common.concurrency` at once), joins each to its room and hands it to
/// `after` at once, with its global index: a member that must answer pings
/// from then on (a ramp may outlast the server's ping timeout) starts doing
/// so there.
pub(super) async fn connect_share<T, F>(
    common: &Common,
    targets: &[Target],
    n: usize,
    bar: &ProgressBar,
    after: F,
) -> Joined<T>
where
    T: Send + 'static,
    F: Fn(usize, Member) -> T + Clone + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let started = Instant::now();
    let (start, count) = common.share(n);
    let mut tasks = Vec::with_capacity(count);
    for j in 0..count {
        let g = start + j;
        let sem = sem.clone();
        let target = targets[g % targets.len()].clone();
        let room = common.room_of(g);
        let source = common.source_ip(j, count);
        let bar = bar.clone();
        let after = after.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore open");
            let r = tokio::time::timeout(Duration::from_secs(30), join_one(&target, &room, source))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out connecting and joining")));
            drop(permit);
            bar.inc(1);
            r.map(|m| after(g, m))
        }));
    }
    let mut members = Vec::with_capacity(count);
    let mut failures = Vec::new();
    for (j, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(m)) => members.push((start + j, m)),
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(_) => failures.push("connect task ended".to_string()),
        }
    }
    Joined {
        members,
        failures,
        took: started.elapsed(),
    }
}

/// [`connect_share`] for scenarios that run in one process: the members
/// alone, the failures and the time taken.
pub(super) async fn connect_members(
    common: &Common,
    targets: &[Target],
    n: usize,
    bar: &ProgressBar,
) -> (Vec<Member>, Vec<String>, Duration) {
    let j = connect_share(common, targets, n, bar, |_, m| m).await;
    let members = j.members.into_iter().map(|(_, m)| m).collect();
    (members, j.failures, j.took)
}

pub(super) async fn join_one(
    target: &Target,
    room: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<Member> {
    let (mut tx, mut rx) = connect(target, source).await?;
    tx.join(room, 1).await?;
    loop {
        match rx.next(target.proto).await? {
            Received::Frame(f) if is_join_reply(target.proto, &f, 1) => break,
            Received::Frame(f) if target.proto == Proto::SocketIo && f.starts_with(b"44") => {
                anyhow::bail!("connect error: {}", String::from_utf8_lossy(&f))
            }
            Received::Frame(_) => {}
            Received::Ping => tx.pong().await?,
            Received::Closed => anyhow::bail!("closed while joining"),
        }
    }
    Ok(Member { tx, rx })
}
