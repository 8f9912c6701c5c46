//! The resident key store: one wrapped data key per resident reference, in the event store's own
//! database (tables from the store's migration `0100_resident_keys`). Written with sqlx's
//! runtime API; the SQL is the same for both backends.

use chrono::Utc;
use sqlx::Row;

/// The event store's database.
#[derive(Clone)]
pub enum KeyDatabase {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const SELECT_KEY: &str = "SELECT wrapped_key FROM resident_keys WHERE resident_reference = $1";
const DELETE_KEY: &str = "DELETE FROM resident_keys WHERE resident_reference = $1";
const INSERT_FORGOTTEN: &str = "INSERT INTO forgotten_residents (resident_reference, forgotten_at) \
                                VALUES ($1, $2) ON CONFLICT (resident_reference) DO NOTHING";
const SELECT_FORGOTTEN: &str =
    "SELECT 1 AS forgotten FROM forgotten_residents WHERE resident_reference = $1";
const COUNT_KEYS: &str = "SELECT COUNT(*) AS keys FROM resident_keys";

impl KeyDatabase {
    /// The wrapped key of a resident, if they have one.
    pub async fn wrapped_key(&self, reference: &str) -> Result<Option<String>, sqlx::Error> {
        let row = match self {
            Self::Sqlite(pool) => sqlx::query(SELECT_KEY)
                .bind(reference)
                .fetch_optional(pool)
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
            Self::Sqlite(pool) => {
                statement::<sqlx::Sqlite>(rows, &now)
                    .build_query_scalar()
                    .fetch_all(pool)
                    .await
            }
            Self::Postgres(pool) => {
                statement::<sqlx::Postgres>(rows, &now)
                    .build_query_scalar()
                    .fetch_all(pool)
                    .await
            }
        }
    }

    /// Destroys the resident's key and records that they were forgotten, in one transaction.
    /// Returns whether a key existed.
    pub async fn forget(&self, reference: &str) -> Result<bool, sqlx::Error> {
        let now = Utc::now().to_rfc3339();
        let deleted = match self {
            Self::Sqlite(pool) => {
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
            Self::Sqlite(pool) => sqlx::query(SELECT_FORGOTTEN)
                .bind(reference)
                .fetch_optional(pool)
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
            Self::Sqlite(pool) => sqlx::query(COUNT_KEYS)
                .fetch_one(pool)
                .await?
                .try_get("keys"),
            Self::Postgres(pool) => sqlx::query(COUNT_KEYS)
                .fetch_one(pool)
                .await?
                .try_get("keys"),
        }
    }
}
