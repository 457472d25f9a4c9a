//! Engine.IO v4, written from the protocol document: handshake, polling
//! payload framing, WebSocket, upgrade, heartbeat, close, limits, CORS.
//! Runs against the echo server at `/engine.io/` over real sockets.

mod engineio_support;

use std::time::Duration;

use engineio_support::*;
use tokio_tungstenite::tungstenite::Message;
use volna_hub::Stats;

const EIO: &str = "/engine.io/";

fn poll_path(sid: &str) -> String {
    format!("{EIO}?EIO=4&transport=polling&sid={sid}")
}

#[tokio::test]
async fn polling_handshake() {
    let srv = start(config(300, 200)).await;
    let (sid, open) = open_polling(srv.http, EIO).await;
    assert_eq!(sid.len(), 20);
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 1_000_000);
    let keys: Vec<&String> = open.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5);
    let resp = get(srv.http, &format!("{EIO}?EIO=4&transport=polling")).await;
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let (other, _) = open_polling(srv.http, EIO).await;
    assert_ne!(sid, other);
}

#[tokio::test]
async fn handshake_errors_match_the_reference_server() {
    let srv = start(config(300, 200)).await;
    let cases = [
        (
            "GET",
            format!("{EIO}?transport=polling"),
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            format!("{EIO}?EIO=abc&transport=polling"),
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            format!("{EIO}?EIO=3&transport=polling"),
            5,
            "Unsupported protocol version",
        ),
        ("GET", format!("{EIO}?EIO=4"), 0, "Transport unknown"),
        (
            "GET",
            format!("{EIO}?EIO=4&transport=abc"),
            0,
            "Transport unknown",
        ),
        (
            "POST",
            format!("{EIO}?EIO=4&transport=polling"),
            2,
            "Bad handshake method",
        ),
        (
            "PUT",
            format!("{EIO}?EIO=4&transport=polling"),
            2,
            "Bad handshake method",
        ),
        (
            "GET",
            format!("{EIO}?EIO=4&transport=websocket"),
            3,
            "Bad request",
        ),
        (
            "GET",
            format!("{EIO}?EIO=4&transport=polling&sid=nope"),
            1,
            "Session ID unknown",
        ),
    ];
    for (method, path, code, message) in cases {
        let resp = request(srv.http, method, &path, &[], b"").await;
        assert_eq!(resp.status, 400, "{method} {path}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(
            resp.json(),
            serde_json::json!({"code": code, "message": message}),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn polling_payload_framing() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let resp = post(srv.http, &poll_path(&sid), b"4hello").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(get(srv.http, &poll_path(&sid)).await.text(), "4hello");

    let resp = post(srv.http, &poll_path(&sid), b"4test1\x1e4test2\x1e4test3").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        get(srv.http, &poll_path(&sid)).await.text(),
        "4test1\x1e4test2\x1e4test3"
    );

    // Binary as `b` + base64, UTF-8 text intact.
    let resp = post(
        srv.http,
        &poll_path(&sid),
        "4hello\x1ebAQIDBA==\x1e4€€€".as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        get(srv.http, &poll_path(&sid)).await.text(),
        "4hello\x1ebAQIDBA==\x1e4€€€"
    );
}

#[tokio::test]
async fn pending_poll_is_answered_when_data_arrives() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let addr = srv.http;
    let path = poll_path(&sid);
    let pending = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished(), "a poll waits for data");
    post(srv.http, &poll_path(&sid), b"4late").await;
    assert_eq!(pending.await.unwrap().text(), "4late");
}

#[tokio::test]
async fn a_poll_whose_connection_goes_away_closes_the_session() {
    // As the reference server: a pending GET whose connection closed is a
    // transport error, not something to wait a ping timeout for.
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    assert_eq!(srv.echo.session_count(), 1);
    let addr = srv.http;
    let path = poll_path(&sid);
    let pending = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.echo.session_count(), 1, "a waiting poll keeps it");
    pending.abort(); // drops the client's connection with its GET pending
    let echo = srv.echo.clone();
    eventually(move || echo.session_count() == 0).await;
    let resp = get(srv.http, &poll_path(&sid)).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
}

#[tokio::test]
async fn invalid_payload_closes_the_session() {
    let srv = start(config(5000, 5000)).await;
    let before = Stats::get(&srv.hub.stats().protocol_closes);
    let (sid, _) = open_polling(srv.http, EIO).await;
    let resp = post(srv.http, &poll_path(&sid), b"abc").await;
    assert_eq!(resp.status, 400);
    let resp = get(srv.http, &poll_path(&sid)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["code"], 1);
    assert_eq!(Stats::get(&srv.hub.stats().protocol_closes), before + 1);
    assert!(Stats::get(&srv.hub.stats().bad_input) >= 1);
}

#[tokio::test]
async fn duplicate_polls_close_the_session() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let addr = srv.http;
    let path = poll_path(&sid);
    let first = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = get(srv.http, &poll_path(&sid)).await;
    assert_eq!(second.status, 400);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.text().as_str()), (200, "1"));
    assert_eq!(get(srv.http, &poll_path(&sid)).await.status, 400);
}

#[tokio::test]
async fn client_close_over_polling() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let addr = srv.http;
    let path = poll_path(&sid);
    let pending = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(srv.http, &poll_path(&sid), b"1").await.status, 200);
    assert_eq!(pending.await.unwrap().text(), "6");
    assert_eq!(get(srv.http, &poll_path(&sid)).await.status, 400);
    eventually(|| srv.echo.session_count() == 0).await;
}

#[tokio::test]
async fn polling_heartbeat_and_timeout() {
    let srv = start(config(100, 100)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    for _ in 0..3 {
        let resp = get(srv.http, &poll_path(&sid)).await;
        assert_eq!(resp.text(), "2");
        assert_eq!(post(srv.http, &poll_path(&sid), b"3").await.status, 200);
    }
    // No pong: the session is gone after pingInterval + pingTimeout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = get(srv.http, &poll_path(&sid)).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
}

#[tokio::test]
async fn websocket_session() {
    let srv = start(config(300, 200)).await;
    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    let open = ws_text(&mut ws).await;
    let open: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!([]));
    assert_eq!(open["pingInterval"], 300);
    ws_send(&mut ws, "4hello").await;
    assert_eq!(ws_text(&mut ws).await, "4hello");
    ws_send_binary(&mut ws, &[1, 2, 3, 4]).await;
    assert_eq!(ws_binary(&mut ws).await, vec![1, 2, 3, 4]);
    // Heartbeat: three pings answered.
    for _ in 0..3 {
        match ws_next(&mut ws).await {
            Some(Message::Text(t)) => assert_eq!(t.as_str(), "2"),
            other => panic!("{other:?}"),
        }
        ws_send(&mut ws, "3").await;
    }
    // Client close.
    ws_send(&mut ws, "1").await;
    ws_closed(&mut ws).await;
}

#[tokio::test]
async fn websocket_ping_timeout_closes() {
    let srv = start(config(50, 50)).await;
    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    let started = std::time::Instant::now();
    ws_closed(&mut ws).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    eventually(|| srv.echo.session_count() == 0).await;
}

#[tokio::test]
async fn websocket_invalid_packet_closes() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "abc").await;
    ws_closed(&mut ws).await;
    // A client may not ping in v4.
    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "2").await;
    ws_closed(&mut ws).await;
    assert!(Stats::get(&srv.hub.stats().protocol_closes) >= 2);
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let addr = srv.http;
    let path = poll_path(&sid);
    let pending = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(
        srv.http,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    // The pending poll ends with a noop.
    assert_eq!(pending.await.unwrap().text(), "6");
    // A poll during the upgrade is answered at once.
    assert_eq!(get(srv.http, &poll_path(&sid)).await.text(), "6");
    ws_send(&mut ws, "5").await;
    ws_send(&mut ws, "4hello").await;
    assert_eq!(ws_text(&mut ws).await, "4hello");
    // HTTP requests with the sid are refused now, as is a second WebSocket.
    let resp = get(srv.http, &poll_path(&sid)).await;
    assert_eq!((resp.status, resp.json()["code"].as_u64()), (400, Some(3)));
    let mut ws2 = ws_connect(
        srv.http,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    ws_closed(&mut ws2).await;
    ws_send(&mut ws, "4still here").await;
    assert_eq!(ws_text(&mut ws).await, "4still here");
}

#[tokio::test]
async fn messages_queued_during_upgrade_arrive_over_websocket() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let mut ws = ws_connect(
        srv.http,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    // Sent over polling while the upgrade is in progress: queued.
    post(srv.http, &poll_path(&sid), b"4queued").await;
    ws_send(&mut ws, "5").await;
    assert_eq!(ws_text(&mut ws).await, "4queued");
}

#[tokio::test]
async fn failed_probe_keeps_polling() {
    let srv = start(config(5000, 5000)).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let mut ws = ws_connect(
        srv.http,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    ws_send(&mut ws, "4not a probe").await;
    ws_closed(&mut ws).await;
    post(srv.http, &poll_path(&sid), b"4still polling").await;
    assert_eq!(
        get(srv.http, &poll_path(&sid)).await.text(),
        "4still polling"
    );
}

#[tokio::test]
async fn max_payload_is_enforced() {
    let mut cfg = config(5000, 5000);
    cfg.engine.max_payload = 100;
    let srv = start(cfg).await;
    let (sid, open) = open_polling(srv.http, EIO).await;
    assert_eq!(open["maxPayload"], 100);
    let big = vec![b'4'; 101];
    assert_eq!(post(srv.http, &poll_path(&sid), &big).await.status, 413);
    let ok = vec![b'4'; 100];
    assert_eq!(post(srv.http, &poll_path(&sid), &ok).await.status, 200);

    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, &format!("4{}", "x".repeat(200))).await;
    ws_closed(&mut ws).await;
}

#[tokio::test]
async fn other_origins_are_refused_unless_allowed_and_then_get_cors() {
    let srv = start(config(5000, 5000)).await;
    // A page of another site: refused (cross-site WebSocket hijacking).
    let resp = request(
        srv.http,
        "GET",
        &format!("{EIO}?EIO=4&transport=polling"),
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(resp.status, 403);
    // A page of the server's own origin, or no browser at all: served.
    let own = format!("http://{}", srv.http);
    let resp = request(
        srv.http,
        "GET",
        &format!("{EIO}?EIO=4&transport=polling"),
        &[("Origin", own.as_str())],
        b"",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), None);

    let mut cfg = config(5000, 5000);
    cfg.engine.allowed_origins = vec!["https://app.example".into()];
    let srv = start(cfg).await;
    let resp = request(
        srv.http,
        "GET",
        &format!("{EIO}?EIO=4&transport=polling"),
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    let resp = request(
        srv.http,
        "GET",
        &format!("{EIO}?EIO=4&transport=polling"),
        &[("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("access-control-allow-origin"), None);
    let resp = request(
        srv.http,
        "OPTIONS",
        &format!("{EIO}?EIO=4&transport=polling"),
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(resp.status, 204);
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("content-type")
    );
}

#[tokio::test]
async fn shutdown_closes_websocket_sessions() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = ws_connect(srv.http, &format!("{EIO}?EIO=4&transport=websocket")).await;
    ws_text(&mut ws).await;
    let (sid, _) = open_polling(srv.http, EIO).await;
    let addr = srv.http;
    let path = poll_path(&sid);
    let pending = tokio::spawn(async move { get(addr, &path).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.shutdown.cancel();
    ws_closed(&mut ws).await;
    assert_eq!(pending.await.unwrap().text(), "1");
    srv.tracker.close();
    tokio::time::timeout(WAIT, srv.tracker.wait())
        .await
        .expect("every session task ends at shutdown");
}
