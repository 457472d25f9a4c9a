//! One HTTP GET over `http://` or `https://`, for documents the server
//! reads now and then (a JWKS): a fresh connection each time (no pool to
//! keep), bounded in time and size, certificates checked against given
//! roots (rustls, the same ring provider as the listeners).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Debian's bundle of the system's trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client TLS configuration trusting the certificates of a PEM file.
pub fn tls_trusting(roots: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(roots)
        .map_err(|e| format!("cannot read {}: {e}", roots.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", roots.display()))?;
        // A bundle may hold a certificate rustls cannot use: skip it.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(format!("{} holds no usable certificate", roots.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Checks that `url` is one [`get`] can fetch.
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        )),
    }
}

/// GETs `url` (`tls` for `https://`), giving up after `timeout`; the body
/// must be at most `max_bytes` and come with status 200.
pub async fn get(
    url: &Uri,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    tokio::time::timeout(timeout, fetch(url, tls, max_bytes))
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

async fn fetch(
    url: &Uri,
    tls: Option<&Arc<rustls::ClientConfig>>,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let host = url.host().ok_or("no host")?.to_string();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    // `[::1]` in a URL is `::1` to connect to.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return exchange(tcp, url, &host, max_bytes).await;
    }
    let tls = tls.ok_or_else(|| format!("{url}: no trusted roots for https"))?;
    let name = ServerName::try_from(bare).map_err(|e| format!("{url}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    exchange(stream, url, &host, max_bytes).await
}

async fn exchange<I>(io: I, url: &Uri, host: &str, max_bytes: usize) -> Result<Bytes, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "volna")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("{url}: HTTP {}", response.status().as_u16()));
        }
        Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| format!("{url}: {e}"))
    }
    .await;
    driver.abort();
    result
}
