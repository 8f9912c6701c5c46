//! Complaints as an [`Aggregate`], and intake: a new complaint whose id Doorstep chooses, made
//! idempotent by the caller's key, with the resident's personal data sealed before it is stored.

use std::sync::Arc;

use doorstep_commands::{
    Aggregate, CommandLog, CommandOrigin, Failure, IdPolicy, Outcome, Refusal, Written, start,
    start_with,
};
use doorstep_domain::complaint::{
    Command, Complaint, Event, EventDecodeError, HandlingContext, apply, handle,
};
use doorstep_domain::input::{ComplaintId, SourceSystem};
use doorstep_domain::stream::{Category, StreamName};
use doorstep_domain::{CodeTimescales, DomainError, WorkingDayCalendar};
use doorstep_store::{EventStore, ExpectedVersion, StoreError};
use uuid::Uuid;

use crate::privacy::{PrivacyError, ResidentVault};

/// The complaint rules with the calendar and timescales in force.
pub struct ComplaintRules {
    calendar: Arc<WorkingDayCalendar>,
    timescales: CodeTimescales,
}

impl Aggregate for ComplaintRules {
    type State = Complaint;
    type Command = Command;
    type Event = Event;
    const CATEGORY: Category = Category::Complaint;
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

pub type ComplaintLog = CommandLog<ComplaintRules>;

pub fn complaint_log(
    store: Arc<dyn EventStore>,
    calendar: Arc<WorkingDayCalendar>,
    timescales: CodeTimescales,
) -> ComplaintLog {
    CommandLog::new(
        store,
        ComplaintRules {
            calendar,
            timescales,
        },
    )
}

/// Logs a new complaint. The intake event's id is derived from the idempotency key (the
/// request id in `origin`) scoped by `source_system`, so a retry finds the first complaint
/// instead of creating a second.
pub async fn log_new(
    log: &ComplaintLog,
    vault: &ResidentVault,
    origin: &CommandOrigin,
    source_system: &SourceSystem,
    build: impl Fn(ComplaintId) -> Command,
) -> Outcome<(ComplaintId, Written)> {
    let key = origin
        .request_id
        .as_ref()
        .ok_or(Failure::Inconsistent("intake without a key"))?;
    // Append first and look for an earlier call only when the store says the key's event id is
    // taken: a first call, by far the commonest, then costs no extra read.
    let complaint_id = ComplaintId::from_uuid(Uuid::now_v7());
    let events = match log.aggregate().decide(None, build(complaint_id)) {
        Ok(events) => events,
        Err(error) => return Ok(Err(Refusal::from_domain(error, ComplaintRules::NOUN))),
    };
    let stream = StreamName::complaint(&complaint_id);
    let policy = || IdPolicy::Intake { source_system, key };
    let prepare = |error: PrivacyError| Failure::Prepare(Box::new(error));
    // Personal data never reaches the log in the clear. The first attempt takes the resident to
    // be new: their key is made here and stored with the events, in one commit on SQLite.
    let mut sealed = Vec::with_capacity(events.len());
    let mut new_key = None;
    for event in events.iter().cloned() {
        let (event, key) = vault.seal_under_new_key(event).map_err(prepare)?;
        sealed.push(event);
        new_key = new_key.or(key);
    }
    let first_attempt = match new_key {
        Some(new_key) => {
            start_with(
                log.store(),
                &stream,
                ExpectedVersion::NoStream,
                origin,
                policy(),
                &sealed,
                |id, new_events| async move {
                    vault
                        .append_with_new_key(&id, ExpectedVersion::NoStream, new_events, new_key)
                        .await
                },
            )
            .await
        }
        None => {
            start(
                log.store(),
                &stream,
                ExpectedVersion::NoStream,
                origin,
                policy(),
                &sealed,
            )
            .await
        }
    };
    let landed = match first_attempt {
        // The resident has a key (an earlier complaint, or a retry of this one): everything of
        // theirs is sealed under the one key, so seal again under it.
        Err(Failure::Store(StoreError::ResidentHasKey)) => {
            let mut sealed = Vec::with_capacity(events.len());
            for event in events {
                sealed.push(vault.seal(event).await.map_err(prepare)?);
            }
            start(
                log.store(),
                &stream,
                ExpectedVersion::NoStream,
                origin,
                policy(),
                &sealed,
            )
            .await?
        }
        other => other?,
    };
    match landed {
        // A retry's complaint is the first call's, read from the stream it landed in.
        Ok(landed) => Ok(Ok((landed.stream.complaint_id()?, landed.written))),
        Err(refusal) => Ok(Err(refusal)),
    }
}
