//! JWT identity: a client presents a token (Socket.IO `auth: {token}`,
//! `/ws?token=…` or op `auth`, TCP `/auth TOKEN`) and the server checks it
//! against its key: an HMAC secret (HS256/384/512), a PEM public key (RSA,
//! EC P-256/P-384 or Ed25519, the algorithms of its family only) or a JWKS
//! document (the key named by the token's `kid`), from a file or an
//! `http(s)://` URL: a file is read again when a `kid` is unknown (at most
//! once a second); a URL is fetched at start, every
//! [`JWKS_REFRESH`], and when a token names a `kid` it does not know (at
//! most once per [`JWKS_REFETCH`], whatever kids are sprayed at it), so
//! keys can rotate. Until a URL has answered, tokens for it are refused.
//!
//! Claims: `sub` (required) is the user, `name` the display name, `info`
//! public JSON, `exp` the expiry (required, in seconds), `rooms` the room
//! patterns the user may join; `aud` and `iss` are checked when configured.
//!
//! Verification uses the `jsonwebtoken` crate with its pure-Rust backend
//! (RustCrypto): the maintained JWT crate of the ecosystem, no C toolchain;
//! each key is pinned to its own algorithms, so a token signed with HS256
//! using an RSA public key as the secret is refused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value as Json;

/// Where the keys come from.
#[derive(Debug, Clone, Default)]
pub struct TokenConfig {
    /// An HMAC secret (HS256, HS384, HS512).
    pub secret: Option<String>,
    /// A PEM public key file (RSA, EC or Ed25519).
    pub public_key: Option<PathBuf>,
    /// A JWKS (keys picked by `kid`): a file, or an `http://` or
    /// `https://` URL.
    pub jwks: Option<String>,
    /// The roots an `https://` JWKS URL's certificate is checked against
    /// (PEM); `None`: the system's ([`crate::fetch::SYSTEM_ROOTS`]).
    pub jwks_ca: Option<PathBuf>,
    /// Accepted audiences (`aud`); empty: not checked.
    pub audience: Vec<String>,
    /// Accepted issuers (`iss`); empty: not checked.
    pub issuer: Vec<String>,
}

impl TokenConfig {
    /// Whether any key is configured.
    pub fn is_on(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks.is_some()
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The user id (`sub`).
    pub user: String,
    /// The display name (`name`).
    pub name: Option<String>,
    /// Public JSON (`info`).
    pub info: Option<Json>,
    /// Expiry, seconds since the Unix epoch (`exp`).
    pub expires: u64,
    /// Room patterns the user may join (`rooms`), when the token limits them.
    pub rooms: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    info: Option<Json>,
    exp: u64,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Its `exp` has passed.
    #[error("token-expired: the token has expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm or key, malformed,
    /// missing claims, wrong audience or issuer.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// A key and the algorithms it may verify.
struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The configured keys; cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    fixed: Vec<Key>,
    jwks: Option<Jwks>,
    audience: Vec<String>,
    issuer: Vec<String>,
}

/// A JWKS and what was last read from it.
struct Jwks {
    source: Source,
    /// The keys, and when the source was last read (or tried).
    state: Mutex<(JwkSet, Instant)>,
}

/// Where a JWKS comes from.
enum Source {
    File(PathBuf),
    Url {
        uri: hyper::Uri,
        tls: Option<Arc<rustls::ClientConfig>>,
        /// A fetch is under way; the others wait for it (`done`).
        fetching: AtomicBool,
        done: Notify,
    },
}

/// How often a JWKS file is read again for an unknown `kid`, at most.
const JWKS_REREAD: Duration = Duration::from_secs(1);

/// How often a JWKS URL is fetched again for an unknown `kid`, at most.
pub const JWKS_REFETCH: Duration = Duration::from_secs(5);

/// How often a JWKS URL is fetched anyway.
pub const JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Time a JWKS URL has to answer, and the largest document taken.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BYTES: usize = 1 << 20;

fn algorithms(family: AlgorithmFamily) -> Vec<Algorithm> {
    use Algorithm::*;
    match family {
        AlgorithmFamily::Hmac => vec![HS256, HS384, HS512],
        AlgorithmFamily::Rsa => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmFamily::Ec => vec![ES256, ES384],
        AlgorithmFamily::Ed => vec![EdDSA],
    }
}

fn read_jwks(path: &PathBuf) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid JWKS {}: {e}", path.display()))
}

impl Tokens {
    /// The keys of `config`; `None` when it has none. A key file that cannot
    /// be read or parsed is an error naming it.
    pub fn new(config: &TokenConfig) -> Result<Option<Tokens>, String> {
        if !config.is_on() {
            return Ok(None);
        }
        let mut fixed = Vec::new();
        if let Some(secret) = &config.secret {
            if secret.len() < 16 {
                return Err("jwt_secret must be at least 16 bytes".into());
            }
            fixed.push(Key {
                key: DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| format!("jwt_secret: {e}"))?,
                algorithms: algorithms(AlgorithmFamily::Hmac),
            });
        }
        if let Some(path) = &config.public_key {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .or_else(|_| DecodingKey::from_ec_pem(&pem))
                .or_else(|_| DecodingKey::from_ed_pem(&pem))
                .map_err(|_| {
                    format!(
                        "{} is not a PEM RSA, EC or Ed25519 public key",
                        path.display()
                    )
                })?;
            let family = key.family();
            fixed.push(Key {
                key,
                algorithms: algorithms(family),
            });
        }
        let jwks = match &config.jwks {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                let uri = crate::fetch::check_url(url).map_err(|e| format!("jwks: {e}"))?;
                let tls = match uri.scheme_str() {
                    Some("https") => {
                        let roots = config
                            .jwks_ca
                            .clone()
                            .unwrap_or_else(|| crate::fetch::SYSTEM_ROOTS.into());
                        Some(
                            crate::fetch::tls_trusting(&roots)
                                .map_err(|e| format!("jwks_ca: {e}"))?,
                        )
                    }
                    _ => None,
                };
                Some(Jwks {
                    source: Source::Url {
                        uri,
                        tls,
                        fetching: AtomicBool::new(false),
                        done: Notify::new(),
                    },
                    // Never fetched: the first unknown kid may fetch at once.
                    state: Mutex::new((JwkSet { keys: Vec::new() }, Instant::now() - JWKS_REFETCH)),
                })
            }
            Some(path) => {
                let path = PathBuf::from(path);
                Some(Jwks {
                    state: Mutex::new((read_jwks(&path)?, Instant::now())),
                    source: Source::File(path),
                })
            }
            None => None,
        };
        Ok(Some(Tokens {
            inner: Arc::new(Inner {
                fixed,
                jwks,
                audience: config.audience.clone(),
                issuer: config.issuer.clone(),
            }),
        }))
    }

    /// Fetches a JWKS URL at start and every [`JWKS_REFRESH`] until
    /// `shutdown` (nothing to do for other keys).
    pub fn start(&self, shutdown: CancellationToken) {
        let Some(Jwks {
            source: Source::Url { .. },
            ..
        }) = &self.inner.jwks
        else {
            return;
        };
        let tokens = self.clone();
        tokio::spawn(async move {
            loop {
                tokens.fetch_jwks().await;
                tokio::select! {
                    _ = tokio::time::sleep(JWKS_REFRESH) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Whether `token` names a `kid` the JWKS URL does not know and may be
    /// asked about now, or a fetch is under way
    /// ([`refresh_for`](Tokens::refresh_for) would fetch or wait).
    pub fn wants_refresh(&self, token: &str) -> bool {
        let Some(Jwks {
            source: Source::Url { fetching, .. },
            state,
        }) = &self.inner.jwks
        else {
            return false;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let Some(kid) = header.kid else {
            return false;
        };
        let state = state.lock().unwrap();
        // A fetch under way (the first one, say) may bring it.
        state.0.find(&kid).is_none()
            && (fetching.load(Ordering::Acquire) || state.1.elapsed() >= JWKS_REFETCH)
    }

    /// Fetches the JWKS URL again if `token` names a `kid` it does not know
    /// (at most once per [`JWKS_REFETCH`]); returns when the keys are as
    /// fresh as they will get.
    pub async fn refresh_for(&self, token: &str) {
        if self.wants_refresh(token) {
            self.fetch_jwks().await;
        }
    }

    /// One fetch of the JWKS URL; callers during a fetch wait for it.
    async fn fetch_jwks(&self) {
        let Some(Jwks {
            source:
                Source::Url {
                    uri,
                    tls,
                    fetching,
                    done,
                },
            state,
        }) = &self.inner.jwks
        else {
            return;
        };
        let finished = done.notified();
        if fetching.swap(true, Ordering::AcqRel) {
            let _ = tokio::time::timeout(JWKS_TIMEOUT, finished).await;
            return;
        }
        state.lock().unwrap().1 = Instant::now();
        let fetched = crate::fetch::get(uri, tls.as_ref(), JWKS_TIMEOUT, JWKS_MAX_BYTES)
            .await
            .and_then(|body| {
                serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("{uri}: {e}"))
            });
        match fetched {
            Ok(set) => {
                tracing::debug!(%uri, keys = set.keys.len(), "JWKS fetched");
                *state.lock().unwrap() = (set, Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "JWKS not fetched; keeping the keys it had"),
        }
        fetching.store(false, Ordering::Release);
        done.notify_waiters();
    }

    /// Checks `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut last = TokenError::Invalid("no key verifies it".into());
        // A token naming a `kid` is for the JWKS (when there is one); any
        // other, for the secret and the public key.
        let from_jwks;
        let candidates: Vec<&Key> = match (&self.inner.jwks, &header.kid) {
            (Some(jwks), Some(kid)) => {
                from_jwks = jwks
                    .key(kid)
                    .ok_or_else(|| TokenError::Invalid(format!("no key with kid {kid:?}")))?;
                vec![&from_jwks]
            }
            _ => self.inner.fixed.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::Invalid("the token names no kid".into()));
        }
        for key in candidates {
            if !key.algorithms.contains(&header.alg) {
                last = TokenError::Invalid(format!("algorithm {:?} is not this key's", header.alg));
                continue;
            }
            let mut validation = Validation::new(header.alg);
            validation.algorithms = key.algorithms.clone();
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.leeway = 0;
            if self.inner.audience.is_empty() {
                validation.validate_aud = false;
            } else {
                validation.set_audience(&self.inner.audience);
            }
            if !self.inner.issuer.is_empty() {
                validation.set_issuer(&self.inner.issuer);
            }
            match jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation) {
                Ok(data) => {
                    let c = data.claims;
                    return Ok(Claims {
                        user: c.sub,
                        name: c.name,
                        info: c.info,
                        expires: c.exp,
                        rooms: c.rooms,
                    });
                }
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid(e.to_string()),
                    };
                    if last == TokenError::Expired {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

impl Jwks {
    /// The key with id `kid`, reading the file again (at most once per
    /// [`JWKS_REREAD`]) when it is not known.
    fn key(&self, kid: &str) -> Option<Key> {
        let mut state = self.state.lock().unwrap();
        let file = match &self.source {
            Source::File(path) => Some(path),
            Source::Url { .. } => None,
        };
        if let Some(path) =
            file.filter(|_| state.0.find(kid).is_none() && state.1.elapsed() >= JWKS_REREAD)
        {
            match read_jwks(path) {
                Ok(set) => *state = (set, Instant::now()),
                Err(e) => {
                    state.1 = Instant::now();
                    tracing::warn!(error = %e, "JWKS could not be read again; keeping the keys it had");
                }
            }
        }
        let jwk = state.0.find(kid)?;
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let algorithms = match jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok())
        {
            Some(alg) => vec![alg],
            None => algorithms(key.family()),
        };
        Some(Key { key, algorithms })
    }
}

/// Whether `room` matches one of the patterns a token grants (globs).
pub fn grants_room(patterns: &[String], room: &str) -> bool {
    patterns.iter().any(|p| volna_hub::glob_matches(p, room))
}
