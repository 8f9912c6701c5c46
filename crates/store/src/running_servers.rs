//! The servers running on a database, each registered by itself in the store's database while it
//! runs (`running_servers`, migration 0102), so that maintenance which must not run beside a
//! server can refuse and name the server that holds the database. A server renews its row's
//! expiry while it runs and deletes the row when it stops cleanly; a crashed server's row expires
//! and is ignored from then on, so a crash never blocks maintenance for long.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{PostgresEventStore, SqliteEventStore, StoreError};

/// One running server, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    /// Unique per process run.
    pub server_id: String,
    pub host: String,
    pub pid: u32,
    /// Where it serves gRPC.
    pub address: String,
    /// `all`, `api` or `notifier`.
    pub role: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// After this, without a heartbeat, the server is taken to have gone.
    pub expires_at: DateTime<Utc>,
}

/// The registry of running servers in the store's database.
#[async_trait]
pub trait ServerRegistry: Send + Sync + 'static {
    /// Registers `server` (or registers it again: the row is replaced).
    async fn register(&self, server: &RunningServer) -> Result<(), StoreError>;

    /// Renews `server_id`'s row; a row removed meanwhile (by an operator) is registered again by
    /// the caller's next [`register`](Self::register), not here.
    async fn heartbeat(
        &self,
        server_id: &str,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Removes `server_id`'s row: the server has stopped.
    async fn deregister(&self, server_id: &str) -> Result<(), StoreError>;

    /// The servers whose rows have not expired at `now`, oldest first.
    async fn running(&self, now: DateTime<Utc>) -> Result<Vec<RunningServer>, StoreError>;
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt {
        position: 0,
        reason: format!("running_servers holds a time out of range: {micros}"),
    })
}

/// The statements, in the placeholder style of each backend.
struct Statements {
    register: &'static str,
    heartbeat: &'static str,
    deregister: &'static str,
    running: &'static str,
}

const SQLITE: Statements = Statements {
    register: "INSERT OR REPLACE INTO running_servers (server_id, host, pid, address, role, \
               started_at_micros, heartbeat_at_micros, expires_at_micros) \
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    heartbeat: "UPDATE running_servers SET heartbeat_at_micros = ?, expires_at_micros = ? \
                WHERE server_id = ?",
    deregister: "DELETE FROM running_servers WHERE server_id = ?",
    running: "SELECT server_id, host, pid, address, role, started_at_micros, \
              heartbeat_at_micros, expires_at_micros FROM running_servers \
              WHERE expires_at_micros > ? ORDER BY started_at_micros, server_id",
};

const POSTGRES: Statements = Statements {
    register: "INSERT INTO running_servers (server_id, host, pid, address, role, \
               started_at_micros, heartbeat_at_micros, expires_at_micros) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
               ON CONFLICT (server_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, \
               address = EXCLUDED.address, role = EXCLUDED.role, \
               started_at_micros = EXCLUDED.started_at_micros, \
               heartbeat_at_micros = EXCLUDED.heartbeat_at_micros, \
               expires_at_micros = EXCLUDED.expires_at_micros",
    heartbeat: "UPDATE running_servers SET heartbeat_at_micros = $1, expires_at_micros = $2 \
                WHERE server_id = $3",
    deregister: "DELETE FROM running_servers WHERE server_id = $1",
    running: "SELECT server_id, host, pid, address, role, started_at_micros, \
              heartbeat_at_micros, expires_at_micros FROM running_servers \
              WHERE expires_at_micros > $1 ORDER BY started_at_micros, server_id",
};

/// Implements [`ServerRegistry`] for a store whose pool is `$pool` and whose writes hold
/// `$gate` (SQLite's writer lock, so a registry write queues behind a batch rather than polling
/// for the file's lock; nothing on PostgreSQL).
macro_rules! impl_server_registry {
    ($store:ty, $statements:expr, $database:ty, |$this:ident| $gate:expr) => {
        #[async_trait]
        impl ServerRegistry for $store {
            async fn register(&self, server: &RunningServer) -> Result<(), StoreError> {
                let $this = self;
                let _gate = $gate;
                sqlx::query::<$database>($statements.register)
                    .bind(&server.server_id)
                    .bind(&server.host)
                    .bind(i64::from(server.pid))
                    .bind(&server.address)
                    .bind(&server.role)
                    .bind(micros(server.started_at))
                    .bind(micros(server.heartbeat_at))
                    .bind(micros(server.expires_at))
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn heartbeat(
                &self,
                server_id: &str,
                at: DateTime<Utc>,
                expires_at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let $this = self;
                let _gate = $gate;
                let done = sqlx::query::<$database>($statements.heartbeat)
                    .bind(micros(at))
                    .bind(micros(expires_at))
                    .bind(server_id)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn deregister(&self, server_id: &str) -> Result<(), StoreError> {
                let $this = self;
                let _gate = $gate;
                sqlx::query::<$database>($statements.deregister)
                    .bind(server_id)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn running(&self, now: DateTime<Utc>) -> Result<Vec<RunningServer>, StoreError> {
                let rows = sqlx::query::<$database>($statements.running)
                    .bind(micros(now))
                    .fetch_all(self.pool())
                    .await?;
                rows.iter()
                    .map(|row| {
                        let pid: i64 = row.try_get("pid")?;
                        Ok(RunningServer {
                            server_id: row.try_get("server_id")?,
                            host: row.try_get("host")?,
                            pid: u32::try_from(pid).unwrap_or(0),
                            address: row.try_get("address")?,
                            role: row.try_get("role")?,
                            started_at: from_micros(row.try_get("started_at_micros")?)?,
                            heartbeat_at: from_micros(row.try_get("heartbeat_at_micros")?)?,
                            expires_at: from_micros(row.try_get("expires_at_micros")?)?,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl_server_registry!(SqliteEventStore, SQLITE, sqlx::Sqlite, |store| store
    .exclusive_write()
    .await);
impl_server_registry!(PostgresEventStore, POSTGRES, sqlx::Postgres, |_store| ());
