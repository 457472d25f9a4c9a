//! `volna bench images`: clients share a generated PNG over `/ws` back to
//! back while paced echo clients measure round trips; reports images shared
//! or refused, echo latency and the server's event-loop lag (read from its
//! `/health`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::client::{find_marker, payload, Proto, Received};
use super::common::Common;
use super::members::{connect_members, Member};
use super::progress::progress;
use super::report::{add_latency, new_histogram, Report};

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

pub(super) async fn run(
    common: &Common,
    n: usize,
    senders: usize,
    duration: f64,
    width: u32,
) -> anyhow::Result<Report> {
    let target = common.target()?;
    anyhow::ensure!(
        target.proto == Proto::Ws,
        "the images scenario drives volna's /ws endpoint: use --url ws://HOST:PORT/ws"
    );
    let png = Arc::new(test_png(width));
    let bar = progress(common.quiet, (n + senders) as u64, "connecting");
    let (members, failures, _) =
        connect_members(common, &common.targets()?, n + senders, &bar).await;
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
                            Received::Frame(f) => {
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
                            Received::Ping => {}
                            Received::Closed => anyhow::bail!("closed while sharing images"),
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
                            Received::Frame(f) => {
                                if find_marker(&f).is_some_and(|(seq, _)| seq == k) {
                                    break;
                                }
                            }
                            Received::Ping => {}
                            Received::Closed => anyhow::bail!("closed during echo"),
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
