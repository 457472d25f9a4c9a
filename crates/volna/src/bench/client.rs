//! Minimal, fast clients for the load generator: Socket.IO v4 over the
//! WebSocket transport, volna's `/ws` JSON protocol, and the TCP line
//! protocol. Each one can join a room, publish a marked message, send an echo
//! and receive frames, which the scenarios scan for markers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use volna_protocols::json::json_string;

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    /// Socket.IO v4 (Engine.IO v4, WebSocket transport), namespace `/`.
    SocketIo,
    /// volna's `/ws` JSON protocol.
    Ws,
    /// volna's TCP line protocol.
    Tcp,
}

/// A parsed `--url`.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) proto: Proto,
    pub(super) addr: SocketAddr,
    /// HTTP path for WebSocket targets.
    pub(super) path: String,
    pub(super) url: String,
    /// A token every client presents (Socket.IO `auth`, `/ws?token=`, TCP
    /// `/auth`).
    pub(super) token: Option<String>,
}

impl Target {
    /// `socketio://HOST:PORT[/path/]` or `http://…` (Socket.IO at
    /// `/socket.io/`), `ws://HOST:PORT/ws` (volna JSON) or `tcp://HOST:PORT`.
    pub(super) fn parse(url: &str) -> anyhow::Result<Target> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow::anyhow!("expected SCHEME://HOST:PORT, got {url}"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .map_err(|e| anyhow::anyhow!("bad address {hostport}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{hostport} resolves to nothing"))?;
        let (proto, path) = match scheme {
            "socketio" | "sio" | "http" => (
                Proto::SocketIo,
                if path.is_empty() || path == "/" {
                    "/socket.io/"
                } else {
                    path
                },
            ),
            "ws" => (Proto::Ws, if path.is_empty() { "/ws" } else { path }),
            "tcp" => (Proto::Tcp, ""),
            other => anyhow::bail!("unknown scheme {other}:// (use socketio://, ws:// or tcp://)"),
        };
        Ok(Target {
            proto,
            addr,
            path: path.to_string(),
            url: url.to_string(),
            token: None,
        })
    }
}

/// The marker that starts every payload the load generator sends:
/// `~vb:SEQ:MICROS:` then padding. Receivers find it in any frame format.
pub(super) const MARKER: &[u8] = b"~vb:";

/// Builds a payload of about `size` bytes carrying a sequence number and a
/// send time (microseconds since the run's start).
pub(super) fn payload(seq: u64, micros: u64, size: usize) -> String {
    let mut s = format!("~vb:{seq}:{micros}:");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Finds the first marker in `frame` and returns its sequence number and
/// send time.
pub(super) fn find_marker(frame: &[u8]) -> Option<(u64, u64)> {
    let at = memchr::memmem::find(frame, MARKER)?;
    let mut rest = &frame[at + MARKER.len()..];
    let mut read_num = || -> Option<u64> {
        let end = rest.iter().position(|b| *b == b':')?;
        let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        rest = &rest[end + 1..];
        Some(n)
    };
    let seq = read_num()?;
    let micros = read_num()?;
    Some((seq, micros))
}

type Ws = WebSocketStream<TcpStream>;

/// The sending half of a connection.
pub(super) enum Tx {
    Ws(SplitSink<Ws, WsMessage>, Proto),
    Tcp(OwnedWriteHalf),
}

/// The receiving half of a connection.
pub(super) enum Rx {
    Ws(SplitStream<Ws>),
    Tcp(BufReader<OwnedReadHalf>),
}

/// What [`Rx::next`] got from the server.
pub(super) enum Received {
    /// A frame, as bytes: a text frame's UTF-8, a binary frame, or a TCP
    /// line with its `\n`.
    Frame(Vec<u8>),
    /// An Engine.IO ping that must be answered (see [`Tx::pong`]).
    Ping,
    /// The server closed the connection.
    Closed,
}

async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| anyhow::anyhow!("cannot bind source address {ip}: {e}"))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to {addr}: {e}{}",
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                " (is the server running?)"
            } else {
                ""
            }
        )
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, completes the protocol's handshake and returns the two halves.
pub(super) async fn connect(target: &Target, source: Option<IpAddr>) -> anyhow::Result<(Tx, Rx)> {
    let stream = tcp_connect(target.addr, source).await?;
    match target.proto {
        Proto::Tcp => {
            let (r, w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
                .await
                .map_err(|_| anyhow::anyhow!("no welcome line from {}", target.url))??;
            anyhow::ensure!(
                line.starts_with("welcome volna"),
                "{} does not speak volna's TCP line protocol (first line: {:?})",
                target.url,
                line.trim_end()
            );
            let mut w = w;
            if let Some(token) = &target.token {
                w.write_all(format!("/auth {token}\n").as_bytes()).await?;
                line.clear();
                tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer to /auth from {}", target.url))??;
                anyhow::ensure!(
                    line.starts_with("ok auth"),
                    "/auth refused: {}",
                    line.trim_end()
                );
            }
            Ok((Tx::Tcp(w), Rx::Tcp(r)))
        }
        Proto::SocketIo | Proto::Ws => {
            let query = match (target.proto, &target.token) {
                (Proto::SocketIo, _) => "?EIO=4&transport=websocket".to_string(),
                (_, Some(token)) => format!("?token={token}"),
                _ => String::new(),
            };
            let url = format!("ws://{}{}{}", target.addr, target.path, query);
            let request = url.as_str().into_client_request()?;
            let mut config = WebSocketConfig::default();
            config.read_buffer_size = 4096;
            config.write_buffer_size = 0;
            let (ws, _) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                        "WebSocket handshake with {url} failed: {e} (does the target speak {}?)",
                        if target.proto == Proto::SocketIo {
                            "Socket.IO v4 / Engine.IO v4"
                        } else {
                            "volna's /ws protocol"
                        }
                    )
                    })?;
            let (mut tx, mut rx) = ws.split();
            if target.proto == Proto::SocketIo {
                let open = next_text(&mut rx).await?;
                anyhow::ensure!(
                    open.starts_with('0'),
                    "{url} is not an Engine.IO v4 server (first packet {open:?})"
                );
                let connect = match &target.token {
                    Some(token) => format!("40{}", serde_json::json!({ "token": token })),
                    None => "40".to_string(),
                };
                tx.send(WsMessage::text(connect)).await?;
                loop {
                    let t = next_text(&mut rx).await?;
                    if t.starts_with("40") {
                        break;
                    }
                    if t.starts_with("44") {
                        anyhow::bail!("Socket.IO connect refused: {t}");
                    }
                    if t == "2" {
                        tx.send(WsMessage::text("3")).await?;
                    }
                }
            }
            Ok((Tx::Ws(tx, target.proto), Rx::Ws(rx)))
        }
    }
}

async fn next_text(rx: &mut SplitStream<Ws>) -> anyhow::Result<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .map_err(|_| anyhow::anyhow!("timed out waiting for the server"))?
            .ok_or_else(|| anyhow::anyhow!("the server closed the connection"))??;
        match msg {
            WsMessage::Text(t) => return Ok(t.to_string()),
            WsMessage::Close(c) => anyhow::bail!("the server closed the connection: {c:?}"),
            _ => continue,
        }
    }
}

impl Tx {
    /// Sends a join request (with ack id `ack` where the protocol has one).
    pub(super) async fn join(&mut self, room: &str, ack: u64) -> anyhow::Result<()> {
        match self {
            Tx::Ws(tx, Proto::SocketIo) => {
                tx.send(WsMessage::text(format!(
                    "42{ack}[\"join\",{}]",
                    json_string(room)
                )))
                .await?
            }
            Tx::Ws(tx, _) => {
                tx.send(WsMessage::text(format!(
                    "{{\"op\":\"join\",\"room\":{},\"id\":{ack}}}",
                    json_string(room)
                )))
                .await?
            }
            Tx::Tcp(w) => w.write_all(format!("/join {room}\n").as_bytes()).await?,
        }
        Ok(())
    }

    /// Publishes `text` to `room`.
    /// Publishes `text` to `room`: a `message`, or the application event
    /// `event`.
    pub(super) async fn publish(
        &mut self,
        room: &str,
        text: &str,
        event: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Tx::Ws(tx, Proto::SocketIo) => {
                tx.send(WsMessage::text(format!(
                    "42[{},{{\"room\":{},\"data\":{}}}]",
                    json_string(event.unwrap_or("message")),
                    json_string(room),
                    json_string(text)
                )))
                .await?
            }
            Tx::Ws(tx, _) => {
                let op = match event {
                    Some(e) => format!("\"op\":\"emit\",\"event\":{}", json_string(e)),
                    None => "\"op\":\"message\"".to_string(),
                };
                tx.send(WsMessage::text(format!(
                    "{{{op},\"room\":{},\"data\":{}}}",
                    json_string(room),
                    json_string(text)
                )))
                .await?
            }
            Tx::Tcp(w) => {
                let line = match event {
                    Some(e) => format!("/emit {e} {}\n", json_string(text)),
                    None => format!("/msg {room} {text}\n"),
                };
                w.write_all(line.as_bytes()).await?
            }
        }
        Ok(())
    }

    /// Emits the application event `event` to `room` carrying `text`, with
    /// ack id `ack` (for an event the rpc hook answers: the answer is the
    /// ack).
    pub(super) async fn emit_acked(
        &mut self,
        room: &str,
        event: &str,
        text: &str,
        ack: u64,
    ) -> anyhow::Result<()> {
        match self {
            Tx::Ws(tx, Proto::SocketIo) => {
                tx.send(WsMessage::text(format!(
                    "42{ack}[{},{{\"room\":{},\"data\":{}}}]",
                    json_string(event),
                    json_string(room),
                    json_string(text)
                )))
                .await?
            }
            Tx::Ws(tx, _) => {
                tx.send(WsMessage::text(format!(
                    "{{\"op\":\"emit\",\"event\":{},\"room\":{},\"data\":{},\"id\":{ack}}}",
                    json_string(event),
                    json_string(room),
                    json_string(text)
                )))
                .await?
            }
            Tx::Tcp(w) => {
                w.write_all(format!("/emit {event} {}\n", json_string(text)).as_bytes())
                    .await?
            }
        }
        Ok(())
    }

    /// Sends an echo request carrying `text`.
    pub(super) async fn echo(&mut self, text: &str, ack: u64) -> anyhow::Result<()> {
        match self {
            Tx::Ws(tx, Proto::SocketIo) => {
                tx.send(WsMessage::text(format!(
                    "42{ack}[\"echo\",{}]",
                    json_string(text)
                )))
                .await?
            }
            Tx::Ws(tx, _) => {
                tx.send(WsMessage::text(format!(
                    "{{\"op\":\"echo\",\"data\":{},\"id\":{ack}}}",
                    json_string(text)
                )))
                .await?
            }
            Tx::Tcp(w) => w.write_all(format!("/echo {text}\n").as_bytes()).await?,
        }
        Ok(())
    }

    /// Shares an image (volna `/ws` only): the `image` op and one binary
    /// frame.
    pub(super) async fn image(&mut self, room: &str, bytes: &[u8], ack: u64) -> anyhow::Result<()> {
        match self {
            Tx::Ws(tx, Proto::Ws) => {
                tx.send(WsMessage::text(format!(
                    "{{\"op\":\"image\",\"room\":{},\"name\":\"bench.png\",\"attachments\":1,\"id\":{ack}}}",
                    json_string(room)
                )))
                .await?;
                tx.send(WsMessage::binary(bytes.to_vec())).await?;
                Ok(())
            }
            _ => anyhow::bail!("image sharing is benchmarked over volna's /ws (ws://HOST:PORT/ws)"),
        }
    }

    /// Answers an Engine.IO ping.
    pub(super) async fn pong(&mut self) -> anyhow::Result<()> {
        if let Tx::Ws(tx, _) = self {
            tx.send(WsMessage::text("3")).await?;
        }
        Ok(())
    }
}

impl Rx {
    /// The next frame, ping or close; WebSocket pings and pongs are skipped.
    pub(super) async fn next(&mut self, proto: Proto) -> anyhow::Result<Received> {
        match self {
            Rx::Tcp(r) => {
                let mut line = Vec::with_capacity(128);
                let n = r.read_until(b'\n', &mut line).await?;
                if n == 0 {
                    return Ok(Received::Closed);
                }
                Ok(Received::Frame(line))
            }
            Rx::Ws(rx) => loop {
                let Some(msg) = rx.next().await else {
                    return Ok(Received::Closed);
                };
                match msg? {
                    WsMessage::Text(t) => {
                        if proto == Proto::SocketIo && t.as_str() == "2" {
                            return Ok(Received::Ping);
                        }
                        return Ok(Received::Frame(t.as_bytes().to_vec()));
                    }
                    WsMessage::Binary(b) => return Ok(Received::Frame(b.to_vec())),
                    WsMessage::Close(_) => return Ok(Received::Closed),
                    _ => continue,
                }
            },
        }
    }
}

/// Whether `frame` is the reply to a join (ack id `ack`).
pub(super) fn is_join_reply(proto: Proto, frame: &[u8], ack: u64) -> bool {
    match proto {
        Proto::SocketIo => {
            let prefix = format!("43{ack}[");
            frame.starts_with(prefix.as_bytes())
        }
        Proto::Ws => {
            let needle = format!("\"id\":{ack}");
            memchr::memmem::find(frame, needle.as_bytes()).is_some()
                && memchr::memmem::find(frame, b"\"reply\"").is_some()
        }
        Proto::Tcp => frame.starts_with(b"ok join "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_in_any_frame() {
        let p = payload(42, 123_456, 64);
        assert_eq!(p.len(), 64);
        let sio = format!("42[\"message\",{{\"room\":\"r\",\"data\":\"{p}\"}}]");
        assert_eq!(find_marker(sio.as_bytes()), Some((42, 123_456)));
        let tcp = format!("msg r 3 2026-01-01T00:00:00.000Z x: {p}\n");
        assert_eq!(find_marker(tcp.as_bytes()), Some((42, 123_456)));
        assert_eq!(find_marker(b"nothing here"), None);
    }

    #[test]
    fn targets() {
        let t = Target::parse("socketio://127.0.0.1:3001").unwrap();
        assert_eq!((t.proto, t.path.as_str()), (Proto::SocketIo, "/socket.io/"));
        let t = Target::parse("ws://127.0.0.1:3000/ws").unwrap();
        assert_eq!(t.proto, Proto::Ws);
        let t = Target::parse("tcp://127.0.0.1:7000").unwrap();
        assert_eq!(t.proto, Proto::Tcp);
        assert!(Target::parse("ftp://x:1").is_err());
    }
}
