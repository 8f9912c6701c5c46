//! What the domain's rule tests share: parsing test input that is known to be valid, and the
//! complaint they log.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::complaint::{
    Command, Complaint, HandlingContext, LogComplaint, PropertyInput, ResidentInput, apply, handle,
};
use doorstep_domain::input::{
    Address, ComplaintId, ContractorId, LongText, OptionalText, PersonName, ResidentReference,
    SourceSystem, Uprn,
};
use doorstep_domain::{DomainError, Event, ServiceStandard, WorkingDayCalendar};

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|error| panic!("{text}: {error}"))
}

pub fn parsed<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("test input is valid: {error:?}"))
}

/// Logging a complaint about `standards` received at `received_at`: by phone from resident
/// T-1001 about acme-retrofit leaving the side gate open.
pub fn log_command(received_at: DateTime<Utc>, standards: Vec<ServiceStandard>) -> Command {
    Command::Log(Box::new(LogComplaint {
        complaint_id: ComplaintId::from_uuid(uuid::Uuid::nil()),
        channel: "PHONE".to_owned(),
        source_system: parsed(SourceSystem::parse("source_system", "call-centre")),
        resident: ResidentInput {
            reference: parsed(ResidentReference::parse("resident.reference", "T-1001")),
            name: parsed(PersonName::parse("resident.name", "Ada Resident")),
            phone: None,
            email: None,
        },
        property: PropertyInput {
            uprn: parsed(Uprn::parse("property.uprn", "100023336956")),
            address: parsed(Address::parse("property.address", "1 Example Road")),
        },
        contractor_id: parsed(ContractorId::parse("contractor_id", "acme-retrofit")),
        visit_id: None,
        standards,
        description: parsed(LongText::parse("description", "Left the side gate open")),
        occurred_at: None,
        received_at,
        outcome_sought: OptionalText::default(),
        reasonable_adjustments: OptionalText::default(),
    }))
}

/// Decides `command` on the complaint in `state` under the default timescales and, if the rules
/// allow it, applies the events to `state` and returns them.
pub fn decide(
    state: &mut Option<Complaint>,
    calendar: &WorkingDayCalendar,
    command: Command,
) -> Result<Vec<Event>, DomainError> {
    let context = HandlingContext {
        calendar,
        timescales: Default::default(),
    };
    let events = handle(state.as_ref(), command, &context)?;
    for event in &events {
        *state = apply(state.take(), event);
    }
    Ok(events)
}
