//! Volatile events over real sockets: a member that stopped reading misses
//! them (counted) and stays connected, while a member that keeps up gets
//! every one.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volna_hub::{OutboxLimits, Policies, RoomPolicy, Stats};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_client(server: &volna::server::Server, name: &str) -> Ws {
    let url = format!("ws://{}/ws?name={name}", server.http_addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let WsMessage::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn request(ws: &mut Ws, req: Value) -> Value {
    let id = req["id"].clone();
    ws.send(WsMessage::text(req.to_string())).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v["id"] == id && (v["type"] == "reply" || v["type"] == "error") {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_misses_volatile_events_and_stays_connected() {
    let mut game = RoomPolicy::new("game");
    game.volatile = vec!["pos".into()];
    let mut config = volna::config::ServerConfig::default();
    // 1500 events as fast as it can: over a client's default request rate.
    config.hub.rate.per_second = 0.0;
    config.hub.policies = Policies::new(vec![game]);
    // A small queue for TCP members: the stalled one is behind quickly once
    // its socket buffers are full.
    config.tcp.outbox = OutboxLimits {
        max_frames: 64,
        max_bytes: 1 << 20,
    };
    let server = start(config).await;
    let stalled = LineClient::named(&server, "stalled", &["game"]).await;
    let mut publisher = ws_client(&server, "pub").await;
    let mut fast = ws_client(&server, "fast").await;
    for (ws, id) in [(&mut publisher, 1), (&mut fast, 2)] {
        let r = request(ws, json!({"op": "join", "room": "game", "id": id})).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    // The fast member reads everything, concurrently.
    const EVENTS: u64 = 1500;
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while got < EVENTS {
            let v = next_json(&mut fast).await;
            if v["type"] == "event" && v["event"] == "pos" {
                got += 1;
            }
        }
        (got, fast)
    });
    let blob = "p".repeat(16 << 10);
    for i in 0..EVENTS {
        let r = request(
            &mut publisher,
            json!({"op": "emit", "event": "pos", "room": "game", "data": blob, "self": false, "id": 100 + i}),
        )
        .await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let (got, _fast) = reader.await.unwrap();
    assert_eq!(
        got, EVENTS,
        "the member keeping up got every volatile event"
    );
    let stats = server.hub().stats();
    let dropped = Stats::get(&stats.volatile_dropped);
    assert!(dropped > 0, "the stalled member missed some");
    assert!(dropped < EVENTS, "it got the ones that fitted");
    assert_eq!(Stats::get(&stats.slow_consumers), 0, "nobody was cut");
    // Volatile events are not history.
    let h = request(
        &mut publisher,
        json!({"op": "history", "room": "game", "id": 9}),
    )
    .await;
    assert_eq!(h["messages"], json!([]), "{h}");
    // The stalled member is still there, and reading again it gets answers.
    let mut stalled = stalled;
    stalled.send("/echo still here").await;
    let (line, _) = stalled.until("ok echo").await;
    assert_eq!(line, "ok echo still here");
}
