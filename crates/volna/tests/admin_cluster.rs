//! The Socket.IO Admin UI in a cluster (docs/operations.md, "Admin UI"):
//! an admin client connected to node A sees both nodes' `server_stats`
//! (two server ids), the sockets of node B in `all_sockets` and B's socket
//! events (a connect, a rename, a join), and its `_disconnect` of a socket of node B is applied there.
//! Skipped (loudly) when redis-server is missing.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::{prefix, Client, Redis};
// What the cluster helpers use of the common ones.
#[allow(unused_imports)]
use common::{parse_msg, LineClient};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volna::server::Server;
use volna_transports::admin::AdminConfig;

const PASSWORD: &str = "secret";
const WAIT: Duration = Duration::from_secs(10);

/// A cluster node with the Admin UI on, named `server_id` in it.
async fn admin_node(redis_url: &str, prefix: &str, server_id: &str) -> Server {
    admin_node_in(redis_url, prefix, server_id, false).await
}

/// [`admin_node`], in development mode when `development`.
async fn admin_node_in(
    redis_url: &str,
    prefix: &str,
    server_id: &str,
    development: bool,
) -> Server {
    let hash = bcrypt::hash_with_salt(PASSWORD, 4, [7u8; 16])
        .unwrap()
        .to_string();
    let mut config = cluster::node_config(redis_url, prefix, volna_cluster::Mode::PubSub);
    config.admin = Some(AdminConfig {
        username: "admin".into(),
        password_hash: hash,
        read_only: false,
        development,
        server_id: Some(server_id.into()),
    });
    cluster::start_node(config).await
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw Socket.IO client of namespace `/admin`, as the UI.
struct AdminClient(Ws);

impl AdminClient {
    async fn connect(server: &Server) -> AdminClient {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            server.http_addr
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = AdminClient(ws);
        let open = c.raw().await.expect("the Engine.IO open packet");
        assert!(open.starts_with("0{"), "{open}");
        c.send(&format!(
            r#"40/admin,{{"username":"admin","password":"{PASSWORD}"}}"#
        ))
        .await;
        let connected = c.raw().await.expect("the CONNECT answer");
        assert!(connected.starts_with("40/admin,"), "{connected}");
        c
    }

    async fn send(&mut self, text: &str) {
        self.0.send(WsMessage::text(text)).await.unwrap();
    }

    /// The next text frame (answering pings), `None` once closed.
    async fn raw(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(WAIT, self.0.next()).await.ok()?? {
                Ok(WsMessage::Text(t)) if t.as_str() == "2" => self.send("3").await,
                Ok(WsMessage::Text(t)) => return Some(t.to_string()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Admin events until `done` says it has seen enough (panics after
    /// [`WAIT`]).
    async fn until(&mut self, what: &str, mut done: impl FnMut(&str, &[Value]) -> bool) {
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            let Some(t) = self.raw().await else { break };
            let Some(body) = t.strip_prefix("42/admin,") else {
                continue;
            };
            let v: Value = serde_json::from_str(body).unwrap();
            let items = v.as_array().unwrap();
            if done(items[0].as_str().unwrap(), &items[1..]) {
                return;
            }
        }
        panic!("the admin client did not see {what} in time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_ui_sees_and_commands_every_node() {
    let Some(redis) = Redis::start() else { return };
    let p = prefix();
    let a = admin_node(&redis.url(), &p, "node-a").await;
    let b = admin_node(&redis.url(), &p, "node-b").await;
    let mut bob = Client::sio(&b, "bob", "lobby").await;

    // Both nodes on the Servers page, bob (node B) on the Sockets page.
    let mut admin = AdminClient::connect(&a).await;
    let mut servers = BTreeSet::new();
    let mut bob_id = None;
    admin
        .until("both nodes' server_stats and bob", |event, args| {
            match event {
                "server_stats" => {
                    servers.insert(args[0]["serverId"].as_str().unwrap().to_string());
                }
                "all_sockets" => {
                    if let Some(s) = args[0]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["data"]["name"] == "bob")
                    {
                        assert_eq!(s["nsp"], "/");
                        assert_eq!(s["transport"], "websocket");
                        assert!(s["rooms"].as_array().unwrap().iter().any(|r| r == "lobby"));
                        bob_id = Some(s["id"].as_str().unwrap().to_string());
                    }
                }
                _ => {}
            }
            servers.len() == 2 && bob_id.is_some()
        })
        .await;
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        vec!["node-a", "node-b"]
    );
    let bob_id = bob_id.unwrap();

    // Node B's socket events reach the admin client on node A.
    let _carol = Client::sio(&b, "carol", "lobby").await;
    let (mut connected, mut renamed, mut joined) = (None::<String>, false, false);
    admin
        .until(
            "carol's socket_connected, socket_updated and room_joined",
            |event, args| {
                match event {
                    "socket_connected" if args[0]["nsp"] == "/" => {
                        connected = args[0]["id"].as_str().map(str::to_string);
                    }
                    "socket_updated" if args[0]["data"]["name"] == "carol" => {
                        renamed =
                            connected.is_some() && args[0]["id"].as_str() == connected.as_deref();
                    }
                    "room_joined" if args[1] == "lobby" => {
                        joined = connected.is_some() && args[2].as_str() == connected.as_deref();
                    }
                    _ => {}
                }
                renamed && joined
            },
        )
        .await;

    // A command of the UI on node A acts on node B's socket.
    admin
        .send(&format!(r#"42/admin,["_disconnect","/",false,"{bob_id}"]"#))
        .await;
    bob.until(|t| t.starts_with("41")).await;
    admin
        .until("bob's socket_disconnected", |event, args| {
            event == "socket_disconnected" && args[1] == bob_id.as_str()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_lists_what_each_socket_is_sent() {
    let Some(redis) = Redis::start() else { return };
    let a = admin_node_in(&redis.url(), &prefix(), "node-a", true).await;
    let mut bob = Client::sio(&a, "bob", "lobby").await;
    let mut admin = AdminClient::connect(&a).await;
    let mut bob_id = None;
    admin
        .until("bob in all_sockets", |event, args| {
            if event == "all_sockets" {
                bob_id = args[0]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["data"]["name"] == "bob")
                    .and_then(|s| s["id"].as_str().map(str::to_string));
            }
            bob_id.is_some()
        })
        .await;
    let bob_id = bob_id.unwrap();
    bob.say("lobby", "hello").await;
    admin
        .until("event_sent of bob's own message, to bob", |event, args| {
            event == "event_sent"
                && args[1] == bob_id.as_str()
                && args[2][0] == "message"
                && args[2][1]["data"] == "hello"
        })
        .await;
}
