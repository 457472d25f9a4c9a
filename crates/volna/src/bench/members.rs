//! Setting up a room: connecting clients (bounded concurrency, spread over
//! source addresses and, with `--spread-url`, over a second cluster node),
//! joining each to the room, and optionally holding them open while they
//! answer pings.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::client::{connect, is_join_reply, Proto, Received, Rx, Target, Tx};
use super::common::Common;

fn source_ip(common: &Common, i: usize) -> Option<IpAddr> {
    if common.source_ips <= 1 {
        return None;
    }
    let last = 1 + (i % common.source_ips as usize) as u8;
    Some(IpAddr::from([127, 0, 0, last]))
}

/// A connected member that has joined the room.
pub(super) struct Member {
    pub(super) tx: Tx,
    pub(super) rx: Rx,
}

/// Connects `n` clients (at most `common.concurrency` at once) and joins
/// each to the room. Returns the members, the failures and the time taken.
pub(super) async fn connect_members(
    common: &Common,
    target: &Target,
    n: usize,
    bar: &ProgressBar,
) -> (Vec<Member>, Vec<String>, Duration) {
    let (joined, failures, took, _) = connect_members_with(common, target, n, bar, None).await;
    let members = joined.into_iter().flatten().collect();
    (members, failures, took)
}

/// What a member does once it has joined, when [`connect_members_with`]
/// is given a stop token: it answers pings until the token is cancelled
/// (true) or the server closes it (false). A connect phase can outlast the
/// server's ping interval plus timeout (a long ramp, a slow server), and a
/// member that stayed silent that long would be dropped for it.
async fn hold(mut m: Member, proto: Proto, stop: CancellationToken) -> bool {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return true,
            r = m.rx.next(proto) => match r {
                Ok(Received::Ping) => { let _ = m.tx.pong().await; }
                Ok(Received::Frame(_)) => {}
                Ok(Received::Closed) | Err(_) => return false,
            }
        }
    }
}

/// [`connect_members`], where with `keep` each member [`hold`]s from the
/// moment it joins: it is then returned as `None`, and its task's handle
/// (true: still open at the stop) comes in the last vector.
pub(super) async fn connect_members_with(
    common: &Common,
    target: &Target,
    n: usize,
    bar: &ProgressBar,
    keep: Option<CancellationToken>,
) -> (
    Vec<Option<Member>>,
    Vec<String>,
    Duration,
    Vec<tokio::task::JoinHandle<bool>>,
) {
    let sem = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let mut holders = Vec::new();
    let spread = common
        .spread_url
        .as_deref()
        .and_then(|u| Target::parse(u).ok())
        .map(|t| Target {
            token: common.token.clone(),
            ..t
        });
    for i in 0..n {
        let sem = sem.clone();
        let target = match (&spread, i % 2) {
            (Some(other), 1) => other.clone(),
            _ => target.clone(),
        };
        let room = common.room.clone();
        let source = source_ip(common, i);
        let bar = bar.clone();
        let keep_this = keep.clone();
        let (done, joined) = tokio::sync::oneshot::channel();
        tasks.push(joined);
        let task = tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore open");
            let r = tokio::time::timeout(Duration::from_secs(30), join_one(&target, &room, source))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out connecting and joining")));
            drop(permit);
            bar.inc(1);
            match (r, keep_this) {
                (Ok(m), Some(stop)) => {
                    let _ = done.send(Ok(None));
                    hold(m, target.proto, stop).await
                }
                (r, _) => {
                    let _ = done.send(r.map(Some));
                    false
                }
            }
        });
        if keep.is_some() {
            holders.push(task);
        }
    }
    let mut members = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(m)) => members.push(m),
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(_) => failures.push("connect task ended".to_string()),
        }
    }
    (members, failures, started.elapsed(), holders)
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
