//! Who sent a command, and the stored form of the events it produced.

use doorstep_domain::input::RequestKey;
use doorstep_store::{EventMetadata, NewEvent};
use uuid::Uuid;

use crate::StoredEvent;

/// Who sent a command and how, recorded in every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandOrigin {
    pub actor: String,
    pub source_channel: String,
    pub request_id: Option<RequestKey>,
    /// A digest of the request, to tell a retry from a different command with the same key.
    pub fingerprint: String,
}

/// The stored form of decided events: each event's id from `event_id` (derived from a caller's
/// key, so a retry finds it) or time-ordered, and metadata naming the actor, the request and the
/// trace and span current now, when the events are made.
pub fn new_events<E: StoredEvent>(
    events: &[E],
    origin: &CommandOrigin,
    event_id: impl Fn(usize) -> Option<Uuid>,
) -> Vec<NewEvent> {
    let correlation_id = Uuid::now_v7();
    let trace = doorstep_telemetry::current_trace();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| NewEvent {
            event_id: event_id(index).unwrap_or_else(Uuid::now_v7),
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
