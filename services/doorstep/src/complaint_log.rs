//! Complaints as an [`Aggregate`], and intake: a new complaint whose id Doorstep chooses, made
//! idempotent by the caller's key, with the resident's personal data sealed before it is stored.

use std::sync::Arc;

use doorstep_commands::{
    Aggregate, CommandLog, CommandOrigin, Failure, IdPolicy, Landed, Outcome, Refusal, Written,
    start, start_with,
};
use doorstep_domain::complaint::{
    Command, Complaint, Event, EventDecodeError, HandlingContext, apply, handle,
};
use doorstep_domain::input::{ComplaintId, SourceSystem};
use doorstep_domain::stream::{Category, StreamName};
use doorstep_domain::{CodeTimescales, DomainError, WorkingDayCalendar};
use doorstep_store::{EventStore, ExpectedVersion, NewResidentKey, StoreError};
use uuid::Uuid;

use crate::privacy::{PrivacyError, ResidentVault, Sealable};

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

/// How many times intake seals again when the resident's key changes under it (found, then
/// destroyed before it could be read): once is already rare.
const SEALING_ROUNDS: usize = 3;

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
    let expected = ExpectedVersion::NoStream;
    // Personal data never reaches the log in the clear. Most residents are new, so each round
    // first seals under a key made for the call and stores it with the events (one commit on
    // SQLite). A resident who has a key has everything sealed under that one; a key destroyed
    // in between (the resident forgotten) means a new one, in the next round.
    for _ in 0..SEALING_ROUNDS {
        let (sealed, new_key) = seal_under_new_key(vault, &events)?;
        let sealed = match new_key {
            None => sealed,
            Some(new_key) => {
                let first = start_with(
                    log.store(),
                    &stream,
                    expected,
                    origin,
                    policy(),
                    &sealed,
                    |id, expected, new_events| async move {
                        vault
                            .append_with_new_key(&id, expected, new_events, new_key)
                            .await
                    },
                )
                .await;
                match first {
                    Err(Failure::Store(StoreError::ResidentHasKey)) => {}
                    landed => return answer(landed?),
                }
                match seal_under_stored_key(vault, &events).await? {
                    Some(sealed) => sealed,
                    None => continue,
                }
            }
        };
        let landed = start(log.store(), &stream, expected, origin, policy(), &sealed).await?;
        return answer(landed);
    }
    Err(Failure::Inconsistent(
        "the resident's key was destroyed each time it was found",
    ))
}

/// A landed intake as the caller hears it: a retry's complaint is the first call's, read from
/// the stream it landed in.
fn answer(landed: Result<Landed, Refusal>) -> Outcome<(ComplaintId, Written)> {
    match landed {
        Ok(landed) => Ok(Ok((landed.stream.complaint_id()?, landed.written))),
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// The intake's events sealed under a new key, and the key: an intake seals one resident's
/// data, so more than one key is a bug, refused rather than a key dropped.
fn seal_under_new_key(
    vault: &ResidentVault,
    events: &[Event],
) -> Result<(Vec<Sealable>, Option<NewResidentKey>), Failure> {
    let mut sealed = Vec::with_capacity(events.len());
    let mut new_key = None;
    for event in events.iter().cloned() {
        let (event, key) = vault.seal_under_new_key(event).map_err(prepare)?;
        sealed.push(event);
        if key.is_some() && new_key.is_some() {
            return Err(Failure::Inconsistent("an intake seals two residents' data"));
        }
        new_key = new_key.or(key);
    }
    Ok((sealed, new_key))
}

/// The intake's events sealed under the resident's stored key; `None` when they have none.
async fn seal_under_stored_key(
    vault: &ResidentVault,
    events: &[Event],
) -> Result<Option<Vec<Sealable>>, Failure> {
    let mut sealed = Vec::with_capacity(events.len());
    for event in events.iter().cloned() {
        match vault.seal_under_stored_key(event).await.map_err(prepare)? {
            Some(event) => sealed.push(event),
            None => return Ok(None),
        }
    }
    Ok(Some(sealed))
}

fn prepare(error: PrivacyError) -> Failure {
    Failure::Prepare(Box::new(error))
}
