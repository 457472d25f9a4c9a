//! TLS for the HTTP and TCP line listeners: a certificate chain and its
//! key read from PEM files, served with rustls (ring provider), and read
//! again when the files change, so a renewed certificate is served to new
//! connections without a restart.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::wire::Wire;

/// How often the certificate files are looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate being served, replaced when its files change.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap().clone())
    }
}

/// TLS for the listeners; clones share the certificate.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    /// For HTTP (ALPN `http/1.1`) and for TCP lines (no ALPN).
    http: tokio_rustls::TlsAcceptor,
    line: tokio_rustls::TlsAcceptor,
    /// How long a handshake may take.
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Reads and checks a certificate chain and key.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> io::Result<CertifiedKey> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, &e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&files.key, &e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| bad(&files.key, &format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

fn modified(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let cert = std::fs::metadata(&files.cert).ok()?.modified().ok()?;
    let key = std::fs::metadata(&files.key).ok()?.modified().ok()?;
    Some((cert, key))
}

impl Tls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles, handshake_timeout: Duration) -> io::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(&files, &provider)?;
        let current = Arc::new(Current {
            key: RwLock::new(Arc::new(key)),
        });
        let config = |alpn: Vec<Vec<u8>>| -> io::Result<tokio_rustls::TlsAcceptor> {
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            config.alpn_protocols = alpn;
            Ok(Arc::new(config).into())
        };
        Ok(Tls {
            http: config(vec![b"http/1.1".to_vec()])?,
            line: config(Vec::new())?,
            files,
            provider,
            current,
            handshake_timeout,
        })
    }

    /// Reads the files again; the old certificate stays if they are bad.
    pub fn reload(&self) -> io::Result<()> {
        let key = load(&self.files, &self.provider)?;
        *self.current.key.write().unwrap() = Arc::new(key);
        Ok(())
    }

    /// Looks at the files every few seconds until `shutdown` and reloads
    /// them when they change.
    pub fn watch(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut seen = modified(&tls.files);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_EVERY) => {}
                    _ = shutdown.cancelled() => return,
                }
                let now = modified(&tls.files);
                if now.is_none() || now == seen {
                    continue;
                }
                match tls.reload() {
                    Ok(()) => {
                        seen = now;
                        tracing::info!(cert = %tls.files.cert.display(), "tls certificate reloaded");
                    }
                    // Perhaps half written: tried again next time.
                    Err(e) => tracing::warn!(error = %e, "tls certificate not reloaded"),
                }
            }
        })
    }

    /// The handshake for an HTTP connection, as a stream hyper can serve.
    pub async fn accept_http(
        &self,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        tokio::time::timeout(self.handshake_timeout, self.http.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))?
    }

    /// The handshake for a TCP line connection.
    pub async fn accept_line(&self, tcp: TcpStream) -> io::Result<Wire> {
        let stream = tokio::time::timeout(self.handshake_timeout, self.line.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))??;
        let (tcp, session) = stream.into_inner();
        Ok(Wire::tls(tcp, session))
    }
}
