//! The single writer task: every append goes through it, and it commits them in groups.
//!
//! SQLite allows one writer at a time and every commit waits for an fsync (`synchronous=FULL`).
//! One task that owns one connection avoids lock contention, and committing every append that is
//! already waiting in one transaction shares a single fsync between many callers (group commit).
//!
//! A batch costs five statements however many appends it holds: `BEGIN IMMEDIATE` (which takes
//! the write lock, so nothing can change the log until the commit), an insert of the new
//! resident keys its appends carry if any (a sixth), one lookup of the batch's
//! event ids, one of its streams' versions, one insert of every event to write, and `COMMIT`. The
//! appends are decided in memory between the lookups and the insert ([`crate::batch_plan`]), so
//! a refused append (a version conflict, a reused event id) writes nothing and the others in its
//! batch still commit. Each statement is a round trip to sqlx's worker thread, which is what an
//! append used to cost five times over.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{Mutex, watch};

use super::rows::{event_id_to_text, recorded_at_now};
use crate::batch_plan::{AppendPlan, KnownLog, StoredEventSummary, lookup_keys, written_outcome};
use crate::writer_queue::{AppendRequest, BatchWriter, batch_failed};
use crate::{AppendOutcome, StoreError};

/// The stored events among a JSON array of event ids.
const STORED_EVENTS: &str = "\
    SELECT position, stream_id, version, event_id, event_type, schema_version, payload \
    FROM events WHERE event_id IN (SELECT value FROM json_each(?1))";

/// The version of every stream in a JSON array of stream ids: its highest version, answered by
/// the `(stream_id, version)` index from its last entry.
const STREAM_VERSIONS: &str = "\
    SELECT requested.value, \
           (SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = requested.value) \
    FROM json_each(?1) AS requested";

/// Inserts every row of a JSON array of `[position, stream_id, version, event_id, event_type,
/// schema_version, payload, metadata]` arrays. Binding one array keeps the statement text the
/// same for every batch size, so it is prepared once.
const INSERT_EVENTS: &str = "\
    INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, \
                        payload, metadata, recorded_at) \
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
           value ->> 6, value ->> 7, ?2 \
    FROM json_each(?1)";

/// Stores every `[reference, wrapped key, generation]` of a JSON array whose resident has no key
/// (of two rows for one resident, the first), and returns the references it stored: one
/// statement text for every batch, as [`INSERT_EVENTS`]. (`WHERE true` tells SQLite's parser
/// that `ON CONFLICT` belongs to the insert, not to a join.)
const INSERT_NEW_KEYS: &str = "\
    INSERT INTO resident_keys (resident_reference, wrapped_key, created_at, master_generation) \
    SELECT value ->> 0, value ->> 1, ?2, value ->> 2 FROM json_each(?1) WHERE true \
    ON CONFLICT (resident_reference) DO NOTHING RETURNING resident_reference";

/// One row of [`INSERT_EVENTS`], serialised as a JSON array.
type EventRow<'a> = (i64, &'a str, i64, String, &'a str, u32, &'a str, &'a str);

/// The SQLite side of the writer task; the queue in front of it is [`crate::writer_queue`].
pub(super) struct Writer {
    pub(super) connection: SqliteConnection,
    /// The position the next appended event gets. Only this task writes events, so keeping it
    /// in memory saves a query per batch; it is reloaded from the database after a failed batch.
    pub(super) next_position: i64,
    pub(super) head: watch::Sender<u64>,
    pub(super) commits: Arc<AtomicU64>,
    /// Held for each batch, so that other writes to the file through the pool queue behind the
    /// batch instead of polling for SQLite's lock (`SqliteEventStore::exclusive_write`).
    pub(super) write_gate: Arc<Mutex<()>>,
}

/// A batch that committed (or had nothing to write).
struct WrittenBatch {
    outcomes: Vec<Result<AppendOutcome, StoreError>>,
    next_position: i64,
    committed: bool,
}

impl BatchWriter for Writer {
    async fn write_batch(&mut self, batch: Vec<AppendRequest>) {
        let gate = self.write_gate.lock().await;
        let started = Instant::now();
        let written = write_batch(&mut self.connection, self.next_position, &batch).await;
        drop(gate);
        let elapsed_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let batch_events: usize = batch.iter().map(|request| request.events.len()).sum();
        match written {
            Ok(written) => {
                self.next_position = written.next_position;
                if written.committed {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                }
                let head_position = u64::try_from(self.next_position - 1).unwrap_or(0);
                self.head.send_if_modified(|published| {
                    let advanced = *published != head_position;
                    *published = head_position;
                    advanced
                });
                tracing::debug!(
                    batch_appends = batch.len(),
                    batch_events,
                    head_position,
                    elapsed_micros,
                    "committed a batch of appends"
                );
                for (request, outcome) in batch.into_iter().zip(written.outcomes) {
                    request.answer(outcome);
                }
            }
            Err(error) => {
                tracing::error!(
                    error = %error,
                    batch_appends = batch.len(),
                    batch_events,
                    elapsed_micros,
                    "a batch of appends failed and was rolled back"
                );
                self.reload_next_position().await;
                for request in batch {
                    request.answer(Err(batch_failed(&error)));
                }
            }
        }
    }

    async fn close(self) {
        if let Err(error) = self.connection.close().await {
            tracing::warn!(error = %error, "closing the writer connection failed");
        }
    }
}

impl Writer {
    /// After a failed batch the log is the truth about the next position: a commit that
    /// reported an error may still have reached the disk.
    async fn reload_next_position(&mut self) {
        match load_next_position(&mut self.connection).await {
            Ok(next_position) => self.next_position = next_position,
            Err(error) => tracing::error!(
                error = %error,
                "cannot reload the next position after a failed batch"
            ),
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

/// Decides and writes one batch in one transaction. Returns one outcome per request, in order,
/// or an error when the transaction as a whole failed and nothing was written.
async fn write_batch(
    connection: &mut SqliteConnection,
    next_position: i64,
    requests: &[AppendRequest],
) -> Result<WrittenBatch, sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so a busy database is waited for here (with the
    // busy timeout), and what the lookups read stays true until the commit.
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    let has_key = store_new_keys(&mut transaction, requests).await?;
    let known = read_known_log(&mut transaction, requests).await?;

    let mut position = next_position;
    let mut rows: Vec<EventRow<'_>> = Vec::new();
    let outcomes = decide(known, requests, &has_key, |request, current_version| {
        let first_position = position;
        for (version, event) in (current_version + 1..).zip(&request.events) {
            rows.push((
                position,
                request.stream.as_str(),
                version,
                event_id_to_text(event.event_id),
                event.event_type.as_str(),
                event.schema_version,
                event.payload_json.as_str(),
                event.metadata_json.as_str(),
            ));
            position += 1;
        }
        first_position
    });

    if rows.is_empty() {
        transaction.rollback().await?;
        return Ok(WrittenBatch {
            outcomes,
            next_position,
            committed: false,
        });
    }
    let rows_json =
        serde_json::to_string(&rows).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query(INSERT_EVENTS)
        .bind(rows_json)
        .bind(recorded_at_now())
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(WrittenBatch {
        outcomes,
        next_position: position,
        committed: true,
    })
}

/// Decides every append in queue order; `write` lays out the events of an append to be written
/// after `current_version` and returns the position of its first event. An append whose new
/// resident key was not stored (`has_key`) is refused before anything else.
fn decide<'r>(
    mut known: KnownLog,
    requests: &'r [AppendRequest],
    has_key: &[bool],
    mut write: impl FnMut(&'r AppendRequest, i64) -> i64,
) -> Vec<Result<AppendOutcome, StoreError>> {
    requests
        .iter()
        .zip(has_key)
        .map(|(request, &has_key)| {
            if has_key {
                return Err(StoreError::ResidentHasKey);
            }
            match known.plan(request)? {
                AppendPlan::AlreadyStored(outcome) => Ok(outcome),
                AppendPlan::Write { current_version } => {
                    let first_position = write(request, current_version);
                    known.record_written(request, current_version, first_position);
                    let event_count = i64::try_from(request.events.len()).unwrap_or(i64::MAX);
                    written_outcome(current_version, request, first_position + event_count - 1)
                }
            }
        })
        .collect()
}

/// Stores the new resident keys the batch's appends carry, in its transaction (so they commit,
/// and reach the disk, with the events sealed under them). Returns, per append, whether its
/// resident had a key already, so that its events must not be appended: of two appends for one
/// new resident, the first one's key is the one stored.
async fn store_new_keys(
    connection: &mut SqliteConnection,
    requests: &[AppendRequest],
) -> Result<Vec<bool>, sqlx::Error> {
    let keys: Vec<(&str, &str, u32)> = requests
        .iter()
        .filter_map(|request| request.new_key.as_ref())
        .map(|key| (key.reference.as_str(), key.wrapped.as_str(), key.generation))
        .collect();
    let mut inserted: HashSet<String> = HashSet::new();
    if !keys.is_empty() {
        let keys_json =
            serde_json::to_string(&keys).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        let stored: Vec<String> = sqlx::query_scalar(INSERT_NEW_KEYS)
            .bind(keys_json)
            .bind(chrono::Utc::now().to_rfc3339())
            .fetch_all(&mut *connection)
            .await?;
        inserted.extend(stored);
    }
    Ok(requests
        .iter()
        .map(|request| {
            request
                .new_key
                .as_ref()
                .is_some_and(|key| !inserted.remove(&key.reference))
        })
        .collect())
}

/// Reads the stored events among the batch's event ids and the versions of its streams.
async fn read_known_log(
    connection: &mut SqliteConnection,
    requests: &[AppendRequest],
) -> Result<KnownLog, sqlx::Error> {
    let (event_ids, streams) = lookup_keys(requests);
    let event_ids: Vec<String> = event_ids.into_iter().map(event_id_to_text).collect();
    let encode = |error: serde_json::Error| sqlx::Error::Encode(Box::new(error));
    let mut known = KnownLog::default();

    let stored_rows = sqlx::query(STORED_EVENTS)
        .bind(serde_json::to_string(&event_ids).map_err(encode)?)
        .fetch_all(&mut *connection)
        .await?;
    for row in stored_rows {
        let event_id_text: String = row.try_get("event_id")?;
        let position: i64 = row.try_get("position")?;
        let event_id = uuid::Uuid::parse_str(&event_id_text).map_err(|error| {
            sqlx::Error::Decode(format!("event id at position {position}: {error}").into())
        })?;
        let payload_json: String = row.try_get("payload")?;
        // The table's CHECK keeps payloads valid JSON. Were one not, it could equal no new
        // payload: its id would be reported as taken, and only that append refused.
        let payload = serde_json::from_str(&payload_json).unwrap_or(serde_json::Value::Null);
        known.remember_stored(
            event_id,
            StoredEventSummary {
                position,
                stream_id: row.try_get("stream_id")?,
                version: row.try_get("version")?,
                event_type: row.try_get("event_type")?,
                schema_version: row.try_get("schema_version")?,
                payload,
            },
        );
    }

    let versions: Vec<(String, i64)> = sqlx::query_as(STREAM_VERSIONS)
        .bind(serde_json::to_string(&streams).map_err(encode)?)
        .fetch_all(&mut *connection)
        .await?;
    for (stream, version) in versions {
        known.remember_version(stream, version);
    }
    Ok(known)
}
