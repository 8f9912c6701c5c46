//! Loads complaints from their event streams and appends what the domain decides, with
//! idempotent retries and optimistic concurrency.

use std::sync::Arc;

use doorstep_domain::complaint::{
    Command, Complaint, Event, HandlingContext, apply, handle, replay,
};
use doorstep_domain::input::{ComplaintId, RequestKey};
use doorstep_domain::{CodeTimescales, WorkingDayCalendar};
use doorstep_store::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId,
};
use uuid::Uuid;

use crate::error::ApiError;

/// Namespace of the event ids Doorstep derives from callers' idempotency keys and request ids.
const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x6d2c_4b1e_8f0a_4c55_9a3e_0d51_7c2e_a001);
/// How often a command without `expected_version` is retried when another write got in first.
const CONFLICT_RETRIES: usize = 5;
/// More events than any complaint will ever have; a stream is read whole.
const MAX_STREAM_EVENTS: usize = 100_000;

/// Who sent a command and how, recorded in every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandOrigin {
    pub actor: String,
    pub source_channel: String,
    pub request_id: Option<RequestKey>,
    /// A digest of the request, to tell a retry from a different command with the same key.
    pub fingerprint: String,
}

/// Where a write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    pub complaint_id: ComplaintId,
    pub version: u64,
    pub position: u64,
    pub duplicate: bool,
}

/// A complaint and the events it was folded from.
pub struct LoadedComplaint {
    pub state: Option<Complaint>,
    pub events: Vec<(RecordedEvent, Event)>,
}

#[derive(Clone)]
pub struct ComplaintLog {
    store: Arc<dyn EventStore>,
    calendar: Arc<WorkingDayCalendar>,
    timescales: CodeTimescales,
}

pub fn stream_of(complaint_id: ComplaintId) -> StreamId {
    StreamId::new("complaint", complaint_id)
}

impl ComplaintLog {
    pub fn new(
        store: Arc<dyn EventStore>,
        calendar: Arc<WorkingDayCalendar>,
        timescales: CodeTimescales,
    ) -> Self {
        Self {
            store,
            calendar,
            timescales,
        }
    }

    pub fn calendar(&self) -> &WorkingDayCalendar {
        &self.calendar
    }

    pub async fn load(&self, complaint_id: ComplaintId) -> Result<LoadedComplaint, ApiError> {
        let recorded = self
            .store
            .read_stream(&stream_of(complaint_id), 1, MAX_STREAM_EVENTS)
            .await?;
        let mut events = Vec::with_capacity(recorded.len());
        for record in recorded {
            let event =
                Event::from_payload(&record.event_type, record.schema_version, &record.payload)
                    .map_err(ApiError::internal)?;
            events.push((record, event));
        }
        let state = replay(events.iter().map(|(_, event)| event));
        Ok(LoadedComplaint { state, events })
    }

    /// Logs a new complaint. The intake event's id is derived from the idempotency key, so a
    /// retry finds the first complaint instead of creating a second.
    pub async fn log_new(
        &self,
        origin: &CommandOrigin,
        build: impl Fn(ComplaintId) -> Result<Command, ApiError>,
    ) -> Result<WriteResult, ApiError> {
        let key = origin
            .request_id
            .as_ref()
            .ok_or_else(|| ApiError::internal(std::io::Error::other("intake without a key")))?;
        let intake_event_id = Uuid::new_v5(&REQUEST_NAMESPACE, format!("intake/{key}").as_bytes());
        // Append first and look for an earlier call only when the store says the key's event id
        // is taken: a first call, by far the commonest, then costs no extra read.
        let complaint_id = ComplaintId::from_uuid(Uuid::now_v7());
        let events = handle(None, build(complaint_id)?, &self.context())?;
        let new_events = self.new_events(events, origin, |index| {
            (index == 0).then_some(intake_event_id)
        });
        match self
            .store
            .append(
                &stream_of(complaint_id),
                ExpectedVersion::NoStream,
                new_events,
            )
            .await
        {
            Ok(outcome) => Ok(WriteResult {
                complaint_id,
                version: outcome.version,
                position: outcome.position,
                duplicate: false,
            }),
            // An earlier call with this key (perhaps a concurrent one) logged its complaint.
            Err(StoreError::DuplicateEventId { .. }) => {
                let first = self
                    .store
                    .find_event(intake_event_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(std::io::Error::other(
                            "the intake event id was taken but cannot be found",
                        ))
                    })?;
                retry_result(&first, origin, "idempotency_key")
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Runs a command against an existing complaint; returns where it landed and the complaint
    /// as it stands after it.
    pub async fn execute(
        &self,
        complaint_id: ComplaintId,
        expected_version: Option<u64>,
        origin: &CommandOrigin,
        command: Command,
    ) -> Result<(WriteResult, Complaint), ApiError> {
        let stream = stream_of(complaint_id);
        let derived_id = |index: usize| {
            origin.request_id.as_ref().map(|request_id| {
                Uuid::new_v5(
                    &REQUEST_NAMESPACE,
                    format!("{complaint_id}/{request_id}/{index}").as_bytes(),
                )
            })
        };
        for _ in 0..CONFLICT_RETRIES {
            if let Some(first_id) = derived_id(0)
                && let Some(first) = self.store.find_event(first_id).await?
            {
                let result = retry_result(&first, origin, "request_id")?;
                let complaint = self.load(complaint_id).await?.state.ok_or_else(|| {
                    ApiError::internal(std::io::Error::other("a retried complaint has no events"))
                })?;
                return Ok((result, complaint));
            }
            let loaded = self.load(complaint_id).await?;
            let actual = loaded
                .state
                .as_ref()
                .map_or(0, |complaint| complaint.version);
            if let Some(expected) = expected_version
                && expected != actual
            {
                return Err(ApiError::VersionConflict { expected, actual });
            }
            let events = handle(loaded.state.as_ref(), command.clone(), &self.context())?;
            let new_events = self.new_events(events.clone(), origin, derived_id);
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(actual), new_events)
                .await
            {
                Ok(outcome) => {
                    let complaint = events
                        .iter()
                        .fold(loaded.state, apply)
                        .ok_or(ApiError::NotFound("no complaint has this id".to_owned()))?;
                    let result = WriteResult {
                        complaint_id,
                        version: outcome.version,
                        position: outcome.position,
                        duplicate: outcome.already_stored,
                    };
                    return Ok((result, complaint));
                }
                Err(StoreError::VersionConflict { actual: now_at, .. }) => {
                    if let Some(expected) = expected_version {
                        return Err(ApiError::VersionConflict {
                            expected,
                            actual: now_at,
                        });
                    }
                    // The caller did not ask for a version check: decide again on the new state.
                }
                Err(StoreError::DuplicateEventId { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(ApiError::Unavailable)
    }

    fn context(&self) -> HandlingContext<'_> {
        HandlingContext {
            calendar: &self.calendar,
            timescales: self.timescales,
        }
    }

    fn new_events(
        &self,
        events: Vec<Event>,
        origin: &CommandOrigin,
        derived_id: impl Fn(usize) -> Option<Uuid>,
    ) -> Vec<NewEvent> {
        let correlation_id = Uuid::now_v7();
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| NewEvent {
                event_id: derived_id(index).unwrap_or_else(Uuid::now_v7),
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.to_payload(),
                metadata: EventMetadata {
                    actor: origin.actor.clone(),
                    causation_id: None,
                    correlation_id: Some(correlation_id),
                    request_id: origin
                        .request_id
                        .as_ref()
                        .map(|key| key.as_str().to_owned()),
                    source_channel: origin.source_channel.clone(),
                    command_fingerprint: Some(origin.fingerprint.clone()),
                },
            })
            .collect()
    }
}

/// The answer to a retried command: the first result if it was the same command.
fn retry_result(
    first: &RecordedEvent,
    origin: &CommandOrigin,
    key_field: &str,
) -> Result<WriteResult, ApiError> {
    if first.metadata.command_fingerprint.as_deref() != Some(origin.fingerprint.as_str()) {
        return Err(ApiError::AlreadyExists(format!(
            "{key_field} was already used for a different request"
        )));
    }
    let complaint_id = first
        .stream_id
        .as_str()
        .strip_prefix("complaint-")
        .and_then(|id| Uuid::parse_str(id).ok())
        .map(ComplaintId::from_uuid)
        .ok_or_else(|| {
            ApiError::internal(std::io::Error::other("retried event is not a complaint's"))
        })?;
    Ok(WriteResult {
        complaint_id,
        version: first.version,
        position: first.position,
        duplicate: true,
    })
}
