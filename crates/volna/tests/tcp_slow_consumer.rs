//! A client that stops reading is disconnected with a reason; the others
//! keep receiving everything.

mod common;

use std::time::{Duration, Instant};

use common::*;
use volna::config::ServerConfig;
use volna_hub::{OutboxLimits, Stats};

#[tokio::test]
async fn slow_reader_is_dropped_with_a_reason_others_get_everything() {
    let mut config = ServerConfig::default();
    // The publisher sends 5000 lines as fast as it can: over the default rate.
    config.hub.rate.per_second = 0.0;
    config.tcp.outbox = OutboxLimits {
        max_frames: 256,
        max_bytes: 256 << 10,
    };
    // Long enough for the slow client to come back and read its `bye`.
    config.tcp.close_grace = Duration::from_secs(60);
    let server = start(config).await;

    // The slow client has a small receive buffer so that the kernel does
    // not hide its slowness behind megabytes of buffering.
    let slow_socket = tokio::net::TcpSocket::new_v4().unwrap();
    slow_socket.set_recv_buffer_size(4096).unwrap();
    let stream = slow_socket.connect(server.tcp_addr).await.unwrap();
    let (r, w) = stream.into_split();
    let mut slow = LineClient {
        reader: tokio::io::BufReader::new(r),
        writer: w,
    };
    assert!(slow.line().await.starts_with("welcome"));
    slow.send("/join feed").await;
    assert_eq!(slow.line().await, "ok join feed guest-1");
    let mut fast = LineClient::named(&server, "fast", &["feed"]).await;
    let mut publisher = LineClient::named(&server, "pub", &["feed"]).await;
    assert_eq!(slow.line().await, "joined feed fast 2");
    assert_eq!(slow.line().await, "joined feed pub 3");
    assert_eq!(fast.line().await, "joined feed pub 3");
    // From here on `slow` reads nothing.

    // The publisher sends in windows of 50 and waits until the fast client
    // (and its own echo) got them: the fast reader is never the bottleneck,
    // and the slow one must overflow (queue bound 256 KiB, 10 MB sent).
    const N: usize = 5000;
    const WINDOW: usize = 50;
    let body = "x".repeat(2000);
    let started = Instant::now();
    let mut left_seen = 0;
    for start in (0..N).step_by(WINDOW) {
        let mut chunk = String::new();
        for i in start..start + WINDOW {
            chunk.push_str(&format!("{i} {body}\n"));
        }
        publisher.send_raw(chunk.as_bytes()).await;
        for i in start..start + WINDOW {
            let mut line = fast.line().await;
            if line.starts_with("left ") {
                // The slow client's departure, announced to the room.
                assert_eq!(line, "left feed guest-1 2");
                left_seen += 1;
                line = fast.line().await;
            }
            let m = parse_msg(&line);
            assert_eq!(m.offset, i as u64 + 1);
            assert!(m.text.starts_with(&format!("{i} ")));
            let mut line = publisher.line().await;
            if line.starts_with("left ") {
                line = publisher.line().await;
            }
            assert_eq!(parse_msg(&line).offset, i as u64 + 1);
        }
    }
    let fast_elapsed = started.elapsed();
    assert_eq!(Stats::get(&server.hub().stats().slow_consumers), 1);
    assert_eq!(left_seen, 1, "the room was told the slow client left");

    // The room no longer lists the slow client...
    fast.send("/who").await;
    let (who, _) = fast.until("ok who").await;
    assert_eq!(who, "ok who feed fast pub");
    // Now the slow client reads: what it had buffered, then the reason, then EOF.
    let mut last = String::new();
    let mut msgs = 0;
    while let Some(l) = slow.try_line(WAIT).await {
        if l.starts_with("msg ") {
            msgs += 1;
        }
        last = l;
    }
    assert!(
        last.starts_with("bye slow-consumer: you did not read fast enough"),
        "last line: {last}"
    );
    assert!(
        msgs < N,
        "the slow client got {msgs} of {N} before being dropped"
    );
    println!("fast client received {N} messages in {fast_elapsed:?}; slow got {msgs} then bye");
}
