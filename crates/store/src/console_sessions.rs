//! The web console's sessions and OpenID Connect sign-ins under way, in the event store's own
//! database (migration `0103_console_sessions`), so that every replica on one PostgreSQL
//! database honours a session any of them started. The store keeps what it is given: session
//! ids arrive hashed, and deciding expiry is the caller's (it has the clock).
//!
//! On SQLite every write holds [`SqliteEventStore::exclusive_write`] for its statement, so it
//! queues behind the event writer's batch rather than polling for the file's write lock.

use async_trait::async_trait;
use sqlx::Row;

use crate::{PostgresEventStore, SqliteEventStore};

/// A signed-in console user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The SHA-256 (hex) of the id in the browser's cookie.
    pub id_hash: String,
    pub subject: String,
    /// The person's name, for the page header.
    pub display_name: String,
    pub roles: Vec<String>,
    pub contractor_id: Option<String>,
    pub csrf_token: String,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// An OpenID Connect sign-in between the redirect and the provider's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    /// The SHA-256 (hex) of the `state` sent to the provider.
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Why the session store failed.
#[derive(Debug, thiserror::Error)]
#[error("the console session store failed")]
pub struct ConsoleSessionError(#[from] sqlx::Error);

/// Where console sessions are kept: the event store's database, whichever backend it is.
#[async_trait]
pub trait ConsoleSessionStore: Send + Sync + 'static {
    async fn insert_session(&self, session: &StoredSession) -> Result<(), ConsoleSessionError>;
    async fn session(&self, id_hash: &str) -> Result<Option<StoredSession>, ConsoleSessionError>;
    /// Records a use of the session at `last_seen_at`.
    async fn touch_session(
        &self,
        id_hash: &str,
        last_seen_at: i64,
    ) -> Result<(), ConsoleSessionError>;
    /// Ends a session; returns whether there was one.
    async fn delete_session(&self, id_hash: &str) -> Result<bool, ConsoleSessionError>;
    /// Deletes sessions last used before `idle_before` or started before `created_before`, and
    /// sign-ins started before `created_before`; returns how many sessions went.
    async fn delete_expired_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, ConsoleSessionError>;
    async fn insert_sign_in(&self, sign_in: &PendingSignIn) -> Result<(), ConsoleSessionError>;
    /// Removes and returns the sign-in with this state: each is used once.
    async fn take_sign_in(
        &self,
        state_hash: &str,
    ) -> Result<Option<PendingSignIn>, ConsoleSessionError>;
}

const INSERT_SESSION: &str = "INSERT INTO console_sessions \
     (id_hash, subject, display_name, roles, contractor_id, csrf_token, created_at, \
     last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const SELECT_SESSION: &str = "SELECT id_hash, subject, display_name, roles, contractor_id, csrf_token, \
     created_at, last_seen_at FROM console_sessions WHERE id_hash = $1";
const TOUCH_SESSION: &str = "UPDATE console_sessions SET last_seen_at = $2 \
     WHERE id_hash = $1 AND last_seen_at < $2";
const DELETE_SESSION: &str = "DELETE FROM console_sessions WHERE id_hash = $1";
const DELETE_EXPIRED_SESSIONS: &str =
    "DELETE FROM console_sessions WHERE last_seen_at < $1 OR created_at < $2";
const DELETE_EXPIRED_SIGN_INS: &str = "DELETE FROM console_sign_ins WHERE created_at < $1";
const INSERT_SIGN_IN: &str = "INSERT INTO console_sign_ins \
     (state_hash, nonce, pkce_verifier, created_at) VALUES ($1, $2, $3, $4)";
const TAKE_SIGN_IN: &str = "DELETE FROM console_sign_ins WHERE state_hash = $1 \
     RETURNING state_hash, nonce, pkce_verifier, created_at";

fn session_from<R>(row: &R) -> Result<StoredSession, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> Option<String>: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let roles: String = row.try_get("roles")?;
    Ok(StoredSession {
        id_hash: row.try_get("id_hash")?,
        subject: row.try_get("subject")?,
        display_name: row.try_get("display_name")?,
        roles: roles
            .split(',')
            .filter(|role| !role.is_empty())
            .map(str::to_owned)
            .collect(),
        contractor_id: row.try_get("contractor_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

fn sign_in_from<R>(row: &R) -> Result<PendingSignIn, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(PendingSignIn {
        state_hash: row.try_get("state_hash")?,
        nonce: row.try_get("nonce")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The same statements on either backend; `$write_guard` is what a write holds meanwhile.
macro_rules! impl_console_session_store {
    ($store:ty, |$this:ident| $write_guard:expr) => {
        #[async_trait]
        impl ConsoleSessionStore for $store {
            async fn insert_session(
                &self,
                session: &StoredSession,
            ) -> Result<(), ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                sqlx::query(INSERT_SESSION)
                    .bind(&session.id_hash)
                    .bind(&session.subject)
                    .bind(&session.display_name)
                    .bind(session.roles.join(","))
                    .bind(&session.contractor_id)
                    .bind(&session.csrf_token)
                    .bind(session.created_at)
                    .bind(session.last_seen_at)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn session(
                &self,
                id_hash: &str,
            ) -> Result<Option<StoredSession>, ConsoleSessionError> {
                let row = sqlx::query(SELECT_SESSION)
                    .bind(id_hash)
                    .fetch_optional(self.pool())
                    .await?;
                Ok(row.as_ref().map(session_from).transpose()?)
            }

            async fn touch_session(
                &self,
                id_hash: &str,
                last_seen_at: i64,
            ) -> Result<(), ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                sqlx::query(TOUCH_SESSION)
                    .bind(id_hash)
                    .bind(last_seen_at)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, id_hash: &str) -> Result<bool, ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                let done = sqlx::query(DELETE_SESSION)
                    .bind(id_hash)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_expired_sessions(
                &self,
                idle_before: i64,
                created_before: i64,
            ) -> Result<u64, ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                let done = sqlx::query(DELETE_EXPIRED_SESSIONS)
                    .bind(idle_before)
                    .bind(created_before)
                    .execute(self.pool())
                    .await?;
                sqlx::query(DELETE_EXPIRED_SIGN_INS)
                    .bind(created_before)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_sign_in(
                &self,
                sign_in: &PendingSignIn,
            ) -> Result<(), ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                sqlx::query(INSERT_SIGN_IN)
                    .bind(&sign_in.state_hash)
                    .bind(&sign_in.nonce)
                    .bind(&sign_in.pkce_verifier)
                    .bind(sign_in.created_at)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn take_sign_in(
                &self,
                state_hash: &str,
            ) -> Result<Option<PendingSignIn>, ConsoleSessionError> {
                let $this = self;
                let _writing = $write_guard;
                let row = sqlx::query(TAKE_SIGN_IN)
                    .bind(state_hash)
                    .fetch_optional(self.pool())
                    .await?;
                Ok(row.as_ref().map(sign_in_from).transpose()?)
            }
        }
    };
}

impl_console_session_store!(SqliteEventStore, |store| store.exclusive_write().await);
impl_console_session_store!(PostgresEventStore, |store| {
    let _ = store;
});
