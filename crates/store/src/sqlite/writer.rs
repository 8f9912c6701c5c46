//! The single writer task: every append goes through it, and it commits them in groups.
//!
//! SQLite allows one writer at a time and every commit waits for an fsync (`synchronous=FULL`).
//! One task that owns one connection avoids lock contention, and committing every append that is
//! already waiting in one transaction shares a single fsync between many callers (group commit).
//! Each append runs inside its own savepoint, so an append that is refused (version conflict,
//! duplicate id) is rolled back alone while the rest of its group commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::error::ErrorKind;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use super::rows::{EncodedEvent, recorded_at_now, stored_count};
use crate::{AppendOutcome, ExpectedVersion, StoreError, StreamId};

/// One caller's append, waiting for the writer.
#[derive(Debug)]
pub(super) struct AppendRequest {
    pub(super) stream: StreamId,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<EncodedEvent>,
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

#[derive(Debug)]
pub(super) enum WriterMessage {
    Append(AppendRequest),
    /// Sent by `close()`: everything queued before it is still written; the writer then stops
    /// and acknowledges once its connection is closed.
    Shutdown {
        acknowledge: oneshot::Sender<()>,
    },
}

/// What the writer needs to start; see [`Writer::run`].
pub(super) struct Writer {
    pub(super) connection: SqliteConnection,
    pub(super) requests: mpsc::Receiver<WriterMessage>,
    /// The position the next appended event gets. Only this task writes events, so keeping it
    /// in memory saves a query per batch; it is reloaded from the database after a failed batch.
    pub(super) next_position: i64,
    pub(super) max_batch_events: usize,
    pub(super) head: watch::Sender<u64>,
    pub(super) commits: Arc<AtomicU64>,
}

/// Appends taken from the queue to be committed together.
struct Batch {
    requests: Vec<AppendRequest>,
    event_count: usize,
}

/// What the writer found while filling a batch, besides the batch itself.
struct CollectedBatch {
    batch: Batch,
    /// An append that would have made the batch too large; it starts the next batch.
    held_back: Option<AppendRequest>,
    /// A shutdown request that arrived behind the batch.
    shutdown: Option<oneshot::Sender<()>>,
}

/// Why one append inside a batch did not apply.
enum AppendFailure {
    /// The append is refused on its own merits: roll back its savepoint, tell its caller, and go
    /// on with the rest of the batch.
    Refused(StoreError),
    /// The database itself failed: nothing in this transaction can be trusted, so the whole
    /// batch is rolled back and every caller in it is told.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for AppendFailure {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl Writer {
    /// Writes batches until `close()` asks it to stop or every store handle is dropped.
    pub(super) async fn run(mut self) {
        let mut held_back: Option<AppendRequest> = None;
        let mut shutdown_acknowledgements = Vec::new();
        loop {
            let first_request = match held_back.take() {
                Some(request) => request,
                None => match self.requests.recv().await {
                    Some(WriterMessage::Append(request)) => request,
                    Some(WriterMessage::Shutdown { acknowledge }) => {
                        shutdown_acknowledgements.push(acknowledge);
                        break;
                    }
                    None => break,
                },
            };
            let collected = self.collect_batch(first_request);
            held_back = collected.held_back;
            self.commit_batch(collected.batch).await;
            if let Some(acknowledge) = collected.shutdown {
                shutdown_acknowledgements.push(acknowledge);
                break;
            }
        }
        self.shut_down(held_back, shutdown_acknowledgements).await;
    }

    /// Takes whatever else is already queued, without waiting, up to `max_batch_events` events.
    /// The first append is always taken, even when it alone is larger than the limit.
    fn collect_batch(&mut self, first_request: AppendRequest) -> CollectedBatch {
        let mut batch = Batch {
            event_count: first_request.events.len(),
            requests: vec![first_request],
        };
        let mut held_back = None;
        let mut shutdown = None;
        while batch.event_count < self.max_batch_events {
            match self.requests.try_recv() {
                Ok(WriterMessage::Append(request)) => {
                    if batch.event_count + request.events.len() > self.max_batch_events {
                        held_back = Some(request);
                        break;
                    }
                    batch.event_count += request.events.len();
                    batch.requests.push(request);
                }
                Ok(WriterMessage::Shutdown { acknowledge }) => {
                    shutdown = Some(acknowledge);
                    break;
                }
                Err(_) => break,
            }
        }
        CollectedBatch {
            batch,
            held_back,
            shutdown,
        }
    }

    /// Writes one batch in one transaction and answers every caller in it.
    async fn commit_batch(&mut self, batch: Batch) {
        let started = Instant::now();
        let written = write_batch(
            &mut self.connection,
            &mut self.next_position,
            &batch.requests,
        )
        .await;
        let elapsed_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match written {
            Ok(outcomes) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                let head_position = u64::try_from(self.next_position - 1).unwrap_or(0);
                self.head.send_if_modified(|published| {
                    let advanced = *published != head_position;
                    *published = head_position;
                    advanced
                });
                tracing::debug!(
                    batch_appends = batch.requests.len(),
                    batch_events = batch.event_count,
                    head_position,
                    elapsed_micros,
                    "committed a batch of appends"
                );
                for (request, outcome) in batch.requests.into_iter().zip(outcomes) {
                    // A caller that gave up waiting no longer needs the answer; its events are
                    // written all the same, and a retry with the same ids is idempotent.
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(
                    error = %error,
                    batch_appends = batch.requests.len(),
                    batch_events = batch.event_count,
                    elapsed_micros,
                    "a batch of appends failed and was rolled back"
                );
                self.reload_next_position().await;
                for request in batch.requests {
                    let _ = request.reply.send(Err(batch_failed(&error)));
                }
            }
        }
    }

    /// After a failed batch the in-memory position may be ahead of the log; the log is the truth.
    async fn reload_next_position(&mut self) {
        match load_next_position(&mut self.connection).await {
            Ok(next_position) => self.next_position = next_position,
            Err(error) => tracing::error!(
                error = %error,
                "cannot reload the next position after a failed batch"
            ),
        }
    }

    /// Refuses whatever is still queued, closes the connection, then lets `close()` return.
    async fn shut_down(
        mut self,
        held_back: Option<AppendRequest>,
        mut shutdown_acknowledgements: Vec<oneshot::Sender<()>>,
    ) {
        self.requests.close();
        if let Some(request) = held_back {
            let _ = request.reply.send(Err(StoreError::Closed));
        }
        while let Ok(message) = self.requests.try_recv() {
            match message {
                WriterMessage::Append(request) => {
                    let _ = request.reply.send(Err(StoreError::Closed));
                }
                WriterMessage::Shutdown { acknowledge } => {
                    shutdown_acknowledgements.push(acknowledge);
                }
            }
        }
        if let Err(error) = self.connection.close().await {
            tracing::warn!(error = %error, "closing the writer connection failed");
        }
        tracing::debug!("event store writer stopped");
        for acknowledge in shutdown_acknowledgements {
            let _ = acknowledge.send(());
        }
    }
}

/// Reads the position the next event gets: one past the last stored one.
pub(super) async fn load_next_position(
    connection: &mut SqliteConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(position), 0) + 1 FROM events")
        .fetch_one(connection)
        .await
}

/// The error every caller of a failed batch gets. `sqlx::Error` cannot be cloned, so each caller
/// gets its own copy of the message; the full error is logged once by the writer.
fn batch_failed(error: &sqlx::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
        "the batch holding this append was rolled back: {error}"
    ))))
}

/// Applies every append of a batch in one transaction, each in its own savepoint. Returns one
/// outcome per request, in order, or an error when the transaction as a whole failed.
async fn write_batch(
    connection: &mut SqliteConnection,
    next_position: &mut i64,
    requests: &[AppendRequest],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, sqlx::Error> {
    let position_before_batch = *next_position;
    let recorded_at = recorded_at_now();
    // IMMEDIATE takes the write lock up front, so a busy database is waited for here (with the
    // busy timeout) rather than failing half-way through the batch.
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let position_before_append = *next_position;
        let mut savepoint = transaction.begin().await?;
        match apply_append(&mut savepoint, next_position, request, &recorded_at).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                outcomes.push(Ok(outcome));
            }
            Err(AppendFailure::Refused(error)) => {
                savepoint.rollback().await?;
                *next_position = position_before_append;
                outcomes.push(Err(error));
            }
            Err(AppendFailure::Database(error)) => {
                // Dropping the savepoint and the transaction rolls both back.
                *next_position = position_before_batch;
                return Err(error);
            }
        }
    }
    if let Err(error) = transaction.commit().await {
        *next_position = position_before_batch;
        return Err(error);
    }
    Ok(outcomes)
}

/// Applies one append inside its savepoint: idempotency first, then the version check, then
/// the inserts. Earlier appends of the same batch are visible here, since they share the
/// transaction.
async fn apply_append(
    connection: &mut SqliteConnection,
    next_position: &mut i64,
    request: &AppendRequest,
    recorded_at: &str,
) -> Result<AppendOutcome, AppendFailure> {
    if let Some(earlier_outcome) = find_identical_earlier_append(connection, request).await? {
        return Ok(earlier_outcome);
    }
    let current_version = stream_version(connection, &request.stream).await?;
    check_expected_version(&request.stream, request.expected, current_version)?;

    let mut version = current_version;
    for event in &request.events {
        version += 1;
        insert_event(
            connection,
            request,
            event,
            version,
            *next_position,
            recorded_at,
        )
        .await?;
        *next_position += 1;
    }
    let last_position = *next_position - 1;
    Ok(AppendOutcome {
        version: stored_count(version, 0, "version").map_err(AppendFailure::Refused)?,
        position: stored_count(last_position, 0, "position").map_err(AppendFailure::Refused)?,
        already_stored: false,
    })
}

/// The columns needed to tell a retry from a clash.
struct StoredEventSummary {
    position: i64,
    stream_id: String,
    version: i64,
    event_type: String,
    schema_version: i64,
    payload_json: String,
}

/// Recognises a retry of an append that was already written.
///
/// Returns the earlier outcome when every event is stored with the same stream, type, schema
/// version and payload; `None` when none is stored; and `DuplicateEventId` when only some are,
/// or when one is stored with other content or in another stream.
async fn find_identical_earlier_append(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<Option<AppendOutcome>, AppendFailure> {
    let mut last_stored: Option<StoredEventSummary> = None;
    let mut first_stored_event_id = None;
    let mut some_event_is_new = false;
    for event in &request.events {
        match stored_event_summary(connection, &event.event_id_text).await? {
            Some(stored) => {
                if !is_same_event(&stored, &request.stream, event)? {
                    return Err(AppendFailure::Refused(StoreError::DuplicateEventId {
                        event_id: event.event_id,
                    }));
                }
                first_stored_event_id.get_or_insert(event.event_id);
                last_stored = Some(stored);
            }
            None => some_event_is_new = true,
        }
    }
    let (Some(last_stored), Some(first_stored_event_id)) = (last_stored, first_stored_event_id)
    else {
        return Ok(None);
    };
    if some_event_is_new {
        return Err(AppendFailure::Refused(StoreError::DuplicateEventId {
            event_id: first_stored_event_id,
        }));
    }
    let position =
        stored_count(last_stored.position, 0, "position").map_err(AppendFailure::Refused)?;
    Ok(Some(AppendOutcome {
        version: stored_count(last_stored.version, position, "version")
            .map_err(AppendFailure::Refused)?,
        position,
        already_stored: true,
    }))
}

async fn stored_event_summary(
    connection: &mut SqliteConnection,
    event_id_text: &str,
) -> Result<Option<StoredEventSummary>, sqlx::Error> {
    let row: Option<(i64, String, i64, String, i64, String)> = sqlx::query_as(
        "SELECT position, stream_id, version, event_type, schema_version, payload \
         FROM events WHERE event_id = ?1",
    )
    .bind(event_id_text)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(
        |(position, stream_id, version, event_type, schema_version, payload_json)| {
            StoredEventSummary {
                position,
                stream_id,
                version,
                event_type,
                schema_version,
                payload_json,
            }
        },
    ))
}

/// Payloads are compared as parsed JSON, so key order and spacing do not matter.
fn is_same_event(
    stored: &StoredEventSummary,
    stream: &StreamId,
    event: &EncodedEvent,
) -> Result<bool, AppendFailure> {
    if stored.stream_id != stream.as_str()
        || stored.event_type != event.event_type
        || stored.schema_version != event.schema_version
    {
        return Ok(false);
    }
    let stored_payload: serde_json::Value =
        serde_json::from_str(&stored.payload_json).map_err(|error| {
            AppendFailure::Refused(StoreError::Corrupt {
                position: u64::try_from(stored.position).unwrap_or(0),
                reason: format!("payload is not JSON: {error}"),
            })
        })?;
    Ok(stored_payload == event.payload)
}

/// A stream's version is the number of its events, which is also its highest version.
async fn stream_version(
    connection: &mut SqliteConnection,
    stream: &StreamId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(
        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1",
    )
    .bind(stream.as_str())
    .fetch_one(connection)
    .await
}

fn check_expected_version(
    stream: &StreamId,
    expected: ExpectedVersion,
    current_version: i64,
) -> Result<(), AppendFailure> {
    let actual = u64::try_from(current_version).unwrap_or(0);
    let matches = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::Exact(expected_version) => actual == expected_version,
    };
    if matches {
        return Ok(());
    }
    Err(AppendFailure::Refused(StoreError::VersionConflict {
        stream: stream.clone(),
        expected,
        actual,
    }))
}

async fn insert_event(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
    event: &EncodedEvent,
    version: i64,
    position: i64,
    recorded_at: &str,
) -> Result<(), AppendFailure> {
    let inserted = sqlx::query(
        "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, \
         payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(position)
    .bind(request.stream.as_str())
    .bind(version)
    .bind(event.event_id_text.as_str())
    .bind(event.event_type.as_str())
    .bind(event.schema_version)
    .bind(event.payload_json.as_str())
    .bind(event.metadata_json.as_str())
    .bind(recorded_at)
    .execute(&mut *connection)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(error) => Err(classify_insert_failure(connection, request, event, error).await),
    }
}

/// The checks before the insert should make unique violations impossible; should one slip
/// through anyway, the caller still gets the typed error it would have had, never a raw one.
/// A clash on `position` is different: something else wrote to the log, so the batch fails and
/// the writer reloads its next position.
async fn classify_insert_failure(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
    event: &EncodedEvent,
    error: sqlx::Error,
) -> AppendFailure {
    let Some(database_error) = error.as_database_error() else {
        return AppendFailure::Database(error);
    };
    if database_error.kind() != ErrorKind::UniqueViolation {
        return AppendFailure::Database(error);
    }
    let message = database_error.message();
    if message.contains("events.event_id") {
        return AppendFailure::Refused(StoreError::DuplicateEventId {
            event_id: event.event_id,
        });
    }
    if message.contains("events.stream_id") {
        // SQLite undoes only the failed statement, so the stream can still be read here.
        return match stream_version(connection, &request.stream).await {
            Ok(actual) => AppendFailure::Refused(StoreError::VersionConflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: u64::try_from(actual).unwrap_or(0),
            }),
            Err(read_error) => AppendFailure::Database(read_error),
        };
    }
    AppendFailure::Database(error)
}
