//! `volna bench`: a load generator for Socket.IO v4 servers (volna or any
//! other that implements the bench contract: `join(room)` with ack,
//! `message({room, data})` broadcast as `message`, `echo(x)` with ack) and for
//! volna's own `/ws` and TCP endpoints.
//!
//! Scenarios:
//! - `conns`: open many connections, join a room, hold; connect rate,
//!   failures, server RSS per connection.
//! - `fanout`: members in one room, publishers at a rate; deliveries/s, lost
//!   messages, latency percentiles, server CPU per delivery.
//! - `echo`: round trips with acks; rate and latency percentiles.

pub mod client;
pub mod procfs;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use client::{connect, find_marker, is_join_reply, payload, Incoming, Proto, Rx, Target, Tx};

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Target: socketio://HOST:PORT (Socket.IO v4 at /socket.io/), ws://HOST:PORT/ws (volna JSON)
    /// or tcp://HOST:PORT (volna lines).
    #[arg(long, default_value = "socketio://127.0.0.1:3000")]
    pub url: String,
    /// The server's process id: adds its CPU time and memory to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Room to use.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.1, 127.0.0.2, … (each
    /// source/destination pair allows ~28k connections).
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,
    /// Connect every second member to this URL instead: another node of the same cluster
    /// (docs/cluster.md), so half the room is reached across nodes.
    #[arg(long)]
    pub spread_url: Option<String>,
}

/// `volna bench` scenarios.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Open N connections, join a room, hold them.
    Conns {
        #[command(flatten)]
        common: Common,
        /// Connections to open.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Seconds to hold them open after the last one joined.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// N members in one room, P of them publishing M messages in total.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Members of the room (publishers included).
        #[arg(long, short = 'n', default_value_t = 100)]
        clients: usize,
        /// How many members publish.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages published in total.
        #[arg(long, short = 'm', default_value_t = 200)]
        messages: u64,
        /// Total publish rate in messages per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds to wait for stragglers once publishing is done.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
    },
    /// Images shared continuously over /ws while echo clients measure round trips; reports echo
    /// latency and the server's event-loop lag (run it against `volna serve` and against
    /// `volna serve --images-inline` to see why thumbnails belong on a worker pool).
    Images {
        #[command(flatten)]
        common: Common,
        /// Echo clients.
        #[arg(long, short = 'n', default_value_t = 4)]
        clients: usize,
        /// Clients sharing images back to back.
        #[arg(long, default_value_t = 2)]
        senders: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Width of the generated test image (height is 3/4 of it).
        #[arg(long, default_value_t = 2000)]
        width: u32,
    },
    /// N clients doing round trips with acks.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Concurrent clients.
        #[arg(long, short = 'n', default_value_t = 10)]
        clients: usize,
        /// Round trips per client.
        #[arg(long, short = 'm', default_value_t = 1000)]
        messages: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
}

/// A finished run's figures, in display order.
pub struct Report {
    pub title: String,
    pub rows: Vec<(String, serde_json::Value)>,
}

impl Report {
    fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.rows.push((key.to_string(), value.into()));
    }

    /// A two-column text table.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("{}\n{}\n", self.title, "-".repeat(self.title.len()));
        for (k, v) in &self.rows {
            let v = match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.abs() >= 100.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.2}")
                    }
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }

    /// The figures as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), self.title.clone().into());
        for (k, v) in &self.rows {
            m.insert(k.clone(), v.clone());
        }
        m.into()
    }
}

/// Runs a scenario and prints its report.
pub async fn run(scenario: Scenario) -> anyhow::Result<()> {
    let (report, json) = match scenario {
        Scenario::Conns {
            common,
            clients,
            hold,
        } => (conns(&common, clients, hold).await?, common.json),
        Scenario::Fanout {
            common,
            clients,
            publishers,
            messages,
            rate,
            size,
            drain,
        } => (
            fanout(&common, clients, publishers, messages, rate, size, drain).await?,
            common.json,
        ),
        Scenario::Echo {
            common,
            clients,
            messages,
            size,
        } => (echo(&common, clients, messages, size).await?, common.json),
        Scenario::Images {
            common,
            clients,
            senders,
            duration,
            width,
        } => (
            images(&common, clients, senders, duration, width).await?,
            common.json,
        ),
    };
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>12} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} ({{per_sec}})"
        ))
        .expect("valid template"),
    );
    bar
}

fn source_ip(common: &Common, i: usize) -> Option<IpAddr> {
    if common.source_ips <= 1 {
        return None;
    }
    let last = 1 + (i % common.source_ips as usize) as u8;
    Some(IpAddr::from([127, 0, 0, last]))
}

/// A connected member that has joined the room.
struct Member {
    tx: Tx,
    rx: Rx,
}

/// Connects `n` clients (at most `common.concurrency` at once) and joins
/// each to the room. Returns the members, the failures and the time taken.
async fn connect_members(
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
                Ok(Incoming::Ping) => { let _ = m.tx.pong().await; }
                Ok(Incoming::Frame(_)) => {}
                Ok(Incoming::Closed) | Err(_) => return false,
            }
        }
    }
}

/// [`connect_members`], where with `keep` each member [`hold`]s from the
/// moment it joins: it is then returned as `None`, and its task's handle
/// (true: still open at the stop) comes in the last vector.
async fn connect_members_with(
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
        .and_then(|u| Target::parse(u).ok());
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

async fn join_one(target: &Target, room: &str, source: Option<IpAddr>) -> anyhow::Result<Member> {
    let (mut tx, mut rx) = connect(target, source).await?;
    tx.join(room, 1).await?;
    loop {
        match rx.next(target.proto).await? {
            Incoming::Frame(f) if is_join_reply(target.proto, &f, 1) => break,
            Incoming::Frame(f) if target.proto == Proto::SocketIo && f.starts_with(b"44") => {
                anyhow::bail!("connect error: {}", String::from_utf8_lossy(&f))
            }
            Incoming::Frame(_) => {}
            Incoming::Ping => tx.pong().await?,
            Incoming::Closed => anyhow::bail!("closed while joining"),
        }
    }
    Ok(Member { tx, rx })
}

fn summarize_failures(report: &mut Report, failures: &[String]) {
    report.add("failures", failures.len() as u64);
    if let Some(first) = failures.first() {
        report.add("first failure", first.clone());
    }
}

async fn conns(common: &Common, n: usize, hold: f64) -> anyhow::Result<Report> {
    let target = Target::parse(&common.url)?;
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

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn add_latency(report: &mut Report, prefix: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        return;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    report.add(&format!("{prefix} p50 (ms)"), ms(h.value_at_quantile(0.50)));
    report.add(&format!("{prefix} p99 (ms)"), ms(h.value_at_quantile(0.99)));
    report.add(
        &format!("{prefix} p99.9 (ms)"),
        ms(h.value_at_quantile(0.999)),
    );
    report.add(&format!("{prefix} max (ms)"), ms(h.max()));
}

#[allow(clippy::too_many_arguments)]
async fn fanout(
    common: &Common,
    n: usize,
    publishers: usize,
    messages: u64,
    rate: f64,
    size: usize,
    drain: f64,
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
                    Ok(Incoming::Frame(f)) => {
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
                    Ok(Incoming::Ping) => {
                        let _ = tx.lock().await.pong().await;
                    }
                    Ok(Incoming::Closed) | Err(_) => break,
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
                tx.lock().await.publish(&room, &text).await?;
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

async fn echo(common: &Common, n: usize, messages: u64, size: usize) -> anyhow::Result<Report> {
    let target = Target::parse(&common.url)?;
    let bar = progress(common.quiet, n as u64, "connecting");
    let (members, failures, _) = connect_members(common, &target, n, &bar).await;
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
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            for k in 0..messages {
                let ack = k + 100;
                let text = payload(k, base.elapsed().as_micros() as u64, size);
                let sent = Instant::now();
                tx.echo(&text, ack).await?;
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), rx.next(proto)).await {
                        Err(_) => anyhow::bail!("no echo reply within 10 s"),
                        Ok(r) => match r? {
                            Incoming::Frame(f) => {
                                if find_marker(&f).is_some_and(|(seq, _)| seq == k) {
                                    break;
                                }
                            }
                            Incoming::Ping => tx.pong().await?,
                            Incoming::Closed => anyhow::bail!("closed during echo"),
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
        "echo {} ({n} clients × {messages} round trips, {size} B)",
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

/// A PNG that costs real work to decode: smooth gradients plus noise.
fn test_png(width: u32) -> Vec<u8> {
    let height = width * 3 / 4;
    let mut seed: u32 = 0x9E37_79B9;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed & 0x1F) as u8;
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(n),
            ((y * 255 / height) as u8).wrapping_add(n),
            (((x + y) % 256) as u8) ^ n,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding into memory works");
    out.into_inner()
}

/// `GET path` on the target's HTTP address, parsed as JSON.
async fn http_json(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response from {addr}{path}"))?;
    Ok(serde_json::from_str(body)?)
}

async fn images(
    common: &Common,
    n: usize,
    senders: usize,
    duration: f64,
    width: u32,
) -> anyhow::Result<Report> {
    let target = Target::parse(&common.url)?;
    anyhow::ensure!(
        target.proto == Proto::Ws,
        "the images scenario drives volna's /ws endpoint: use --url ws://HOST:PORT/ws"
    );
    let png = Arc::new(test_png(width));
    let bar = progress(common.quiet, (n + senders) as u64, "connecting");
    let (members, failures, _) = connect_members(common, &target, n + senders, &bar).await;
    bar.finish_and_clear();
    anyhow::ensure!(failures.is_empty(), "clients failed: {}", failures[0]);
    http_json(target.addr, "/health?reset_lag=1").await?;
    let stop = CancellationToken::new();
    let base = Instant::now();
    let mut echo_tasks = Vec::new();
    let mut image_tasks = Vec::new();
    for (i, Member { mut tx, mut rx }) in members.into_iter().enumerate() {
        let stop = stop.clone();
        if i < senders {
            let png = png.clone();
            let room = common.room.clone();
            image_tasks.push(tokio::spawn(async move {
                let (mut ok, mut busy, mut failed) = (0u64, 0u64, 0u64);
                let mut id = 1000u64;
                while !stop.is_cancelled() {
                    id += 1;
                    tx.image(&room, &png, id).await?;
                    let needle = format!("\"id\":{id}");
                    loop {
                        match rx.next(Proto::Ws).await? {
                            Incoming::Frame(f) => {
                                if memchr::memmem::find(&f, needle.as_bytes()).is_some() {
                                    if memchr::memmem::find(&f, b"\"ok\":true").is_some() {
                                        ok += 1;
                                    } else if memchr::memmem::find(&f, b"\"busy\"").is_some() {
                                        busy += 1;
                                    } else {
                                        failed += 1;
                                    }
                                    break;
                                }
                            }
                            Incoming::Ping => {}
                            Incoming::Closed => anyhow::bail!("closed while sharing images"),
                        }
                    }
                }
                anyhow::Ok((ok, busy, failed))
            }));
        } else {
            echo_tasks.push(tokio::spawn(async move {
                let mut hist = new_histogram();
                let mut k = 0u64;
                while !stop.is_cancelled() {
                    k += 1;
                    let sent = Instant::now();
                    tx.echo(&payload(k, base.elapsed().as_micros() as u64, 64), k)
                        .await?;
                    loop {
                        match rx.next(Proto::Ws).await? {
                            Incoming::Frame(f) => {
                                if find_marker(&f).is_some_and(|(seq, _)| seq == k) {
                                    break;
                                }
                            }
                            Incoming::Ping => {}
                            Incoming::Closed => anyhow::bail!("closed during echo"),
                        }
                    }
                    let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
                    // A paced client: a round trip every 5 ms, like a user or a game tick.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                anyhow::Ok(hist)
            }));
        }
    }
    let bar = progress(common.quiet, (duration * 10.0) as u64, "seconds x10");
    let end = Instant::now() + Duration::from_secs_f64(duration);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    stop.cancel();
    let health = http_json(target.addr, "/health").await?;
    let mut hist = new_histogram();
    for t in echo_tasks {
        hist.add(&t.await??).expect("same bounds");
    }
    let (mut ok, mut busy, mut failed) = (0, 0, 0);
    for t in image_tasks {
        let (o, b, f) = t.await??;
        ok += o;
        busy += b;
        failed += f;
    }
    let mut report = Report::new(format!(
        "images {} ({n} echo clients, {senders} image senders, {duration} s, {}x{} PNG of {} KiB)",
        target.url,
        width,
        width * 3 / 4,
        png.len() / 1024
    ));
    report.add("images shared", ok);
    report.add("images refused busy", busy);
    report.add("images failed", failed);
    report.add("images/s", ok as f64 / duration);
    report.add("echo round trips", hist.len());
    add_latency(&mut report, "echo rtt", &hist);
    let lag = &health["event_loop_lag_us"];
    for (key, label) in [("p50", "p50"), ("p99", "p99"), ("max", "max")] {
        if let Some(v) = lag[key].as_u64() {
            report.add(&format!("server loop lag {label} (ms)"), v as f64 / 1000.0);
        }
    }
    Ok(report)
}
