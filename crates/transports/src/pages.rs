//! An application's own pages: the files of one folder (`static_dir`),
//! served under `/app/` beside volna's chat page, so a page and the
//! server it talks to share an origin.
//!
//! Only plain files inside the folder are served: a path with `..`, a
//! backslash or an empty segment is not found, and `/app/` is the folder's
//! `index.html`. Files are read on each request (an example is edited and
//! reloaded while the server runs).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The URL prefix of an application's pages.
pub const PREFIX: &str = "/app/";

/// The router of `GET /app/` and `GET /app/{*path}`, serving the files of `dir`.
pub fn router(dir: PathBuf) -> Router {
    let dir = Arc::new(dir);
    Router::new()
        .route(
            "/app",
            get(|| async { axum::response::Redirect::permanent(PREFIX) }),
        )
        .route("/app/", get(index))
        .route("/app/{*path}", get(file))
        .with_state(dir)
}

async fn index(State(dir): State<Arc<PathBuf>>) -> Response {
    serve(&dir, "index.html").await
}

async fn file(State(dir): State<Arc<PathBuf>>, UrlPath(path): UrlPath<String>) -> Response {
    serve(&dir, &path).await
}

async fn serve(dir: &Path, path: &str) -> Response {
    let Some(relative) = safe_relative(path) else {
        return not_found();
    };
    let full = dir.join(&relative);
    let full = if full.is_dir() {
        full.join("index.html")
    } else {
        full
    };
    match tokio::fs::read(&full).await {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&full)),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `path` as a path below the folder, or `None` when it could leave it.
fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.contains('\\') || path.contains('\0') || path.split('/').any(str::is_empty) {
        return None;
    }
    let relative = PathBuf::from(path);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(relative)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_folder_are_refused() {
        assert_eq!(safe_relative("a/b.js"), Some(PathBuf::from("a/b.js")));
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "a\\b",
            "",
            "./a",
            "a/",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
