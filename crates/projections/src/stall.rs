//! The event the read models are stuck at, which the runner reports and `ReadModel` exposes.

use doorstep_store::EventHeader;

use crate::ProjectionError;

/// The event the read models are stuck at: one they cannot apply (this build cannot decode it,
/// or a read-model row it needs cannot be read). They stay stuck until the runner gets past it,
/// because skipping it would advance the checkpoint every replica shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub stream_id: String,
    pub reason: String,
}

impl Stall {
    pub(crate) fn at(recorded: &EventHeader, error: &ProjectionError) -> Self {
        Self {
            position: recorded.position,
            event_id: recorded.event_id,
            event_type: recorded.event_type.clone(),
            stream_id: recorded.stream_id.as_str().to_owned(),
            reason: doorstep_telemetry::error_chain(error),
        }
    }
}
