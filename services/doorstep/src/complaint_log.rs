//! Complaints as an [`Aggregate`], and intake: a new complaint whose id Doorstep chooses, made
//! idempotent by the caller's key.

use std::sync::Arc;

use doorstep_domain::complaint::{
    Command, Complaint, Event, EventDecodeError, HandlingContext, apply, handle,
};
use doorstep_domain::input::ComplaintId;
use doorstep_domain::{CodeTimescales, DomainError, WorkingDayCalendar};
use doorstep_store::{EventStore, ExpectedVersion, StoreError};
use uuid::Uuid;

use crate::aggregate_log::{
    Aggregate, AggregateLog, CommandOrigin, REQUEST_NAMESPACE, WriteResult, new_events,
    retry_result,
};
use crate::error::ApiError;
use crate::privacy::ResidentVault;

/// The complaint rules with the calendar and timescales in force.
pub struct ComplaintRules {
    calendar: Arc<WorkingDayCalendar>,
    timescales: CodeTimescales,
}

impl Aggregate for ComplaintRules {
    type State = Complaint;
    type Command = Command;
    type Event = Event;
    const CATEGORY: &'static str = "complaint";
    const NOUN: &'static str = "complaint";

    fn decide(
        &self,
        state: Option<&Complaint>,
        command: Command,
    ) -> Result<Vec<Event>, DomainError> {
        let context = HandlingContext {
            calendar: &self.calendar,
            timescales: self.timescales,
        };
        handle(state, command, &context)
    }

    fn evolve(state: Option<Complaint>, event: &Event) -> Option<Complaint> {
        apply(state, event)
    }

    fn version(state: &Complaint) -> u64 {
        state.version
    }

    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Event, EventDecodeError> {
        Event::from_payload(event_type, schema_version, payload)
    }
}

pub type ComplaintLog = AggregateLog<ComplaintRules>;

pub fn complaint_log(
    store: Arc<dyn EventStore>,
    calendar: Arc<WorkingDayCalendar>,
    timescales: CodeTimescales,
) -> ComplaintLog {
    AggregateLog::new(
        store,
        ComplaintRules {
            calendar,
            timescales,
        },
    )
}

/// Logs a new complaint. The intake event's id is derived from the idempotency key, so a retry
/// finds the first complaint instead of creating a second.
pub async fn log_new(
    log: &ComplaintLog,
    vault: &ResidentVault,
    origin: &CommandOrigin,
    source_system: &str,
    build: impl Fn(ComplaintId) -> Command,
) -> Result<(ComplaintId, WriteResult), ApiError> {
    let key = origin
        .request_id
        .as_ref()
        .ok_or_else(|| ApiError::internal(std::io::Error::other("intake without a key")))?;
    // Keys are scoped by the calling system, so two systems that both number their calls 1, 2,
    // 3 never collide.
    let intake_event_id = Uuid::new_v5(
        &REQUEST_NAMESPACE,
        format!("intake/{source_system}/{key}").as_bytes(),
    );
    // Append first and look for an earlier call only when the store says the key's event id is
    // taken: a first call, by far the commonest, then costs no extra read.
    let complaint_id = ComplaintId::from_uuid(Uuid::now_v7());
    let events = log.aggregate().decide(None, build(complaint_id))?;
    let mut new_events = new_events(&events, origin, |index| {
        (index == 0).then_some(intake_event_id)
    });
    // Personal data never reaches the log in the clear.
    for event in new_events
        .iter_mut()
        .filter(|event| event.event_type == "ComplaintReceived")
    {
        vault
            .seal_intake(&mut event.payload)
            .await
            .map_err(ApiError::internal)?;
    }
    let stream = ComplaintLog::stream_of(&complaint_id);
    match log
        .store()
        .append(&stream, ExpectedVersion::NoStream, new_events)
        .await
    {
        Ok(outcome) => Ok((
            complaint_id,
            WriteResult {
                version: outcome.version,
                position: outcome.position,
                duplicate: false,
            },
        )),
        // An earlier call with this key (perhaps a concurrent one) logged its complaint.
        Err(StoreError::DuplicateEventId { .. }) => {
            let first = log
                .store()
                .find_event(intake_event_id)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(std::io::Error::other(
                        "the intake event id was taken but cannot be found",
                    ))
                })?;
            let result = retry_result(&first, origin, "idempotency_key")?;
            let first_complaint = first
                .stream_id
                .as_str()
                .strip_prefix("complaint-")
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(ComplaintId::from_uuid)
                .ok_or_else(|| {
                    ApiError::internal(std::io::Error::other("retried event is not a complaint's"))
                })?;
            Ok((first_complaint, result))
        }
        Err(error) => Err(error.into()),
    }
}
