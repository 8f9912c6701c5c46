//! Deciding a batch of appends in memory, the same way on every backend.
//!
//! A writer reads, in one lookup per batch, every stored event whose id the batch carries and
//! the current version of every stream it touches ([`KnownLog`]). It then decides each append in
//! queue order as if each saw the ones before it: an append whose events are all stored already
//! is answered with where they landed (idempotency), one whose expected version no longer holds
//! is refused, and the rest are written. This keeps the rules in one place and the database round
//! trips per batch, not per append.

use std::collections::HashMap;

use uuid::Uuid;

use crate::counts::stored_count;
use crate::writer_queue::{AppendRequest, EncodedEvent};
use crate::{AppendOutcome, ExpectedVersion, StoreError, StreamId};

/// The columns of a stored event needed to tell a retry from a clash.
#[derive(Debug, Clone)]
pub(crate) struct StoredEventSummary {
    pub(crate) position: i64,
    pub(crate) stream_id: String,
    pub(crate) version: i64,
    pub(crate) event_type: String,
    pub(crate) schema_version: i64,
    pub(crate) payload: serde_json::Value,
}

/// What a batch knows of the log: read before deciding, and kept up to date with the batch's
/// own writes.
#[derive(Debug, Default, Clone)]
pub(crate) struct KnownLog {
    stream_versions: HashMap<String, i64>,
    stored_events: HashMap<Uuid, StoredEventSummary>,
}

/// What to do with one append.
#[derive(Debug)]
pub(crate) enum AppendPlan {
    /// Every event is already stored with the same content: answer where they landed.
    AlreadyStored(AppendOutcome),
    /// Write the events after `current_version`.
    Write { current_version: i64 },
}

/// The event ids and streams a batch must look up before it is decided, streams sorted and
/// without repeats.
pub(crate) fn lookup_keys(requests: &[AppendRequest]) -> (Vec<Uuid>, Vec<&str>) {
    let event_ids = requests
        .iter()
        .flat_map(|request| request.events.iter().map(|event| event.event_id))
        .collect();
    let mut streams: Vec<&str> = requests
        .iter()
        .map(|request| request.stream.as_str())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    (event_ids, streams)
}

impl KnownLog {
    /// Remembers an event the lookup found stored.
    pub(crate) fn remember_stored(&mut self, event_id: Uuid, summary: StoredEventSummary) {
        self.stored_events.insert(event_id, summary);
    }

    /// Remembers a stream's current version (0: no events).
    pub(crate) fn remember_version(&mut self, stream: String, version: i64) {
        self.stream_versions.insert(stream, version);
    }

    /// Decides an append: idempotency first, then the version check.
    pub(crate) fn plan(&self, request: &AppendRequest) -> Result<AppendPlan, StoreError> {
        if let Some(earlier_outcome) = self.identical_earlier_append(request)? {
            return Ok(AppendPlan::AlreadyStored(earlier_outcome));
        }
        let current_version = self
            .stream_versions
            .get(request.stream.as_str())
            .copied()
            .unwrap_or(0);
        check_expected_version(&request.stream, request.expected, current_version)?;
        Ok(AppendPlan::Write { current_version })
    }

    /// Recognises a retry of an append that was already written.
    ///
    /// Returns the earlier outcome when every event is stored with the same stream, type, schema
    /// version and payload; `None` when none is stored; and `DuplicateEventId` when only some
    /// are, or when one is stored with other content or in another stream.
    fn identical_earlier_append(
        &self,
        request: &AppendRequest,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut last_stored: Option<&StoredEventSummary> = None;
        let mut first_stored_event_id = None;
        let mut some_event_is_new = false;
        for event in &request.events {
            match self.stored_events.get(&event.event_id) {
                Some(stored) => {
                    if !is_same_event(stored, &request.stream, event) {
                        return Err(StoreError::DuplicateEventId {
                            event_id: event.event_id,
                        });
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
            return Err(StoreError::DuplicateEventId {
                event_id: first_stored_event_id,
            });
        }
        let position = stored_count(last_stored.position, 0, "position")?;
        Ok(Some(AppendOutcome {
            version: stored_count(last_stored.version, position, "version")?,
            position,
            already_stored: true,
        }))
    }

    /// Remembers an append this batch has just written at positions from `first_position`, for
    /// the appends after it.
    pub(crate) fn record_written(
        &mut self,
        request: &AppendRequest,
        current_version: i64,
        first_position: i64,
    ) {
        let mut version = current_version;
        for (position, event) in (first_position..).zip(&request.events) {
            version += 1;
            self.stored_events.insert(
                event.event_id,
                StoredEventSummary {
                    position,
                    stream_id: request.stream.as_str().to_owned(),
                    version,
                    event_type: event.event_type.clone(),
                    schema_version: i64::from(event.schema_version),
                    payload: event.payload.clone(),
                },
            );
        }
        self.stream_versions
            .insert(request.stream.as_str().to_owned(), version);
    }
}

/// Payloads are compared as parsed JSON, so key order and spacing (which PostgreSQL's JSONB
/// changes) do not matter.
fn is_same_event(stored: &StoredEventSummary, stream: &StreamId, event: &EncodedEvent) -> bool {
    stored.stream_id == stream.as_str()
        && stored.event_type == event.event_type
        && stored.schema_version == i64::from(event.schema_version)
        && stored.payload == event.payload
}

fn check_expected_version(
    stream: &StreamId,
    expected: ExpectedVersion,
    current_version: i64,
) -> Result<(), StoreError> {
    let actual = u64::try_from(current_version).unwrap_or(0);
    let matches = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::Exact(expected_version) => actual == expected_version,
    };
    if matches {
        return Ok(());
    }
    Err(StoreError::VersionConflict {
        stream: stream.clone(),
        expected,
        actual,
    })
}

/// The outcome of an append written after `current_version`, ending at `last_position`.
pub(crate) fn written_outcome(
    current_version: i64,
    request: &AppendRequest,
    last_position: i64,
) -> Result<AppendOutcome, StoreError> {
    let event_count = i64::try_from(request.events.len()).unwrap_or(i64::MAX);
    let position = stored_count(last_position, 0, "position")?;
    Ok(AppendOutcome {
        version: stored_count(
            current_version.saturating_add(event_count),
            position,
            "version",
        )?,
        position,
        already_stored: false,
    })
}
