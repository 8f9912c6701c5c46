//! How events are turned into column values and back.
//!
//! Every value read from the database is checked here: a row that does not decode is reported as
//! [`StoreError::Corrupt`] with its position, never as a panic.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::counts::row_position;
pub(super) use crate::counts::{bound_to_sql, limit_to_sql, stored_count};
use crate::{BulkEvent, EventMetadata, RecordedEvent, StoreError, StreamId};

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
    let schema_version = column_integer("schema_version")?;
    let payload = serde_json::from_str(&column_text("payload")?)
        .map_err(|error| corrupt(format!("payload is not JSON: {error}")))?;
    let metadata: EventMetadata = serde_json::from_str(&column_text("metadata")?)
        .map_err(|error| corrupt(format!("metadata does not decode: {error}")))?;
    let recorded_at_text = column_text("recorded_at")?;
    let stream_id = column_text("stream_id")?;
    let version = column_integer("version")?;
    let event_type = column_text("event_type")?;
    recorded_event(StoredColumns {
        position,
        stream_id,
        version,
        event_id: &event_id_text,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at: &recorded_at_text,
    })
}

/// One event's columns once read, before the checks both reads make (`P`: the payload, parsed or
/// as stored).
struct StoredColumns<'a, P> {
    position: u64,
    stream_id: String,
    version: i64,
    event_id: &'a str,
    event_type: String,
    schema_version: i64,
    payload: P,
    metadata: EventMetadata,
    recorded_at: &'a str,
}

/// The checks and conversions of an event's columns, shared by the row-by-row and the bulk read
/// so that both return the same events.
fn recorded_event<P>(columns: StoredColumns<'_, P>) -> Result<RecordedEvent<P>, StoreError> {
    let position = columns.position;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let event_id = Uuid::parse_str(columns.event_id).map_err(|error| {
        corrupt(format!(
            "event_id {:?} is not a UUID: {error}",
            columns.event_id
        ))
    })?;
    let schema_version = u32::try_from(columns.schema_version)
        .map_err(|error| corrupt(format!("schema_version is out of range: {error}")))?;
    let recorded_at = DateTime::parse_from_rfc3339(columns.recorded_at)
        .map_err(|error| corrupt(format!("recorded_at {:?}: {error}", columns.recorded_at)))?
        .with_timezone(&Utc);
    Ok(RecordedEvent {
        position,
        stream_id: StreamId::from(columns.stream_id),
        version: stored_count(columns.version, position, "version")?,
        event_id,
        event_type: columns.event_type,
        schema_version,
        payload: columns.payload,
        metadata: columns.metadata,
        recorded_at,
    })
}

/// The bulk read's statement: up to `?2` events from position `?1`, as one JSON array of arrays
/// whose elements are the columns of [`select_events!`] in order. Text columns are quoted with
/// `json_quote`; `payload` and `metadata` are JSON already (a `CHECK (json_valid(...))` on the
/// table) and are spliced in as they are stored, so SQLite does not parse them. Each event's
/// array is written by one `printf`, not a chain of `||` (each of which copied the row so far).
/// `NULL` when no event is there. `group_concat` is not promised to keep the subquery's order,
/// so [`decode_event_chunk`] does not rely on it.
pub(super) const SELECT_EVENT_CHUNK: &str = "\
    SELECT '[' || group_concat(printf('[%d,%s,%d,%s,%s,%d,%s,%s,%s]', position, \
        json_quote(stream_id), version, json_quote(event_id), json_quote(event_type), \
        schema_version, payload, metadata, json_quote(recorded_at)), ',') || ']' \
    FROM (SELECT position, stream_id, version, event_id, event_type, schema_version, payload, \
        metadata, recorded_at FROM events WHERE position >= ?1 ORDER BY position LIMIT ?2)";

/// One event of a chunk: the columns of [`select_events!`], in order.
type ChunkRow<'a> = (
    i64,
    String,
    i64,
    &'a str,
    String,
    i64,
    &'a RawValue,
    EventMetadata,
    &'a str,
);

/// Decodes a [`SELECT_EVENT_CHUNK`] text into its events, in position order. `None` when the
/// text does not decode as the statement spells events: the caller then reads the same range row
/// by row, which names the corrupt row (or, should the text only defeat this decoder, e.g. an
/// escaped `event_id`, reads it correctly).
pub(super) fn decode_event_chunk(text: &str) -> Option<Result<Vec<BulkEvent>, StoreError>> {
    let rows: Vec<ChunkRow<'_>> = serde_json::from_str(text).ok()?;
    let mut events = Vec::with_capacity(rows.len());
    for (
        position,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    ) in rows
    {
        let position = match stored_count(position, 0, "position") {
            Ok(position) => position,
            Err(error) => return Some(Err(error)),
        };
        match recorded_event(StoredColumns {
            position,
            stream_id,
            version,
            event_id,
            event_type,
            schema_version,
            payload: payload.to_owned(),
            metadata,
            recorded_at,
        }) {
            Ok(event) => events.push(event),
            Err(error) => return Some(Err(error)),
        }
    }
    if !events.is_sorted_by_key(|event| event.position) {
        events.sort_unstable_by_key(|event| event.position);
    }
    Some(Ok(events))
}

/// Decodes every row of a read, stopping at the first that does not decode.
pub(super) fn decode_recorded_events(rows: &[SqliteRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(decode_recorded_event).collect()
}
