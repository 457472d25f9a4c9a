//! The same operation gives the same answer over TCP, `/ws` and Socket.IO:
//! one client of each transport in one room, each asking the same things,
//! their answers reduced to what a user reads (ok or error code, room,
//! member names, counts, history offsets and texts) and compared.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .expect("stream open")
            .expect("frame");
        if let WsMessage::Text(t) = m {
            return t.as_str().to_string();
        }
    }
}

/// One client and how it asks.
enum Client {
    Tcp(LineClient),
    Ws(Ws, u64),
    Sio(Ws, u64),
}

/// What an operation asks, transport-neutral.
#[derive(Clone, Copy)]
enum Ask<'a> {
    Join(&'a str),
    Leave(&'a str),
    Who(&'a str),
    Rooms,
    History(&'a str),
    Say(&'a str, &'a str),
}

impl Client {
    async fn tcp(server: &volna::server::Server, name: &str) -> Client {
        let mut c = LineClient::connect(server).await;
        c.send(&format!("/nick {name}")).await;
        assert_eq!(c.line().await, format!("ok nick {name}"));
        Client::Tcp(c)
    }

    async fn ws(server: &volna::server::Server, name: &str) -> Client {
        let url = format!("ws://{}/ws?name={name}", server.http_addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert!(next_text(&mut ws).await.contains("\"welcome\""));
        Client::Ws(ws, 0)
    }

    async fn sio(server: &volna::server::Server, name: &str) -> Client {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            server.http_addr
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert!(next_text(&mut ws).await.starts_with("0{"));
        ws.send(WsMessage::text(format!("40{{\"name\":\"{name}\"}}")))
            .await
            .unwrap();
        assert!(next_text(&mut ws).await.starts_with("40"));
        Client::Sio(ws, 0)
    }

    /// Asks and returns the answer as `{ok, code?, room?, members?, count?,
    /// rooms?, history?}`, the fields every transport shows.
    async fn ask(&mut self, ask: Ask<'_>) -> Value {
        match self {
            Client::Tcp(c) => {
                let line = match ask {
                    Ask::Join(r) => format!("/join {r}"),
                    Ask::Leave(r) => format!("/leave {r}"),
                    Ask::Who(r) => format!("/who {r}"),
                    Ask::Rooms => "/rooms".into(),
                    Ask::History(_) => "/history".into(),
                    Ask::Say(r, t) => format!("/msg {r} {t}"),
                };
                c.send(&line).await;
                let reply = loop {
                    let l = c.line().await;
                    let said = matches!(ask, Ask::Say(..));
                    if l.starts_with("ok ")
                        || l.starts_with("error ")
                        || (said && l.starts_with("msg "))
                    {
                        break l;
                    }
                };
                let words: Vec<&str> = reply.split(' ').collect();
                if words[0] == "error" {
                    return json!({"ok": false, "code": words[1]});
                }
                match ask {
                    Ask::Join(_) | Ask::Who(_) => {
                        let mut names: Vec<&str> = words[3..].to_vec();
                        names.sort();
                        json!({"ok": true, "room": words[2], "members": names})
                    }
                    Ask::Leave(_) => json!({"ok": true, "room": words[2]}),
                    Ask::Rooms => {
                        let rooms: Vec<Value> = words[2..]
                            .iter()
                            .map(|w| {
                                let (room, n) = w.rsplit_once(':').unwrap();
                                json!({"room": room, "count": n.parse::<u64>().unwrap()})
                            })
                            .collect();
                        json!({"ok": true, "rooms": rooms})
                    }
                    Ask::History(_) => {
                        let n: usize = words[3].parse().unwrap();
                        let mut history = Vec::new();
                        for _ in 0..n {
                            let m = parse_msg(&c.line().await);
                            history.push(json!([m.offset, m.text]));
                        }
                        json!({"ok": true, "room": words[2], "history": history})
                    }
                    Ask::Say(..) => {
                        let m = parse_msg(&reply);
                        json!({"ok": true, "room": m.room, "offset": m.offset})
                    }
                }
            }
            Client::Ws(ws, id) => {
                *id += 1;
                let req = match ask {
                    Ask::Join(r) => json!({"op": "join", "room": r}),
                    Ask::Leave(r) => json!({"op": "leave", "room": r}),
                    Ask::Who(r) => json!({"op": "who", "room": r}),
                    Ask::Rooms => json!({"op": "rooms"}),
                    Ask::History(r) => json!({"op": "history", "room": r}),
                    Ask::Say(r, t) => json!({"op": "message", "room": r, "data": t}),
                };
                let mut req = req;
                req["id"] = json!(*id);
                ws.send(WsMessage::text(req.to_string())).await.unwrap();
                let v = loop {
                    let v: Value = serde_json::from_str(&next_text(ws).await).unwrap();
                    if v["id"] == json!(*id) {
                        break v;
                    }
                };
                normalize(ask, &v, |m| m["name"].as_str().unwrap().to_string())
            }
            Client::Sio(ws, id) => {
                *id += 1;
                let args = match ask {
                    Ask::Join(r) => json!(["join", r]),
                    Ask::Leave(r) => json!(["leave", r]),
                    Ask::Who(r) => json!(["who", r]),
                    Ask::Rooms => json!(["rooms"]),
                    Ask::History(r) => json!(["history", r]),
                    Ask::Say(r, t) => json!(["message", {"room": r, "data": t}]),
                };
                ws.send(WsMessage::text(format!("42{id}{args}")))
                    .await
                    .unwrap();
                let prefix = format!("43{id}[");
                let t = loop {
                    let t = next_text(ws).await;
                    if t.starts_with(&prefix) {
                        break t;
                    }
                };
                let v: Value = serde_json::from_str(&t[prefix.len() - 1..]).unwrap();
                normalize(ask, &v[0], |m| m.as_str().unwrap().to_string())
            }
        }
    }
}

/// The user-visible fields of a JSON reply (`/ws` reply or Socket.IO ack).
fn normalize(ask: Ask<'_>, v: &Value, member_name: impl Fn(&Value) -> String) -> Value {
    if v["ok"] != json!(true) {
        return json!({"ok": false, "code": v["code"]});
    }
    match ask {
        Ask::Join(_) | Ask::Who(_) => {
            let mut names: Vec<String> = v["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(member_name)
                .collect();
            names.sort();
            json!({"ok": true, "room": v["room"], "members": names})
        }
        Ask::Leave(_) => json!({"ok": true, "room": v["room"]}),
        Ask::Rooms => {
            let rooms: Vec<Value> = v["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!({"room": r["room"], "count": r["count"]}))
                .collect();
            json!({"ok": true, "rooms": rooms})
        }
        Ask::History(_) => {
            let history: Vec<Value> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| json!([m["offset"], m["data"]]))
                .collect();
            json!({"ok": true, "room": v["room"], "history": history})
        }
        Ask::Say(..) => json!({"ok": true, "room": v["room"], "offset": v["offset"]}),
    }
}

#[tokio::test]
async fn every_transport_answers_alike() {
    let server = start_default().await;
    let mut clients = [
        Client::tcp(&server, "ann").await,
        Client::ws(&server, "bob").await,
        Client::sio(&server, "cy").await,
    ];
    // Joins: each sees the members so far, the same way.
    let mut expected = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let got = c.ask(Ask::Join("parity")).await;
        expected.push(["ann", "bob", "cy"][..=i].to_vec());
        assert_eq!(
            got,
            json!({"ok": true, "room": "parity", "members": expected[i]}),
            "join by client {i}"
        );
    }
    // One message from each: offsets 1, 2, 3 in the order sent.
    for (i, c) in clients.iter_mut().enumerate() {
        let got = c.ask(Ask::Say("parity", &format!("hello {i}"))).await;
        assert_eq!(
            got,
            json!({"ok": true, "room": "parity", "offset": i + 1}),
            "message by client {i}"
        );
    }
    let everyone = ["ann", "bob", "cy"];
    let history = json!([[1, "hello 0"], [2, "hello 1"], [3, "hello 2"]]);
    for ask in [
        Ask::Who("parity"),
        Ask::Rooms,
        Ask::History("parity"),
        Ask::Who("nowhere"),
        Ask::Leave("nowhere"),
    ] {
        let mut answers = Vec::new();
        for c in clients.iter_mut() {
            answers.push(c.ask(ask).await);
        }
        assert_eq!(answers[0], answers[1], "TCP and /ws differ");
        assert_eq!(answers[1], answers[2], "/ws and Socket.IO differ");
        match ask {
            Ask::Who("parity") => assert_eq!(
                answers[0],
                json!({"ok": true, "room": "parity", "members": everyone})
            ),
            Ask::Rooms => assert_eq!(
                answers[0],
                json!({"ok": true, "rooms": [{"room": "parity", "count": 3}]})
            ),
            Ask::History(_) => assert_eq!(
                answers[0],
                json!({"ok": true, "room": "parity", "history": history})
            ),
            Ask::Who(_) => assert_eq!(answers[0], json!({"ok": false, "code": "no-such-room"})),
            Ask::Leave(_) => assert_eq!(answers[0], json!({"ok": false, "code": "not-member"})),
            _ => unreachable!(),
        }
    }
}

/// Reads text frames until one satisfies `want`.
async fn until_text(ws: &mut Ws, want: impl Fn(&str) -> bool) -> String {
    loop {
        let t = next_text(ws).await;
        if want(&t) {
            return t;
        }
    }
}

/// The JSON after a Socket.IO packet's prefix (`42`, `43N`).
fn sio_json(text: &str, prefix: &str) -> Value {
    serde_json::from_str(&text[prefix.len()..]).unwrap()
}

#[tokio::test]
async fn custom_events_meet_in_one_room_on_every_transport() {
    let server = start_default().await;
    let mut tcp = Client::tcp(&server, "ann").await;
    let mut ws = Client::ws(&server, "bob").await;
    let mut sio = Client::sio(&server, "cy").await;
    for c in [&mut tcp, &mut ws, &mut sio] {
        assert_eq!(c.ask(Ask::Join("doc.1")).await["ok"], true);
    }
    let (Client::Tcp(tcp), Client::Ws(ws, _), Client::Sio(sio, _)) = (tcp, ws, sio) else {
        unreachable!()
    };
    let (mut tcp, mut ws, mut sio) = (tcp, ws, sio);

    // Socket.IO emits its own event: acked like a message, relayed under
    // its own name with the message envelope.
    sio.send(WsMessage::text(
        r#"4290["cursor",{"room":"doc.1","data":{"x":3,"y":4}}]"#,
    ))
    .await
    .unwrap();
    // The sender is a member too: its own event may come before the ack.
    let (mut ack, mut own) = (Value::Null, Value::Null);
    while ack.is_null() || own.is_null() {
        let t = next_text(&mut sio).await;
        if t.starts_with("4390") {
            ack = sio_json(&t, "4390");
        } else if t.starts_with(r#"42["cursor""#) {
            own = sio_json(&t, "42");
        }
    }
    assert_eq!(
        (&ack[0]["ok"], &ack[0]["room"]),
        (&json!(true), &json!("doc.1"))
    );
    let offset = ack[0]["offset"].as_u64().unwrap();
    assert_eq!(own[1]["data"], json!({"x": 3, "y": 4}));
    assert_eq!(
        (&own[1]["from"], &own[1]["offset"]),
        (&json!("cy"), &json!(offset))
    );
    let at_ws: Value =
        serde_json::from_str(&until_text(&mut ws, |t| t.contains(r#""type":"event""#)).await)
            .unwrap();
    assert_eq!(
        (
            &at_ws["event"],
            &at_ws["room"],
            &at_ws["offset"],
            &at_ws["data"]
        ),
        (
            &json!("cursor"),
            &json!("doc.1"),
            &json!(offset),
            &json!({"x": 3, "y": 4})
        )
    );
    assert_eq!(at_ws["from"]["name"], "cy");
    let (line, _) = tcp.until("event ").await;
    assert_eq!(line, r#"event doc.1 cursor: {"x":3,"y":4}"#);

    // /ws and TCP emit too; everyone sees every event, in offset order.
    ws.send(WsMessage::text(
        json!({"op": "emit", "event": "stroke", "room": "doc.1", "data": [1, 2], "id": 7})
            .to_string(),
    ))
    .await
    .unwrap();
    let reply: Value =
        serde_json::from_str(&until_text(&mut ws, |t| t.contains(r#""type":"reply""#)).await)
            .unwrap();
    assert_eq!(
        (&reply["ok"], &reply["op"], &reply["offset"]),
        (&json!(true), &json!("emit"), &json!(offset + 1))
    );
    let stroke = sio_json(
        &until_text(&mut sio, |t| t.starts_with(r#"42["stroke""#)).await,
        "42",
    );
    assert_eq!(
        (&stroke[1]["data"], &stroke[1]["from"]),
        (&json!([1, 2]), &json!("bob"))
    );
    tcp.send(r#"/emit ping-me {"a":true}"#).await;
    let ping = sio_json(
        &until_text(&mut sio, |t| t.starts_with(r#"42["ping-me""#)).await,
        "42",
    );
    assert_eq!(
        (&ping[1]["data"], &ping[1]["offset"]),
        (&json!({"a": true}), &json!(offset + 2))
    );

    // Ordinary events are history: a late reader sees them with their names.
    ws.send(WsMessage::text(
        json!({"op": "history", "room": "doc.1", "id": 8}).to_string(),
    ))
    .await
    .unwrap();
    let history: Value =
        serde_json::from_str(&until_text(&mut ws, |t| t.contains(r#""id":8"#)).await).unwrap();
    let names: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "event")
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cursor", "stroke", "ping-me"]);

    // Reserved and malformed names are refused, on every transport.
    tcp.send("/emit presence 1").await;
    let (line, _) = tcp.until("error ").await;
    assert!(line.starts_with("error reserved-event "), "{line}");
    tcp.send("/emit cursor {not json").await;
    let (line, _) = tcp.until("error ").await;
    assert!(line.starts_with("error bad-json "), "{line}");
    ws.send(WsMessage::text(
        json!({"op": "emit", "event": "join", "room": "doc.1", "data": 1, "id": 9}).to_string(),
    ))
    .await
    .unwrap();
    let err: Value =
        serde_json::from_str(&until_text(&mut ws, |t| t.contains(r#""type":"error""#)).await)
            .unwrap();
    assert_eq!(
        (&err["code"], &err["id"]),
        (&json!("reserved-event"), &json!(9))
    );
    sio.send(WsMessage::text(format!(
        r#"4291["{}",{{"room":"doc.1","data":1}}]"#,
        "x".repeat(65)
    )))
    .await
    .unwrap();
    let ack = sio_json(
        &until_text(&mut sio, |t| t.starts_with("4391")).await,
        "4391",
    );
    assert_eq!(
        (&ack[0]["ok"], &ack[0]["code"]),
        (&json!(false), &json!("bad-event"))
    );
}

#[tokio::test]
async fn room_policies_hold_on_every_transport() {
    use volna_hub::{EventRule, Policies, Publish, RoomPolicy};
    let mut doc = RoomPolicy::new("doc:*");
    doc.events = EventRule::Only(vec!["stroke".into()]);
    doc.max_members = Some(3);
    let mut feed = RoomPolicy::new("feed.*");
    feed.publish = Publish::Server;
    let mut config = volna::config::ServerConfig::default();
    config.hub.policies = Policies::new(vec![doc, feed]);
    let server = start(config).await;
    let mut clients = [
        Client::tcp(&server, "ann").await,
        Client::ws(&server, "bob").await,
        Client::sio(&server, "cy").await,
    ];
    for c in clients.iter_mut() {
        assert_eq!(c.ask(Ask::Join("doc:1")).await["ok"], true);
        assert_eq!(c.ask(Ask::Join("feed.x")).await["ok"], true);
        let said = c.ask(Ask::Say("feed.x", "buy")).await;
        assert_eq!(said, json!({"ok": false, "code": "publish-forbidden"}));
    }
    // The room is full now.
    let mut late = Client::sio(&server, "dee").await;
    assert_eq!(
        late.ask(Ask::Join("doc:1")).await,
        json!({"ok": false, "code": "room-full"})
    );
    // Only the listed event is relayed.
    let [Client::Tcp(tcp), Client::Ws(ws, _), Client::Sio(sio, _)] = &mut clients else {
        unreachable!()
    };
    // TCP emits to its current room: make doc:1 current again.
    tcp.send("/join doc:1").await;
    tcp.until("ok join doc:1").await;
    tcp.send(r#"/emit cursor {"x":1}"#).await;
    let (line, skipped) = tcp.until("error ").await;
    assert!(
        line.starts_with("error event-not-allowed "),
        "{line} {skipped:?}"
    );
    ws.send(WsMessage::text(
        json!({"op": "emit", "event": "cursor", "room": "doc:1", "data": 1, "id": 50}).to_string(),
    ))
    .await
    .unwrap();
    let err: Value =
        serde_json::from_str(&until_text(ws, |t| t.contains(r#""id":50"#)).await).unwrap();
    assert_eq!(err["code"], "event-not-allowed", "{err}");
    sio.send(WsMessage::text(
        r#"4250["cursor",{"room":"doc:1","data":1}]"#,
    ))
    .await
    .unwrap();
    let ack = sio_json(&until_text(sio, |t| t.starts_with("4350")).await, "4350");
    assert_eq!(ack[0]["code"], "event-not-allowed", "{ack}");
    sio.send(WsMessage::text(
        r#"4251["stroke",{"room":"doc:1","data":1}]"#,
    ))
    .await
    .unwrap();
    let ack = sio_json(&until_text(sio, |t| t.starts_with("4351")).await, "4351");
    assert_eq!(ack[0]["ok"], true, "{ack}");
}
