//! Loads an aggregate from its event stream, runs a command through its pure rules and appends
//! what they decide: with optimistic concurrency, and with idempotent retries through the
//! caller's request id. Complaints and contractors both go through here.

use std::sync::Arc;

use doorstep_domain::DomainError;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::input::RequestKey;
use doorstep_store::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId,
};
use uuid::Uuid;

use crate::error::ApiError;

/// Namespace of the event ids Doorstep derives from callers' idempotency keys and request ids.
pub const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x6d2c_4b1e_8f0a_4c55_9a3e_0d51_7c2e_a001);
/// How often a command without `expected_version` is retried when another write got in first.
const CONFLICT_RETRIES: usize = 5;
/// More events than any aggregate will ever have; a stream is read whole.
const MAX_STREAM_EVENTS: usize = 100_000;

/// An event-sourced aggregate: its pure rules and the stored form of its events.
pub trait Aggregate: Send + Sync + 'static {
    type State: Send;
    type Command: Clone + Send;
    type Event: StoredEvent + Clone + Send + Sync;

    /// The stream category: streams are named `<CATEGORY>-<id>`.
    const CATEGORY: &'static str;
    /// How the API names the thing, in "no <NOUN> has this id".
    const NOUN: &'static str;

    fn decide(
        &self,
        state: Option<&Self::State>,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, DomainError>;
    fn evolve(state: Option<Self::State>, event: &Self::Event) -> Option<Self::State>;
    fn version(state: &Self::State) -> u64;
    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self::Event, EventDecodeError>;
}

/// An event's stored form: its type, schema version and payload.
pub trait StoredEvent {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_payload(&self) -> serde_json::Value;
}

macro_rules! stored_event {
    ($($event:ty),+) => {$(
        impl StoredEvent for $event {
            fn event_type(&self) -> &'static str {
                <$event>::event_type(self)
            }

            fn schema_version(&self) -> u32 {
                <$event>::schema_version(self)
            }

            fn to_payload(&self) -> serde_json::Value {
                <$event>::to_payload(self)
            }
        }
    )+};
}

stored_event!(
    doorstep_domain::Event,
    doorstep_domain::resident::ResidentEvent,
    doorstep_domain::contractor::ContractorEvent,
    doorstep_domain::contractor::VisitEvent
);

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
    pub version: u64,
    pub position: u64,
    pub duplicate: bool,
}

/// An aggregate's state and the events it was folded from.
pub struct Loaded<A: Aggregate> {
    pub state: Option<A::State>,
    pub events: Vec<(RecordedEvent, A::Event)>,
}

pub struct AggregateLog<A> {
    store: Arc<dyn EventStore>,
    aggregate: A,
}

impl<A: Aggregate> AggregateLog<A> {
    pub fn new(store: Arc<dyn EventStore>, aggregate: A) -> Self {
        Self { store, aggregate }
    }

    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    /// What the aggregate's rules decide for `command` on `state`, without writing anything.
    pub fn aggregate_decide(
        &self,
        state: &A::State,
        command: A::Command,
    ) -> Result<Vec<A::Event>, DomainError> {
        self.aggregate.decide(Some(state), command)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn stream_of(id: &impl std::fmt::Display) -> StreamId {
        StreamId::new(A::CATEGORY, id)
    }

    pub async fn load(&self, id: &impl std::fmt::Display) -> Result<Loaded<A>, ApiError> {
        let recorded = self
            .store
            .read_stream(&Self::stream_of(id), 1, MAX_STREAM_EVENTS)
            .await?;
        let mut events = Vec::with_capacity(recorded.len());
        for record in recorded {
            let event = A::from_payload(&record.event_type, record.schema_version, &record.payload)
                .map_err(ApiError::internal)?;
            events.push((record, event));
        }
        let state = events
            .iter()
            .fold(None, |state, (_, event)| A::evolve(state, event));
        Ok(Loaded { state, events })
    }

    /// Runs a command on the aggregate `id`; returns where it landed and the state after it.
    pub async fn execute(
        &self,
        id: &impl std::fmt::Display,
        expected_version: Option<u64>,
        origin: &CommandOrigin,
        command: A::Command,
    ) -> Result<(WriteResult, A::State), ApiError> {
        let stream = Self::stream_of(id);
        let derived_id = |index: usize| {
            origin.request_id.as_ref().map(|request_id| {
                Uuid::new_v5(
                    &REQUEST_NAMESPACE,
                    format!("{stream}/{request_id}/{index}").as_bytes(),
                )
            })
        };
        for _ in 0..CONFLICT_RETRIES {
            if let Some(first_id) = derived_id(0)
                && let Some(first) = self.store.find_event(first_id).await?
            {
                let result = retry_result(&first, origin, "request_id")?;
                let state = self.load(id).await?.state.ok_or_else(|| {
                    ApiError::internal(std::io::Error::other("a retried stream has no events"))
                })?;
                return Ok((result, state));
            }
            let loaded = self.load(id).await?;
            let actual = loaded.state.as_ref().map_or(0, A::version);
            if let Some(expected) = expected_version
                && expected != actual
            {
                return Err(ApiError::VersionConflict { expected, actual });
            }
            let events = self
                .aggregate
                .decide(loaded.state.as_ref(), command.clone())
                .map_err(|error| not_found_as(error, A::NOUN))?;
            let new_events = new_events(&events, origin, derived_id);
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(actual), new_events)
                .await
            {
                Ok(outcome) => {
                    let state = events
                        .iter()
                        .fold(loaded.state, A::evolve)
                        .ok_or_else(|| ApiError::NotFound(format!("no {} has this id", A::NOUN)))?;
                    let result = WriteResult {
                        version: outcome.version,
                        position: outcome.position,
                        duplicate: outcome.already_stored,
                    };
                    return Ok((result, state));
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
        Err(ApiError::Contention)
    }
}

/// The stored form of decided events. Event ids are derived from the request id when the caller
/// sent one (so a retry finds them), and time-ordered otherwise.
pub fn new_events<E: StoredEvent>(
    events: &[E],
    origin: &CommandOrigin,
    derived_id: impl Fn(usize) -> Option<Uuid>,
) -> Vec<NewEvent> {
    let correlation_id = Uuid::now_v7();
    let trace = doorstep_telemetry::current_trace();
    events
        .iter()
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
                trace_id: trace.as_ref().map(|ids| ids.trace_id.clone()),
                span_id: trace.as_ref().map(|ids| ids.span_id.clone()),
            },
        })
        .collect()
}

/// Appends one event that needs no aggregate to decide it (a fact recorded as it happens, such as
/// an erasure), idempotently: with a request id, its event id is derived from the stream and the
/// request id, so a retry finds the first event instead of writing a second.
pub async fn append_once<E: StoredEvent>(
    store: &Arc<dyn EventStore>,
    stream: &StreamId,
    event: &E,
    origin: &CommandOrigin,
) -> Result<WriteResult, ApiError> {
    let derived_id = origin.request_id.as_ref().map(|request_id| {
        Uuid::new_v5(
            &REQUEST_NAMESPACE,
            format!("{stream}/{request_id}/0").as_bytes(),
        )
    });
    if let Some(first_id) = derived_id
        && let Some(first) = store.find_event(first_id).await?
    {
        return retry_result(&first, origin, "request_id");
    }
    let events = new_events(std::slice::from_ref(event), origin, |_| derived_id);
    match store.append(stream, ExpectedVersion::Any, events).await {
        Ok(outcome) => Ok(WriteResult {
            version: outcome.version,
            position: outcome.position,
            duplicate: outcome.already_stored,
        }),
        // A concurrent retry stored it first.
        Err(StoreError::DuplicateEventId { .. }) => {
            let first = match derived_id {
                Some(id) => store.find_event(id).await?,
                None => None,
            };
            let first = first.ok_or_else(|| {
                ApiError::internal(std::io::Error::other("a duplicate event cannot be found"))
            })?;
            retry_result(&first, origin, "request_id")
        }
        Err(error) => Err(error.into()),
    }
}

/// The answer to a retried command: the first result if it was the same command.
pub fn retry_result(
    first: &RecordedEvent,
    origin: &CommandOrigin,
    key_field: &str,
) -> Result<WriteResult, ApiError> {
    if first.metadata.command_fingerprint.as_deref() != Some(origin.fingerprint.as_str()) {
        return Err(ApiError::AlreadyExists(format!(
            "{key_field} was already used for a different request"
        )));
    }
    Ok(WriteResult {
        version: first.version,
        position: first.position,
        duplicate: true,
    })
}

fn not_found_as(error: DomainError, noun: &str) -> ApiError {
    match error {
        DomainError::NotFound => ApiError::NotFound(format!("no {noun} has this id")),
        other => other.into(),
    }
}
