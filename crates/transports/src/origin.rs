//! Which browser pages may use volna: the `Origin` of a WebSocket upgrade
//! (`/ws`, Engine.IO) and of a long-polling request is checked against the
//! `allowed_origins` setting. A request without `Origin` (not a browser) is
//! always let through, and so is a page of volna's own origin (its `Origin`
//! names the host the request was sent to, `Host`); any other page only if
//! its origin is listed (or the list holds `*`). So a page on another site
//! cannot open a connection with its visitor's cookies (cross-site
//! WebSocket hijacking).

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Whether the request's origin may use volna, given the listed origins.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // Same origin: `scheme://host[:port]` whose authority is the Host.
    let authority = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// The answer to a request from a page that may not use volna: 403.
pub fn refused_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        "forbidden origin: this page's origin is not in volna's allowed_origins\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn own_origin_and_non_browsers_pass_others_must_be_listed() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&headers(None, "127.0.0.1:3000"), &none));
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000"),
            &none
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "127.0.0.1:3000"),
            &none
        ));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000"),
            &none
        ));
        let listed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(
            &headers(Some("https://app.example"), "api.example"),
            &listed
        ));
        assert!(origin_allowed(
            &headers(Some("https://anything"), "h"),
            &["*".to_string()]
        ));
    }
}
