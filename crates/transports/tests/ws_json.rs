//! The `/ws` JSON protocol and `/ws/echo` over real sockets on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{CloseReason, Hub, HubConfig, OutboxLimits, Stats};
use volna_transports::http::{self, HttpState};
use volna_transports::tcp::{self, TcpConfig};
use volna_transports::ws::{self, WsConfig, WsState};

const WAIT: Duration = Duration::from_secs(10);

struct TestServer {
    http: SocketAddr,
    tcp: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

async fn start(cfg: WsConfig) -> TestServer {
    let hub = Hub::new(HubConfig::default());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let tcp_addr = tcp_listener.local_addr().unwrap();
    let app = volna_transports::app::Context {
        hub: hub.clone(),
        images: None,
        hooks: volna_transports::hooks::Hooks::none(),
        tokens: None,
        anonymous: true,
        ip_gate: volna_transports::ipgate::IpGate::new(Default::default()),
        meters: Default::default(),
    };
    tokio::spawn(tcp::serve(
        tcp_listener,
        app.clone(),
        Arc::new(TcpConfig::default()),
        shutdown.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    let state = HttpState {
        app: app.clone(),
        shutdown: shutdown.clone(),
        lag: None,
    };
    let router =
        http::router(state.clone()).merge(ws::router(WsState::new(state, cfg, tracker.clone())));
    tokio::spawn(http::serve(http_listener, router, shutdown.clone()));
    TestServer {
        http: http_addr,
        tcp: tcp_addr,
        hub,
        shutdown,
        tracker,
    }
}

fn bad_input(s: &TestServer) -> u64 {
    Stats::get(&s.hub.stats().bad_input)
}

async fn next_line(lines: &mut Lines<BufReader<OwnedReadHalf>>) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("the connection is open")
}

/// What a test client receives, pings and pongs left out.
#[derive(Debug)]
enum Got {
    Json(Value),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
    /// The stream ended (or failed) without a close frame.
    End,
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    name: String,
    id: u64,
    next_id: u64,
}

impl Client {
    async fn connect(s: &TestServer, path_and_query: &str) -> Client {
        let url = format!("ws://{}{}", s.http, path_and_query);
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket handshake");
        Client {
            ws,
            name: String::new(),
            id: 0,
            next_id: 1,
        }
    }

    /// Connects to `/ws` with a requested name and reads the welcome.
    async fn named(s: &TestServer, name: &str) -> Client {
        let mut c = Client::connect(s, &format!("/ws?name={name}")).await;
        let welcome = c.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        c.name = welcome["name"].as_str().unwrap().to_string();
        c.id = welcome["id"].as_u64().unwrap();
        c
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    async fn send_binary(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).await.unwrap();
    }

    async fn got(&mut self) -> Got {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            return match m {
                None | Some(Err(_)) => Got::End,
                Some(Ok(Message::Text(t))) => Got::Json(
                    serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent bad JSON {t}: {e}")),
                ),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(f))) => {
                    Got::Close(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(_)) => continue,
            };
        }
    }

    async fn json(&mut self) -> Value {
        match self.got().await {
            Got::Json(v) => v,
            other => panic!("{}: expected a JSON frame, got {other:?}", self.name),
        }
    }

    async fn binary(&mut self) -> Vec<u8> {
        match self.got().await {
            Got::Binary(b) => b,
            other => panic!("{}: expected a binary frame, got {other:?}", self.name),
        }
    }

    /// Sends a request with a fresh id and returns its reply or error,
    /// skipping events.
    async fn request(&mut self, mut v: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        v["id"] = json!(id);
        self.send_json(v).await;
        self.reply_to(id).await
    }

    async fn reply_to(&mut self, id: u64) -> Value {
        loop {
            let v = self.json().await;
            if matches!(v["type"].as_str(), Some("reply" | "error")) && v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Reads until a frame matches, skipping others.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.got().await {
                Got::Json(v) if pred(&v) => return v,
                Got::Json(_) | Got::Binary(_) => {}
                other => panic!("{}: waiting for {what}, got {other:?}", self.name),
            }
        }
    }

    async fn join(&mut self, room: &str) -> Value {
        let r = self.request(json!({"op":"join","room":room})).await;
        assert_eq!(r["ok"], true, "{r}");
        r
    }

    /// Reads until the connection closes; returns the close frame. Reading
    /// on after it lets tungstenite send the close reply.
    async fn close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            match self.got().await {
                Got::Close(f) => {
                    self.end().await;
                    return f;
                }
                Got::End => return None,
                _ => {}
            }
        }
    }

    /// Reads until the stream ends.
    async fn end(&mut self) {
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }
}

/// Checks that `v` is a non-fatal error frame with `code`.
fn expect_error(v: Value, code: &str) -> Value {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(!v["message"].as_str().unwrap().is_empty(), "{v}");
    assert!(v.get("fatal").is_none(), "{v}");
    v
}

fn names(members: &Value) -> Vec<&str> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_ws_clients_join_message_and_see_presence() {
    let s = start(WsConfig::default()).await;
    let mut alice = Client::named(&s, "alice").await;
    let mut bob = Client::named(&s, "bob").await;
    assert_eq!((alice.name.as_str(), bob.name.as_str()), ("alice", "bob"));

    let r = alice.join("lobby").await;
    assert_eq!(names(&r["members"]), ["alice"]);
    assert_eq!(r["already"], false);
    let r = bob.join("lobby").await;
    assert_eq!(names(&r["members"]), ["alice", "bob"]);
    let p = alice.json().await;
    assert_eq!(
        p,
        json!({"type":"presence","room":"lobby","event":"join","id":bob.id,"name":"bob","members":2})
    );

    // bob sends: both receive the event, bob also the reply with the offset.
    bob.send_json(json!({"op":"message","room":"lobby","data":{"text":"hi","n":[1,2]},"id":"m1"}))
        .await;
    let ev = bob.json().await;
    assert_eq!(ev["type"], "message");
    let reply = bob.json().await;
    assert_eq!(reply["id"], "m1");
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["offset"], 1);
    let ev_a = alice.json().await;
    assert_eq!(ev_a, ev);
    assert_eq!(ev_a["room"], "lobby");
    assert_eq!(ev_a["offset"], 1);
    assert_eq!(ev_a["from"], json!({"id":bob.id,"name":"bob"}));
    assert_eq!(ev_a["data"], json!({"text":"hi","n":[1,2]}));
    assert!(ev_a["ts"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(ev_a.get("attachments").is_none());

    // "self": false: the sender only gets the reply.
    let r = alice
        .request(json!({"op":"message","room":"lobby","data":"quiet","self":false}))
        .await;
    assert_eq!(r["offset"], 2);
    let ev = bob.json().await;
    assert_eq!(
        (ev["offset"].clone(), ev["data"].clone()),
        (json!(2), json!("quiet"))
    );

    let r = alice.request(json!({"op":"who","room":"lobby"})).await;
    assert_eq!(names(&r["members"]), ["alice", "bob"]);
    let r = alice.request(json!({"op":"rooms"})).await;
    assert_eq!(
        r["rooms"],
        json!([{"room":"lobby","count":2,"name":"lobby","members":2}])
    );
    let r = alice
        .request(json!({"op":"history","room":"lobby","limit":5}))
        .await;
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["data"]["text"], "hi");
    assert_eq!(msgs[1]["offset"], 2);
    let r = alice
        .request(json!({"op":"echo","data":{"deep":[null,true,"é"]}}))
        .await;
    assert_eq!(r["data"], json!({"deep":[null,true,"é"]}));

    // Renames show up in later messages; a taken name is refused.
    let r = bob.request(json!({"op":"nick","name":"alice"})).await;
    assert_eq!(
        (r["ok"].clone(), r["code"].clone()),
        (json!(false), json!("name-taken"))
    );
    let r = bob.request(json!({"op":"nick","name":"robert"})).await;
    assert_eq!(r["name"], "robert");
    bob.request(json!({"op":"message","room":"lobby","data":"renamed"}))
        .await;
    let ev = alice.json().await;
    assert_eq!(ev["from"]["name"], "robert");

    // leave, then disconnect: presence both times.
    let r = bob.request(json!({"op":"leave","room":"lobby"})).await;
    assert_eq!(r["members"], 1);
    let p = alice.json().await;
    assert_eq!(
        (p["event"].clone(), p["name"].clone()),
        (json!("leave"), json!("robert"))
    );
    bob.join("lobby").await;
    alice.until("bob's join", |v| v["event"] == "join").await;
    drop(bob);
    let p = alice
        .until("bob's leave", |v| v["type"] == "presence")
        .await;
    assert_eq!(
        (p["event"].clone(), p["members"].clone()),
        (json!("leave"), json!(1))
    );
    assert_eq!(bad_input(&s), 1, "only the name-taken refusal counts");
}

#[tokio::test]
async fn tcp_and_ws_clients_meet_in_the_same_room() {
    let s = start(WsConfig::default()).await;
    let stream = TcpStream::connect(s.tcp).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    assert!(next_line(&mut lines).await.starts_with("welcome volna"));
    wr.write_all(b"/nick tina\n/join lobby\n").await.unwrap();
    assert_eq!(next_line(&mut lines).await, "ok nick tina");
    assert_eq!(next_line(&mut lines).await, "ok join lobby tina");

    let mut wendy = Client::named(&s, "wendy").await;
    let r = wendy.join("lobby").await;
    assert_eq!(names(&r["members"]), ["tina", "wendy"]);
    assert_eq!(next_line(&mut lines).await, "joined lobby wendy 2");

    wr.write_all(b"hello from tcp\n").await.unwrap();
    let tina_msg = next_line(&mut lines).await;
    assert!(tina_msg.starts_with("msg lobby 1 "), "{tina_msg}");
    let ev = wendy.json().await;
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["from"]["name"], "tina");
    assert_eq!(
        ev["data"], "hello from tcp",
        "TCP text arrives as a JSON string"
    );

    wendy
        .request(json!({"op":"message","room":"lobby","data":"hi tina"}))
        .await;
    let got = next_line(&mut lines).await;
    assert!(
        got.starts_with("msg lobby 2 ") && got.ends_with(" wendy: hi tina"),
        "{got}"
    );

    wendy
        .send_json(json!({"op":"message","room":"lobby","id":9,"attachments":1,
            "data":{"file":{"_placeholder":true,"num":0}}}))
        .await;
    wendy.send_binary(b"abc").await;
    let got = next_line(&mut lines).await;
    assert!(got.contains("[+1 binary attachment, 3 bytes]"), "{got}");

    wr.write_all(b"/quit\n").await.unwrap();
    let p = wendy
        .until("tina leaving", |v| v["type"] == "presence")
        .await;
    assert_eq!(
        (p["event"].clone(), p["name"].clone()),
        (json!("leave"), json!("tina"))
    );
}

#[tokio::test]
async fn binary_attachments_round_trip() {
    let s = start(WsConfig::default()).await;
    let mut alice = Client::named(&s, "alice").await;
    let mut bob = Client::named(&s, "bob").await;
    alice.join("pics").await;
    bob.join("pics").await;
    alice.json().await; // bob's presence

    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let data = json!({"caption":"two files",
        "img":{"_placeholder":true,"num":0},
        "more":[{"_placeholder":true,"num":1}]});
    alice
        .send_json(json!({"op":"message","room":"pics","id":1,"attachments":2,"data":data.clone()}))
        .await;
    alice.send_binary(&[0, 1, 2, 255]).await;
    alice.send_binary(&big).await;

    let ev = bob.json().await;
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["attachments"], 2);
    assert_eq!(ev["data"], data);
    assert_eq!(bob.binary().await, [0, 1, 2, 255]);
    assert_eq!(bob.binary().await, big);

    // The sender gets the same event and its frames, then the reply.
    assert_eq!(alice.json().await["attachments"], 2);
    alice.binary().await;
    alice.binary().await;
    assert_eq!(alice.json().await["offset"], 1);

    // echo carries attachments back the same way.
    alice
        .send_json(
            json!({"op":"echo","id":2,"attachments":1,"data":[{"_placeholder":true,"num":0}]}),
        )
        .await;
    alice.send_binary(b"echoed").await;
    let r = alice.json().await;
    assert_eq!(
        (r["id"].clone(), r["attachments"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(alice.binary().await, b"echoed");

    // history replays them after the reply, in message order.
    let r = bob.request(json!({"op":"history","room":"pics"})).await;
    assert_eq!(r["attachments"], 2);
    assert_eq!(r["messages"][0]["attachments"], 2);
    assert_eq!(bob.binary().await, [0, 1, 2, 255]);
    assert_eq!(bob.binary().await, big);
    assert_eq!(bad_input(&s), 0);
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_the_connection_stays_usable() {
    let cfg = WsConfig {
        max_message_size: 64 << 10,
        max_attachments: 4,
        ..WsConfig::default()
    };
    let s = start(cfg).await;
    let mut c = Client::named(&s, "carl").await;

    let mut errors = 0;

    c.send_text("{\"op\":\"join\",").await;
    expect_error(c.json().await, "bad-json");
    c.send_text("[1,2]").await;
    expect_error(c.json().await, "bad-request");
    c.send_text("\"join\"").await;
    expect_error(c.json().await, "bad-request");
    c.send_json(json!({"room":"x","id":1})).await;
    assert_eq!(expect_error(c.json().await, "bad-request")["id"], 1);
    c.send_json(json!({"op":"dance","id":2})).await;
    let e = expect_error(c.json().await, "unknown-op");
    assert_eq!(e["id"], 2);
    assert!(e["message"].as_str().unwrap().contains("dance"));
    c.send_json(json!({"op":"join","id":3})).await;
    let e = expect_error(c.json().await, "bad-request");
    assert_eq!(
        (e["id"].clone(), e["op"].clone()),
        (json!(3), json!("join"))
    );
    c.send_json(json!({"op":"join","room":["x"],"id":4})).await;
    expect_error(c.json().await, "bad-request");
    c.send_json(json!({"op":"join","room":"x","id":{"no":1}}))
        .await;
    expect_error(c.json().await, "bad-request");
    c.send_json(json!({"op":"message","room":"x","id":5})).await;
    expect_error(c.json().await, "bad-request");
    c.send_json(json!({"op":"join","room":"bad room!","id":6}))
        .await;
    expect_error(c.json().await, "bad-name");
    c.send_json(json!({"op":"message","room":"nowhere","data":1,"id":7}))
        .await;
    expect_error(c.json().await, "no-such-room");
    c.send_json(json!({"op":"leave","room":"nowhere","id":8}))
        .await;
    expect_error(c.json().await, "not-member");
    c.send_json(json!({"op":"who","room":"nowhere","id":9}))
        .await;
    expect_error(c.json().await, "no-such-room");
    errors += 13;

    // Binary frames nobody announced.
    c.send_binary(b"stray").await;
    expect_error(c.json().await, "unexpected-binary");
    // Too many attachments.
    c.send_json(json!({"op":"message","room":"x","data":1,"attachments":5,"id":10}))
        .await;
    expect_error(c.json().await, "too-many-attachments");
    // Attachments on an op that takes none: refused, and its frame skipped.
    c.send_json(json!({"op":"join","room":"x","attachments":1,"id":11}))
        .await;
    expect_error(c.json().await, "bad-request");
    c.send_binary(b"skipped").await;
    // A placeholder pointing past the attachments: refused, frames skipped.
    c.send_json(json!({"op":"echo","attachments":1,"id":12,
        "data":{"_placeholder":true,"num":3}}))
        .await;
    expect_error(c.json().await, "bad-placeholder");
    c.send_binary(b"skipped too").await;
    // A placeholder without any attachment.
    c.send_json(json!({"op":"echo","id":13,"data":[{"_placeholder":true,"num":0}]}))
        .await;
    expect_error(c.json().await, "bad-placeholder");
    // Fewer binary frames than announced before the next request.
    c.send_json(json!({"op":"echo","attachments":2,"id":14,"data":null}))
        .await;
    c.send_binary(b"one").await;
    c.send_json(json!({"op":"echo","id":15,"data":"next"}))
        .await;
    let e = expect_error(c.json().await, "missing-attachments");
    assert_eq!(e["id"], 14);
    assert_eq!(c.json().await["data"], "next", "the next request is served");
    // Attachments over the size bound, each frame under it: refused, the
    // remaining frames skipped, the connection kept.
    c.send_json(json!({"op":"echo","attachments":3,"id":16,"data":null}))
        .await;
    let chunk = vec![7u8; 40 << 10];
    for _ in 0..3 {
        c.send_binary(&chunk).await;
    }
    let e = expect_error(c.json().await, "too-large");
    assert_eq!(e["id"], 16);
    errors += 7;

    // Still usable after all of that.
    c.join("x").await;
    let r = c
        .request(json!({"op":"message","room":"x","data":"still here"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(bad_input(&s), errors);
}

#[tokio::test]
async fn oversized_message_gets_an_error_and_close_1009() {
    let cfg = WsConfig {
        max_message_size: 64 << 10,
        ..WsConfig::default()
    };
    let s = start(cfg).await;
    let mut other = Client::named(&s, "other").await;
    let mut c = Client::named(&s, "big").await;
    c.send_text(&format!(
        "{{\"op\":\"echo\",\"data\":\"{}\"}}",
        "x".repeat(100 << 10)
    ))
    .await;
    let e = c.json().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "too-large");
    assert_eq!(e["fatal"], true);
    let (code, reason) = c.close_frame().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(reason.starts_with("protocol-error: too-large"), "{reason}");
    assert_eq!(Stats::get(&s.hub.stats().protocol_closes), 1);
    assert_eq!(bad_input(&s), 1);

    // Others are unaffected.
    let r = other.request(json!({"op":"echo","data":1})).await;
    assert_eq!(r["data"], 1);

    // Binary frames are bounded the same way.
    let mut d = Client::named(&s, "bigbin").await;
    d.send_binary(&vec![0u8; 65 << 10]).await;
    assert_eq!(d.json().await["code"], "too-large");
    assert_eq!(d.close_frame().await.map(|f| f.0), Some(1009));
}

#[tokio::test]
async fn slow_consumer_is_disconnected_with_1008() {
    let cfg = WsConfig {
        outbox: OutboxLimits {
            max_frames: 64,
            max_bytes: 256 << 10,
        },
        ..WsConfig::default()
    };
    let s = start(cfg).await;
    let mut slow = Client::named(&s, "slow").await;
    let mut fast = Client::named(&s, "fast").await;
    slow.join("flood").await;
    fast.join("flood").await;

    // slow stops reading; fast publishes until the server gives up on slow.
    let payload = "z".repeat(16 << 10);
    let mut sent = 0;
    while Stats::get(&s.hub.stats().slow_consumers) == 0 {
        assert!(sent < 4000, "slow was never disconnected");
        let r = fast
            .request(json!({"op":"message","room":"flood","data":payload,"self":false}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        sent += 1;
    }
    // fast sees slow leave, and can go on.
    let p = fast
        .until("slow's leave", |v| v["type"] == "presence")
        .await;
    assert_eq!(
        (p["event"].clone(), p["name"].clone()),
        (json!("leave"), json!("slow"))
    );

    // slow, reading again, finds the frames that made it, then the reason.
    let mut last_json = Value::Null;
    let close = loop {
        match slow.got().await {
            Got::Json(v) => last_json = v,
            Got::Binary(_) => {}
            Got::Close(f) => {
                slow.end().await;
                break f;
            }
            Got::End => break None,
        }
    };
    assert_eq!(last_json["code"], "slow-consumer", "{last_json}");
    assert_eq!(last_json["fatal"], true);
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.starts_with("slow-consumer"), "{reason}");
    assert!(reason.len() <= 123);
}

#[tokio::test]
async fn idle_clients_are_pinged_and_silent_ones_time_out() {
    let cfg = WsConfig {
        ping_interval: Some(Duration::from_millis(100)),
        idle_timeout: Some(Duration::from_millis(400)),
        ..WsConfig::default()
    };
    let s = start(cfg).await;
    // A client that reads answers the pings (tungstenite does it while
    // reading) and stays connected.
    let mut live = Client::named(&s, "live").await;
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, live.ws.next()).await {
            match m.unwrap() {
                Message::Ping(_) => pings += 1,
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
        (pings, live)
    });
    // A client that never reads sends no pongs and is closed.
    let mut silent = Client::named(&s, "silent").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let e = silent
        .until("the timeout error", |v| v["type"] == "error")
        .await;
    assert_eq!(e["code"], "timeout");
    assert_eq!(silent.close_frame().await.map(|f| f.0), Some(1001));

    let (pings, mut live) = reader.await.unwrap();
    assert!(pings >= 5, "only {pings} pings");
    let r = live.request(json!({"op":"echo","data":"alive"})).await;
    assert_eq!(r["data"], "alive");
}

#[tokio::test]
async fn shutdown_closes_with_going_away() {
    let s = start(WsConfig::default()).await;
    let mut c = Client::named(&s, "c").await;
    c.join("r").await;
    let mut e = Client::connect(&s, "/ws/echo").await;
    e.send_text("\"before\"").await;
    assert_eq!(e.json().await, "before");

    // What Server::shutdown does.
    s.hub.close_all(CloseReason::ServerShutdown);
    s.shutdown.cancel();
    s.tracker.close();

    let (code, reason) = c.close_frame().await.expect("a close frame");
    assert_eq!(code, 1001);
    assert!(reason.starts_with("server-shutdown"), "{reason}");
    assert_eq!(e.close_frame().await.map(|f| f.0), Some(1001));
    // Our replies completed the handshakes: the connections end and the
    // tracker, which they hold tokens of, empties.
    tokio::time::timeout(WAIT, s.tracker.wait())
        .await
        .expect("every websocket connection finished");
}

#[tokio::test]
async fn echo_endpoint_echoes_text_and_binary_without_the_hub() {
    let s = start(WsConfig::default()).await;
    let mut e = Client::connect(&s, "/ws/echo").await;
    e.ws.send(Message::text("héllo")).await.unwrap();
    match e.ws.next().await.unwrap().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "héllo"),
        other => panic!("{other:?}"),
    }
    let big = vec![42u8; 3 << 20];
    e.send_binary(&big).await;
    assert_eq!(e.binary().await, big);
    e.ws.send(Message::Close(None)).await.unwrap();
    assert!(matches!(e.got().await, Got::Close(_)));
    assert_eq!(s.hub.connection_count(), 0);

    // Disabled by configuration.
    let s2 = start(WsConfig {
        echo: false,
        ..WsConfig::default()
    })
    .await;
    let url = format!("ws://{}/ws/echo", s2.http);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn history_is_cut_to_fit_the_outgoing_queue() {
    let cfg = WsConfig {
        outbox: OutboxLimits {
            max_frames: 1024,
            max_bytes: 256 << 10,
        },
        ..WsConfig::default()
    };
    let s = start(cfg).await;
    let mut c = Client::named(&s, "archivist").await;
    c.join("big").await;
    let blob = vec![1u8; 60 << 10];
    for i in 0..10u64 {
        c.send_json(
            json!({"op":"message","room":"big","id":i,"self":false,"attachments":1,
            "data":{"n":i,"file":{"_placeholder":true,"num":0}}}),
        )
        .await;
        c.send_binary(&blob).await;
        assert_eq!(c.reply_to(i).await["offset"], i + 1);
    }
    // Ten 60 KiB attachments do not fit in half of a 256 KiB queue: the
    // newest that do come back, marked truncated, and the asker stays.
    let r = c
        .request(json!({"op":"history","room":"big","limit":10}))
        .await;
    assert_eq!(r["truncated"], true, "{r}");
    let offsets: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [9, 10]);
    assert_eq!(r["attachments"], 2);
    assert_eq!(c.binary().await, blob);
    assert_eq!(c.binary().await, blob);
    let r = c
        .request(json!({"op":"echo","data":"still connected"}))
        .await;
    assert_eq!(r["data"], "still connected");
    assert_eq!(Stats::get(&s.hub.stats().slow_consumers), 0);
}

/// The status line an upgrade to `/ws` from a page of `origin` gets.
async fn upgrade_status(s: &TestServer, origin: Option<&str>) -> String {
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        s.http
    );
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("an answer in time")
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn pages_of_other_sites_cannot_upgrade_unless_allowed() {
    let s = start(WsConfig::default()).await;
    assert!(
        upgrade_status(&s, None).await.contains(" 101 "),
        "no browser"
    );
    let own = format!("http://{}", s.http);
    assert!(upgrade_status(&s, Some(&own)).await.contains(" 101 "));
    assert!(upgrade_status(&s, Some("https://evil.example"))
        .await
        .contains(" 403 "));
    let s = start(WsConfig {
        allowed_origins: vec!["https://app.example".into()],
        ..WsConfig::default()
    })
    .await;
    assert!(upgrade_status(&s, Some("https://app.example"))
        .await
        .contains(" 101 "));
    assert!(upgrade_status(&s, Some("https://evil.example"))
        .await
        .contains(" 403 "));
}
