//! Shared helpers of the Engine.IO / Socket.IO conformance tests: an
//! in-process server on port 0, a raw HTTP/1.1 client and a WebSocket
//! client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{Hub, HubConfig};
use volna_transports::engineio::{EchoHandler, Engine, EngineConfig};
use volna_transports::socketio::{self, SocketIoConfig};
use volna_transports::tcp::{self, TcpConfig};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct TestServer {
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) hub: Hub,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) sio: Arc<Engine>,
    pub(crate) echo: Arc<Engine>,
}

/// Socket.IO at `/socket.io/`, an Engine.IO echo server at `/engine.io/`
/// (same engine settings), and the TCP line protocol.
pub(crate) async fn start(config: SocketIoConfig) -> TestServer {
    let hub = Hub::new(HubConfig::default());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
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
    let echo_config = EngineConfig {
        path: "/engine.io/".into(),
        ..config.engine.clone()
    };
    let sio = socketio::engine(app.clone(), shutdown.clone(), tracker.clone(), config);
    let echo = Engine::new(
        echo_config,
        EchoHandler,
        hub.clone(),
        shutdown.clone(),
        tracker.clone(),
    );
    let router = sio.router().merge(echo.router());
    tokio::spawn(volna_transports::http::serve(
        http_listener,
        router,
        shutdown.clone(),
    ));
    TestServer {
        http,
        tcp: tcp_addr,
        hub,
        shutdown,
        tracker,
        sio,
        echo,
    }
}

/// Conformance settings with the given heartbeat.
pub(crate) fn config(ping_interval_ms: u64, ping_timeout_ms: u64) -> SocketIoConfig {
    let mut c = SocketIoConfig {
        conformance: true,
        connect_timeout: Duration::from_millis(1000),
        ..Default::default()
    };
    c.engine.ping_interval = Duration::from_millis(ping_interval_ms);
    c.engine.ping_timeout = Duration::from_millis(ping_timeout_ms);
    c
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Sends one request on a fresh connection and reads the whole response.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    tokio::time::timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_response(&raw)
    })
    .await
    .expect("HTTP response in time")
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Response {
        status,
        headers,
        body,
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"").await
}

pub(crate) async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body,
    )
    .await
}

/// Opens a polling session at `base` (`/engine.io/` or `/socket.io/`);
/// returns its sid and handshake.
pub(crate) async fn open_polling(addr: SocketAddr, base: &str) -> (String, serde_json::Value) {
    let resp = get(addr, &format!("{base}?EIO=4&transport=polling")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = resp.text();
    assert!(text.starts_with('0'), "{text}");
    let open: serde_json::Value = serde_json::from_str(&text[1..]).unwrap();
    (open["sid"].as_str().unwrap().to_string(), open)
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn ws_connect(addr: SocketAddr, path_and_query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path_and_query}"))
        .await
        .unwrap();
    ws
}

/// The next text or binary message; `None` once the socket is closed.
pub(crate) async fn ws_next(ws: &mut Ws) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("websocket message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(Message::Text(t)),
            Some(Ok(Message::Binary(b))) => return Some(Message::Binary(b)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
        }
    }
}

/// The next text message, skipping Engine.IO pings.
pub(crate) async fn ws_text(ws: &mut Ws) -> String {
    loop {
        match ws_next(ws).await {
            Some(Message::Text(t)) if t.as_str() == "2" => continue,
            Some(Message::Text(t)) => return t.as_str().to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next binary message, skipping pings.
pub(crate) async fn ws_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match ws_next(ws).await {
            Some(Message::Text(t)) if t.as_str() == "2" => continue,
            Some(Message::Binary(b)) => return b.to_vec(),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

pub(crate) async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

pub(crate) async fn ws_send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.unwrap();
}

/// Waits until the server closes the socket (skipping anything else).
pub(crate) async fn ws_closed(ws: &mut Ws) {
    while ws_next(ws).await.is_some() {}
}

/// Polls until `cond` holds (or panics after [`WAIT`]).
pub(crate) async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
