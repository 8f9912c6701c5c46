//! The resident key store: one wrapped data key per resident reference, in the event store's own
//! database (tables from the store's migration `0100_resident_keys`). Written with sqlx's
//! runtime API; the SQL is the same for both backends.

use chrono::Utc;
use doorstep_store::SqliteEventStore;
use sqlx::Row;

/// The event store's database. On SQLite the store itself is kept, so that writes can wait for
/// its writer in a queue ([`SqliteEventStore::exclusive_write`]) rather than poll for the file's
/// write lock.
#[derive(Clone)]
pub enum KeyDatabase {
    Sqlite(SqliteEventStore),
    Postgres(sqlx::PgPool),
}

const SELECT_KEY: &str = "SELECT wrapped_key FROM resident_keys WHERE resident_reference = $1";
const DELETE_KEY: &str = "DELETE FROM resident_keys WHERE resident_reference = $1";
const INSERT_FORGOTTEN: &str = "INSERT INTO forgotten_residents (resident_reference, forgotten_at) \
                                VALUES ($1, $2) ON CONFLICT (resident_reference) DO NOTHING";
const SELECT_FORGOTTEN: &str =
    "SELECT 1 AS forgotten FROM forgotten_residents WHERE resident_reference = $1";
const COUNT_KEYS: &str = "SELECT COUNT(*) AS keys FROM resident_keys";
/// See [`KeyDatabase::insert_keys`]: new keys commit without waiting for the disk.
const SQLITE_COMMIT_WITHOUT_FLUSH: &str = "PRAGMA synchronous = NORMAL";
const SQLITE_COMMIT_WITH_FLUSH: &str = "PRAGMA synchronous = FULL";
const POSTGRES_BEGIN_WITHOUT_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = off";

impl KeyDatabase {
    /// The wrapped key of a resident, if they have one.
    pub async fn wrapped_key(&self, reference: &str) -> Result<Option<String>, sqlx::Error> {
        let row = match self {
            Self::Sqlite(store) => sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(store.pool())
                .await?
                .map(|row| row.try_get::<String, _>("wrapped_key")),
            Self::Postgres(pool) => sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(pool)
                .await?
                .map(|row| row.try_get::<String, _>("wrapped_key")),
        };
        row.transpose()
    }

    /// Stores each `(reference, wrapped key)` unless the resident already has a key, in one
    /// statement (so one commit), and returns the references whose row this call inserted. Of
    /// two rows for one reference the first is the one stored.
    ///
    /// The commit does not wait for the disk. A key matters only once an event sealed with it is
    /// stored, and that event's commit does wait: the database's log is written in order, so
    /// flushing the event's commit flushes the key's, which came before it. A key lost in a power
    /// cut before then belonged to no acknowledged complaint. (On SQLite the connection commits
    /// with `synchronous = NORMAL`, in WAL mode; on PostgreSQL the transaction sets
    /// `synchronous_commit = off`.) This spares intake one flush per group of new residents.
    pub async fn insert_keys(&self, rows: &[(String, String)]) -> Result<Vec<String>, sqlx::Error> {
        let now = Utc::now().to_rfc3339();
        fn statement<DB: sqlx::Database>(
            rows: &[(String, String)],
            now: &str,
        ) -> sqlx::QueryBuilder<DB>
        where
            for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        {
            let mut builder = sqlx::QueryBuilder::new(
                "INSERT INTO resident_keys (resident_reference, wrapped_key, created_at) ",
            );
            builder.push_values(rows, |mut row, (reference, wrapped)| {
                row.push_bind(reference.clone())
                    .push_bind(wrapped.clone())
                    .push_bind(now.to_owned());
            });
            builder
                .push(" ON CONFLICT (resident_reference) DO NOTHING RETURNING resident_reference");
            builder
        }
        match self {
            Self::Sqlite(store) => {
                let _writing = store.exclusive_write().await;
                let mut connection = store.pool().acquire().await?;
                sqlx::raw_sql(SQLITE_COMMIT_WITHOUT_FLUSH)
                    .execute(&mut *connection)
                    .await?;
                let inserted = statement::<sqlx::Sqlite>(rows, &now)
                    .build_query_scalar()
                    .fetch_all(&mut *connection)
                    .await;
                // The pool's other users expect every commit to wait for the disk.
                if sqlx::raw_sql(SQLITE_COMMIT_WITH_FLUSH)
                    .execute(&mut *connection)
                    .await
                    .is_err()
                {
                    connection.close_on_drop();
                }
                inserted
            }
            Self::Postgres(pool) => {
                // One round trip opens the transaction and sets it to commit without a flush.
                let mut transaction = pool.begin_with(POSTGRES_BEGIN_WITHOUT_FLUSH).await?;
                let inserted = statement::<sqlx::Postgres>(rows, &now)
                    .build_query_scalar()
                    .fetch_all(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(inserted)
            }
        }
    }

    /// Destroys the resident's key and records that they were forgotten, in one transaction.
    /// Returns whether a key existed.
    pub async fn forget(&self, reference: &str) -> Result<bool, sqlx::Error> {
        let now = Utc::now().to_rfc3339();
        let deleted = match self {
            Self::Sqlite(store) => {
                let _writing = store.exclusive_write().await;
                let mut transaction = store.pool().begin().await?;
                let deleted = sqlx::query(DELETE_KEY)
                    .bind(reference)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                sqlx::query(INSERT_FORGOTTEN)
                    .bind(reference)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                deleted
            }
            Self::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                let deleted = sqlx::query(DELETE_KEY)
                    .bind(reference)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                sqlx::query(INSERT_FORGOTTEN)
                    .bind(reference)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                deleted
            }
        };
        Ok(deleted > 0)
    }

    /// Whether the resident was forgotten (for complaints logged before sealing).
    pub async fn is_forgotten(&self, reference: &str) -> Result<bool, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(store) => sqlx::query(SELECT_FORGOTTEN)
                .bind(reference)
                .fetch_optional(store.pool())
                .await?
                .is_some(),
            Self::Postgres(pool) => sqlx::query(SELECT_FORGOTTEN)
                .bind(reference)
                .fetch_optional(pool)
                .await?
                .is_some(),
        })
    }

    /// How many resident keys are stored: a master key may be generated only while none is.
    pub async fn key_count(&self) -> Result<i64, sqlx::Error> {
        match self {
            Self::Sqlite(store) => sqlx::query(COUNT_KEYS)
                .fetch_one(store.pool())
                .await?
                .try_get("keys"),
            Self::Postgres(pool) => sqlx::query(COUNT_KEYS)
                .fetch_one(pool)
                .await?
                .try_get("keys"),
        }
    }
}
