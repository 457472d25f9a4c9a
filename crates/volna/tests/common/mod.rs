//! Helpers shared by the integration tests: an in-process server on port 0
//! and a line client with timeouts.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use volna::config::ServerConfig;
use volna::server::Server;

/// How long a test waits for one expected line before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A server on ephemeral loopback ports.
pub(crate) async fn start(mut config: ServerConfig) -> Server {
    config.tcp_addr = "127.0.0.1:0".into();
    config.http_addr = "127.0.0.1:0".into();
    Server::start(config).await.expect("server starts")
}

pub(crate) async fn start_default() -> Server {
    start(ServerConfig::default()).await
}

/// A TCP line-protocol client.
pub(crate) struct LineClient {
    pub(crate) reader: BufReader<OwnedReadHalf>,
    pub(crate) writer: OwnedWriteHalf,
}

impl LineClient {
    /// Connects and consumes the welcome line.
    pub(crate) async fn connect(server: &Server) -> LineClient {
        let stream = TcpStream::connect(server.tcp_addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = LineClient {
            reader: BufReader::new(r),
            writer: w,
        };
        let welcome = c.line().await;
        assert!(welcome.starts_with("welcome volna"), "{welcome}");
        c
    }

    /// Connects, sets a nick and joins rooms, consuming the replies.
    pub(crate) async fn named(server: &Server, nick: &str, rooms: &[&str]) -> LineClient {
        let mut c = Self::connect(server).await;
        c.send(&format!("/nick {nick}")).await;
        assert_eq!(c.line().await, format!("ok nick {nick}"));
        for room in rooms {
            c.send(&format!("/join {room}")).await;
            let reply = c.line().await;
            assert!(reply.starts_with(&format!("ok join {room}")), "{reply}");
        }
        c
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next line, without its newline; panics after [`WAIT`] or at EOF.
    pub(crate) async fn line(&mut self) -> String {
        match self.try_line(WAIT).await {
            Some(l) => l,
            None => panic!("connection closed while a line was expected"),
        }
    }

    /// The next line, or `None` at EOF; panics on timeout.
    pub(crate) async fn try_line(&mut self, wait: Duration) -> Option<String> {
        let mut buf = String::new();
        let n = tokio::time::timeout(wait, self.reader.read_line(&mut buf))
            .await
            .expect("timed out waiting for a line")
            .expect("read failed");
        if n == 0 {
            return None;
        }
        Some(buf.trim_end_matches(['\n', '\r']).to_string())
    }

    /// Reads lines until one starts with `prefix`, returning it and the
    /// lines skipped before it.
    pub(crate) async fn until(&mut self, prefix: &str) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            let l = self.line().await;
            if l.starts_with(prefix) {
                return (l, skipped);
            }
            skipped.push(l);
        }
    }

    /// Asserts that nothing arrives within `wait`.
    pub(crate) async fn silent(&mut self, wait: Duration) {
        let mut buf = String::new();
        if let Ok(r) = tokio::time::timeout(wait, self.reader.read_line(&mut buf)).await {
            panic!("expected silence, got {r:?}: {buf:?}");
        }
    }
}

/// A parsed `msg ROOM OFFSET TS FROM: TEXT` line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) room: String,
    pub(crate) offset: u64,
    pub(crate) ts: String,
    pub(crate) from: String,
    pub(crate) text: String,
}

pub(crate) fn parse_msg(line: &str) -> Msg {
    let rest = line
        .strip_prefix("msg ")
        .unwrap_or_else(|| panic!("not a msg line: {line}"));
    let mut parts = rest.splitn(4, ' ');
    let room = parts.next().unwrap().to_string();
    let offset = parts.next().unwrap().parse().unwrap();
    let ts = parts.next().unwrap().to_string();
    let (from, text) = parts.next().unwrap().split_once(": ").unwrap();
    Msg {
        room,
        offset,
        ts,
        from: from.to_string(),
        text: text.to_string(),
    }
}

/// A `volna serve` process (the built binary) on ephemeral loopback ports,
/// with its stderr going to `stderr`. Returns it with the TCP and HTTP
/// addresses its banner (the first line of its stdout, consumed here) names.
pub(crate) fn spawn_serve(stderr: std::process::Stdio) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_volna"))
        .args([
            "serve",
            "--tcp-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("volna serve starts");
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    // "volna 0.1.0 serving: tcp://127.0.0.1:PORT (try: …), http://…"
    let tcp = banner
        .split("tcp://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner: {banner}"))
        .to_string();
    let http = banner
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected banner: {banner}"))
        .trim()
        .to_string();
    (child, tcp, http)
}
