//! How events are turned into column values and back.
//!
//! Every value read from the database is checked here: a row that does not decode is reported as
//! [`StoreError::Corrupt`] with its position, never as a panic.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::counts::row_position;
pub(super) use crate::counts::{bound_to_sql, limit_to_sql, stored_count};
use crate::{EventMetadata, RecordedEvent, StoreError, StreamId};

/// Builds a `SELECT` of every column of `events`, in the order [`decode_recorded_event`] expects,
/// followed by `$tail`. A macro rather than a function so the statement stays a `&'static str`,
/// which is what sqlx accepts as SQL without further ceremony.
macro_rules! select_events {
    ($tail:literal) => {
        concat!(
            "SELECT position, stream_id, version, event_id, event_type, schema_version, ",
            "payload, metadata, recorded_at FROM events ",
            $tail
        )
    };
}
pub(super) use select_events;

/// Event ids are stored as lowercase hyphenated text, the form every SQLite tool can read.
pub(super) fn event_id_to_text(event_id: Uuid) -> String {
    event_id.hyphenated().to_string()
}

/// One timestamp format for writing, so that the text sorts in time order and round-trips.
/// The value is truncated to microseconds, which is also what PostgreSQL keeps.
pub(super) fn recorded_at_now() -> String {
    Utc::now()
        .trunc_subsecs(6)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Decodes a row selected with [`select_events!`].
pub(super) fn decode_recorded_event(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position = row_position(row.try_get("position"))?;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let column_text = |column: &str| -> Result<String, StoreError> {
        row.try_get::<String, _>(column)
            .map_err(|error| corrupt(format!("{column} cannot be read: {error}")))
    };
    let column_integer = |column: &str| -> Result<i64, StoreError> {
        row.try_get::<i64, _>(column)
            .map_err(|error| corrupt(format!("{column} cannot be read: {error}")))
    };

    let event_id_text = column_text("event_id")?;
    let event_id = Uuid::parse_str(&event_id_text)
        .map_err(|error| corrupt(format!("event_id {event_id_text:?} is not a UUID: {error}")))?;
    let schema_version = u32::try_from(column_integer("schema_version")?)
        .map_err(|error| corrupt(format!("schema_version is out of range: {error}")))?;
    let payload = serde_json::from_str(&column_text("payload")?)
        .map_err(|error| corrupt(format!("payload is not JSON: {error}")))?;
    let metadata: EventMetadata = serde_json::from_str(&column_text("metadata")?)
        .map_err(|error| corrupt(format!("metadata does not decode: {error}")))?;
    let recorded_at_text = column_text("recorded_at")?;
    let recorded_at = DateTime::parse_from_rfc3339(&recorded_at_text)
        .map_err(|error| corrupt(format!("recorded_at {recorded_at_text:?}: {error}")))?
        .with_timezone(&Utc);

    Ok(RecordedEvent {
        position,
        stream_id: StreamId::from(column_text("stream_id")?),
        version: stored_count(column_integer("version")?, position, "version")?,
        event_id,
        event_type: column_text("event_type")?,
        schema_version,
        payload,
        metadata,
        recorded_at,
    })
}

/// Decodes every row of a read, stopping at the first that does not decode.
pub(super) fn decode_recorded_events(rows: &[SqliteRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(decode_recorded_event).collect()
}
