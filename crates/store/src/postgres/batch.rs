//! One batch of appends in one transaction.
//!
//! Before the transaction starts, one lookup reads every event id and every stream version the
//! batch concerns, and the appends are decided against that in memory, in queue order, as if each
//! saw the ones before it. Usually every event to write then goes in one insert
//! ([`one_insert`]). When that insert cannot be used as it stands (see its documentation), the
//! batch is written append by append, as described below: only appends that write open a
//! savepoint and run one multi-row insert each.
//!
//! Other processes may write the same log, so what the lookup read can be stale by the time an
//! insert runs. The unique indexes catch it: a clash on `(stream_id, version)` or on `event_id`
//! aborts only the append's savepoint, which is rolled back; the append's ids and its stream are
//! read again, now including the other writer's commit, and the append is decided again, which
//! reports a `VersionConflict`, an idempotent `already_stored` outcome or a `DuplicateEventId`
//! exactly as if the other writer had been first all along.
//!
//! Positions come from transaction ids, and an older transaction can commit after a younger one.
//! Were an older transaction to extend a stream past an event a younger one wrote, the stream's
//! versions would go backwards in position order. The insert refuses that case itself, and the
//! append is deferred to the writer's next transaction, whose id is younger than every commit it
//! could have seen.

mod one_insert;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::head::{EVENTS_PER_TRANSACTION, NOTIFICATION_CHANNEL, parse_transaction_id};
use crate::batch_plan::{AppendPlan, KnownLog, StoredEventSummary, lookup_keys, written_outcome};
use crate::writer_queue::AppendRequest;
use crate::{AppendOutcome, StoreError};

/// How often one append is decided again after its insert clashed with another writer's commit.
/// After a clash the other commit is visible, so an `Exact` or `NoStream` append is settled by its
/// second decision (it conflicts). An `Any` append writes again at the new version and can clash
/// again while other processes keep extending the same stream; every clash means one of them made
/// progress, so a handful of attempts is plenty.
const CLASH_ATTEMPTS: usize = 10;

const SAVEPOINT_FIRST: &str = "BEGIN; SAVEPOINT doorstep_append";
const SAVEPOINT_NEXT: &str = "RELEASE SAVEPOINT doorstep_append; SAVEPOINT doorstep_append";
const SAVEPOINT_ROLLBACK: &str = "ROLLBACK TO SAVEPOINT doorstep_append";

/// Inserts one append's events, positioned after the transaction's earlier events, and returns
/// the last position. `pg_current_xact_id()` is the top-level transaction's id even inside a
/// savepoint, so every event of the batch shares it.
///
/// Nothing is inserted, and the second column is true, when the event the append builds on (the
/// stream's event at version `$3`) was written by a younger transaction: the append must move to
/// a younger transaction itself, or the stream's versions would not follow positions. Events of
/// this very transaction sit below `(xid + 1) * 2^20` and are fine to build on.
const INSERT_EVENTS: &str = "\
    WITH guard AS ( \
        SELECT EXISTS ( \
            SELECT 1 FROM events \
            WHERE stream_id = $2 AND version = $3 \
              AND position >= (pg_current_xact_id()::text::bigint + 1) * 1048576 \
        ) AS predecessor_is_younger \
    ), \
    inserted AS ( \
        INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, \
                            payload, metadata, recorded_at) \
        SELECT pg_current_xact_id()::text::bigint * 1048576 + $1 + new.ordinal - 1, \
               $2, $3 + new.ordinal, new.event_id, new.event_type, new.schema_version, \
               new.payload::jsonb, new.metadata::jsonb, $4 \
        FROM UNNEST($5::uuid[], $6::text[], $7::integer[], $8::text[], $9::text[]) \
             WITH ORDINALITY AS new(event_id, event_type, schema_version, payload, metadata, ordinal), \
             guard \
        WHERE NOT guard.predecessor_is_younger \
        RETURNING position \
    ) \
    SELECT (SELECT MAX(position) FROM inserted), (SELECT predecessor_is_younger FROM guard)";

const STORED_EVENTS: &str = "\
    SELECT position, stream_id, version, event_id, event_type, schema_version, payload \
    FROM events WHERE event_id = ANY($1::uuid[])";

/// A stream's version is its highest version; the `(stream_id, version)` index answers it from
/// its last entry.
const STREAM_VERSIONS: &str = "\
    SELECT requested.stream_id, \
           COALESCE((SELECT MAX(version) FROM events WHERE events.stream_id = requested.stream_id), 0) \
    FROM UNNEST($1::text[]) AS requested(stream_id)";

/// What became of one append of a batch that did not fail as a whole.
pub(super) enum AppendResult {
    Decided(Result<AppendOutcome, StoreError>),
    /// The append builds on an event of a younger transaction; it must be written by a later
    /// transaction. Nothing of it was written.
    Deferred,
}

/// What happened to a batch that did not fail as a whole.
pub(super) struct WrittenBatch {
    /// One per request, in order.
    pub(super) results: Vec<AppendResult>,
    /// Whether a transaction wrote events and committed.
    pub(super) committed: bool,
    /// The oldest running transaction right after the batch ended: outcomes whose events were
    /// written by an older transaction are readable.
    pub(super) oldest_running_transaction: u64,
}

/// Why a whole batch failed; nothing of it was written.
pub(super) struct BatchFailure {
    pub(super) error: sqlx::Error,
    /// A deadlock or serialisation failure between writers: trying again may succeed.
    pub(super) retryable: bool,
    /// False when the connection is in an unknown state and must be replaced.
    pub(super) connection_usable: bool,
}

/// How an insert failed.
enum InsertFailure {
    /// A unique index found another writer's commit: decide the append again.
    Clash,
    /// The append's own data was refused (a value PostgreSQL cannot store); only it fails.
    Refused(sqlx::Error),
    /// Writers deadlocked or serialisation failed: the whole batch may be tried again.
    Retryable(sqlx::Error),
    /// Anything else: the whole batch fails.
    Fatal(sqlx::Error),
    /// The stream's last event was written by a younger transaction.
    YoungerPredecessor,
}

/// The transaction of one batch, as far as it has got.
struct BatchTransaction<'c> {
    connection: &'c mut PgConnection,
    began: bool,
    /// Events written so far: the offset of the next event within the transaction's positions.
    written_events: i64,
    last_position: Option<i64>,
    recorded_at: DateTime<Utc>,
}

/// Writes one batch and decides every append in it; see the module documentation.
pub(super) async fn write_batch(
    connection: &mut PgConnection,
    requests: &[AppendRequest],
    recorded_at: DateTime<Utc>,
) -> Result<WrittenBatch, BatchFailure> {
    let mut known = KnownLog::default();
    let (all_event_ids, streams) = lookup_keys(requests);
    if let Err(error) = read_known(&mut known, connection, &all_event_ids, &streams).await {
        return Err(BatchFailure {
            retryable: false,
            connection_usable: connection_survives(&error),
            error,
        });
    }
    if let Some(written) =
        one_insert::write_with_one_insert(connection, &known, requests, recorded_at).await?
    {
        return Ok(written);
    }

    let mut transaction = BatchTransaction {
        connection,
        began: false,
        written_events: 0,
        last_position: None,
        recorded_at,
    };
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        match transaction.apply_append(&mut known, request).await {
            Ok(result) => results.push(result),
            Err(failure) => return Err(transaction.abandon(failure).await),
        }
    }
    transaction.finish(results).await
}

/// Reads the stored events among `event_ids` and the versions of `streams` into `known`.
async fn read_known(
    known: &mut KnownLog,
    connection: &mut PgConnection,
    event_ids: &[Uuid],
    streams: &[&str],
) -> Result<(), sqlx::Error> {
    let stored_rows = sqlx::query(STORED_EVENTS)
        .bind(event_ids)
        .fetch_all(&mut *connection)
        .await?;
    for row in stored_rows {
        let event_id: Uuid = row.try_get("event_id")?;
        let schema_version: i32 = row.try_get("schema_version")?;
        let summary = StoredEventSummary {
            position: row.try_get("position")?,
            stream_id: row.try_get("stream_id")?,
            version: row.try_get("version")?,
            event_type: row.try_get("event_type")?,
            schema_version: i64::from(schema_version),
            payload: row.try_get("payload")?,
        };
        known.remember_stored(event_id, summary);
    }
    let versions: Vec<(String, i64)> = sqlx::query_as(STREAM_VERSIONS)
        .bind(streams)
        .fetch_all(&mut *connection)
        .await?;
    for (stream, version) in versions {
        known.remember_version(stream, version);
    }
    Ok(())
}

impl BatchTransaction<'_> {
    /// Plans one append and writes it if it must be, deciding again after each clash.
    async fn apply_append(
        &mut self,
        known: &mut KnownLog,
        request: &AppendRequest,
    ) -> Result<AppendResult, InsertFailure> {
        for _ in 0..CLASH_ATTEMPTS {
            let current_version = match known.plan(request) {
                Ok(AppendPlan::Write { current_version }) => current_version,
                Ok(AppendPlan::AlreadyStored(outcome)) => {
                    return Ok(AppendResult::Decided(Ok(outcome)));
                }
                Err(refusal) => return Ok(AppendResult::Decided(Err(refusal))),
            };
            self.open_savepoint().await?;
            match self.insert(request, current_version).await {
                Ok((first_position, last_position)) => {
                    known.record_written(request, current_version, first_position);
                    return Ok(AppendResult::Decided(written_outcome(
                        current_version,
                        request,
                        last_position,
                    )));
                }
                Err(InsertFailure::YoungerPredecessor) => {
                    // The statement succeeded without inserting, so there is nothing to undo.
                    return Ok(AppendResult::Deferred);
                }
                Err(InsertFailure::Clash) => {
                    self.rollback_savepoint().await?;
                    let event_ids: Vec<Uuid> =
                        request.events.iter().map(|event| event.event_id).collect();
                    read_known(
                        known,
                        self.connection,
                        &event_ids,
                        &[request.stream.as_str()],
                    )
                    .await
                    .map_err(InsertFailure::Fatal)?;
                }
                Err(InsertFailure::Refused(error)) => {
                    self.rollback_savepoint().await?;
                    return Ok(AppendResult::Decided(Err(StoreError::Database(error))));
                }
                Err(failure) => return Err(failure),
            }
        }
        Ok(AppendResult::Decided(Err(StoreError::Database(
            sqlx::Error::Protocol(format!(
                "the append to {} clashed with other writers {CLASH_ATTEMPTS} times",
                request.stream
            )),
        ))))
    }

    /// Starts the transaction on the first write and a fresh savepoint for every append, in one
    /// round trip. Releasing the previous savepoint keeps them from nesting.
    async fn open_savepoint(&mut self) -> Result<(), InsertFailure> {
        let statement = if self.began {
            SAVEPOINT_NEXT
        } else {
            SAVEPOINT_FIRST
        };
        let result = sqlx::raw_sql(statement)
            .execute(&mut *self.connection)
            .await;
        // Even a failed BEGIN may have opened the transaction, and rolling back is harmless.
        self.began = true;
        result.map(drop).map_err(classify_failure)
    }

    async fn rollback_savepoint(&mut self) -> Result<(), InsertFailure> {
        sqlx::raw_sql(SAVEPOINT_ROLLBACK)
            .execute(&mut *self.connection)
            .await
            .map(drop)
            .map_err(InsertFailure::Fatal)
    }

    /// Inserts the append's events and returns their first and last positions.
    async fn insert(
        &mut self,
        request: &AppendRequest,
        current_version: i64,
    ) -> Result<(i64, i64), InsertFailure> {
        let event_count = i64::try_from(request.events.len()).unwrap_or(i64::MAX);
        if self.written_events.saturating_add(event_count)
            > i64::try_from(EVENTS_PER_TRANSACTION).unwrap_or(i64::MAX)
        {
            return Err(InsertFailure::Refused(too_many_events()));
        }
        let events = &request.events;
        let event_ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let event_types: Vec<&str> = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        let schema_versions = events
            .iter()
            .map(|event| i32::try_from(event.schema_version))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|error| InsertFailure::Refused(sqlx::Error::Encode(Box::new(error))))?;
        let payloads: Vec<&str> = events
            .iter()
            .map(|event| event.payload_json.as_str())
            .collect();
        let metadata: Vec<&str> = events
            .iter()
            .map(|event| event.metadata_json.as_str())
            .collect();
        let (inserted, predecessor_is_younger): (Option<i64>, bool) = sqlx::query_as(INSERT_EVENTS)
            .bind(self.written_events)
            .bind(request.stream.as_str())
            .bind(current_version)
            .bind(self.recorded_at)
            .bind(event_ids)
            .bind(event_types)
            .bind(schema_versions)
            .bind(payloads)
            .bind(metadata)
            .fetch_one(&mut *self.connection)
            .await
            .map_err(classify_failure)?;
        if predecessor_is_younger {
            return Err(InsertFailure::YoungerPredecessor);
        }
        let Some(last_position) = inserted else {
            return Err(InsertFailure::Fatal(sqlx::Error::Protocol(
                "an insert of events returned no position".to_owned(),
            )));
        };
        self.written_events += event_count;
        self.last_position = Some(last_position);
        Ok((last_position - event_count + 1, last_position))
    }

    /// Commits what was written, tells other processes, and reads which transactions are still
    /// running once it is over, all in one round trip.
    async fn finish(self, results: Vec<AppendResult>) -> Result<WrittenBatch, BatchFailure> {
        let statement = match (self.began, self.last_position) {
            (true, Some(last_position)) => format!(
                "NOTIFY {NOTIFICATION_CHANNEL}, '{last_position}'; COMMIT; {}",
                super::head::OLDEST_RUNNING_TRANSACTION
            ),
            // Every write was rolled back to its savepoint: there is nothing to commit.
            (true, None) => format!("ROLLBACK; {}", super::head::OLDEST_RUNNING_TRANSACTION),
            (false, _) => super::head::OLDEST_RUNNING_TRANSACTION.to_owned(),
        };
        let committed = self.began && self.last_position.is_some();
        let ended = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .fetch_all(&mut *self.connection)
            .await
            .and_then(|rows| match rows.first() {
                Some(row) => row.try_get::<String, _>(0),
                None => Err(sqlx::Error::RowNotFound),
            })
            .and_then(|text| parse_transaction_id(&text));
        match ended {
            Ok(oldest_running_transaction) => Ok(WrittenBatch {
                results,
                committed,
                oldest_running_transaction,
            }),
            Err(error) => {
                let connection_usable = connection_survives(&error);
                if connection_usable {
                    // The statement failed before or at COMMIT; make sure nothing stays open.
                    let _ = sqlx::raw_sql("ROLLBACK")
                        .execute(&mut *self.connection)
                        .await;
                }
                Err(BatchFailure {
                    error,
                    retryable: false,
                    connection_usable,
                })
            }
        }
    }

    /// Rolls the whole transaction back after a failure that concerns more than one append.
    async fn abandon(self, failure: InsertFailure) -> BatchFailure {
        let (error, retryable) = match failure {
            InsertFailure::Retryable(error) => (error, true),
            InsertFailure::Fatal(error) | InsertFailure::Refused(error) => (error, false),
            InsertFailure::Clash | InsertFailure::YoungerPredecessor => (
                sqlx::Error::Protocol("an unexpected clash aborted the batch".to_owned()),
                false,
            ),
        };
        if self.began {
            return roll_back(self.connection, error, retryable).await;
        }
        BatchFailure {
            connection_usable: connection_survives(&error),
            error,
            retryable,
        }
    }
}

/// The whole batch failed with `error` inside its transaction: rolls the transaction back when
/// the connection can still take it.
async fn roll_back(
    connection: &mut PgConnection,
    error: sqlx::Error,
    retryable: bool,
) -> BatchFailure {
    let mut connection_usable = connection_survives(&error);
    if connection_usable {
        connection_usable = sqlx::raw_sql("ROLLBACK")
            .execute(&mut *connection)
            .await
            .is_ok();
    }
    BatchFailure {
        error,
        retryable,
        connection_usable,
    }
}

/// Sorts a failed statement into what it means for the append and the batch.
fn classify_failure(error: sqlx::Error) -> InsertFailure {
    let Some(database_error) = error.as_database_error() else {
        return InsertFailure::Fatal(error);
    };
    let code = database_error.code().unwrap_or_default().into_owned();
    match code.as_str() {
        // unique_violation: on one of the indexes another writer may have got to first. A clash
        // on the position itself means something else wrote into this transaction's positions.
        "23505" => match database_error.constraint() {
            Some("events_event_id_key" | "events_stream_id_version_key") => InsertFailure::Clash,
            _ => InsertFailure::Fatal(error),
        },
        // numeric_value_out_of_range: the only product that can overflow is the transaction id
        // times 2^20, once ids reach 2^43.
        "22003" => InsertFailure::Refused(position_space_exhausted()),
        // deadlock_detected, serialization_failure
        "40P01" | "40001" => InsertFailure::Retryable(error),
        // data_exception (a payload JSONB refuses, a number out of range) and
        // integrity_constraint_violation (a CHECK): about this append's values only.
        code if code.starts_with("22") || code.starts_with("23") => InsertFailure::Refused(error),
        _ => InsertFailure::Fatal(error),
    }
}

/// Errors the server reported leave the connection usable; anything else (a broken socket, a
/// protocol error) may have left it mid-conversation.
fn connection_survives(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(_))
}

pub(super) fn too_many_events() -> sqlx::Error {
    sqlx::Error::InvalidArgument(format!(
        "one PostgreSQL transaction can write at most {EVENTS_PER_TRANSACTION} events"
    ))
}

fn position_space_exhausted() -> sqlx::Error {
    sqlx::Error::InvalidArgument(format!(
        "transaction ids have reached {}, beyond which positions no longer fit in 63 bits",
        super::head::TRANSACTION_ID_LIMIT
    ))
}
