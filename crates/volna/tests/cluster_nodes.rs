//! Several volna nodes behind one real `redis-server` (docs/cluster.md):
//! clients of all three transports spread over three nodes chat in one
//! room, every broadcast reaches every member exactly once and in the
//! order its sender sent it; presence and `who` span the nodes; a node
//! that dies is forgotten. Skipped (loudly) when redis-server is missing.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use cluster::{node, prefix, Client, Redis, Seen};
use common::{parse_msg, LineClient};

const QUIET: Duration = Duration::from_millis(400);

/// Per sender, the numbers it sent must arrive once each, in order.
fn check_order(client: &str, got: &[(String, String)], senders: &[&str], n: usize) {
    let mut by_sender: HashMap<&str, Vec<usize>> = HashMap::new();
    for (from, text) in got {
        let (who, i) = text.rsplit_once('-').expect("text is NAME-I");
        assert_eq!(who, from, "{client}: sender name matches text");
        by_sender
            .entry(senders.iter().find(|s| **s == who).expect("a known sender"))
            .or_default()
            .push(i.parse().unwrap());
    }
    for s in senders {
        let seq = by_sender.get(s).cloned().unwrap_or_default();
        assert_eq!(
            seq,
            (0..n).collect::<Vec<_>>(),
            "{client} got {s}'s messages exactly once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_three_transports_exactly_once_in_order() {
    three_nodes(volna_cluster::Mode::PubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_streams_mode_exactly_once_in_order() {
    three_nodes(volna_cluster::Mode::Streams).await;
}

async fn three_nodes(mode: volna_cluster::Mode) {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let (a, b, c) = (
        cluster::node_in(&redis.url(), &p, mode).await,
        cluster::node_in(&redis.url(), &p, mode).await,
        cluster::node_in(&redis.url(), &p, mode).await,
    );
    let room = "lobby";
    let mut t1 = Client::tcp(&a, "t1", room).await;
    let mut w1 = Client::ws(&b, "w1", room).await;
    let mut s1 = Client::sio(&c, "s1", room).await;
    let t2 = Client::tcp(&c, "t2", room).await;
    let w2 = Client::ws(&a, "w2", room).await;
    let s2 = Client::sio(&b, "s2", room).await;

    // Presence across nodes: t1 (node A) saw everyone who joined after it,
    // wherever they are. In any order: a join on t1's own node (w2) can
    // overtake one that travels through Redis (t2).
    let mut pending = vec!["w1", "s1", "t2", "w2", "s2"];
    while !pending.is_empty() {
        let seen = t1
            .expect(
                &format!("t1 sees {pending:?} join"),
                |s| matches!(s, Seen::Joined { name, .. } if pending.contains(&name.as_str())),
            )
            .await;
        if let Seen::Joined { name, .. } = seen {
            pending.retain(|p| *p != name);
        }
    }
    // `who` across nodes, from each transport.
    let everyone: Vec<String> = ["s1", "s2", "t1", "t2", "w1", "w2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(t1.who(room).await, (everyone.clone(), false));
    assert_eq!(w1.who(room).await, (everyone.clone(), false));
    assert_eq!(s1.who(room).await, (everyone.clone(), false));

    // Drain the presence still in flight, then everybody talks at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut clients = [
        ("t1", t1),
        ("w1", w1),
        ("s1", s1),
        ("t2", t2),
        ("w2", w2),
        ("s2", s2),
    ];
    for (_, cl) in clients.iter_mut() {
        while cl.next(Duration::from_millis(50)).await.is_some() {}
    }
    let n = 40;
    let senders = ["t1", "w1", "s1"];
    for i in 0..n {
        for (name, cl) in clients.iter_mut().take(3) {
            cl.say(room, &format!("{name}-{i}")).await;
        }
    }
    for (name, cl) in clients.iter_mut() {
        let got = cl.messages(n * senders.len(), QUIET).await;
        check_order(name, &got, &senders, n);
    }
    for server in [&a, &b, &c] {
        let h = server.cluster().unwrap().health();
        assert_eq!(h["redis"], "up", "{h}");
        assert_eq!(h["decode_errors"], 0, "{h}");
    }
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_forgotten_and_a_leaving_member_is_seen_everywhere() {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let a = node(&redis.url(), &p).await;
    let b = node(&redis.url(), &p).await;
    let mut watcher = LineClient::named(&a, "watcher", &["r"]).await;
    let mut leaver = LineClient::named(&b, "leaver", &["r"]).await;
    let (line, _) = watcher.until("joined r leaver").await;
    assert!(line.starts_with("joined r leaver"), "{line}");
    leaver.send("/leave r").await;
    watcher.until("left r leaver").await;

    // A node that dies without a word: its own runtime, shut down hard.
    let url = redis.url();
    let p2 = p.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let doomed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = node(&url, &p2).await;
            let ghost = LineClient::named(&c, "ghost", &["r"]).await;
            ready_tx.send(()).unwrap();
            // Keep the node and its client alive until told to die.
            let _keep = (c, ghost);
            tokio::task::spawn_blocking(move || die_rx.recv())
                .await
                .ok();
            std::mem::forget(_keep);
        });
        rt.shutdown_background();
    });
    ready_rx.recv().unwrap();
    watcher.until("joined r ghost").await;
    let mut w = Client::Tcp(watcher);
    let (names, _) = w.who("r").await;
    assert_eq!(names, vec!["ghost", "watcher"]);
    die_tx.send(()).unwrap();
    doomed.join().unwrap();
    // Forgotten within three heartbeats (300 ms each here) plus a sweep.
    w.expect(
        "a left for the dead node's member",
        |s| matches!(s, Seen::Left { name, .. } if name == "ghost"),
    )
    .await;
    let (names, partial) = w.who("r").await;
    assert_eq!((names, partial), (vec!["watcher".to_string()], false));
    drop(leaver);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_stops_once_the_room_is_large_across_the_cluster() {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let small = |url: &str| {
        let mut c = cluster::node_config(url, &p, volna_cluster::Mode::PubSub);
        c.hub.presence_limit = 4;
        c
    };
    let a = cluster::start_node(small(&redis.url())).await;
    let b = cluster::start_node(small(&redis.url())).await;
    let mut watcher = LineClient::named(&a, "watcher", &["r"]).await;
    let _a2 = LineClient::named(&a, "a2", &["r"]).await;
    watcher.until("joined r a2").await;
    // Two on A: joins on B are announced on A while the room has at most 4.
    let mut b1 = LineClient::named(&b, "b1", &["r"]).await;
    watcher.until("joined r b1").await;
    let _b2 = LineClient::named(&b, "b2", &["r"]).await;
    watcher.until("joined r b2").await;
    // The fifth member, on either node, is announced nowhere.
    let _b3 = LineClient::named(&b, "b3", &["r"]).await;
    let _a3 = LineClient::named(&a, "a3", &["r"]).await;
    b1.send("/msg r from-b").await;
    let (_, skipped) = watcher.until("msg r").await;
    assert!(
        skipped.is_empty(),
        "A announced joins past the limit: {skipped:?}"
    );
    watcher.send("/msg r from-a").await;
    // B's own members saw b2 arrive (2 + 2 on A), not b3 nor a3.
    let (own, skipped) = b1.until("msg r").await;
    assert!(own.ends_with("from-b"), "{own}");
    assert!(
        matches!(skipped.as_slice(), [only] if only.starts_with("joined r b2")),
        "{skipped:?}"
    );
    let (msg, skipped) = b1.until("msg r").await;
    assert!(msg.ends_with("from-a"), "{msg}");
    assert!(
        skipped.is_empty(),
        "B announced joins past the limit: {skipped:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_delivery_and_cross_node_delivery_resumes() {
    redis_outage(volna_cluster::Mode::PubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_in_streams_mode_keeps_local_delivery_in_order() {
    redis_outage(volna_cluster::Mode::Streams).await;
}

async fn redis_outage(mode: volna_cluster::Mode) {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let p = prefix();
    let a = cluster::node_in(&redis.url(), &p, mode).await;
    let b = cluster::node_in(&redis.url(), &p, mode).await;
    let mut talker = LineClient::named(&a, "talker", &["r"]).await;
    let mut local = LineClient::named(&a, "local", &["r"]).await;
    let mut remote = LineClient::named(&b, "remote", &["r"]).await;
    talker.until("joined r remote").await;
    local.until("joined r remote").await;
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    // Traffic before: crosses nodes.
    talker.send("before").await;
    let (l, _) = remote.until("msg r").await;
    assert_eq!(parse_msg(&l).text, "before");

    redis.kill();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while a.cluster().unwrap().is_up() || b.cluster().unwrap().is_up() {
        assert!(std::time::Instant::now() < until, "the outage was noticed");
        // Local delivery never stops, even while the outage is detected.
        talker.send("during").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        talker.send(&format!("down-{i}")).await;
    }
    let mut got = Vec::new();
    let mut last_offset = 0;
    while got.len() < 20 {
        let (l, _) = local.until("msg r").await;
        let m = parse_msg(&l);
        // Everything the talker published reaches its neighbour once, in
        // the order of its offsets, through the outage.
        assert!(m.offset > last_offset, "{l} after offset {last_offset}");
        last_offset = m.offset;
        if m.text.starts_with("down-") {
            got.push(m.text);
        }
    }
    assert_eq!(
        got,
        (0..20).map(|i| format!("down-{i}")).collect::<Vec<_>>()
    );
    // The other node's clients are served locally too.
    remote.send("/echo alive").await;
    remote.until("ok echo alive").await;
    // /who answers (marked partial) instead of hanging.
    let mut lc = Client::Tcp(local);
    let (names, partial) = lc.who("r").await;
    assert!(partial, "who during an outage is partial");
    assert_eq!(names, vec!["local", "talker"]);

    redis.restart();
    for s in [&a, &b] {
        assert!(
            s.cluster().unwrap().wait_up(Duration::from_secs(15)).await,
            "the node found redis again"
        );
    }
    // Give the subscription a moment to be re-established on both sides.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut resumed = false;
    for attempt in 0..20 {
        talker.send(&format!("after-{attempt}")).await;
        if let Some(l) = cluster::try_line(&mut remote, Duration::from_millis(500)).await {
            if l.contains(": after-") {
                resumed = true;
                break;
            }
        }
    }
    assert!(resumed, "cross-node delivery resumed after redis came back");
    remote.send("back from b").await;
    lc.expect(
        "b's message reaches a",
        |s| matches!(s, Seen::Msg { text, .. } if text == "back from b"),
    )
    .await;
    for s in [&a, &b] {
        let h = s.cluster().unwrap().health();
        assert!(h["redis_outages"].as_u64().unwrap() >= 1, "{h}");
        assert_eq!(h["redis"], "up");
    }
    assert!(
        a.cluster().unwrap().health()["publish_dropped"]
            .as_u64()
            .unwrap()
            > 0,
        "messages sent during the outage were counted as dropped"
    );
    // No task leaked by the reconnections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks_after = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        tasks_after <= tasks_before + 2,
        "tasks before {tasks_before}, after {tasks_after}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_events_cross_nodes_under_their_own_name() {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let (a, b) = (node(&redis.url(), &p).await, node(&redis.url(), &p).await);
    let room = "doc:1";
    let mut s1 = Client::sio(&a, "s1", room).await;
    let mut w1 = Client::ws(&b, "w1", room).await;
    let mut t1 = Client::tcp(&b, "t1", room).await;
    tokio::time::sleep(QUIET).await;

    s1.emit(room, "cursor", &serde_json::json!({"x": 1})).await;
    let at_ws = w1
        .until(|t| t.contains(r#""type":"event""#) && t.contains(r#""cursor""#))
        .await;
    let v: serde_json::Value = serde_json::from_str(&at_ws).unwrap();
    assert_eq!(
        (&v["room"], &v["data"]),
        (&serde_json::json!(room), &serde_json::json!({"x": 1}))
    );
    assert_eq!(v["from"]["name"], "s1");
    let line = t1.until(|l| l.starts_with("event ")).await;
    assert_eq!(line, r#"event doc:1 cursor: {"x":1}"#);

    w1.emit(room, "stroke", &serde_json::json!([1, 2])).await;
    let at_sio = s1.until(|t| t.starts_with(r#"42["stroke""#)).await;
    let v: serde_json::Value = serde_json::from_str(&at_sio[2..]).unwrap();
    assert_eq!(
        (&v[1]["data"], &v[1]["from"]),
        (&serde_json::json!([1, 2]), &serde_json::json!("w1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_client_resumes_a_room_on_another_node_from_its_place_in_the_stream() {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let a = cluster::node_in(&redis.url(), &p, volna_cluster::Mode::Streams).await;
    let b = cluster::node_in(&redis.url(), &p, volna_cluster::Mode::Streams).await;
    let mut pa = Client::tcp(&a, "pa", "r").await;
    let mut pb = Client::ws(&b, "pb", "r").await;
    let mut w = Client::ws(&a, "w", "r").await;
    let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    pa.say("r", "m1").await;
    let seen = json(&w.until(|t| t.contains("\"m1\"")).await);
    let log = seen["log"]
        .as_str()
        .expect("a message's place in the stream")
        .to_string();
    drop(w);
    // Published while w is away, on both nodes.
    pa.say("r", "m2").await;
    pb.until(|t| t.contains("\"m2\"")).await;
    pb.say("r", "m3").await;
    pb.until(|t| t.contains("\"m3\"")).await;
    pa.say("r", "m4").await;
    pb.until(|t| t.contains("\"m4\"")).await;

    // Back on the other node: the missed ones, in order, then the reply.
    let mut w2 = Client::ws(&b, "w2", "elsewhere").await;
    w2.send_json(&serde_json::json!({"op": "join", "room": "r", "since": {"log": log}, "id": 7}))
        .await;
    let mut got = Vec::new();
    let reply = loop {
        let t = w2.until(|_| true).await;
        let v = json(&t);
        if v["type"] == "reply" && v["id"] == 7 {
            break v;
        }
        if v["type"] == "message" {
            got.push(v["data"].as_str().unwrap().to_string());
        }
    };
    assert_eq!(got, vec!["m2", "m3", "m4"], "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["missed"], 3, "{reply}");
    assert!(reply["log"].is_string(), "{reply}");
    // A member now like any other.
    pa.say("r", "m5").await;
    w2.until(|t| t.contains("\"m5\"")).await;
    // Node B's history of the room has every node's messages, in the
    // stream's order (those of node A too).
    w2.send_json(&serde_json::json!({"op": "history", "room": "r", "limit": 10, "id": 9}))
        .await;
    let history = json(&w2.until(|t| t.contains("\"id\":9")).await);
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .expect("history messages")
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["m1", "m2", "m3", "m4", "m5"], "{history}");
    // A place the stream does not hold: refused, not a silent gap.
    w2.send_json(
        &serde_json::json!({"op": "join", "room": "r2", "since": {"log": "1-1"}, "id": 8}),
    )
    .await;
    let refused = json(&w2.until(|t| t.contains("\"id\":8")).await);
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["code"], "unrecoverable", "{refused}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_found_down_and_back_up() {
    // SIGSTOP: the connections stay open and nothing answers, which only
    // the health probe can tell from a busy node.
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis.url(), &prefix()).await;
    let cluster = a.cluster().unwrap();
    let signal = |sig: &str| {
        let pid = redis.pid().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while cluster.is_up() {
        assert!(
            std::time::Instant::now() < until,
            "a hung redis still counts as up: {}",
            cluster.health()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = cluster.health();
    assert!(h["probes_slow"].as_u64().unwrap() >= 1, "{h}");
    assert_eq!(h["redis_outages"], 1, "{h}");
    signal("-CONT");
    assert!(cluster.wait_up(Duration::from_secs(20)).await, "back up");
    a.shutdown().await;
}
