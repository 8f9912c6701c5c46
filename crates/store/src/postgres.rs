//! The PostgreSQL event store, for several server processes sharing one database.
//!
//! Writes go through one writer task per process that commits appends in groups (see
//! [`writer`]); reads go through a pool. Several processes may write the same database at once:
//! the unique indexes on `(stream_id, version)` and `event_id` decide races between them, and
//! positions come from transaction ids so that readers can checkpoint safely (see [`head`]).

mod batch;
mod head;
mod resident_keys;
mod rows;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use self::batch::too_many_events;
use self::head::{EVENTS_PER_TRANSACTION, HeadTracker, NOTIFICATION_CHANNEL, readable_limit};
use self::rows::{
    bound_to_sql, decode_bulk_event, decode_recorded_event, decode_recorded_events, limit_to_sql,
    select_bulk_events, select_events, stored_count,
};
use self::writer::{Writer, writer_process_id};
use crate::precheck::validate_append;
use crate::writer_queue::{WriterMessage, run_writer, submit};
use crate::{
    AppendOutcome, BulkEvent, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StreamId,
};

/// How many appends may wait for the writer before callers wait to enqueue; this bounds memory
/// when callers outpace the disk.
const QUEUED_APPENDS_LIMIT: usize = 4096;

/// The migrations table is named for this crate, so that other crates keeping their own
/// migrations in the same database do not see ours as unknown (and we do not see theirs).
const MIGRATIONS_TABLE: &str = "_doorstep_store_migrations";

/// Tells the store's connections apart in `pg_stat_activity`.
const APPLICATION_NAME: &str = "doorstep-store";

/// Where the PostgreSQL event store connects and how it batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// A `postgres://` URL of the database; its tables are created when missing.
    pub url: String,
    /// The most events committed in one transaction. One append larger than this is still
    /// committed whole, in a transaction of its own. At most 2^20 (1,048,576).
    pub max_batch_events: usize,
    /// Connections in the pool behind reads and [`PostgresEventStore::pool`].
    pub read_pool_size: u32,
}

impl PostgresSettings {
    /// Settings with defaults suited to a small server: batches of up to 1,000 events and four
    /// pooled connections.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_batch_events: 1000,
            read_pool_size: 4,
        }
    }
}

/// The PostgreSQL implementation of [`EventStore`]. Cloning is cheap and every clone shares one
/// writer and one pool.
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    appends: mpsc::Sender<WriterMessage>,
    pool: PgPool,
    head: watch::Receiver<u64>,
    commits: Arc<AtomicU64>,
}

impl PostgresEventStore {
    /// Connects, applies migrations and starts the writer and the head tracker. Must be called
    /// inside a Tokio runtime.
    pub async fn open(settings: PostgresSettings) -> Result<Self, StoreError> {
        let connect_options =
            PgConnectOptions::from_str(&settings.url)?.application_name(APPLICATION_NAME);

        // The writer's connection applies the migrations; sqlx holds an advisory lock while it
        // does, so processes opening the same database at once take turns.
        let mut writer_connection = connect_options.connect().await?;
        migrator().run(&mut writer_connection).await?;
        let writer_process_id = Arc::new(AtomicU32::new(
            writer_process_id(&mut writer_connection).await?,
        ));

        let pool = PgPoolOptions::new()
            .max_connections(settings.read_pool_size.max(1))
            .connect_with(connect_options.clone())
            .await?;
        // The listener gets a pool of its own, so that it never takes a reader's connection; the
        // pool reconnects it when the connection drops.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(connect_options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&listener_pool).await?;
        listener.listen(NOTIFICATION_CHANNEL).await?;
        // Listening starts before the head is read, so no commit falls between the two.
        let head_position = read_head_position(&pool).await?;

        let (head_sender, head_receiver) = watch::channel(head_position);
        let head_sender = Arc::new(head_sender);
        let (pending_sender, pending_receiver) = mpsc::unbounded_channel();
        let head_tracker = tokio::spawn(
            HeadTracker {
                pool: pool.clone(),
                listener,
                listener_pool,
                head: Arc::clone(&head_sender),
                pending_answers: pending_receiver,
                writer_process_id: Arc::clone(&writer_process_id),
            }
            .run(),
        );
        let (append_sender, append_receiver) = mpsc::channel(QUEUED_APPENDS_LIMIT);
        let commits = Arc::new(AtomicU64::new(0));
        let max_batch_events = settings.max_batch_events.clamp(
            1,
            usize::try_from(EVENTS_PER_TRANSACTION).unwrap_or(usize::MAX),
        );
        // The task is not joined: `close()` waits for its acknowledgement instead, and when every
        // store handle is dropped the queue closes and the task ends by itself.
        let writer = Writer {
            connection: Some(writer_connection),
            connect_options,
            head: head_sender,
            commits: Arc::clone(&commits),
            pending_answers: pending_sender,
            head_tracker,
            writer_process_id,
        };
        tokio::spawn(run_writer(
            writer,
            append_receiver,
            max_batch_events,
            "postgresql",
        ));
        tracing::debug!(head_position, "opened the PostgreSQL event store");

        Ok(Self {
            shared: Arc::new(Shared {
                appends: append_sender,
                pool,
                head: head_receiver,
                commits,
            }),
        })
    }

    /// The connection pool on the same database. Other crates keep their read-model tables here
    /// and may write through it. Rows of `events` cannot be updated or deleted through it, nor
    /// the table truncated; triggers refuse.
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Asks the database for an answer: for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        crate::ping(self.pool()).await
    }

    /// How many transactions the writer has committed since `open`. Each holds one or more
    /// appends, so this is lower than the number of appends when group commit is doing its job.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Lets every append queued so far finish, stops the writer and the head tracker and closes
    /// the pool. Appends made afterwards, through any clone, fail with [`StoreError::Closed`].
    /// Calling it again does nothing.
    pub async fn close(&self) {
        let (acknowledge, acknowledged) = oneshot::channel();
        let shutdown = WriterMessage::Shutdown { acknowledge };
        if self.shared.appends.send(shutdown).await.is_ok() {
            // An error here means the writer is already gone, which is what we wanted.
            let _ = acknowledged.await;
        }
        self.shared.pool.close().await;
    }
}

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Refuses, before queueing, an append that no transaction could hold: the low 20 bits of a
/// position number the events of one transaction.
pub(crate) fn validate_postgres_append(events: &[NewEvent]) -> Result<(), StoreError> {
    validate_append(events)?;
    if u64::try_from(events.len()).unwrap_or(u64::MAX) > EVENTS_PER_TRANSACTION {
        return Err(StoreError::Database(too_many_events()));
    }
    for event in events {
        if i32::try_from(event.schema_version).is_err() {
            return Err(StoreError::Database(sqlx::Error::Encode(
                format!(
                    "schema_version {} does not fit PostgreSQL's INTEGER",
                    event.schema_version
                )
                .into(),
            )));
        }
    }
    Ok(())
}

/// A pool that was closed by `close()` means the store is shutting down, not that the database
/// failed.
pub(crate) fn read_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolClosed => StoreError::Closed,
        other => StoreError::Database(other),
    }
}

/// `read_all`'s statement: the readable events from `$1` on, at most `$2`.
const READ_ALL: &str = select_events!(
    "WHERE position >= $1 AND position <= ",
    readable_limit!(),
    " ORDER BY position LIMIT $2"
);

/// `read_all_bulk`'s: the same events, each payload as its text.
const READ_ALL_BULK: &str = select_bulk_events!(
    "WHERE position >= $1 AND position <= ",
    readable_limit!(),
    " ORDER BY position LIMIT $2"
);

/// Runs `READ_ALL` or `READ_ALL_BULK` and decodes its rows with `decode`.
async fn read_readable<P>(
    pool: &PgPool,
    statement: &'static str,
    from_position: u64,
    limit: usize,
    decode: fn(&PgRow) -> Result<RecordedEvent<P>, StoreError>,
) -> Result<Vec<RecordedEvent<P>>, StoreError> {
    let rows = sqlx::query(statement)
        .bind(bound_to_sql(from_position))
        .bind(limit_to_sql(limit))
        .fetch_all(pool)
        .await
        .map_err(read_error)?;
    rows.iter().map(decode).collect()
}

async fn read_head_position(pool: &PgPool) -> Result<u64, StoreError> {
    let head: i64 = sqlx::query_scalar(concat!(
        "SELECT COALESCE(MAX(position), 0) FROM events WHERE position <= ",
        readable_limit!()
    ))
    .fetch_one(pool)
    .await
    .map_err(read_error)?;
    stored_count(head, 0, "position")
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_postgres_append(&events)?;
        submit(
            &self.shared.appends,
            "postgresql",
            stream,
            expected,
            events,
            None,
        )
        .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(select_events!(
            "WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
        ))
        .bind(stream.as_str())
        .bind(bound_to_sql(from_version))
        .bind(limit_to_sql(limit))
        .fetch_all(self.pool())
        .await
        .map_err(read_error)?;
        decode_recorded_events(&rows)
    }

    async fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_readable(
            self.pool(),
            READ_ALL,
            from_position,
            limit,
            decode_recorded_event,
        )
        .await
    }

    /// As `read_all`, each payload selected as its text, which goes on unparsed.
    async fn read_all_bulk(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<BulkEvent>, StoreError> {
        read_readable(
            self.pool(),
            READ_ALL_BULK,
            from_position,
            limit,
            decode_bulk_event,
        )
        .await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(select_events!("WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(self.pool())
            .await
            .map_err(read_error)?;
        row.as_ref().map(decode_recorded_event).transpose()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        read_head_position(self.pool()).await
    }

    async fn count_after(&self, position: u64) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM events WHERE position > $1 AND position <= ",
            readable_limit!()
        ))
        .bind(bound_to_sql(position))
        .fetch_one(self.pool())
        .await
        .map_err(read_error)?;
        stored_count(count, 0, "count")
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.clone()
    }
}
