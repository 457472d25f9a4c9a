//! The HTTP/1 server that makes upgraded connections reachable as their
//! socket (a [`Wire`]: the `TcpStream`, with its TLS session over HTTPS),
//! and the WebSocket opening handshake (RFC 6455 §4).
//!
//! [`serve`] replaces `axum::serve`: it drives each connection with hyper's
//! HTTP/1 server directly so that an upgraded connection can be downcast
//! back to its `TcpStream` (axum's server wraps the stream in a private
//! type). Requests it serves carry the [`RawCapable`] extension; a handler
//! turns one into an [`Upgrade`] and answers with [`Upgrade::accept`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::ipgate::{IpGate, IpTicket};
use crate::tls::Tls;
use crate::wire::Wire;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on every HTTP request's head.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's head; a slower one (a
    /// slow-loris attack, an idle keep-alive connection) is dropped.
    /// Defaults to 10 s.
    pub header_timeout: std::time::Duration,
    /// Largest request head, in bytes (at least 8192); a larger one is
    /// refused. Defaults to 64 KiB.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: 64 << 10,
        }
    }
}

/// Answers a connection over its address's limits with 429 and closes it.
async fn refuse_connection(mut stream: TcpStream, refusal: crate::ipgate::IpRefusal) {
    use tokio::io::AsyncWriteExt;
    let body = refusal.message();
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Whether a request from a proxy starts something its client's address is
/// counted for: a WebSocket upgrade, or anything but a request of an
/// Engine.IO session already open (`sid=`).
fn starts_something<B>(req: &hyper::Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        || !req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// The 429 answer for a request over its client's address's limits.
fn too_many(refusal: crate::ipgate::IpRefusal) -> Response {
    (StatusCode::TOO_MANY_REQUESTS, refusal.message()).into_response()
}

/// Marks a request served by [`serve`]: its upgrade yields a [`Wire`].
#[derive(Debug, Clone, Copy)]
pub struct RawCapable;

/// Serves `router` on `listener` with hyper's HTTP/1 server until
/// `shutdown` is cancelled, then waits for open HTTP exchanges to finish
/// (upgraded connections are on their own by then). With `tls` every
/// connection starts with a TLS handshake (HTTPS and WSS).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
    gate: IpGate,
    tls: Option<Tls>,
) {
    let router = router.layer(axum::Extension(RawCapable));
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::error!(error = %e, "http accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        // A trusted proxy's connection carries many clients' requests: each
        // is counted as its client's ([`crate::proxies`]).
        let proxied = gate.proxies().contains(peer.ip());
        let place = match (proxied, gate.admit(peer.ip())) {
            (true, _) => None,
            (false, Ok(place)) => Some(Arc::new(place)),
            (false, Err(refusal)) => {
                conns.spawn(refuse_connection(stream, refusal));
                continue;
            }
        };
        // Every request knows its client (`ConnectInfo`): the connect hook
        // is told it; and its place, which an upgrade keeps.
        let router = router.clone();
        let gate = gate.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let (client, place) = if proxied {
                let client = SocketAddr::new(gate.proxies().client(peer.ip(), req.headers()), 0);
                let place = if starts_something(&req) {
                    match gate.admit(client.ip()) {
                        Ok(place) => Some(Arc::new(place)),
                        Err(refusal) => {
                            return futures_util::future::Either::Left(std::future::ready(Ok(
                                too_many(refusal),
                            )))
                        }
                    }
                } else {
                    None
                };
                (client, place)
            } else {
                (peer, place.clone())
            };
            req.extensions_mut().insert(ConnectInfo(client));
            if let Some(place) = place {
                req.extensions_mut().insert(place);
            }
            futures_util::future::Either::Right(async move {
                tower_service::Service::call(&mut router, req.map(Body::new)).await
            })
        });
        let shutdown = shutdown.clone();
        match &tls {
            None => conns.spawn(serve_connection(stream, service, limits, shutdown)),
            Some(tls) => {
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls.accept_http(stream).await {
                        Ok(stream) => serve_connection(stream, service, limits, shutdown).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    }
                })
            }
        };
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// Serves HTTP/1 on one connection until it ends or `shutdown`.
async fn serve_connection<I, S>(io: I, service: S, limits: HttpLimits, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = Response> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A client that sends its request head too slowly (slow-loris) or too
    // much of it is dropped; hyper answers 431 to the latter.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "http connection failed");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// ---------------------------------------------------------------------------
// The opening handshake
// ---------------------------------------------------------------------------

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Checks an HTTP/1.1 WebSocket upgrade request; returns its
/// `Sec-WebSocket-Key` when valid.
fn check_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> Option<Bytes> {
    if method != Method::GET || version != Version::HTTP_11 {
        return None;
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes().trim_ascii() != b"13")
    {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .trim_ascii();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    if decoded.len() != 16 {
        return None;
    }
    Some(Bytes::copy_from_slice(key))
}

/// The `101 Switching Protocols` answer to a valid upgrade request.
fn switching_protocols(key: &[u8]) -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Waits for hyper to hand over the upgraded connection and takes back its
/// socket (with its TLS session, if any) and the bytes hyper had already
/// read past the request. `None` if the upgrade failed or the connection is
/// not one [`serve`] made.
async fn take_stream(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<(Wire, Bytes)> {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return Some((parts.io.into_inner().into(), parts.read_buf)),
        Err(upgraded) => upgraded,
    };
    type TlsIo = TokioIo<tokio_rustls::server::TlsStream<TcpStream>>;
    match upgraded.downcast::<TlsIo>() {
        Ok(parts) => {
            let (tcp, session) = parts.io.into_inner().into_inner();
            Some((Wire::tls(tcp, session), parts.read_buf))
        }
        Err(_) => {
            tracing::warn!("upgraded connection is not a TCP or TLS stream");
            None
        }
    }
}

/// A valid WebSocket upgrade request, taken apart.
pub struct Upgrade {
    key: Bytes,
    on_upgrade: hyper::upgrade::OnUpgrade,
    place: Option<Arc<IpTicket>>,
}

/// Why a request cannot be upgraded; its response says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid RFC 6455 upgrade request (400).
    NotWebSocket,
    /// The request did not come through [`serve`], so its connection cannot
    /// be taken over (500: a server set-up error, not the client's).
    NotServed,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotWebSocket => (
                StatusCode::BAD_REQUEST,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "expected a WebSocket upgrade (RFC 6455, version 13)",
            )
                .into_response(),
            Refusal::NotServed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "WebSocket upgrades need volna's HTTP server (websocket::serve)",
            )
                .into_response(),
        }
    }
}

impl Upgrade {
    /// Checks the request head; call before anything takes the upgrade out
    /// of the request's extensions.
    pub fn from_parts(parts: &Parts) -> Result<Upgrade, Refusal> {
        let key = check_upgrade(&parts.method, parts.version, &parts.headers)
            .ok_or(Refusal::NotWebSocket)?;
        if parts.extensions.get::<RawCapable>().is_none() {
            return Err(Refusal::NotServed);
        }
        let on_upgrade = parts
            .extensions
            .get::<hyper::upgrade::OnUpgrade>()
            .ok_or(Refusal::NotServed)?
            .clone();
        let place = parts.extensions.get::<Arc<IpTicket>>().cloned();
        Ok(Upgrade {
            key,
            on_upgrade,
            place,
        })
    }

    /// The connection's place among its address's connections: the
    /// upgraded socket keeps it ([`WsSocket::holding`](super::WsSocket::holding)).
    pub fn place(&self) -> Option<Arc<IpTicket>> {
        self.place.clone()
    }

    /// The `101` response to send, and the future that yields the stream
    /// (and any bytes already read past the request) once it is sent.
    pub fn accept(
        self,
    ) -> (
        Response,
        impl std::future::Future<Output = Option<(Wire, Bytes)>> + Send,
    ) {
        (switching_protocols(&self.key), take_stream(self.on_upgrade))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
