//! The embedded SQLite event store.
//!
//! Writes go through one writer task that commits appends in groups (see [`writer`]); reads go
//! through a small pool. SQLite runs in WAL mode, so readers never block the writer and the
//! writer never blocks readers.

mod checkpointer;
mod resident_keys;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot, watch};
use uuid::Uuid;

use self::rows::{
    SELECT_EVENT_CHUNK, bound_to_sql, decode_event_chunk, decode_recorded_event,
    decode_recorded_events, event_id_to_text, limit_to_sql, select_events, stored_count,
};
use self::writer::{Writer, load_next_position};
use crate::precheck::validate_append;
use crate::writer_queue::{WriterMessage, run_writer, submit};
use crate::{
    AppendOutcome, BulkEvent, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StreamId,
};

/// How many events one query of [`EventStore::read_all_bulk`] returns at most: large enough that
/// the per-query costs vanish, small enough that one piece's text (a few MB) stays far below
/// SQLite's limit on a value's length.
const BULK_READ_PIECE: usize = 2_000;

/// How long a connection waits for another connection's write lock before giving up. Writes
/// through [`SqliteEventStore::pool`] take [`SqliteEventStore::exclusive_write`] first, so this
/// covers other processes on the file (a `doorstep migrate`, an operator's `sqlite3`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page cache of each connection, in KiB.
const PAGE_CACHE_KIB: u32 = 64 * 1024;

/// How many appends may wait for the writer before callers wait to enqueue; this bounds memory
/// when callers outpace the disk.
const QUEUED_APPENDS_LIMIT: usize = 4096;

/// The migrations table is named for this crate, so that other crates keeping their own
/// migrations in the same file do not see ours as unknown (and we do not see theirs).
const MIGRATIONS_TABLE: &str = "_doorstep_store_migrations";

/// Where the SQLite event store keeps its file and how it batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// The database file; it and its parent directory are created when missing.
    pub path: PathBuf,
    /// The most events committed in one transaction. One append larger than this is still
    /// committed whole, in a transaction of its own.
    pub max_batch_events: usize,
    /// Connections in the pool behind reads and [`SqliteEventStore::pool`].
    pub read_pool_size: u32,
}

impl SqliteSettings {
    /// Settings with defaults suited to a small server: batches of up to 1,000 events and four
    /// pooled connections.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_batch_events: 1000,
            read_pool_size: 4,
        }
    }
}

/// The SQLite implementation of [`EventStore`]. Cloning is cheap and every clone shares one
/// writer and one pool.
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    appends: mpsc::Sender<WriterMessage>,
    pool: SqlitePool,
    head: watch::Receiver<u64>,
    commits: Arc<AtomicU64>,
    /// Held by the writer for each batch's transaction; see [`SqliteEventStore::exclusive_write`].
    write_gate: Arc<Mutex<()>>,
    /// The background checkpoint task (`checkpointer`), stopped by `close()`.
    checkpointer: tokio::task::AbortHandle,
    path: PathBuf,
}

impl SqliteEventStore {
    /// Opens (or creates) the database file, applies migrations and starts the writer task.
    /// Must be called inside a Tokio runtime.
    pub async fn open(settings: SqliteSettings) -> Result<Self, StoreError> {
        create_parent_directory(&settings.path).await?;
        create_private_file(&settings.path).await?;
        let connect_options = connect_options(&settings.path);

        // The writer's connection is opened first: it switches the file to WAL mode and applies
        // the migrations before any pooled connection exists.
        let mut writer_connection = connect_options.connect().await?;
        migrator().run(&mut writer_connection).await?;
        let next_position = load_next_position(&mut writer_connection).await?;

        let pool = SqlitePoolOptions::new()
            .max_connections(settings.read_pool_size.max(1))
            // sqlx pings a connection before lending it, by default: a round trip to the
            // connection's thread on every query, for a local file that cannot have gone away.
            .test_before_acquire(false)
            .connect_with(connect_options.clone())
            .await?;

        let head_position = u64::try_from(next_position - 1).unwrap_or(0);
        let (head_sender, head_receiver) = watch::channel(head_position);
        let (append_sender, append_receiver) = mpsc::channel(QUEUED_APPENDS_LIMIT);
        let commits = Arc::new(AtomicU64::new(0));
        let write_gate = Arc::new(Mutex::new(()));
        let writer = Writer {
            connection: writer_connection,
            next_position,
            head: head_sender,
            commits: Arc::clone(&commits),
            write_gate: Arc::clone(&write_gate),
        };
        // The task is not joined: `close()` waits for its acknowledgement instead, and when every
        // store handle is dropped the queue closes and the task ends by itself.
        tokio::spawn(run_writer(
            writer,
            append_receiver,
            settings.max_batch_events.max(1),
            "sqlite",
        ));
        // It ends by itself once the writer has stopped.
        let checkpoint_connection = connect_options.connect().await?;
        let checkpointer = tokio::spawn(checkpointer::run(
            checkpoint_connection,
            head_receiver.clone(),
            append_sender.downgrade(),
            Arc::clone(&write_gate),
        ))
        .abort_handle();
        tracing::debug!(
            path = %settings.path.display(),
            head_position,
            "opened the SQLite event store"
        );

        Ok(Self {
            shared: Arc::new(Shared {
                appends: append_sender,
                pool,
                head: head_receiver,
                commits,
                write_gate,
                checkpointer,
                path: settings.path.clone(),
            }),
        })
    }

    /// The connection pool on the same file. Other crates keep their read-model tables here and
    /// may write through it: WAL mode and the busy timeout serialise them with the event writer.
    /// Rows of `events` cannot be updated or deleted through it; triggers refuse.
    ///
    /// A write through the pool should hold [`Self::exclusive_write`] for its transaction.
    pub fn pool(&self) -> &SqlitePool {
        &self.shared.pool
    }

    /// Starts the query of one piece of [`EventStore::read_all_bulk`] on a task of its own.
    fn query_chunk(&self, from: u64, limit: usize) -> ChunkQuery {
        let pool = self.pool().clone();
        ChunkQuery(tokio::spawn(async move {
            sqlx::query_scalar(SELECT_EVENT_CHUNK)
                .bind(bound_to_sql(from))
                .bind(limit_to_sql(limit))
                .fetch_one(&pool)
                .await
        }))
    }

    /// Waits until the event writer is between transactions and keeps it there while the guard
    /// lives. SQLite has one write lock per file. A connection that finds it taken polls for it,
    /// sleeping 1 ms, then 2, 5, 10 ms and more between tries, and the busy writer waits for
    /// the poller in the same way; taking this first makes the two wait in a queue instead.
    /// Hold it for one short transaction through [`Self::pool`] and do not append while holding
    /// it: the append would wait for the writer, which waits for the guard.
    pub async fn exclusive_write(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.shared.write_gate).lock_owned().await
    }

    /// Asks the database for an answer: for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        crate::ping(self.pool()).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Copies every committed page from the write-ahead log into the database file and
    /// truncates the log to nothing, so that no earlier version of a page (a row since deleted,
    /// say) is left in it. The writer is held between transactions meanwhile. Readers in the
    /// middle of a read are waited for (the busy timeout), and a checkpoint that another
    /// connection's checkpoint or read still blocks is tried again a few times. Returns whether
    /// the log was truncated.
    pub async fn checkpoint_and_truncate_wal(&self) -> Result<bool, StoreError> {
        const ATTEMPTS: u32 = 50;
        let _writing = self.exclusive_write().await;
        let mut connection = self.pool().acquire().await.map_err(read_error)?;
        for _ in 0..ATTEMPTS {
            // Columns: whether it was blocked, pages in the WAL, pages copied to the database.
            let (blocked, _, _): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(read_error)?;
            if blocked == 0 {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(false)
    }

    /// How many transactions the writer has committed since `open`. Each holds one or more
    /// appends, so this is lower than the number of appends when group commit is doing its job.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Lets every append queued so far finish, stops the writer and closes the pool. Appends
    /// made afterwards, through any clone, fail with [`StoreError::Closed`]. Calling it again
    /// does nothing.
    pub async fn close(&self) {
        let (acknowledge, acknowledged) = oneshot::channel();
        let shutdown = WriterMessage::Shutdown { acknowledge };
        if self.shared.appends.send(shutdown).await.is_ok() {
            // An error here means the writer is already gone, which is what we wanted.
            let _ = acknowledged.await;
        }
        self.shared.checkpointer.abort();
        self.shared.pool.close().await;
    }
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL makes every commit durable before the caller hears about it, also in WAL mode.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // Event ids (and most stream ids) are random, so each append touches index pages all
        // over the file; SQLite's default 2 MB page cache makes the writer re-read them from the
        // OS on every batch once the log has grown. Pages are allocated only as they are used.
        .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"))
        // Commits never checkpoint; a background task does (see `checkpointer`).
        .pragma("wal_autocheckpoint", "0")
        // Whatever a transaction deletes or overwrites (a destroyed resident key, above all) is
        // overwritten with zeros in its page, rather than left in the file's free space until
        // the page is reused. With `checkpoint_and_truncate_wal` after an erasure, no byte of a
        // deleted row is left in the database file or its WAL. Appends delete nothing, so the
        // writer pays nothing for it (measured: 100,000 appends with random index keys took the
        // same time with it on and off).
        .pragma("secure_delete", "ON")
}

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

async fn create_parent_directory(path: &Path) -> Result<(), StoreError> {
    let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    else {
        return Ok(());
    };
    if tokio::fs::try_exists(parent).await.unwrap_or(false) {
        return Ok(());
    }
    // Only its owner may list or open what the data directory holds (residents' keys among it).
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(parent)
        .await
        .map_err(|error| StoreError::Database(sqlx::Error::Io(error)))
}

/// Creates the database file readable and writable by its owner only (SQLite would create it
/// 0644, and its WAL and shared-memory files take the database file's mode), and takes group and
/// other access away from a file an earlier version created.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let io = |error| StoreError::Database(sqlx::Error::Io(error));
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    options.mode(0o600);
    let file = options.open(path).await.map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().await.map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
                .await
                .map_err(io)?;
        }
    }
    drop(file);
    Ok(())
}

/// The query of one piece of a bulk read, running on a task of its own. Dropped unanswered (a
/// piece read ahead that is not wanted, or a read that is itself dropped), it stops.
struct ChunkQuery(tokio::task::JoinHandle<Result<Option<String>, sqlx::Error>>);

impl ChunkQuery {
    async fn answer(&mut self) -> Result<Option<String>, StoreError> {
        match (&mut self.0).await {
            Ok(chunk) => chunk.map_err(read_error),
            // The query's task panicked or was cancelled.
            Err(_) => Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
        }
    }
}

impl Drop for ChunkQuery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A pool that was closed by `close()` means the store is shutting down, not that the database
/// failed.
fn read_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolClosed => StoreError::Closed,
        other => StoreError::Database(other),
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_append(&events)?;
        submit(
            &self.shared.appends,
            "sqlite",
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
        // `LIMIT +?3`, not `LIMIT ?3`: SQLite's planner reads a bare `LIMIT ?n`'s bound value
        // while it prepares the statement, and marks the statement to be prepared again
        // whenever that parameter is bound anew (`sqlite3ExprIsInteger` sets its `expmask`).
        // sqlx binds it on every call, so every read was parsed and planned again: half the CPU
        // of the read connections under intake (`sqlite3Reprepare` in the profile). The planner
        // does not look into the unary plus; the limit is the same.
        let rows = sqlx::query(select_events!(
            "WHERE stream_id = ?1 AND version >= ?2 ORDER BY version LIMIT +?3"
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
        // `LIMIT +?2`: not prepared again on every call (see `read_stream`).
        let rows = sqlx::query(select_events!(
            "WHERE position >= ?1 ORDER BY position LIMIT +?2"
        ))
        .bind(bound_to_sql(from_position))
        .bind(limit_to_sql(limit))
        .fetch_all(self.pool())
        .await
        .map_err(read_error)?;
        decode_recorded_events(&rows)
    }

    /// Reads in pieces of [`BULK_READ_PIECE`] events, each one query answering one row holding
    /// the piece as JSON text ([`SELECT_EVENT_CHUNK`]), instead of a row (a hand-off from
    /// SQLite's worker thread and a copy of every column) per event. The next piece is queried
    /// while this one is decoded, so SQLite and the decoding work at once: positions have no gaps
    /// here, so the next piece starts where this one is bound to end (and is read again should
    /// it not).
    async fn read_all_bulk(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<BulkEvent>, StoreError> {
        let mut events: Vec<BulkEvent> = Vec::with_capacity(limit.min(BULK_READ_PIECE * 8));
        let mut from = from_position;
        let mut piece_limit = limit.min(BULK_READ_PIECE);
        let mut pending = self.query_chunk(from, piece_limit);
        while events.len() < limit {
            let Some(chunk) = pending.answer().await? else {
                break;
            };
            let left_after = limit - events.len() - piece_limit;
            let ahead_from = from.saturating_add(piece_limit as u64);
            let ahead_limit = left_after.min(BULK_READ_PIECE);
            let ahead = (ahead_limit > 0).then(|| self.query_chunk(ahead_from, ahead_limit));
            let piece = match decode_event_chunk(&chunk) {
                Some(piece) => piece?,
                None => self
                    .read_all(from, piece_limit)
                    .await?
                    .into_iter()
                    .map(RecordedEvent::into_bulk)
                    .collect::<Result<_, _>>()?,
            };
            let last = piece.last().map(|event| event.position);
            let complete = piece.len() == piece_limit;
            events.extend(piece);
            let (Some(last), true, Some(ahead)) = (last, complete, ahead) else {
                break;
            };
            from = last.saturating_add(1);
            piece_limit = ahead_limit;
            pending = if ahead_from == from {
                ahead
            } else {
                self.query_chunk(from, piece_limit)
            };
        }
        Ok(events)
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(select_events!("WHERE event_id = ?1"))
            .bind(event_id_to_text(event_id))
            .fetch_optional(self.pool())
            .await
            .map_err(read_error)?;
        row.as_ref().map(decode_recorded_event).transpose()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(self.pool())
            .await
            .map_err(read_error)?;
        stored_count(head, 0, "position")
    }

    /// Positions here are gap-free from 1 (one writer assigns them, and no event is ever
    /// removed), so the count is the head less `position`: no scan. A `count(*)` from 0 read an
    /// index of the whole log, 11 s on a cold ten-million-event file.
    async fn count_after(&self, position: u64) -> Result<u64, StoreError> {
        Ok(self.head_position().await?.saturating_sub(position))
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.clone()
    }
}
