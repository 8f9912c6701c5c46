//! The append-only event log behind every Doorstep aggregate.
//!
//! One backend-neutral trait, [`EventStore`], with EventStoreDB-like semantics: streams with
//! optimistic concurrency, idempotent appends by event id, and a global order that readers can
//! checkpoint on. The SQLite implementation ([`SqliteEventStore`]) is the embedded default, with
//! gap-free positions; the PostgreSQL implementation ([`PostgresEventStore`]) lets several server
//! processes share one database, and its positions have gaps but never reorder.

mod batch_plan;
mod console_sessions;
mod counts;
mod generations;
mod lease;
mod postgres;
mod precheck;
mod resident_keys;
mod running_servers;
mod sqlite;
mod writer_queue;

/// The guarantees every backend must keep, as checks each backend's tests run.
#[cfg(feature = "conformance")]
pub mod conformance;

pub use console_sessions::{
    ConsoleSessionError, ConsoleSessionStore, PendingSignIn, StoredSession,
};
pub use generations::{Generation, GenerationRegistry, GenerationState};
pub use lease::{EXCLUSIVE_WAIT, LeaseError, ServerLease, lock_file};
pub use postgres::{PostgresEventStore, PostgresSettings};
pub use resident_keys::{
    KeyToRewrap, NewResidentKey, ResidentKeyError, ResidentKeyStore, Rewrap, RewrapError,
    RewrapRefused, WrappedKey,
};
pub use running_servers::{RunningServer, ServerRegistry};
pub use sqlite::{SqliteEventStore, SqliteSettings};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The name of a stream, e.g. `complaint-0192...`. The part before the first `-` is its category.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId(String);

impl StreamId {
    /// Builds `<category>-<id>`.
    pub fn new(category: &str, id: impl std::fmt::Display) -> Self {
        Self(format!("{category}-{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`.
    pub fn category(&self) -> &str {
        self.0
            .split_once('-')
            .map_or(self.0.as_str(), |(category, _)| category)
    }
}

impl From<String> for StreamId {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the caller believes the stream's version to be before its append.
///
/// Versions count events: a stream with `n` events is at version `n`, and its events carry versions
/// `1..=n`. A stream that does not exist is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exact(u64),
}

/// Who caused an event and why: recorded with every event, never part of the domain payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The principal that issued the command.
    pub actor: String,
    /// The event or command that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Shared by every event of one business conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The caller's request id (`request_id` or `idempotency_key`), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How the command arrived: `grpc`, or the complaint channel for intake.
    pub source_channel: String,
    /// A digest of the command that produced the event, to tell a retry from a different command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_fingerprint: Option<String>,
    /// The W3C trace id (32 hex digits) of the request that caused the event, so that an event
    /// can be followed back to its request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span (16 hex digits) within that trace that appended the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique across the whole log; appending an id that is already stored with the same
    /// stream, type and payload is an idempotent no-op.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event as stored in the log, its payload parsed (`P` is `serde_json::Value`) or as stored
/// ([`BulkEvent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent<P = serde_json::Value> {
    /// Position in the global log, from 1. Positions strictly increase in the order
    /// [`EventStore::read_all`] returns events, no event ever appears below a position a reader
    /// has already been given, one append's events get consecutive positions, and within one
    /// stream positions increase with versions. So a reader may checkpoint on the last position
    /// it processed and resume after it.
    ///
    /// - SQLite: gap-free, 1, 2, 3, ..., in commit order (one writer assigns them).
    /// - PostgreSQL: `xid * 2^20 + i`, where `xid` is the id of the transaction that wrote the
    ///   event and `i` its index among that transaction's events (from 0). Positions jump between
    ///   transactions, so they have gaps and say nothing about how many events there are; an
    ///   event is only readable once every transaction with a smaller id has finished.
    pub position: u64,
    pub stream_id: StreamId,
    /// Version within the stream, from 1.
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: P,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

/// An event as [`EventStore::read_all_bulk`] returns it: its payload the JSON text stored, not
/// parsed, so that a reader decoding millions of events into its own types parses each payload
/// once, into them, rather than first into a `serde_json::Value`.
pub type BulkEvent = RecordedEvent<Box<serde_json::value::RawValue>>;

/// A recorded event without its payload: what a reader keeps of it once it has decoded the
/// payload into its own types.
pub type EventHeader = RecordedEvent<()>;

impl<P> RecordedEvent<P> {
    /// The same event with its payload put through `f`.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> RecordedEvent<Q> {
        RecordedEvent {
            position: self.position,
            stream_id: self.stream_id,
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: f(self.payload),
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

impl RecordedEvent {
    /// The event with its payload as JSON text, as [`EventStore::read_all_bulk`] returns it.
    pub fn into_bulk(self) -> Result<BulkEvent, StoreError> {
        let position = self.position;
        let payload = serde_json::value::to_raw_value(&self.payload).map_err(|error| {
            StoreError::Corrupt {
                position,
                reason: format!("payload cannot be written as JSON: {error}"),
            }
        })?;
        Ok(self.map_payload(|_| payload))
    }
}

impl BulkEvent {
    /// The event with its payload parsed, as [`EventStore::read_all`] returns it.
    pub fn parsed(self) -> Result<RecordedEvent, StoreError> {
        let position = self.position;
        let payload =
            serde_json::from_str(self.payload.get()).map_err(|error| StoreError::Corrupt {
                position,
                reason: format!("payload is not JSON: {error}"),
            })?;
        Ok(self.map_payload(|_| payload))
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (the version of its last event).
    pub version: u64,
    /// The global position of the append's last event (see [`RecordedEvent::position`]). The
    /// append's first event is at `position - (number of events - 1)`.
    ///
    /// When an append is acknowledged its events are durable and, on both backends, already
    /// visible to [`EventStore::read_all`] and [`EventStore::head_position`]. On PostgreSQL that
    /// can mean waiting for an older transaction (another process's batch) to finish; should
    /// one stay open for more than about two seconds, the append is acknowledged anyway and
    /// becomes readable when that transaction ends.
    pub position: u64,
    /// True when every event was already stored (an idempotent retry): nothing was written.
    pub already_stored: bool,
}

/// Why an append or read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    VersionConflict {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// An event id is already stored with other content or in another stream, or only some of an
    /// append's events were stored before.
    #[error("event {event_id} is already stored with different content")]
    DuplicateEventId { event_id: Uuid },
    #[error("an append must carry at least one event")]
    EmptyAppend,
    /// [`ResidentKeyStore::append_with_new_key`]: the resident has a key already, so the events,
    /// sealed under the new one, were not appended.
    #[error("the resident has a key already")]
    ResidentHasKey,
    #[error("the event store is shutting down")]
    Closed,
    #[error("stored event at position {position} cannot be decoded: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration error")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// The append-only event log.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is at `expected`.
    ///
    /// On PostgreSQL one append carries at most 2^20 events, and `schema_version` must fit a
    /// PostgreSQL `INTEGER` (up to 2^31 - 1); larger ones are refused with
    /// [`StoreError::Database`] before anything is written.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads up to `limit` events of `stream` with version >= `from_version`, in version order.
    /// Every committed event is returned, also on PostgreSQL ahead of [`EventStore::read_all`]:
    /// a stream read is not checkpointed by position.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` readable events with position >= `from_position`, in position order.
    ///
    /// Whatever it returns, no event will later appear at a lower position, so the caller may
    /// continue from the last position it got plus one. On SQLite every committed event is
    /// readable. On PostgreSQL an event is readable once every transaction older than the one
    /// that wrote it (by transaction id, in any process, on the whole server) has finished: the
    /// read only returns positions below `xmin * 2^20`, `xmin` being the oldest transaction still
    /// running when the read's snapshot was taken. Committed events above that line show up in
    /// later reads, never below what was already returned.
    async fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Exactly what [`EventStore::read_all`] returns for the same arguments (the same events in
    /// the same order, the same errors), with each payload as its JSON text, for a reader that
    /// wants the log's text as it is stored (a catch-up, and the live projection runner). A backend may answer it more cheaply
    /// than row by row: SQLite returns a few thousand events as one JSON text per query, so that
    /// reading pays no per-row hand-off between threads and no per-column copies, and hands each
    /// payload on as it is stored. By default it is `read_all`, each payload written as text.
    ///
    /// One difference: a payload goes on checked only as far as [`RawValue`] checks JSON, so a
    /// stored payload that is JSON to SQLite's `json_valid` but not to `serde_json` (a number out
    /// of `f64`'s range, a lone surrogate, nesting past 128 levels; only a row written outside
    /// this service could hold one) is returned here and refused when it is parsed, where
    /// `read_all` refuses it as corrupt.
    ///
    /// [`RawValue`]: serde_json::value::RawValue
    async fn read_all_bulk(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<BulkEvent>, StoreError> {
        self.read_all(from_position, limit)
            .await?
            .into_iter()
            .map(RecordedEvent::into_bulk)
            .collect()
    }

    /// Finds one event by its id, among every committed event (readable by
    /// [`EventStore::read_all`] or not yet).
    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;

    /// The position of the last readable event, 0 when there is none: the highest position
    /// [`EventStore::read_all`] would return now. On SQLite that is the last committed event. On
    /// PostgreSQL it is the last event below the oldest running transaction (see `read_all`), so
    /// it can lag the newest commit while an older transaction is open.
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// How many readable events lie after `position`: how far behind the log a reader that has
    /// processed up to `position` is. (PostgreSQL's positions have gaps, so this is a count, not a
    /// difference of positions.)
    async fn count_after(&self, position: u64) -> Result<u64, StoreError>;

    /// A receiver that sees the head position (as [`EventStore::head_position`] defines it) as
    /// it advances, so followers can wait for new events instead of polling. It never goes
    /// backwards. On PostgreSQL it also advances for other processes' commits on the same
    /// database, which it hears of through `LISTEN`/`NOTIFY` and, while an older transaction holds
    /// them back, by checking again periodically.
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Asks a store's database for an answer (both backends' `ping`). A pool closed by `close()`
/// means the store is shutting down, not that the database failed.
async fn ping<'e>(executor: impl sqlx::Executor<'e>) -> Result<(), StoreError> {
    match executor.execute("SELECT 1").await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::PoolClosed) => Err(StoreError::Closed),
        Err(error) => Err(StoreError::Database(error)),
    }
}
