//! The resident key statements. The SQL is the same on both backends; the functions are written
//! once and instantiated per backend (sqlx's executors are typed by their database), and each
//! backend wraps them in its own transactions and locks.

/// See [`super::ResidentKeyStore::insert_keys`]: new keys commit without waiting for the disk.
pub(crate) const SQLITE_COMMIT_WITHOUT_FLUSH: &str = "PRAGMA synchronous = NORMAL";
pub(crate) const SQLITE_COMMIT_WITH_FLUSH: &str = "PRAGMA synchronous = FULL";
pub(crate) const POSTGRES_BEGIN_WITHOUT_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = off";

const SELECT_KEY: &str = "SELECT wrapped_key, master_generation FROM resident_keys \
                          WHERE resident_reference = $1";
const SELECT_GENERATIONS: &str =
    "SELECT DISTINCT master_generation FROM resident_keys ORDER BY master_generation";
const SELECT_TO_REWRAP: &str = "SELECT resident_reference, wrapped_key, master_generation \
                                FROM resident_keys WHERE master_generation <> $1";
/// Locked, so that nothing changes a row between its read and its update.
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
const INSERT_KEYS: &str = "INSERT INTO resident_keys \
                           (resident_reference, wrapped_key, created_at, master_generation) ";
const INSERT_KEYS_END: &str =
    " ON CONFLICT (resident_reference) DO NOTHING RETURNING resident_reference";

use super::ResidentKeyError;

/// A stored generation, refused when it is out of range rather than read as another.
fn generation_from(value: i64) -> Result<u32, ResidentKeyError> {
    u32::try_from(value).map_err(|_| {
        ResidentKeyError::Corrupt(format!("master key generation {value} is out of range"))
    })
}

fn count_from(value: i64) -> Result<u64, ResidentKeyError> {
    u64::try_from(value)
        .map_err(|_| ResidentKeyError::Corrupt(format!("a count of {value} keys is negative")))
}

macro_rules! resident_key_queries {
    ($database:ty) => {
        use sqlx::Row as _;

        use super::{
            COUNT_KEYS, DELETE_KEY, INSERT_FORGOTTEN, INSERT_KEYS, INSERT_KEYS_END,
            SELECT_FORGOTTEN, SELECT_GENERATIONS, SELECT_KEY, SELECT_TO_REWRAP,
            SELECT_TO_REWRAP_FOR_UPDATE, UPDATE_KEY, count_from, generation_from,
        };
        use crate::resident_keys::{KeyToRewrap, ResidentKeyError, WrappedKey};

        type DatabaseRow = <$database as sqlx::Database>::Row;

        fn wrapped_from(row: &DatabaseRow) -> Result<WrappedKey, ResidentKeyError> {
            Ok(WrappedKey {
                wrapped: row.try_get("wrapped_key")?,
                generation: generation_from(row.try_get("master_generation")?)?,
            })
        }

        fn key_to_rewrap(row: &DatabaseRow) -> Result<KeyToRewrap, ResidentKeyError> {
            Ok(KeyToRewrap {
                reference: row.try_get("resident_reference")?,
                key: wrapped_from(row)?,
            })
        }

        pub(crate) async fn wrapped_key<'e>(
            executor: impl sqlx::Executor<'e, Database = $database>,
            reference: &str,
        ) -> Result<Option<WrappedKey>, ResidentKeyError> {
            sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(executor)
                .await?
                .as_ref()
                .map(wrapped_from)
                .transpose()
        }

        pub(crate) async fn generations_in_use<'e>(
            executor: impl sqlx::Executor<'e, Database = $database>,
        ) -> Result<Vec<u32>, ResidentKeyError> {
            let generations: Vec<i64> = sqlx::query_scalar(SELECT_GENERATIONS)
                .fetch_all(executor)
                .await?;
            generations.into_iter().map(generation_from).collect()
        }

        pub(crate) async fn key_count<'e>(
            executor: impl sqlx::Executor<'e, Database = $database>,
        ) -> Result<u64, ResidentKeyError> {
            let count: i64 = sqlx::query(COUNT_KEYS)
                .fetch_one(executor)
                .await?
                .try_get("keys")?;
            count_from(count)
        }

        pub(crate) async fn is_forgotten<'e>(
            executor: impl sqlx::Executor<'e, Database = $database>,
            reference: &str,
        ) -> Result<bool, ResidentKeyError> {
            Ok(sqlx::query(SELECT_FORGOTTEN)
                .bind(reference)
                .fetch_optional(executor)
                .await?
                .is_some())
        }

        /// The one statement of [`ResidentKeyStore::insert_keys`](crate::ResidentKeyStore).
        pub(crate) async fn insert_keys(
            connection: &mut <$database as sqlx::Database>::Connection,
            rows: &[(String, String)],
            generation: u32,
        ) -> Result<Vec<String>, ResidentKeyError> {
            let now = chrono::Utc::now().to_rfc3339();
            let mut builder = sqlx::QueryBuilder::<$database>::new(INSERT_KEYS);
            builder.push_values(rows, |mut row, (reference, wrapped)| {
                row.push_bind(reference.clone())
                    .push_bind(wrapped.clone())
                    .push_bind(now.clone())
                    .push_bind(i64::from(generation));
            });
            builder.push(INSERT_KEYS_END);
            Ok(builder
                .build_query_scalar()
                .fetch_all(&mut *connection)
                .await?)
        }

        /// Deletes the key and records the resident as forgotten; returns whether a key existed.
        pub(crate) async fn delete_and_record(
            connection: &mut <$database as sqlx::Database>::Connection,
            reference: &str,
        ) -> Result<bool, ResidentKeyError> {
            let deleted = sqlx::query(DELETE_KEY)
                .bind(reference)
                .execute(&mut *connection)
                .await?
                .rows_affected();
            sqlx::query(INSERT_FORGOTTEN)
                .bind(reference)
                .bind(chrono::Utc::now().to_rfc3339())
                .execute(&mut *connection)
                .await?;
            Ok(deleted > 0)
        }

        /// The keys a rotation to `target` moves, locked for update where the backend can.
        pub(crate) async fn keys_to_rewrap(
            connection: &mut <$database as sqlx::Database>::Connection,
            target: u32,
            for_update: bool,
        ) -> Result<Vec<KeyToRewrap>, ResidentKeyError> {
            let statement = if for_update {
                SELECT_TO_REWRAP_FOR_UPDATE
            } else {
                SELECT_TO_REWRAP
            };
            sqlx::query(statement)
                .bind(i64::from(target))
                .fetch_all(&mut *connection)
                .await?
                .iter()
                .map(key_to_rewrap)
                .collect()
        }

        /// Stores each `(reference, new wrapping)` as wrapped by `target`.
        pub(crate) async fn update_keys(
            connection: &mut <$database as sqlx::Database>::Connection,
            updates: &[(String, String)],
            target: u32,
        ) -> Result<(), ResidentKeyError> {
            for (reference, wrapped) in updates {
                sqlx::query(UPDATE_KEY)
                    .bind(wrapped)
                    .bind(i64::from(target))
                    .bind(reference)
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(())
        }
    };
}

pub(crate) mod sqlite {
    resident_key_queries!(sqlx::Sqlite);
}

pub(crate) mod postgres {
    resident_key_queries!(sqlx::Postgres);
}
