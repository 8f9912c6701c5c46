//! The resident key store: one wrapped data key per resident reference, with the master key
//! generation that wraps it, in the event store's own database (tables from the store's
//! migrations `0100_resident_keys` and `0101_master_key_generations`). Written with sqlx's
//! runtime API; the SQL is the same for both backends.
//!
//! On SQLite a destroyed key leaves no byte behind in the live files: the store's connections
//! zero what a transaction deletes (`secure_delete`), and [`KeyDatabase::forget`] checkpoints
//! the WAL into the database file and truncates it before it returns. PostgreSQL keeps dead row
//! versions until vacuum and its WAL in archives; there, and for every backup, erasure is
//! complete once the master key generation that wrapped the key has been rotated away.

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

const SELECT_KEY: &str = "SELECT wrapped_key, master_generation FROM resident_keys \
                          WHERE resident_reference = $1";
const SELECT_GENERATIONS: &str =
    "SELECT DISTINCT master_generation FROM resident_keys ORDER BY master_generation";
const SELECT_TO_REWRAP: &str = "SELECT resident_reference, wrapped_key, master_generation \
                                FROM resident_keys WHERE master_generation <> $1";
const SELECT_TO_REWRAP_FOR_UPDATE: &str = "SELECT resident_reference, wrapped_key, \
                                           master_generation FROM resident_keys \
                                           WHERE master_generation <> $1 FOR UPDATE";
const UPDATE_KEY: &str = "UPDATE resident_keys SET wrapped_key = $1, master_generation = $2 \
                          WHERE resident_reference = $3";
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

/// A resident's data key as stored: wrapped (base64) by a master key generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub wrapped: String,
    pub generation: u32,
}

/// A stored key to re-wrap: its resident, and the key as stored.
#[derive(Debug, Clone)]
pub struct KeyToRewrap {
    pub reference: String,
    pub key: WrappedKey,
}

/// Why a rotation's re-wrap stopped (nothing of it was committed).
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error("the resident key store failed")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Lease(#[from] super::lease::LeaseError),
    #[error(
        "the resident key of {reference} does not open with master key generation {generation}"
    )]
    Unopenable { reference: String, generation: u32 },
    #[error("cannot wrap a resident key")]
    Seal(#[from] super::crypto::SealError),
}

fn generation_from(value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| {
        sqlx::Error::Decode(format!("master key generation {value} is out of range").into())
    })
}

fn wrapped_from<R: Row>(row: &R) -> Result<WrappedKey, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(WrappedKey {
        wrapped: row.try_get("wrapped_key")?,
        generation: generation_from(row.try_get("master_generation")?)?,
    })
}

impl KeyDatabase {
    /// The wrapped key of a resident, if they have one.
    pub async fn wrapped_key(&self, reference: &str) -> Result<Option<WrappedKey>, sqlx::Error> {
        match self {
            Self::Sqlite(store) => sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(store.pool())
                .await?
                .as_ref()
                .map(wrapped_from)
                .transpose(),
            Self::Postgres(pool) => sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(wrapped_from)
                .transpose(),
        }
    }

    /// The master key generations that wrap at least one stored key.
    pub async fn generations_in_use(&self) -> Result<Vec<u32>, sqlx::Error> {
        let generations: Vec<i64> = match self {
            Self::Sqlite(store) => {
                sqlx::query_scalar(SELECT_GENERATIONS)
                    .fetch_all(store.pool())
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar(SELECT_GENERATIONS)
                    .fetch_all(pool)
                    .await?
            }
        };
        generations.into_iter().map(generation_from).collect()
    }

    /// Re-wraps every stored key not wrapped by `target` with `rewrap`, and records `target` as
    /// its generation, in one transaction: either every key moves or none does. Returns how many
    /// moved. On PostgreSQL the transaction first takes the servers' lease exclusively (see
    /// [`super::lease`]), so it refuses while a server runs; on SQLite the caller holds the
    /// lease file. Afterwards the SQLite WAL is checkpointed and truncated, so the earlier
    /// wrappings are left neither there nor (with `secure_delete`) in the database file.
    pub async fn rewrap_all(
        &self,
        target: u32,
        rewrap: impl Fn(&KeyToRewrap) -> Result<String, RewrapError>,
    ) -> Result<u64, RewrapError> {
        match self {
            Self::Sqlite(store) => {
                let moved = {
                    let _writing = store.exclusive_write().await;
                    let mut transaction = store.pool().begin().await?;
                    let keys = sqlx::query(SELECT_TO_REWRAP)
                        .bind(i64::from(target))
                        .fetch_all(&mut *transaction)
                        .await?
                        .iter()
                        .map(key_to_rewrap)
                        .collect::<Result<Vec<_>, _>>()?;
                    let updates = rewrapped(&keys, rewrap)?;
                    for (reference, wrapped) in &updates {
                        sqlx::query(UPDATE_KEY)
                            .bind(wrapped)
                            .bind(i64::from(target))
                            .bind(reference)
                            .execute(&mut *transaction)
                            .await?;
                    }
                    transaction.commit().await?;
                    updates.len() as u64
                };
                truncate_wal(store).await?;
                Ok(moved)
            }
            Self::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                super::lease::postgres_exclusive(&mut transaction).await?;
                // Locked, so that nothing (a server started meanwhile is refused anyway) changes
                // a row between its read and its update.
                let keys = sqlx::query(SELECT_TO_REWRAP_FOR_UPDATE)
                    .bind(i64::from(target))
                    .fetch_all(&mut *transaction)
                    .await?
                    .iter()
                    .map(key_to_rewrap)
                    .collect::<Result<Vec<_>, _>>()?;
                let updates = rewrapped(&keys, rewrap)?;
                for (reference, wrapped) in &updates {
                    sqlx::query(UPDATE_KEY)
                        .bind(wrapped)
                        .bind(i64::from(target))
                        .bind(reference)
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                Ok(updates.len() as u64)
            }
        }
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
    /// Every key given is wrapped by master key `generation`.
    pub async fn insert_keys(
        &self,
        rows: &[(String, String)],
        generation: u32,
    ) -> Result<Vec<String>, sqlx::Error> {
        let now = Utc::now().to_rfc3339();
        fn statement<DB: sqlx::Database>(
            rows: &[(String, String)],
            generation: u32,
            now: &str,
        ) -> sqlx::QueryBuilder<DB>
        where
            for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
            for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        {
            let mut builder = sqlx::QueryBuilder::new(
                "INSERT INTO resident_keys \
                 (resident_reference, wrapped_key, created_at, master_generation) ",
            );
            builder.push_values(rows, |mut row, (reference, wrapped)| {
                row.push_bind(reference.clone())
                    .push_bind(wrapped.clone())
                    .push_bind(now.to_owned())
                    .push_bind(i64::from(generation));
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
                let inserted = statement::<sqlx::Sqlite>(rows, generation, &now)
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
                let inserted = statement::<sqlx::Postgres>(rows, generation, &now)
                    .build_query_scalar()
                    .fetch_all(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(inserted)
            }
        }
    }

    /// Destroys the resident's key and records that they were forgotten, in one transaction.
    /// Returns whether a key existed. On SQLite it returns once the WAL has been checkpointed
    /// and truncated, so the key is in no live file (a retry after a failure here does it again).
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
                drop(_writing);
                truncate_wal(store).await?;
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

/// Checkpoints the SQLite WAL into the database file and truncates it, or fails.
async fn truncate_wal(store: &SqliteEventStore) -> Result<(), sqlx::Error> {
    let truncated = store
        .checkpoint_and_truncate_wal()
        .await
        .map_err(|error| match error {
            doorstep_store::StoreError::Database(error) => error,
            other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
        })?;
    if truncated {
        Ok(())
    } else {
        Err(sqlx::Error::Io(std::io::Error::other(
            "readers kept the write-ahead log from being checkpointed and truncated",
        )))
    }
}

/// The new wrapping of each key, computed before anything is written.
fn rewrapped(
    keys: &[KeyToRewrap],
    rewrap: impl Fn(&KeyToRewrap) -> Result<String, RewrapError>,
) -> Result<Vec<(String, String)>, RewrapError> {
    keys.iter()
        .map(|key| Ok((key.reference.clone(), rewrap(key)?)))
        .collect()
}

fn key_to_rewrap<R: Row>(row: &R) -> Result<KeyToRewrap, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(KeyToRewrap {
        reference: row.try_get("resident_reference")?,
        key: wrapped_from(row)?,
    })
}
