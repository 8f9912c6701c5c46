//! Server-side sessions: the browser holds a random id in an HttpOnly, `SameSite=Strict`
//! cookie; the store holds its SHA-256 with the principal and the session's CSRF token. A
//! session ends when unused for `idle_minutes`, `absolute_hours` after sign-in, or at sign-out.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use doorstep_store::{ConsoleSessionStore, StoredSession};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::clock::Clock;
use crate::settings::ConsoleSettings;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "doorstep_session";
/// The cookie that carries the sign-in form's token until there is a session.
pub const SIGN_IN_COOKIE: &str = "doorstep_sign_in";

/// A use of a session is written back at most this often: the idle expiry counts in minutes,
/// and a write per page view would be a write to the store's database per page view.
const TOUCH_EVERY_SECONDS: i64 = 60;

/// A signed-in user, for one request.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The person's name (from the identity provider) or the API key's name.
    pub display_name: String,
    pub csrf_token: String,
    id_hash: String,
}

impl Session {
    /// Whether a submitted form's token is this session's.
    pub fn accepts(&self, submitted: Option<&str>) -> bool {
        submitted.is_some_and(|token| same_secret(token, &self.csrf_token))
    }
}

/// Why the session store could not answer.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SessionError(#[from] doorstep_store::ConsoleSessionError);

/// Starts, finds and ends sessions.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn ConsoleSessionStore>,
    clock: Arc<dyn Clock>,
    idle_seconds: i64,
    absolute_seconds: i64,
    secure: bool,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn ConsoleSessionStore>,
        clock: Arc<dyn Clock>,
        settings: &ConsoleSettings,
    ) -> Self {
        Self {
            store,
            clock,
            idle_seconds: i64::from(settings.idle_minutes) * 60,
            absolute_seconds: i64::from(settings.absolute_hours) * 3_600,
            secure: settings.base_url().starts_with("https://"),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Starts a session for `principal`; returns the `Set-Cookie` value that hands it to the
    /// browser.
    pub async fn start(
        &self,
        principal: &Principal,
        display_name: &str,
    ) -> Result<String, SessionError> {
        let id = random_token();
        let now = self.now().timestamp();
        // Expired sessions go when someone signs in, so the table holds only live ones and
        // those not used since the last sign-in.
        self.store
            .delete_expired_sessions(now - self.idle_seconds, now - self.absolute_seconds)
            .await?;
        self.store
            .insert_session(&StoredSession {
                id_hash: digest(&id),
                subject: principal.subject.clone(),
                display_name: display_name.chars().take(200).collect(),
                roles: principal
                    .roles
                    .iter()
                    .map(|role| role.as_str().to_owned())
                    .collect(),
                contractor_id: principal
                    .contractor_scope()
                    .map(|id| id.as_str().to_owned()),
                csrf_token: random_token(),
                created_at: now,
                last_seen_at: now,
            })
            .await?;
        Ok(self.cookie(SESSION_COOKIE, &id, "Strict", self.absolute_seconds))
    }

    /// The live session the request's cookie names, if any; a session found expired is deleted.
    pub async fn find(&self, headers: &HeaderMap) -> Result<Option<Session>, SessionError> {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = digest(id);
        let Some(stored) = self.store.session(&id_hash).await? else {
            return Ok(None);
        };
        let now = self.now().timestamp();
        if now - stored.last_seen_at >= self.idle_seconds
            || now - stored.created_at >= self.absolute_seconds
        {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        }
        // A stored principal that no longer makes one (a role renamed since) is no session.
        let Ok(principal) = Principal::new(
            stored.subject.clone(),
            &stored.roles,
            stored.contractor_id.as_deref(),
        ) else {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        };
        if now - stored.last_seen_at >= TOUCH_EVERY_SECONDS {
            self.store.touch_session(&id_hash, now).await?;
        }
        Ok(Some(Session {
            principal,
            display_name: stored.display_name,
            csrf_token: stored.csrf_token,
            id_hash,
        }))
    }

    /// Ends the session; returns the `Set-Cookie` value that removes the cookie.
    pub async fn end(&self, session: &Session) -> Result<String, SessionError> {
        self.store.delete_session(&session.id_hash).await?;
        Ok(self.removal(SESSION_COOKIE))
    }

    /// A `Set-Cookie` value: HttpOnly always, `Secure` when the console is served over https.
    pub fn cookie(&self, name: &str, value: &str, same_site: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}")
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn removal(&self, name: &str) -> String {
        self.cookie(name, "", "Strict", 0)
    }

    pub fn store(&self) -> &Arc<dyn ConsoleSessionStore> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// 256 random bits from the operating system's generator, as 64 hex digits.
pub fn random_token() -> String {
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // A v4 UUID has 122 random bits; two of them, hashed, make 256 bits of output with 244 of
    // entropy, with no fixed version digits showing.
    let mut hasher = Sha256::new();
    hasher.update(first.as_bytes());
    hasher.update(second.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// The SHA-256 of a secret, in hex: what the store keeps instead of the secret.
pub fn digest(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

pub use crate::auth::same_secret;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; doorstep_session=abc"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        headers.append(
            http::header::COOKIE,
            "b=2".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 64);
    }
}
