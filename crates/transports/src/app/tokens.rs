//! JWT identity: a client presents a token (Socket.IO `auth: {token}`,
//! `/ws?token=…` or op `auth`, TCP `/auth TOKEN`) and the server checks it
//! against its key: an HMAC secret (HS256/384/512), a PEM public key (RSA,
//! EC P-256/P-384 or Ed25519, the algorithms of its family only) or a JWKS
//! document (the key named by the token's `kid`; the file is read again when
//! a `kid` is unknown, at most once a second, so keys can rotate).
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// A JWKS file (keys picked by `kid`).
    pub jwks: Option<PathBuf>,
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

/// A JWKS file and what was last read from it.
struct Jwks {
    path: PathBuf,
    state: Mutex<(JwkSet, Instant)>,
}

/// How often a JWKS file is read again for an unknown `kid`, at most.
const JWKS_REREAD: Duration = Duration::from_secs(1);

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
            Some(path) => Some(Jwks {
                state: Mutex::new((read_jwks(path)?, Instant::now())),
                path: path.clone(),
            }),
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
        if state.0.find(kid).is_none() && state.1.elapsed() >= JWKS_REREAD {
            match read_jwks(&self.path) {
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
