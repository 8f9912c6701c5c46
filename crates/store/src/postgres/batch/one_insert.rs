//! The common case of a batch: every append decided from the batch's lookup, and every event
//! that must be written inserted by one statement.
//!
//! Written append by append, a batch costs two round trips per writing append (its savepoint and
//! its insert), which held the store to about 4,000 events a second however many appends shared
//! a commit. Here a batch costs three round trips whatever its size: `BEGIN` with the
//! transaction's id, one insert, and the commit. Positions are computed from the transaction id
//! before the insert, so the appends' outcomes are known before it runs.
//!
//! One statement succeeds or fails whole, so anything that needs a decision per append sends
//! the batch back, rolled back, to the append-by-append path: an insert that clashes with
//! another writer's commit on a unique index, a value PostgreSQL refuses, or an append whose
//! stream was last written by a younger transaction. Those are rare with one process and
//! uncommon with several; each costs the batch one extra transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::super::head::{EVENTS_PER_TRANSACTION, parse_transaction_id};
use super::{
    AppendResult, BatchFailure, BatchTransaction, WrittenBatch, connection_survives, roll_back,
};
use crate::batch_plan::{AppendPlan, KnownLog, written_outcome};
use crate::writer_queue::AppendRequest;

/// A transaction's positions run from its id times this, one per event.
const POSITIONS_PER_TRANSACTION: i64 = EVENTS_PER_TRANSACTION as i64;

/// Opens the transaction and returns its id, in one round trip.
const BEGIN_WITH_TRANSACTION_ID: &str = "BEGIN; SELECT pg_current_xact_id()::text";

/// Inserts every event of the batch at the positions computed for it, unless an append builds
/// on a stream's event that a younger transaction wrote (the guard): then nothing is inserted
/// and the second column is true. `$9`/`$10` are the stream and version each append builds on;
/// `$11` is the first position of the next transaction id, where younger transactions begin.
const INSERT_BATCH: &str = "\
    WITH guard AS ( \
        SELECT EXISTS ( \
            SELECT 1 FROM UNNEST($9::text[], $10::bigint[]) AS base(stream_id, version) \
            JOIN events ON events.stream_id = base.stream_id AND events.version = base.version \
            WHERE events.position >= $11 \
        ) AS predecessor_is_younger \
    ), \
    inserted AS ( \
        INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, \
                            payload, metadata, recorded_at) \
        SELECT new.position, new.stream_id, new.version, new.event_id, new.event_type, \
               new.schema_version, new.payload::jsonb, new.metadata::jsonb, $12 \
        FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], \
                    $6::integer[], $7::text[], $8::text[]) \
             AS new(position, stream_id, version, event_id, event_type, schema_version, \
                    payload, metadata), \
             guard \
        WHERE NOT guard.predecessor_is_younger \
        RETURNING 1 \
    ) \
    SELECT (SELECT COUNT(*) FROM inserted), (SELECT predecessor_is_younger FROM guard)";

/// The insert's values, a column per array.
#[derive(Default)]
struct EventColumns<'a> {
    positions: Vec<i64>,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
    /// The stream and version each writing append builds on (none for a new stream).
    base_streams: Vec<&'a str>,
    base_versions: Vec<i64>,
}

impl<'a> EventColumns<'a> {
    /// Adds an append's events from `first_position`; `None` when a schema version does not fit
    /// the column, which the append-by-append path reports for that append alone.
    fn push(
        &mut self,
        request: &'a AppendRequest,
        current_version: i64,
        first_position: i64,
    ) -> Option<()> {
        if current_version > 0 {
            self.base_streams.push(request.stream.as_str());
            self.base_versions.push(current_version);
        }
        for ((position, version), event) in (first_position..)
            .zip(current_version + 1..)
            .zip(&request.events)
        {
            self.positions.push(position);
            self.stream_ids.push(request.stream.as_str());
            self.versions.push(version);
            self.event_ids.push(event.event_id);
            self.event_types.push(&event.event_type);
            self.schema_versions
                .push(i32::try_from(event.schema_version).ok()?);
            self.payloads.push(&event.payload_json);
            self.metadata.push(&event.metadata_json);
        }
        Some(())
    }
}

/// Writes the batch with one insert and commits it, or returns `None` with nothing written and
/// no transaction open when the batch must be written append by append. `known` is what the
/// batch's lookup found; it is left as it was.
pub(super) async fn write_with_one_insert(
    connection: &mut PgConnection,
    known: &KnownLog,
    requests: &[AppendRequest],
    recorded_at: DateTime<Utc>,
) -> Result<Option<WrittenBatch>, BatchFailure> {
    let transaction_id = match begin(connection).await {
        Ok(transaction_id) => transaction_id,
        Err(error) => return Err(roll_back(connection, error, false).await),
    };
    // Beyond 2^43 transaction ids positions overflow; the other path reports it per append.
    let Some(younger_from) = i64::try_from(transaction_id.saturating_add(1))
        .ok()
        .and_then(|next| next.checked_mul(POSITIONS_PER_TRANSACTION))
    else {
        return give_up(connection).await;
    };
    let first_of_transaction = younger_from - POSITIONS_PER_TRANSACTION;

    let mut planned = known.clone();
    let mut columns = EventColumns::default();
    let mut results = Vec::with_capacity(requests.len());
    let mut written_events: i64 = 0;
    for request in requests {
        let current_version = match planned.plan(request) {
            Ok(AppendPlan::Write { current_version }) => current_version,
            Ok(AppendPlan::AlreadyStored(outcome)) => {
                results.push(AppendResult::Decided(Ok(outcome)));
                continue;
            }
            Err(refusal) => {
                results.push(AppendResult::Decided(Err(refusal)));
                continue;
            }
        };
        let event_count = i64::try_from(request.events.len()).unwrap_or(i64::MAX);
        if written_events.saturating_add(event_count) > POSITIONS_PER_TRANSACTION {
            return give_up(connection).await;
        }
        let first_position = first_of_transaction + written_events;
        if columns
            .push(request, current_version, first_position)
            .is_none()
        {
            return give_up(connection).await;
        }
        planned.record_written(request, current_version, first_position);
        let last_position = first_position + event_count - 1;
        results.push(AppendResult::Decided(written_outcome(
            current_version,
            request,
            last_position,
        )));
        written_events += event_count;
    }

    let last_position = if written_events == 0 {
        None
    } else {
        match insert(connection, &columns, younger_from, recorded_at).await {
            Ok(true) => Some(first_of_transaction + written_events - 1),
            Ok(false) => return give_up(connection).await,
            Err(error) if connection_survives(&error) => return give_up(connection).await,
            Err(error) => return Err(roll_back(connection, error, false).await),
        }
    };
    let transaction = BatchTransaction {
        connection,
        began: true,
        written_events,
        last_position,
        recorded_at,
    };
    transaction.finish(results).await.map(Some)
}

async fn begin(connection: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let rows = sqlx::raw_sql(BEGIN_WITH_TRANSACTION_ID)
        .fetch_all(&mut *connection)
        .await?;
    let text: String = rows.first().ok_or(sqlx::Error::RowNotFound)?.try_get(0)?;
    parse_transaction_id(&text)
}

/// Runs the insert; false when the guard refused it (nothing was inserted).
async fn insert(
    connection: &mut PgConnection,
    columns: &EventColumns<'_>,
    younger_from: i64,
    recorded_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let (inserted, predecessor_is_younger): (i64, bool) = sqlx::query_as(INSERT_BATCH)
        .bind(&columns.positions)
        .bind(&columns.stream_ids)
        .bind(&columns.versions)
        .bind(&columns.event_ids)
        .bind(&columns.event_types)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.metadata)
        .bind(&columns.base_streams)
        .bind(&columns.base_versions)
        .bind(younger_from)
        .bind(recorded_at)
        .fetch_one(&mut *connection)
        .await?;
    let expected = i64::try_from(columns.positions.len()).unwrap_or(i64::MAX);
    Ok(!predecessor_is_younger && inserted == expected)
}

/// Rolls back so that the batch can be written append by append.
async fn give_up(connection: &mut PgConnection) -> Result<Option<WrittenBatch>, BatchFailure> {
    match sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await {
        Ok(_) => Ok(None),
        Err(error) => Err(BatchFailure {
            connection_usable: false,
            retryable: false,
            error,
        }),
    }
}
