//! The inspection's rules: findings opened by "not met" observations, due N working days later;
//! corrections that open and withdraw findings; a finding resolved once; escalations once per
//! level and never for a closed finding; and the stored form read back.

use chrono::{DateTime, Duration, Utc};
use doorstep_domain::escalation::EscalationLevel;
use doorstep_domain::input::{ContractorId, Handler, OptionalText, RequestKey, ShortText, Uprn};
use doorstep_domain::inspection::{
    FindingRules, FindingState, Inspection, InspectionCommand, InspectionDetails, InspectionEvent,
    InspectionId, Observation, ObservationResult, PlannedFindingEscalation, apply_inspection,
    finding_escalation_id, handle_inspection,
};
use doorstep_domain::{DomainError, ServiceStandard, WorkingDayCalendar, england_date};
use proptest::prelude::*;

fn valid<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("test input is valid: {error:?}"))
}

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

fn details(
    inspected_at: DateTime<Utc>,
    seen: &[(ServiceStandard, ObservationResult)],
) -> InspectionDetails {
    InspectionDetails {
        contractor_id: valid(ContractorId::parse("c", "acme-retrofit")),
        contract_reference: valid(ShortText::parse("r", "RETRO-2026-01")),
        uprn: valid(Uprn::parse("u", "100023336956")),
        visit_id: None,
        inspected_at,
        inspecting_officer: valid(Handler::parse("o", "Officer One")),
        observations: seen
            .iter()
            .map(|(standard, result)| Observation {
                standard: *standard,
                result: *result,
                note: OptionalText::default(),
            })
            .collect(),
        photo_references: Vec::new(),
    }
}

/// Decides and applies `command`, checking that replaying the events gives the state handling
/// saw grow.
fn step(
    state: Option<Inspection>,
    command: InspectionCommand,
    calendar: &WorkingDayCalendar,
) -> Result<(Option<Inspection>, Vec<InspectionEvent>), DomainError> {
    let rules = FindingRules {
        calendar,
        due_working_days: 5,
    };
    let events = handle_inspection(state.as_ref(), command, rules)?;
    let mut next = state;
    for event in &events {
        let stored = event.to_payload();
        let read_back = valid(InspectionEvent::from_payload(
            event.event_type(),
            event.schema_version(),
            &stored,
        ));
        assert_eq!(&read_back, event, "the stored form reads back");
        next = apply_inspection(next, event);
    }
    Ok((next, events))
}

fn record(
    seen: &[(ServiceStandard, ObservationResult)],
    inspected_at: DateTime<Utc>,
) -> InspectionCommand {
    InspectionCommand::Record {
        inspection_id: InspectionId::for_request(&valid(RequestKey::parse("k", "inspection-1"))),
        details: details(inspected_at, seen),
        at: inspected_at,
    }
}

fn resolve(state: &Inspection, index: usize, when: DateTime<Utc>) -> InspectionCommand {
    InspectionCommand::ResolveFinding {
        finding_id: state.findings[index].finding_id,
        resolution: valid(ShortText::parse("r", "put right")),
        resolved_by: valid(Handler::parse("h", "Site Team")),
        resolved_at: when,
    }
}

fn escalate(
    state: &Inspection,
    index: usize,
    level: &str,
    when: DateTime<Utc>,
) -> InspectionCommand {
    let finding_id = state.findings[index].finding_id;
    let level = valid(EscalationLevel::parse("level", level));
    InspectionCommand::RaiseFindingEscalation {
        escalation: PlannedFindingEscalation {
            escalation_id: finding_escalation_id(finding_id, &level),
            finding_id,
            level,
            due_at: when,
            recipients: Vec::new(),
        },
        at: when,
    }
}

use ObservationResult::{Met, NotMet, NotObserved};
use ServiceStandard::{Courtesy, Parking, Tidiness};

#[test]
fn a_not_met_observation_opens_a_finding_resolved_once() {
    let calendar = WorkingDayCalendar::england_and_wales();
    // Thursday 2 April 2026: Good Friday and Easter Monday are not working days.
    let (state, events) = valid(step(
        None,
        record(
            &[(Tidiness, NotMet), (Courtesy, Met), (Parking, NotObserved)],
            at("2026-04-02T10:00:00Z"),
        ),
        &calendar,
    ));
    assert_eq!(events.len(), 2);
    let state = valid(state.ok_or("recorded"));
    assert_eq!(state.findings.len(), 1);
    assert_eq!(state.findings[0].due_date.to_string(), "2026-04-13");
    let later = at("2026-04-08T10:00:00Z");
    let (resolved, _) = valid(step(
        Some(state.clone()),
        resolve(&state, 0, later),
        &calendar,
    ));
    let resolved = valid(resolved.ok_or("resolved"));
    assert!(matches!(
        resolved.findings[0].state,
        FindingState::Resolved { .. }
    ));
    let twice = step(
        Some(resolved.clone()),
        resolve(&resolved, 0, later),
        &calendar,
    );
    assert!(
        matches!(&twice, Err(DomainError::NotAllowed(message)) if message.contains("already resolved")),
        "{twice:?}"
    );
    let escalated = step(
        Some(resolved.clone()),
        escalate(&resolved, 0, "contract_manager", later),
        &calendar,
    );
    assert!(matches!(escalated, Err(DomainError::NotAllowed(_))));
    let early = step(
        Some(state.clone()),
        resolve(&state, 0, at("2026-04-01T10:00:00Z")),
        &calendar,
    );
    assert!(
        matches!(&early, Err(DomainError::InvalidInput(input)) if input.field == "resolved_at")
    );
}

#[test]
fn corrections_open_new_findings_and_withdraw_closed_observations() {
    let calendar = WorkingDayCalendar::england_and_wales();
    let inspected = at("2026-04-14T08:00:00Z");
    let (state, _) = valid(step(
        None,
        record(&[(Tidiness, NotMet), (Courtesy, Met)], inspected),
        &calendar,
    ));
    let correction = InspectionCommand::Correct {
        details: details(inspected, &[(Tidiness, Met), (Courtesy, NotMet)]),
        reason: valid(ShortText::parse("r", "swapped")),
        at: at("2026-04-16T09:00:00Z"),
    };
    let (state, events) = valid(step(state, correction, &calendar));
    let types: Vec<&str> = events.iter().map(InspectionEvent::event_type).collect();
    assert_eq!(
        types,
        ["InspectionCorrected", "FindingWithdrawn", "FindingOpened"]
    );
    let state = valid(state.ok_or("corrected"));
    assert!(matches!(
        state.findings[0].state,
        FindingState::Withdrawn { .. }
    ));
    // Counted from the correction's day, Thursday 16 April.
    assert_eq!(state.findings[1].due_date.to_string(), "2026-04-23");
    assert_eq!(state.corrections, 1);
}

#[test]
fn each_level_is_raised_once_for_an_open_finding() {
    let calendar = WorkingDayCalendar::england_and_wales();
    let (state, _) = valid(step(
        None,
        record(&[(Tidiness, NotMet)], at("2026-04-14T08:00:00Z")),
        &calendar,
    ));
    let state = valid(state.ok_or("recorded"));
    let when = at("2026-04-21T23:00:00Z");
    let (raised, _) = valid(step(
        Some(state.clone()),
        escalate(&state, 0, "contract_manager", when),
        &calendar,
    ));
    let raised = valid(raised.ok_or("raised"));
    assert_eq!(raised.findings[0].escalated_levels.len(), 1);
    let again = step(
        Some(raised.clone()),
        escalate(&raised, 0, "contract_manager", when),
        &calendar,
    );
    assert!(matches!(again, Err(DomainError::NotAllowed(_))));
}

proptest! {
    /// Whenever an inspection happens, each finding is due exactly five working days after the
    /// day it was seen (in England), on a working day.
    #[test]
    fn findings_fall_due_five_working_days_after_the_day_they_were_seen(
        minutes in 0_i64..(4 * 365 * 24 * 60),
    ) {
        let calendar = WorkingDayCalendar::england_and_wales();
        let inspected = at("2026-01-01T00:00:00Z") + Duration::minutes(minutes);
        let (state, _) = valid(step(None, record(&[(Tidiness, NotMet)], inspected), &calendar));
        let state = valid(state.ok_or("recorded"));
        let due = state.findings[0].due_date;
        prop_assert!(calendar.is_working_day(due));
        prop_assert_eq!(calendar.working_days_between(england_date(inspected), due), 5);
    }
}
