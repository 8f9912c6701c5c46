//! The registry of read-model generations (`read_model_generations`, migration 0104) in the
//! store's database: which generation every server serves (`live`), and the one
//! `doorstep projections rebuild --online` is building beside it, with its progress. Generation 0
//! is the read models as they were before generations existed. The rebuild flips `live` in one
//! transaction; every server polls [`GenerationRegistry::live`] and switches to it, recording the
//! generation it serves in its `running_servers` row, so the rebuild can tell when the old
//! generation is no longer read and drop it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{PostgresEventStore, SqliteEventStore, StoreError};

/// What a generation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationState {
    /// Being built by a rebuild beside the live one; no server reads it.
    Building,
    /// The one every server serves.
    Live,
    /// Served once, replaced since: dropped (or about to be).
    Retired,
}

impl GenerationState {
    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "building" => Ok(Self::Building),
            "live" => Ok(Self::Live),
            "retired" => Ok(Self::Retired),
            other => Err(StoreError::Corrupt {
                position: 0,
                reason: format!("read_model_generations holds an unknown state `{other}`"),
            }),
        }
    }
}

/// One generation, as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub generation: u64,
    pub state: GenerationState,
    pub started_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
    /// The log position its read models have reached (reported while building).
    pub position: u64,
    /// The head of the log the build is aiming at.
    pub target: u64,
    /// Events applied per second, lately.
    pub events_per_second: f64,
}

/// The registry of read-model generations in the store's database.
#[async_trait]
pub trait GenerationRegistry: Send + Sync + 'static {
    /// The generation every server should serve.
    async fn live_generation(&self) -> Result<u64, StoreError>;

    /// The generations not retired: the live one and the one being built, if any.
    async fn current_generations(&self) -> Result<Vec<Generation>, StoreError>;

    /// The generation being built, if any; otherwise a new one (one past the highest ever) is
    /// registered as building. The flag says whether it was already there (a resumed build).
    async fn begin_building(&self, now: DateTime<Utc>) -> Result<(Generation, bool), StoreError>;

    /// Reports a building generation's progress; false when it is no longer building.
    async fn report_progress(
        &self,
        generation: u64,
        position: u64,
        target: u64,
        events_per_second: f64,
    ) -> Result<bool, StoreError>;

    /// Makes a building `generation` live and retires the live one, in one transaction. Returns
    /// the generation retired; an error when `generation` is not building.
    async fn switch_live(&self, generation: u64, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Retires a building generation without making it live (a rebuild given up).
    async fn discard_building(&self, generation: u64) -> Result<(), StoreError>;

    /// Records the generation `server_id` serves, in its `running_servers` row.
    async fn set_serving_generation(
        &self,
        server_id: &str,
        generation: u64,
    ) -> Result<(), StoreError>;

    /// The generation each server whose row has not expired at `now` serves, by server id.
    async fn serving_generations(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        position: 0,
        reason,
    }
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| corrupt(format!("read_model_generations holds {what} {value}")))
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        corrupt(format!(
            "read_model_generations holds a time out of range: {micros}"
        ))
    })
}

/// The statements, in the placeholder style of each backend.
struct Statements {
    /// Takes SQLite's write lock up front, so that a transaction that reads before it writes
    /// waits for another writer (the busy timeout) rather than failing when it upgrades.
    begin: &'static str,
    live: &'static str,
    current: &'static str,
    building: &'static str,
    highest: &'static str,
    insert: &'static str,
    progress: &'static str,
    retire_live: &'static str,
    make_live: &'static str,
    discard: &'static str,
    set_serving: &'static str,
    serving: &'static str,
}

const SQLITE: Statements = Statements {
    begin: "BEGIN IMMEDIATE",
    live: "SELECT generation FROM read_model_generations WHERE state = 'live'",
    current: "SELECT generation, state, started_at_micros, switched_at_micros, position, target, \
              events_per_second FROM read_model_generations WHERE state <> 'retired' \
              ORDER BY generation",
    building: "SELECT generation, state, started_at_micros, switched_at_micros, position, \
               target, events_per_second FROM read_model_generations WHERE state = 'building'",
    highest: "SELECT MAX(generation) FROM read_model_generations",
    insert: "INSERT INTO read_model_generations (generation, state, started_at_micros) \
             VALUES (?, 'building', ?)",
    progress: "UPDATE read_model_generations SET position = ?, target = ?, \
               events_per_second = ? WHERE generation = ? AND state = 'building'",
    retire_live: "UPDATE read_model_generations SET state = 'retired' WHERE state = 'live' \
                  RETURNING generation",
    make_live: "UPDATE read_model_generations SET state = 'live', switched_at_micros = ? \
                WHERE generation = ? AND state = 'building'",
    discard: "UPDATE read_model_generations SET state = 'retired' \
              WHERE generation = ? AND state = 'building'",
    set_serving: "UPDATE running_servers SET read_model_generation = ? WHERE server_id = ?",
    serving: "SELECT server_id, read_model_generation FROM running_servers \
              WHERE expires_at_micros > ? ORDER BY server_id",
};

const POSTGRES: Statements = Statements {
    begin: "BEGIN",
    live: SQLITE.live,
    current: SQLITE.current,
    building: "SELECT generation, state, started_at_micros, switched_at_micros, position, \
               target, events_per_second FROM read_model_generations WHERE state = 'building' \
               FOR UPDATE",
    highest: SQLITE.highest,
    insert: "INSERT INTO read_model_generations (generation, state, started_at_micros) \
             VALUES ($1, 'building', $2)",
    progress: "UPDATE read_model_generations SET position = $1, target = $2, \
               events_per_second = $3 WHERE generation = $4 AND state = 'building'",
    retire_live: SQLITE.retire_live,
    make_live: "UPDATE read_model_generations SET state = 'live', switched_at_micros = $1 \
                WHERE generation = $2 AND state = 'building'",
    discard: "UPDATE read_model_generations SET state = 'retired' \
              WHERE generation = $1 AND state = 'building'",
    set_serving: "UPDATE running_servers SET read_model_generation = $1 WHERE server_id = $2",
    serving: "SELECT server_id, read_model_generation FROM running_servers \
              WHERE expires_at_micros > $1 ORDER BY server_id",
};

/// Implements [`GenerationRegistry`] for a store whose pool is `$pool` and whose writes hold
/// `$gate` (SQLite's writer lock; nothing on PostgreSQL), as `running_servers` does.
macro_rules! impl_generation_registry {
    ($store:ty, $statements:expr, $database:ty, |$this:ident| $gate:expr) => {
        impl $store {
            fn generation_row(
                row: &<$database as sqlx::Database>::Row,
            ) -> Result<Generation, StoreError> {
                let state: String = row.try_get("state")?;
                let switched: Option<i64> = row.try_get("switched_at_micros")?;
                Ok(Generation {
                    generation: unsigned(row.try_get("generation")?, "generation")?,
                    state: GenerationState::parse(&state)?,
                    started_at: from_micros(row.try_get("started_at_micros")?)?,
                    switched_at: switched.map(from_micros).transpose()?,
                    position: unsigned(row.try_get("position")?, "position")?,
                    target: unsigned(row.try_get("target")?, "target")?,
                    events_per_second: row.try_get("events_per_second")?,
                })
            }
        }

        #[async_trait]
        impl GenerationRegistry for $store {
            async fn live_generation(&self) -> Result<u64, StoreError> {
                let live: Option<i64> = sqlx::query_scalar::<$database, i64>($statements.live)
                    .fetch_optional(self.pool())
                    .await?;
                // No live row is a database from before 0104 ran: generation 0.
                live.map_or(Ok(0), |live| unsigned(live, "generation"))
            }

            async fn current_generations(&self) -> Result<Vec<Generation>, StoreError> {
                let rows = sqlx::query::<$database>($statements.current)
                    .fetch_all(self.pool())
                    .await?;
                rows.iter().map(Self::generation_row).collect()
            }

            async fn begin_building(
                &self,
                now: DateTime<Utc>,
            ) -> Result<(Generation, bool), StoreError> {
                let $this = self;
                let _gate = $gate;
                let mut transaction = self.pool().begin_with($statements.begin).await?;
                let building = sqlx::query::<$database>($statements.building)
                    .fetch_optional(&mut *transaction)
                    .await?;
                if let Some(row) = building {
                    let generation = Self::generation_row(&row)?;
                    transaction.commit().await?;
                    return Ok((generation, true));
                }
                let highest: Option<i64> =
                    sqlx::query_scalar::<$database, Option<i64>>($statements.highest)
                        .fetch_one(&mut *transaction)
                        .await?;
                let next = highest.map_or(Ok(0), |highest| unsigned(highest, "generation"))? + 1;
                sqlx::query::<$database>($statements.insert)
                    .bind(signed(next))
                    .bind(now.timestamp_micros())
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok((
                    Generation {
                        generation: next,
                        state: GenerationState::Building,
                        started_at: DateTime::from_timestamp_micros(now.timestamp_micros())
                            .unwrap_or(now),
                        switched_at: None,
                        position: 0,
                        target: 0,
                        events_per_second: 0.0,
                    },
                    false,
                ))
            }

            async fn report_progress(
                &self,
                generation: u64,
                position: u64,
                target: u64,
                events_per_second: f64,
            ) -> Result<bool, StoreError> {
                let $this = self;
                let _gate = $gate;
                let done = sqlx::query::<$database>($statements.progress)
                    .bind(signed(position))
                    .bind(signed(target))
                    .bind(events_per_second)
                    .bind(signed(generation))
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn switch_live(
                &self,
                generation: u64,
                now: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let $this = self;
                let _gate = $gate;
                let mut transaction = self.pool().begin_with($statements.begin).await?;
                let retired: Vec<i64> =
                    sqlx::query_scalar::<$database, i64>($statements.retire_live)
                        .fetch_all(&mut *transaction)
                        .await?;
                let made = sqlx::query::<$database>($statements.make_live)
                    .bind(now.timestamp_micros())
                    .bind(signed(generation))
                    .execute(&mut *transaction)
                    .await?;
                if made.rows_affected() != 1 {
                    transaction.rollback().await?;
                    return Err(corrupt(format!(
                        "read-model generation {generation} is not being built, so it cannot go live"
                    )));
                }
                transaction.commit().await?;
                retired
                    .first()
                    .map_or(Ok(0), |retired| unsigned(*retired, "generation"))
            }

            async fn discard_building(&self, generation: u64) -> Result<(), StoreError> {
                let $this = self;
                let _gate = $gate;
                sqlx::query::<$database>($statements.discard)
                    .bind(signed(generation))
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn set_serving_generation(
                &self,
                server_id: &str,
                generation: u64,
            ) -> Result<(), StoreError> {
                let $this = self;
                let _gate = $gate;
                sqlx::query::<$database>($statements.set_serving)
                    .bind(signed(generation))
                    .bind(server_id)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn serving_generations(
                &self,
                now: DateTime<Utc>,
            ) -> Result<Vec<(String, u64)>, StoreError> {
                let rows = sqlx::query::<$database>($statements.serving)
                    .bind(now.timestamp_micros())
                    .fetch_all(self.pool())
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            row.try_get("server_id")?,
                            unsigned(row.try_get("read_model_generation")?, "generation")?,
                        ))
                    })
                    .collect()
            }
        }
    };
}

impl_generation_registry!(SqliteEventStore, SQLITE, sqlx::Sqlite, |store| store
    .exclusive_write()
    .await);
impl_generation_registry!(PostgresEventStore, POSTGRES, sqlx::Postgres, |_store| ());
