//! Socket.IO v5, written from the protocol document: namespaces, events,
//! acknowledgements, binary packets, errors, the connect timeout; then the
//! default application and its bridge to TCP clients.

mod engineio_support;

use std::time::Duration;

use engineio_support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use volna_hub::Stats;

const SIO: &str = "/socket.io/";
const WS: &str = "/socket.io/?EIO=4&transport=websocket";

fn normal(connect_timeout_ms: u64) -> volna_transports::socketio::SocketIoConfig {
    let mut c = config(5000, 5000);
    c.conformance = false;
    c.connect_timeout = Duration::from_millis(connect_timeout_ms);
    c
}

/// Opens a WebSocket session and joins namespace `/` with `auth`.
async fn connect(srv: &TestServer, auth: &str) -> Ws {
    let mut ws = ws_connect(srv.http, WS).await;
    assert!(ws_text(&mut ws).await.starts_with('0'));
    ws_send(&mut ws, &format!("40{auth}")).await;
    let reply = ws_text(&mut ws).await;
    let sid: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(sid.as_object().unwrap().len(), 1);
    assert_eq!(sid["sid"].as_str().unwrap().len(), 20);
    ws
}

/// The JSON of the next Socket.IO packet with the given prefix.
async fn expect_json(ws: &mut Ws, prefix: &str) -> Value {
    let text = ws_text(ws).await;
    let rest = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix}..., got {text}"));
    serde_json::from_str(rest).unwrap()
}

#[tokio::test]
async fn connect_with_auth_to_main_and_custom_namespaces() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = connect(&srv, r#"{"token":"123"}"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["auth",{"token":"123"}]"#);
    ws_send(&mut ws, "40/custom,").await;
    assert!(ws_text(&mut ws).await.starts_with(r#"40/custom,{"sid":""#));
    assert_eq!(ws_text(&mut ws).await, r#"42/custom,["auth",{}]"#);
    // Same namespace twice: the reference server closes the connection.
    ws_send(&mut ws, "40/custom,").await;
    ws_closed(&mut ws).await;
}

#[tokio::test]
async fn unknown_namespace_is_refused_and_the_connection_stays() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = ws_connect(srv.http, WS).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "40/random").await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws_send(&mut ws, "40").await;
    assert!(ws_text(&mut ws).await.starts_with("40{"));
    // In the normal profile only `/` exists.
    let srv = start(normal(5000)).await;
    let mut ws = ws_connect(srv.http, WS).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "40/custom,").await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/custom,{"message":"Invalid namespace"}"#
    );
}

#[tokio::test]
async fn events_acks_and_binary() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = connect(&srv, "").await;
    ws_text(&mut ws).await; // auth
    ws_send(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    ws_send(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"43456[1,"2",{"3":[false]}]"#);

    let two = r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    ws_send(&mut ws, &format!(r#"452-["message",{}"#, &two[1..])).await;
    ws_send_binary(&mut ws, &[1, 2, 3]).await;
    ws_send_binary(&mut ws, &[4, 5, 6]).await;
    assert_eq!(
        ws_text(&mut ws).await,
        format!(r#"452-["message-back",{}"#, &two[1..])
    );
    assert_eq!(ws_binary(&mut ws).await, vec![1, 2, 3]);
    assert_eq!(ws_binary(&mut ws).await, vec![4, 5, 6]);

    ws_send(
        &mut ws,
        &format!(r#"452-789["message-with-ack",{}"#, &two[1..]),
    )
    .await;
    ws_send_binary(&mut ws, &[1, 2, 3]).await;
    ws_send_binary(&mut ws, &[4, 5, 6]).await;
    assert_eq!(ws_text(&mut ws).await, format!("462-789{two}"));
    assert_eq!(ws_binary(&mut ws).await, vec![1, 2, 3]);
    assert_eq!(ws_binary(&mut ws).await, vec![4, 5, 6]);
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let srv = start(config(5000, 5000)).await;
    let cases: &[&[&str]] = &[
        &["4abc"],
        &["42{}"],
        &[r#"42abc["message-with-ack",1]"#],
        &[r#"42/custom,["message"]"#], // namespace not joined
        &[r#"451-["message",{"_placeholder":true,"num":0}]"#, "4x"], // text while attachments expected
        &["43["],
        &[r#"42["connect"]"#], // reserved event name
    ];
    for (i, packets) in cases.iter().enumerate() {
        let before = Stats::get(&srv.hub.stats().protocol_closes);
        let mut ws = connect(&srv, "").await;
        ws_text(&mut ws).await; // auth
        for p in packets.iter() {
            ws_send(&mut ws, p).await;
        }
        ws_closed(&mut ws).await;
        eventually(|| Stats::get(&srv.hub.stats().protocol_closes) > before).await;
        assert!(Stats::get(&srv.hub.stats().bad_input) >= (i + 1) as u64);
    }
    // An attachment nobody announced.
    let mut ws = connect(&srv, "").await;
    ws_text(&mut ws).await;
    ws_send_binary(&mut ws, &[1]).await;
    ws_closed(&mut ws).await;
    // An invalid handshake.
    let mut ws = ws_connect(srv.http, WS).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "4abc").await;
    ws_closed(&mut ws).await;
    eventually(|| srv.sio.session_count() == 0).await;
    assert_eq!(srv.hub.connection_count(), 0);
}

#[tokio::test]
async fn connect_timeout_closes_idle_connections() {
    let srv = start(normal(100)).await;
    let mut ws = ws_connect(srv.http, WS).await;
    ws_text(&mut ws).await;
    let started = std::time::Instant::now();
    ws_closed(&mut ws).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Joining in time keeps the connection.
    let mut ws = connect(&srv, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws_send(&mut ws, r#"420["echo","still"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"430["still"]"#);
}

#[tokio::test]
async fn disconnect_leaves_the_namespace_only() {
    let srv = start(config(5000, 5000)).await;
    let mut ws = connect(&srv, "").await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "40/custom,").await;
    ws_text(&mut ws).await;
    ws_text(&mut ws).await;
    assert_eq!(srv.hub.connection_count(), 2);
    ws_send(&mut ws, "41/custom,").await;
    ws_send(&mut ws, r#"42["message","main"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","main"]"#);
    assert_eq!(srv.hub.connection_count(), 1);
    // Events to the namespace just left are a protocol error.
    ws_send(&mut ws, r#"42/custom,["message","x"]"#).await;
    ws_closed(&mut ws).await;
    eventually(|| srv.hub.connection_count() == 0).await;
}

#[tokio::test]
async fn socketio_over_polling() {
    let srv = start(normal(5000)).await;
    let (sid, _) = open_polling(srv.http, SIO).await;
    let path = format!("{SIO}?EIO=4&transport=polling&sid={sid}");
    post(srv.http, &path, br#"40{"name":"poller"}"#).await;
    let reply = get(srv.http, &path).await.text();
    assert!(reply.starts_with(r#"40{"sid":""#), "{reply}");
    post(
        srv.http,
        &path,
        b"421[\"join\",\"lobby\"]\x1e452-2[\"echo\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQID\x1ebBAUG",
    )
    .await;
    let body = get(srv.http, &path).await.text();
    let packets: Vec<&str> = body.split('\x1e').collect();
    let ack: Value = serde_json::from_str(packets[0].strip_prefix("431").unwrap()).unwrap();
    assert_eq!(
        without_epoch(ack),
        json!([{"ok": true, "room": "lobby", "members": ["poller"], "count": 1, "already": false, "offset": 0, "missed": 0}])
    );
    assert_eq!(
        packets[1..],
        [
            r#"462-2[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            "bAQID",
            "bBAUG",
        ]
    );
}

#[tokio::test]
async fn default_application_rooms_messages_and_acks() {
    let srv = start(normal(5000)).await;
    let mut ann = connect(&srv, r#"{"name":"ann"}"#).await;
    let mut bob = connect(&srv, r#"{"name":"bob"}"#).await;

    ws_send(&mut ann, r#"421["join","lobby"]"#).await;
    assert_eq!(
        without_epoch(expect_json(&mut ann, "431").await),
        json!([{"ok": true, "room": "lobby", "members": ["ann"], "count": 1, "already": false, "offset": 0, "missed": 0}])
    );
    ws_send(&mut bob, r#"421["join","lobby"]"#).await;
    assert_eq!(
        without_epoch(expect_json(&mut bob, "431").await),
        json!([{"ok": true, "room": "lobby", "members": ["ann", "bob"], "count": 2, "already": false, "offset": 0, "missed": 0}])
    );
    let presence = expect_json(&mut ann, "42").await;
    assert_eq!(presence[0], "presence");
    assert_eq!(presence[1]["name"], "bob");
    assert_eq!(presence[1]["event"], "join");
    assert_eq!(presence[1]["members"], 2);

    // A message reaches every member, the sender included, data unchanged.
    ws_send(
        &mut ann,
        r#"422["message",{"room":"lobby","data":{"text":"hi","n":[1,2]}}]"#,
    )
    .await;
    // The sender gets the broadcast (queued while publishing) then the ack.
    let first = ws_text(&mut ann).await;
    let ack: Value =
        serde_json::from_str(ws_text(&mut ann).await.strip_prefix("432").unwrap()).unwrap();
    assert_eq!(ack[0]["ok"], true);
    assert_eq!(ack[0]["offset"], 1);
    let own: Value = serde_json::from_str(first.strip_prefix("42").unwrap()).unwrap();
    for ev in [own, expect_json(&mut bob, "42").await] {
        assert_eq!(ev[0], "message");
        assert_eq!(ev[1]["room"], "lobby");
        assert_eq!(ev[1]["from"], "ann");
        assert_eq!(ev[1]["offset"], 1);
        assert!(ev[1]["ts"].as_u64().unwrap() > 0);
        assert!(ev[1]["id"].as_u64().is_some());
        assert_eq!(ev[1]["data"], json!({"text": "hi", "n": [1, 2]}));
    }

    // Binary data arrives as binary.
    ws_send(
        &mut bob,
        r#"451-["message",{"room":"lobby","data":{"file":{"_placeholder":true,"num":0}}}]"#,
    )
    .await;
    ws_send_binary(&mut bob, &[9, 8, 7]).await;
    for ws in [&mut ann, &mut bob] {
        let text = ws_text(ws).await;
        let rest = text.strip_prefix("451-").unwrap();
        let ev: Value = serde_json::from_str(rest).unwrap();
        assert_eq!(
            ev[1]["data"],
            json!({"file": {"_placeholder": true, "num": 0}})
        );
        assert_eq!(ev[1]["offset"], 2);
        assert_eq!(ws_binary(ws).await, vec![9, 8, 7]);
    }

    // who, nick, echo, errors, unknown events.
    ws_send(&mut ann, r#"423["who","lobby"]"#).await;
    assert_eq!(
        expect_json(&mut ann, "433").await,
        json!([{"ok": true, "room": "lobby", "members": ["ann", "bob"]}])
    );
    ws_send(&mut ann, r#"424["who","nowhere"]"#).await;
    assert_eq!(expect_json(&mut ann, "434").await[0]["ok"], false);
    ws_send(&mut ann, r#"425["message",{"room":"elsewhere","data":1}]"#).await;
    let err = expect_json(&mut ann, "435").await;
    assert_eq!(err[0]["ok"], false);
    assert!(err[0]["error"].as_str().unwrap().contains("elsewhere"));
    ws_send(&mut ann, r#"426["echo","a",{"b":[null]},3]"#).await;
    assert_eq!(ws_text(&mut ann).await, r#"436["a",{"b":[null]},3]"#);
    ws_send(&mut ann, r#"451-7["echo",{"_placeholder":true,"num":0}]"#).await;
    ws_send_binary(&mut ann, &[0xff]).await;
    assert_eq!(
        ws_text(&mut ann).await,
        r#"461-7[{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws_binary(&mut ann).await, vec![0xff]);
    let bad_before = Stats::get(&srv.hub.stats().bad_input);
    // An application's own event needs {room, data}; reserved names are
    // refused.
    ws_send(&mut ann, r#"428["dance"]"#).await;
    let refused = expect_json(&mut ann, "438").await;
    assert_eq!(
        (refused[0]["ok"].clone(), refused[0]["code"].clone()),
        (json!(false), json!("bad-request")),
        "{refused}"
    );
    ws_send(&mut ann, r#"4240["presence",{"room":"lobby","data":1}]"#).await;
    let reserved = expect_json(&mut ann, "4340").await;
    assert_eq!(reserved[0]["code"], "reserved-event", "{reserved}");
    assert_eq!(Stats::get(&srv.hub.stats().bad_input), bad_before + 2);
    ws_send(&mut ann, r#"429["nick","annie"]"#).await;
    assert_eq!(
        expect_json(&mut ann, "439").await,
        json!([{"ok": true, "name": "annie"}])
    );

    // Leaving tells the others.
    ws_send(&mut bob, r#"4210["leave","lobby"]"#).await;
    assert_eq!(
        expect_json(&mut bob, "4310").await,
        json!([{"ok": true, "room": "lobby", "members": 1}])
    );
    let presence = expect_json(&mut ann, "42").await;
    assert_eq!(presence[1]["event"], "leave");
    assert_eq!(presence[1]["members"], 1);
}

async fn tcp_line(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("tcp line in time")
        .unwrap();
    line
}

#[tokio::test]
async fn tcp_and_socketio_share_rooms() {
    let srv = start(normal(5000)).await;
    let stream = TcpStream::connect(srv.tcp).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    tcp_line(&mut rd).await; // welcome
    wr.write_all(b"/join lobby\n").await.unwrap();

    let mut sio = connect(&srv, r#"{"name":"web"}"#).await;
    ws_send(&mut sio, r#"421["join","lobby"]"#).await;
    expect_json(&mut sio, "431").await;

    // TCP text arrives at Socket.IO as a string.
    wr.write_all(b"hello from tcp\n").await.unwrap();
    let ev = expect_json(&mut sio, "42").await;
    assert_eq!(ev[0], "message");
    assert_eq!(ev[1]["data"], "hello from tcp");

    // Socket.IO data reaches TCP: compact JSON, binary summarized.
    ws_send(
        &mut sio,
        r#"451-["message",{"room":"lobby","data":{"pic":{"_placeholder":true,"num":0}}}]"#,
    )
    .await;
    ws_send_binary(&mut sio, &[1, 2, 3]).await;
    ws_send(&mut sio, r#"42["message",{"room":"lobby","data":"plain"}]"#).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tcp_line(&mut rd).await;
        if line.starts_with("msg lobby") && line.contains("web:") {
            seen.push(line);
        }
    }
    assert!(
        seen[0].contains(r#"{"pic":{"_placeholder":true,"num":0}}"#)
            && seen[0].contains("[+1 binary attachment, 3 bytes]"),
        "{}",
        seen[0]
    );
    assert!(seen[1].trim_end().ends_with("web: plain"), "{}", seen[1]);
}

#[tokio::test]
async fn slow_consumer_is_dropped() {
    let mut cfg = normal(5000);
    cfg.engine.outbox = volna_hub::OutboxLimits {
        max_frames: 8,
        max_bytes: 1 << 20,
    };
    let srv = start(cfg).await;
    // A polling client that never polls again.
    let (sid, _) = open_polling(srv.http, SIO).await;
    let path = format!("{SIO}?EIO=4&transport=polling&sid={sid}");
    post(srv.http, &path, br#"40{"name":"sleepy"}"#).await;
    post(srv.http, &path, br#"42["join","r"]"#).await;
    let mut ws = connect(&srv, r#"{"name":"talker"}"#).await;
    ws_send(&mut ws, r#"42["join","r"]"#).await;
    for i in 1..=20 {
        ws_send(
            &mut ws,
            &format!(r#"42{i}["message",{{"room":"r","data":{i}}}]"#),
        )
        .await;
        // Read up to the ack, so the talker itself never falls behind.
        while !ws_text(&mut ws).await.starts_with(&format!("43{i}[")) {}
    }
    eventually(|| Stats::get(&srv.hub.stats().slow_consumers) == 1).await;
    eventually(|| srv.sio.session_count() == 1).await;
    assert_eq!(get(srv.http, &path).await.status, 400);
    // The talker is unaffected.
    ws_send(&mut ws, r#"421["echo","ok"]"#).await;
    loop {
        let t = ws_text(&mut ws).await;
        if t.starts_with("431") {
            assert_eq!(t, r#"431["ok"]"#);
            break;
        }
    }
}

/// A join ack without its `epoch`, which must be there (a name the server
/// makes for the room's life).
fn without_epoch(mut ack: Value) -> Value {
    let epoch = ack[0]
        .as_object_mut()
        .and_then(|o| o.remove("epoch"))
        .expect("a join ack names the room's epoch");
    assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{epoch}");
    ack
}
