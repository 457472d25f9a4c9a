//! Who may open the Admin UI: the CONNECT to `/admin` carries
//! `{username, password}` (checked against the configured name and bcrypt
//! hash, as `@socket.io/admin-ui`'s `auth: {type: "basic"}`) or the
//! `sessionId` a previous successful login was given (the UI reconnects
//! with it). A wrong pair is refused with `invalid credentials`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// The connect error a wrong login gets (the reference's message, which the
/// UI recognizes).
pub const INVALID_CREDENTIALS: &str = "invalid credentials";

/// Sessions kept at most; the oldest half is forgotten beyond (each UI
/// login makes one).
const MAX_SESSIONS: usize = 1024;

/// What the CONNECT to `/admin` may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The user name.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, in clear (over TLS, one hopes).
    #[serde(default)]
    pub password: Option<String>,
    /// A session a previous login was given.
    #[serde(default)]
    pub session_id: Option<String>,
}

impl Login {
    /// Reads the CONNECT's `auth` payload; anything else is an empty login.
    pub fn parse(auth: &str) -> Login {
        serde_json::from_str(auth).unwrap_or_default()
    }
}

/// Whether `hash` is a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, `$2x$` with a
/// cost and 53 characters of salt and digest); checked at start-up.
pub fn valid_hash(hash: &str) -> bool {
    hash.parse::<bcrypt::HashParts>().is_ok()
}

/// Whether `password` matches the bcrypt `hash`. CPU-bound (the hash's
/// cost): run it off the event loop.
pub fn verify(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// The configured login and the sessions given so far.
pub struct Gatekeeper {
    username: String,
    hash: Arc<str>,
    sessions: Mutex<HashSet<String>>,
    refused: AtomicU64,
}

impl Gatekeeper {
    /// A gatekeeper for `username` with password hash `hash`.
    pub fn new(username: String, hash: String) -> Gatekeeper {
        Gatekeeper {
            username,
            hash: Arc::from(hash),
            sessions: Mutex::new(HashSet::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `id` is a session a login was given.
    pub fn knows_session(&self, id: &str) -> bool {
        self.sessions.lock().unwrap().contains(id)
    }

    /// A new session for a successful login.
    pub fn new_session(&self) -> String {
        let id = crate::engineio::random_id();
        let mut sessions = self.sessions.lock().unwrap();
        if sessions.len() >= MAX_SESSIONS {
            // No order is kept: forget any half (those UIs log in again).
            let drop: Vec<String> = sessions.iter().take(MAX_SESSIONS / 2).cloned().collect();
            for d in drop {
                sessions.remove(&d);
            }
        }
        sessions.insert(id.clone());
        id
    }

    /// Checks a login: a known session at once, a name and password with
    /// bcrypt on a blocking thread. Refusals are counted and logged.
    pub async fn check(&self, login: &Login) -> Result<(), &'static str> {
        if login
            .session_id
            .as_deref()
            .is_some_and(|s| self.knows_session(s))
        {
            return Ok(());
        }
        let matches = match (&login.username, &login.password) {
            (Some(user), Some(password)) if *user == self.username => {
                let password = password.clone();
                let hash = self.hash.clone();
                tokio::task::spawn_blocking(move || verify(&password, &hash))
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        if matches {
            return Ok(());
        }
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(refused = n, "admin UI: invalid credentials");
        Err(INVALID_CREDENTIALS)
    }

    /// Logins refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // bcrypt("s3cret", cost 4) with a fixed salt, in bcryptjs's `$2a$` form.
    fn hash() -> String {
        bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA)
    }

    #[test]
    fn bcrypt_hashes_verify() {
        let h = hash();
        assert!(h.starts_with("$2a$04$"));
        assert!(valid_hash(&h));
        assert!(verify("s3cret", &h));
        assert!(!verify("S3cret", &h));
        assert!(!valid_hash("s3cret"));
        assert!(!verify("s3cret", "not a hash"));
        // Made by bcryptjs (the reference's library): hashSync("admin-pass", 4).
        let node = "$2a$04$9qb6WJGqcQfbBoGglP/lUuJlEnRK2DEpJIPKZY3LA2seajLVFsIla";
        assert!(valid_hash(node));
        assert!(verify("admin-pass", node));
        assert!(!verify("admin-pasS", node));
    }

    #[tokio::test]
    async fn logins_and_sessions() {
        let gate = Gatekeeper::new("admin".into(), hash());
        let good = Login::parse(r#"{"username":"admin","password":"s3cret"}"#);
        assert!(gate.check(&good).await.is_ok());
        let wrong = Login::parse(r#"{"username":"admin","password":"nope"}"#);
        assert_eq!(gate.check(&wrong).await, Err(INVALID_CREDENTIALS));
        let other = Login::parse(r#"{"username":"root","password":"s3cret"}"#);
        assert!(gate.check(&other).await.is_err());
        assert!(gate.check(&Login::parse("{}")).await.is_err());
        assert!(gate.check(&Login::parse("not json")).await.is_err());
        assert_eq!(gate.refused(), 4);
        let session = gate.new_session();
        let again = Login::parse(&format!(r#"{{"sessionId":"{session}"}}"#));
        assert!(gate.check(&again).await.is_ok());
        let forged = Login::parse(r#"{"sessionId":"forged"}"#);
        assert!(gate.check(&forged).await.is_err());
    }
}
