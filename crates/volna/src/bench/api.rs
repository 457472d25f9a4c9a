//! `volna bench api`: members in one room, the server API publishing into
//! it over a few keep-alive HTTP connections (as a backend would); publish
//! requests/s, deliveries/s, lost messages, latency, server CPU per
//! delivery.

use std::time::{Duration, Instant};

use super::client::payload;
use super::common::{now_micros, Common};
use super::deliveries::Deliveries;
use super::http::HttpConn;
use super::members::connect_members;
use super::pacer::Pacer;
use super::procfs;
use super::progress::progress;
use super::report::{add_latency, new_histogram, Report};

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    common: &Common,
    n: usize,
    messages: u64,
    size: usize,
    api: &str,
    key: &str,
    connections: usize,
    rate: f64,
    event: Option<String>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(connections >= 1, "need at least one HTTP connection");
    let target = common.target()?;
    let api_addr = tokio::net::lookup_host(api.trim_start_matches("http://").trim_end_matches('/'))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {api}"))?;
    let bar = progress(common.quiet, n as u64, "joining");
    let (members, failures, _) = connect_members(common, &common.targets()?, n, &bar).await;
    bar.finish_and_clear();
    anyhow::ensure!(
        failures.len() * 100 <= n,
        "{} of {n} members failed to join: {}",
        failures.len(),
        failures.first().map_or("", String::as_str)
    );
    let n = members.len();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (deliveries, _senders) = Deliveries::spawn(members, target.proto, &vec![messages; n]);
    let expected = messages * n as u64;
    let cpu_before = common.pid.and_then(procfs::cpu_time);
    let bar = progress(common.quiet, expected, "deliveries");
    let ticker = deliveries.show_on(&bar);
    let started = Instant::now();
    let mut posters = Vec::new();
    for c in 0..connections as u64 {
        let count = messages / connections as u64 + u64::from(c < messages % connections as u64);
        let room = common.room.clone();
        let key = key.to_string();
        let event = event.clone();
        posters.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(api_addr).await?;
            let mut hist = new_histogram();
            let mut pacer = Pacer::new(rate, connections);
            for k in 0..count {
                pacer.wait().await;
                let seq = k * connections as u64 + c;
                let text = payload(seq, now_micros(), size);
                let mut body = serde_json::json!({"channel": room, "data": text});
                if let Some(e) = &event {
                    body["event"] = e.as_str().into();
                }
                let sent = Instant::now();
                let (status, answer) = conn
                    .post("/api/publish", &[("X-API-Key", &key)], &body.to_string())
                    .await?;
                anyhow::ensure!(
                    status == 200 && answer.starts_with(b"{\"result\""),
                    "publish answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
                let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
            }
            anyhow::Ok(hist)
        }));
    }
    let mut request_hist = new_histogram();
    for p in posters {
        request_hist.add(&p.await??).expect("same bounds");
    }
    let publish_time = started.elapsed();
    deliveries.wait(expected, 5.0).await;
    let elapsed = started.elapsed();
    let cpu_after = common.pid.and_then(procfs::cpu_time);
    ticker.abort();
    bar.finish_and_clear();
    let (hist, got, short) = deliveries.finish().await?;
    let mut report = Report::new(format!(
        "api {api}/api/publish → {} ({n} members, {messages} publishes of {size} B over {connections} HTTP connection(s), rate {})",
        target.url,
        if rate > 0.0 { format!("{rate}/s") } else { "max".into() }
    ));
    report.add(
        "publish requests/s",
        messages as f64 / publish_time.as_secs_f64(),
    );
    add_latency(&mut report, "request", &request_hist);
    report.add("expected deliveries", expected);
    report.add("delivered", got);
    report.add("lost", expected.saturating_sub(got));
    report.add("members short of messages", short as u64);
    report.add("deliveries/s", got as f64 / elapsed.as_secs_f64());
    add_latency(&mut report, "delivery latency", &hist);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let cpu = (b - a).as_secs_f64();
        report.add("server CPU seconds", cpu);
        if got > 0 {
            report.add("server CPU per delivery (us)", cpu * 1e6 / got as f64);
        }
    }
    Ok(report)
}
