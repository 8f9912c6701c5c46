//! How events are turned into column values and back.
//!
//! Every value read from the database is checked here: a row that does not decode is reported as
//! [`StoreError::Corrupt`] with its position, never as a panic.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::counts::row_position;
pub(super) use crate::counts::{bound_to_sql, limit_to_sql, stored_count};
use crate::{BulkEvent, EventMetadata, RecordedEvent, StoreError, StreamId};

/// Builds a `SELECT` of every column of `events`, in the order [`decode_recorded_event`] expects,
/// followed by the pieces of `$tail`. A macro rather than a function so the statement stays a `&'static str`,
/// which is what sqlx accepts as SQL without further ceremony.
macro_rules! select_events {
    ($($tail:tt)+) => {
        concat!(
            "SELECT position, stream_id, version, event_id, event_type, schema_version, ",
            "payload, metadata, recorded_at FROM events ",
            $($tail)+
        )
    };
}
pub(super) use select_events;

/// As [`select_events!`], with the payload as its JSON text (`jsonb`'s text form), for
/// [`decode_bulk_event`].
macro_rules! select_bulk_events {
    ($($tail:tt)+) => {
        concat!(
            "SELECT position, stream_id, version, event_id, event_type, schema_version, ",
            "payload::text AS payload, metadata, recorded_at FROM events ",
            $($tail)+
        )
    };
}
pub(super) use select_bulk_events;

/// The time every event of one batch is recorded at, truncated to the microseconds PostgreSQL
/// keeps, so that what an append writes is exactly what a read returns.
pub(super) fn recorded_at_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Decodes a row selected with [`select_events!`].
pub(super) fn decode_recorded_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_event_with(row, |row| row.try_get::<serde_json::Value, _>("payload"))
}

/// Decodes a row selected with [`select_bulk_events!`], its payload the stored JSON text.
pub(super) fn decode_bulk_event(row: &PgRow) -> Result<BulkEvent, StoreError> {
    decode_event_with(row, |row| {
        let text: String = row.try_get("payload")?;
        RawValue::from_string(text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
    })
}

/// Decodes a row, its payload read by `payload`.
fn decode_event_with<P>(
    row: &PgRow,
    payload: impl FnOnce(&PgRow) -> Result<P, sqlx::Error>,
) -> Result<RecordedEvent<P>, StoreError> {
    let position = row_position(row.try_get("position"))?;
    let corrupt = |column: &str, error: sqlx::Error| StoreError::Corrupt {
        position,
        reason: format!("{column} cannot be read: {error}"),
    };

    let stream_id: String = row
        .try_get("stream_id")
        .map_err(|error| corrupt("stream_id", error))?;
    let version: i64 = row
        .try_get("version")
        .map_err(|error| corrupt("version", error))?;
    let event_id: Uuid = row
        .try_get("event_id")
        .map_err(|error| corrupt("event_id", error))?;
    let event_type: String = row
        .try_get("event_type")
        .map_err(|error| corrupt("event_type", error))?;
    let schema_version: i32 = row
        .try_get("schema_version")
        .map_err(|error| corrupt("schema_version", error))?;
    let payload = payload(row).map_err(|error| corrupt("payload", error))?;
    let Json(metadata): Json<EventMetadata> = row
        .try_get("metadata")
        .map_err(|error| corrupt("metadata", error))?;
    let recorded_at: DateTime<Utc> = row
        .try_get("recorded_at")
        .map_err(|error| corrupt("recorded_at", error))?;

    Ok(RecordedEvent {
        position,
        stream_id: StreamId::from(stream_id),
        version: stored_count(version, position, "version")?,
        event_id,
        event_type,
        schema_version: u32::try_from(schema_version).map_err(|error| StoreError::Corrupt {
            position,
            reason: format!("schema_version is out of range: {error}"),
        })?,
        payload,
        metadata,
        recorded_at,
    })
}

/// Decodes every row of a read, stopping at the first that does not decode.
pub(super) fn decode_recorded_events(rows: &[PgRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(decode_recorded_event).collect()
}
