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

    #[test]
    fn assets_are_embedded() {
        assert!(INDEX_HTML.contains("<script src=\"/app.js\""));
        assert!(INDEX_HTML.contains("/style.css"));
        assert!(APP_JS.contains("/ws"));
        assert!(FAVICON_SVG.starts_with(b"<svg"));
    }
}
