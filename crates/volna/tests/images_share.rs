//! Image sharing end to end: a `/ws` client sends an image, the thumbnail is
//! made on the worker pool and broadcast; `/ws` members get it as a binary
//! attachment, TCP members a text line; bad images get clear errors.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Ws;

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(server: &volna::server::Server, name: &str) -> WsStream {
    let url = format!("ws://{}/ws?name={name}", server.http_addr);
    let (mut s, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let welcome = next_json(&mut s).await;
    assert_eq!(welcome["type"], "welcome");
    s
}

async fn next_frame(s: &mut WsStream) -> Ws {
    loop {
        let m = tokio::time::timeout(WAIT, s.next())
            .await
            .expect("frame in time")
            .unwrap()
            .unwrap();
        if matches!(m, Ws::Text(_) | Ws::Binary(_)) {
            return m;
        }
    }
}

/// The next text frame as JSON, skipping binary frames.
async fn next_json(s: &mut WsStream) -> Value {
    loop {
        if let Ws::Text(t) = next_frame(s).await {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Reads JSON frames until one has `type` == `ty`.
async fn until_type(s: &mut WsStream, ty: &str) -> Value {
    loop {
        let v = next_json(s).await;
        if v["type"] == ty {
            return v;
        }
    }
}

async fn send(s: &mut WsStream, v: Value) {
    s.send(Ws::text(v.to_string())).await.unwrap();
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn share(s: &mut WsStream, room: &str, name: &str, id: u64, bytes: Vec<u8>) -> Value {
    send(
        s,
        json!({"op": "image", "room": room, "name": name, "attachments": 1, "id": id}),
    )
    .await;
    s.send(Ws::binary(bytes)).await.unwrap();
    loop {
        let v = next_json(s).await;
        if v["id"] == id {
            return v;
        }
    }
}

#[tokio::test]
async fn shared_image_reaches_ws_members_as_thumbnail_and_tcp_members_as_text() {
    let server = start_default().await;
    let mut alice = ws(&server, "alice").await;
    let mut bob = ws(&server, "bob").await;
    for s in [&mut alice, &mut bob] {
        send(s, json!({"op": "join", "room": "pics", "id": 1})).await;
        until_type(s, "reply").await;
    }
    let mut carol = LineClient::named(&server, "carol", &["pics"]).await;

    let bytes = png(640, 480);
    let size = bytes.len();
    let reply = share(&mut alice, "pics", "../holiday/cat.png", 7, bytes).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["op"], "image");

    let ev = until_type(&mut bob, "message").await;
    let img = &ev["data"]["image"];
    assert_eq!(ev["from"]["name"], "alice");
    assert_eq!(img["name"], "cat.png", "the path is stripped");
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(img["format"], "png");
    assert_eq!(img["bytes"].as_u64(), Some(size as u64));
    assert_eq!(
        (img["thumb_width"].as_u64(), img["thumb_height"].as_u64()),
        (Some(256), Some(192))
    );
    assert_eq!(img["thumb"], json!({"_placeholder": true, "num": 0}));
    assert_eq!(ev["attachments"], 1);
    match next_frame(&mut bob).await {
        Ws::Binary(b) => {
            assert_eq!(
                &b[..3],
                &[0xFF, 0xD8, 0xFF],
                "an opaque image's thumbnail is a JPEG"
            );
            let decoded = image::load_from_memory(&b);
            // The test links only the PNG decoder; the header is enough here.
            let _ = decoded;
        }
        other => panic!("expected the thumbnail, got {other:?}"),
    }

    let (line, _) = carol.until("msg pics").await;
    let m = parse_msg(&line);
    assert_eq!(m.from, "alice");
    assert_eq!(m.text, format!("[image cat.png 640x480 png, {size} bytes]"));

    // The health endpoint counts the pool's work and reports loop lag.
    let health: Value = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut h = tokio::net::TcpStream::connect(server.http_addr)
            .await
            .unwrap();
        h.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        h.read_to_string(&mut resp).await.unwrap();
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    assert!(
        health["image_pool"]["done"].as_u64().unwrap() >= 1,
        "{health}"
    );
    assert!(
        health["event_loop_lag_us"]["samples"].as_u64().unwrap() > 0,
        "{health}"
    );
}

#[tokio::test]
async fn bad_images_get_clear_errors_and_the_connection_goes_on() {
    let server = start_default().await;
    let mut alice = ws(&server, "alice").await;
    send(&mut alice, json!({"op": "join", "room": "pics", "id": 1})).await;
    until_type(&mut alice, "reply").await;

    let mut corrupt = png(64, 64);
    let n = corrupt.len();
    corrupt.truncate(n / 2);
    corrupt[40..60].fill(0);
    let r = share(&mut alice, "pics", "broken.png", 2, corrupt).await;
    assert_eq!(r["code"], "corrupt-image", "{r}");

    let r = share(
        &mut alice,
        "pics",
        "notes.txt",
        3,
        b"just some text, not an image".to_vec(),
    )
    .await;
    assert_eq!(r["code"], "unsupported-format", "{r}");

    // A decompression bomb: a valid PNG header declaring 100000 x 100000
    // pixels. Refused from the header alone.
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    // IHDR's CRC covers its type and data (bytes 12..29) and follows them.
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = share(&mut alice, "pics", "bomb.png", 4, bomb).await;
    assert_eq!(r["code"], "too-many-pixels", "{r}");

    let r = share(&mut alice, "elsewhere", "cat.png", 5, png(8, 8)).await;
    assert_eq!(r["code"], "no-such-room", "{r}");

    // Over the upload limit: refused before decoding.
    let big = vec![0u8; 8 * 1024 * 1024 + 1];
    let mut big = big;
    big[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let r = share(&mut alice, "pics", "huge.png", 6, big).await;
    assert_eq!(r["code"], "too-large", "{r}");

    // Still a working member.
    send(
        &mut alice,
        json!({"op": "echo", "data": "still here", "id": 9}),
    )
    .await;
    let v = until_type(&mut alice, "reply").await;
    assert_eq!(v["data"], "still here");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
