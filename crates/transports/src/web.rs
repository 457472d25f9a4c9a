//! The browser chat page, served at `GET /`.
//!
//! Plain HTML, CSS and JavaScript written for volna (no framework, no build
//! step), compiled into the binary with `include_str!`/`include_bytes!`, so
//! `volna serve` needs no files next to it. The page speaks the `/ws` JSON
//! protocol (`docs/websocket-protocol.md`).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const FAVICON_SVG: &[u8] = include_bytes!("../assets/favicon.svg");

/// `GET /`, `/index.html`, `/app.js`, `/style.css` and `/favicon.svg`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/favicon.svg", get(favicon))
}

/// An embedded asset with its content type. `no-cache` makes the browser
/// revalidate on every load, so a new binary's page is never mixed with an
/// old cached script.
fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML.as_bytes())
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS.as_bytes())
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS.as_bytes())
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn assets_are_embedded() {
        assert!(INDEX_HTML.contains("<script src=\"/app.js\""));
        assert!(INDEX_HTML.contains("/style.css"));
        assert!(APP_JS.contains("/ws"));
        assert!(FAVICON_SVG.starts_with(b"<svg"));
    }

    /// One HTTP/1.1 GET over a real socket; returns the response head and body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(buf[..split].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        (head, buf[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn serves_every_asset_with_its_type_and_no_cache() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router()).await });
        for (path, ty, body) in [
            ("/", "text/html; charset=utf-8", INDEX_HTML.as_bytes()),
            (
                "/index.html",
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes(),
            ),
            (
                "/app.js",
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
            ),
            (
                "/style.css",
                "text/css; charset=utf-8",
                STYLE_CSS.as_bytes(),
            ),
            ("/favicon.svg", "image/svg+xml", FAVICON_SVG),
        ] {
            let (head, got) = get(addr, path).await;
            assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
            assert!(
                head.contains(&format!("content-type: {ty}")),
                "{path}: {head}"
            );
            assert!(head.contains("cache-control: no-cache"), "{path}: {head}");
            assert_eq!(got, body, "{path}");
        }
        let (head, _) = get(addr, "/nope.js").await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        server.abort();
    }
}
