//! Just enough HTTP/1.1 for the load generator: a keep-alive client that
//! POSTs JSON (the server API) and a backend that answers every POST (the
//! rpc hook), both over plain tokio sockets. A load generator wants no
//! pooling, retries or redirects in its way.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One keep-alive connection to an HTTP server.
pub(super) struct HttpConn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl HttpConn {
    pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<HttpConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// POSTs `body` as JSON to `path` with the extra `headers`; the status
    /// and the body of the answer.
    pub(super) async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let (status, len) = read_head(&mut self.stream).await?;
        let mut answer = vec![0; len];
        self.stream.read_exact(&mut answer).await?;
        Ok((status, answer))
    }
}

/// Reads a status line or request line and headers: the status (0 for a
/// request) and the Content-Length.
async fn read_head(r: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, usize)> {
    let mut line = String::new();
    anyhow::ensure!(r.read_line(&mut line).await? > 0, "connection closed");
    let status = if line.starts_with("HTTP/") {
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let mut len = 0;
    loop {
        line.clear();
        anyhow::ensure!(r.read_line(&mut line).await? > 0, "connection closed");
        let h = line.trim_end();
        if h.is_empty() {
            return Ok((status, len));
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            }
        }
    }
}

/// Serves, until the process ends, a backend that answers every POST with
/// `{"result":{"data":<the request's data>}}` after `delay`: an rpc hook
/// whose answer carries the client's data (and so its marker) back.
pub(super) async fn serve_echo_hook(addr: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "hook backend listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut r = BufReader::new(stream);
            loop {
                let Ok((_, len)) = read_head(&mut r).await else {
                    return;
                };
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let data = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("data").cloned())
                    .unwrap_or(serde_json::Value::Null);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let answer = serde_json::json!({"result": {"data": data}}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
