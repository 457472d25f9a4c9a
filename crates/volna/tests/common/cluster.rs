//! Helpers of the cluster tests: a throwaway `redis-server`, volna nodes
//! joined to it, and one client per transport speaking to any node.
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volna::config::ServerConfig;
use volna::server::Server;

use super::LineClient;

/// A `redis-server` on a free port, killed on drop.
pub(crate) struct Redis {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one, or returns `None` (after saying so loudly) when
    /// `redis-server` is not installed.
    pub(crate) fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!(
                "\n==========\nSKIPPED: redis-server is not installed (scripts/install-test-deps.sh installs it)\n==========\n"
            );
            return None;
        }
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { port, child: None };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (SIGKILL): connections drop at once.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A random key prefix, so tests sharing nothing never see each other.
pub(crate) fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("volna-test-{}-{nanos}", std::process::id())
}

/// A node of the cluster on ephemeral ports.
pub(crate) async fn node(redis_url: &str, prefix: &str) -> Server {
    node_in(redis_url, prefix, volna_cluster::Mode::PubSub).await
}

/// A node of the cluster in `mode`; in streams mode with Socket.IO
/// recovery on, so that its messages are ordered by the stream.
pub(crate) async fn node_in(redis_url: &str, prefix: &str, mode: volna_cluster::Mode) -> Server {
    let mut config = node_config(redis_url, prefix, mode);
    if mode == volna_cluster::Mode::Streams {
        config.hub.recovery = Some(Duration::from_secs(60));
    }
    start_node(config).await
}

/// The settings of a node of the cluster on ephemeral ports, heartbeats and
/// requests short for tests.
pub(crate) fn node_config(
    redis_url: &str,
    prefix: &str,
    mode: volna_cluster::Mode,
) -> ServerConfig {
    ServerConfig {
        tcp_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        redis: Some(volna_cluster::ClusterConfig {
            url: redis_url.to_string(),
            prefix: prefix.to_string(),
            heartbeat: Duration::from_millis(300),
            request_timeout: Duration::from_millis(800),
            mode,
            ..Default::default()
        }),
        ..ServerConfig::default()
    }
}

/// Starts a node with `config` and waits until it has joined the cluster.
pub(crate) async fn start_node(config: ServerConfig) -> Server {
    let server = Server::start(config).await.expect("node starts");
    assert!(
        server
            .cluster()
            .unwrap()
            .wait_up(Duration::from_secs(10))
            .await,
        "node joined the cluster"
    );
    server
}

/// What a client saw, whatever its transport.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    Msg { from: String, text: String },
    Joined { room: String, name: String },
    Left { room: String, name: String },
    Event { event: String, args: Value },
    Other(String),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client of any of the three transports.
pub(crate) enum Client {
    Tcp(LineClient),
    Ws(Ws),
    Sio(Ws),
}

const WAIT: Duration = Duration::from_secs(10);

impl Client {
    pub(crate) async fn tcp(server: &Server, name: &str, room: &str) -> Client {
        Client::Tcp(LineClient::named(server, name, &[room]).await)
    }

    pub(crate) async fn ws(server: &Server, name: &str, room: &str) -> Client {
        let url = format!("ws://{}/ws?name={name}", server.http_addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let welcome = next_text(&mut ws).await.unwrap();
        assert!(welcome.contains("\"welcome\""), "{welcome}");
        let mut c = Client::Ws(ws);
        c.send_json(&serde_json::json!({"op": "join", "room": room, "id": 1}))
            .await;
        c.until(|t| t.contains("\"reply\"") && t.contains("\"join\""))
            .await;
        c
    }

    pub(crate) async fn sio(server: &Server, name: &str, room: &str) -> Client {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            server.http_addr
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let open = next_text(&mut ws).await.unwrap();
        assert!(open.starts_with("0{"), "{open}");
        ws.send(WsMessage::text("40")).await.unwrap();
        let connected = next_text(&mut ws).await.unwrap();
        assert!(connected.starts_with("40"), "{connected}");
        let mut c = Client::Sio(ws);
        c.send_text(&format!("421[\"nick\",\"{name}\"]")).await;
        c.until(|t| t.starts_with("431")).await;
        c.send_text(&format!("422[\"join\",\"{room}\"]")).await;
        c.until(|t| t.starts_with("432")).await;
        c
    }

    async fn send_text(&mut self, text: &str) {
        match self {
            Client::Ws(ws) | Client::Sio(ws) => ws.send(WsMessage::text(text)).await.unwrap(),
            Client::Tcp(c) => c.send(text).await,
        }
    }

    pub(crate) async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text message to `room`.
    pub(crate) async fn say(&mut self, room: &str, text: &str) {
        match self {
            Client::Tcp(c) => c.send(&format!("/msg {room} {text}")).await,
            Client::Ws(_) => {
                self.send_json(
                    &serde_json::json!({"op": "message", "room": room, "data": text, "self": true}),
                )
                .await
            }
            Client::Sio(_) => {
                let arg = serde_json::json!({"room": room, "data": text});
                self.send_text(&format!("42[\"message\",{arg}]")).await
            }
        }
    }

    /// The members of `room` across the cluster, and the partial flag.
    pub(crate) async fn who(&mut self, room: &str) -> (Vec<String>, bool) {
        match self {
            Client::Tcp(c) => {
                c.send(&format!("/who {room}")).await;
                let (line, _) = c.until("ok who ").await;
                let mut names: Vec<String> = line.split(' ').skip(3).map(str::to_string).collect();
                names.sort();
                let partial = try_line(c, Duration::from_millis(100))
                    .await
                    .is_some_and(|l| l.contains("partial"));
                (names, partial)
            }
            Client::Ws(_) => {
                self.send_json(&serde_json::json!({"op": "who", "room": room, "id": 99}))
                    .await;
                let t = self.until(|t| t.contains("\"op\":\"who\"")).await;
                let v: Value = serde_json::from_str(&t).unwrap();
                let mut names: Vec<String> = v["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["name"].as_str().unwrap().to_string())
                    .collect();
                names.sort();
                (names, v["partial"].as_bool().unwrap_or(false))
            }
            Client::Sio(_) => {
                self.send_text(&format!("429[\"who\",\"{room}\"]")).await;
                let t = self.until(|t| t.starts_with("439")).await;
                let v: Value = serde_json::from_str(&t[3..]).unwrap();
                let mut names: Vec<String> = v[0]["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect();
                names.sort();
                (names, v[0]["partial"].as_bool().unwrap_or(false))
            }
        }
    }

    /// Emits the application's own event `event` with `data` to `room`.
    pub(crate) async fn emit(&mut self, room: &str, event: &str, data: &Value) {
        match self {
            Client::Tcp(c) => c.send(&format!("/emit {event} {data}")).await,
            Client::Ws(_) => {
                self.send_json(
                    &serde_json::json!({"op": "emit", "event": event, "room": room, "data": data}),
                )
                .await
            }
            Client::Sio(_) => {
                let arg = serde_json::json!({"room": room, "data": data});
                self.send_text(&format!("42[\"{event}\",{arg}]")).await
            }
        }
    }

    /// Raw frames/lines until one matches (answering pings).
    pub(crate) async fn until(&mut self, want: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let t = self
                .raw(left)
                .await
                .expect("the expected frame arrived in time");
            if want(&t) {
                return t;
            }
        }
    }

    /// The next raw line/text frame, or `None` after `wait`.
    async fn raw(&mut self, wait: Duration) -> Option<String> {
        match self {
            Client::Tcp(c) => try_line(c, wait).await,
            Client::Ws(ws) | Client::Sio(ws) => loop {
                let t = tokio::time::timeout(wait, next_text(ws)).await.ok()??;
                if t == "2" {
                    ws.send(WsMessage::text("3")).await.ok()?;
                    continue;
                }
                return Some(t);
            },
        }
    }

    /// The next event this client sees, or `None` after `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Seen> {
        let t = self.raw(wait).await?;
        Some(match self {
            Client::Tcp(_) => parse_line(&t),
            Client::Ws(_) => parse_ws(&t),
            Client::Sio(_) => parse_sio(&t),
        })
    }

    /// Collects messages until `n` arrived (failing after a while), then
    /// checks nothing more comes for `quiet`.
    pub(crate) async fn messages(&mut self, n: usize, quiet: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        while out.len() < n {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(Seen::Msg { from, text }) => out.push((from, text)),
                Some(_) => {}
                None => panic!("only {} of {n} messages arrived: {out:?}", out.len()),
            }
        }
        while let Some(seen) = self.next(quiet).await {
            if let Seen::Msg { from, text } = seen {
                panic!("an extra message arrived: {from}: {text}");
            }
        }
        out
    }

    /// Waits for an event matching `want`.
    pub(crate) async fn expect(&mut self, what: &str, want: impl Fn(&Seen) -> bool) -> Seen {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(s) if want(&s) => return s,
                Some(_) => {}
                None => panic!("{what}: did not arrive"),
            }
        }
    }
}

/// The next line, or `None` after `wait` (no panic).
pub(crate) async fn try_line(c: &mut LineClient, wait: Duration) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let mut buf = String::new();
    match tokio::time::timeout(wait, c.reader.read_line(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(buf.trim_end_matches(['\n', '\r']).to_string()),
        _ => None,
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(t)) => return Some(t.to_string()),
            Ok(WsMessage::Binary(_)) | Ok(WsMessage::Ping(_)) | Ok(WsMessage::Pong(_)) => {}
            _ => return None,
        }
    }
}

fn parse_line(line: &str) -> Seen {
    if line.starts_with("msg ") {
        let m = super::parse_msg(line);
        return Seen::Msg {
            from: m.from,
            text: m.text,
        };
    }
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["joined", room, name, ..] => Seen::Joined {
            room: room.to_string(),
            name: name.to_string(),
        },
        ["left", room, name, ..] => Seen::Left {
            room: room.to_string(),
            name: name.to_string(),
        },
        ["event", _room, name, ..] => {
            let json = line.split_once(": ").map(|(_, j)| j).unwrap_or("null");
            Seen::Event {
                event: name.trim_end_matches(':').to_string(),
                args: serde_json::from_str(json).unwrap_or(Value::Null),
            }
        }
        _ => Seen::Other(line.to_string()),
    }
}

fn parse_ws(t: &str) -> Seen {
    let v: Value = serde_json::from_str(t).unwrap_or(Value::Null);
    match v["type"].as_str() {
        Some("message") => Seen::Msg {
            from: v["from"]["name"].as_str().unwrap_or("").to_string(),
            text: v["data"].as_str().unwrap_or("").to_string(),
        },
        Some("presence") => {
            let room = v["room"].as_str().unwrap_or("").to_string();
            let name = v["name"].as_str().unwrap_or("").to_string();
            if v["event"] == "join" {
                Seen::Joined { room, name }
            } else {
                Seen::Left { room, name }
            }
        }
        Some("event") => Seen::Event {
            event: v["event"].as_str().unwrap_or("").to_string(),
            args: v["args"].clone(),
        },
        _ => Seen::Other(t.to_string()),
    }
}

fn parse_sio(t: &str) -> Seen {
    let Some(body) = t.strip_prefix("42") else {
        return Seen::Other(t.to_string());
    };
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let arg = &v[1];
    match v[0].as_str() {
        Some("message") => Seen::Msg {
            from: arg["from"].as_str().unwrap_or("").to_string(),
            text: arg["data"].as_str().unwrap_or("").to_string(),
        },
        Some("presence") => {
            let room = arg["room"].as_str().unwrap_or("").to_string();
            let name = arg["name"].as_str().unwrap_or("").to_string();
            if arg["event"] == "join" {
                Seen::Joined { room, name }
            } else {
                Seen::Left { room, name }
            }
        }
        Some(ev) => Seen::Event {
            event: ev.to_string(),
            args: Value::Array(v.as_array().unwrap()[1..].to_vec()),
        },
        None => Seen::Other(t.to_string()),
    }
}
