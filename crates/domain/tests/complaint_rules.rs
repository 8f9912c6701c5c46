//! The Complaint Handling Code's rules, checked on known journeys and on random command sequences.

use chrono::{DateTime, Duration, Utc};
use doorstep_domain::StoredPayload;
use doorstep_domain::complaint::{
    Command, Complaint, FindingInput, FindingOutcome, Stage, Status, replay,
};
use doorstep_domain::escalation::clock_after;
use doorstep_domain::input::{Handler, LongText, OptionalText, ShortText};
use doorstep_domain::{DomainError, Event, ServiceStandard, WorkingDayCalendar, england_date};
use proptest::prelude::*;
use support::{at, date, decide, log_command, parsed};

mod support;

fn handler(name: &str) -> Handler {
    parsed(Handler::parse("handler", name))
}

fn short(text: &str) -> ShortText {
    parsed(ShortText::parse("reason", text))
}

struct Journey {
    calendar: WorkingDayCalendar,
    state: Option<Complaint>,
    events: Vec<Event>,
}

impl Journey {
    fn new() -> Self {
        Self {
            calendar: WorkingDayCalendar::england_and_wales(),
            state: None,
            events: Vec::new(),
        }
    }

    fn run(&mut self, command: Command) -> Result<Vec<Event>, DomainError> {
        let events = decide(&mut self.state, &self.calendar, command)?;
        self.events.extend(events.clone());
        Ok(events)
    }

    fn ok(&mut self, command: Command) -> Vec<Event> {
        self.run(command)
            .unwrap_or_else(|error| panic!("refused: {error}"))
    }

    fn state(&self) -> &Complaint {
        self.state
            .as_ref()
            .unwrap_or_else(|| panic!("complaint not logged"))
    }
}

fn refusal(result: Result<Vec<Event>, DomainError>) -> String {
    match result {
        Err(DomainError::NotAllowed(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn full_two_stage_journey_with_deadlines() {
    let mut journey = Journey::new();
    // Thursday 2 April 2026, the day before Good Friday.
    journey.ok(log_command(
        at("2026-04-02T10:00:00Z"),
        vec![ServiceStandard::GatesSecured],
    ));
    assert_eq!(
        journey.state().stage_one.acknowledgement_due,
        date("2026-04-13")
    );
    assert_eq!(journey.state().status, Status::AwaitingAcknowledgement);

    journey.ok(Command::Acknowledge {
        stage: Stage::One,
        handler: handler("Officer One"),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-04-08T09:00:00Z"),
    });
    // Ten working days after Wednesday 8 April 2026.
    assert_eq!(
        journey.state().stage_one.response_due,
        Some(date("2026-04-22"))
    );

    journey.ok(Command::ExtendDeadline {
        reason: short("Waiting for the contractor's site report"),
        working_days: 5,
        ombudsman_details_given: true,
        at: at("2026-04-20T09:00:00Z"),
    });
    assert_eq!(
        journey.state().stage_one.response_due,
        Some(date("2026-04-29"))
    );

    journey.ok(Command::RecordFindings {
        findings: vec![FindingInput {
            standard: ServiceStandard::GatesSecured,
            outcome: FindingOutcome::Upheld,
            summary: OptionalText::default(),
        }],
        at: at("2026-04-27T09:00:00Z"),
    });
    journey.ok(Command::IssueResponse {
        decision: short("Upheld; the contractor has been told"),
        remedy: OptionalText::default(),
        at: at("2026-04-28T09:00:00Z"),
    });
    journey.ok(Command::RequestStageTwo {
        reason: OptionalText::default(),
        at: at("2026-04-30T09:00:00Z"),
    });
    assert_eq!(journey.state().stage, Stage::Two);
    // Five working days after Thursday 30 April 2026, over the early May bank holiday (4 May).
    assert_eq!(
        journey
            .state()
            .stage_two
            .as_ref()
            .map(|s| s.acknowledgement_due),
        Some(date("2026-05-08"))
    );

    let same_handler = journey.run(Command::Acknowledge {
        stage: Stage::Two,
        handler: handler(" officer one "),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-05-05T09:00:00Z"),
    });
    assert!(refusal(same_handler).contains("must not be the person who handled stage 1"));

    journey.ok(Command::Acknowledge {
        stage: Stage::Two,
        handler: handler("Head of Service"),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-05-05T09:00:00Z"),
    });
    // Twenty working days after Tuesday 5 May 2026, over the spring bank holiday (25 May).
    assert_eq!(
        journey
            .state()
            .stage_two
            .as_ref()
            .and_then(|s| s.response_due),
        Some(date("2026-06-03"))
    );
    journey.ok(Command::IssueResponse {
        decision: short("Stage 1 decision stands"),
        remedy: OptionalText::default(),
        at: at("2026-05-20T09:00:00Z"),
    });
    let again = journey.run(Command::RequestStageTwo {
        reason: OptionalText::default(),
        at: at("2026-05-21T09:00:00Z"),
    });
    assert!(refusal(again).contains("two stages only"));
    journey.ok(Command::Close {
        reason: OptionalText::default(),
        at: at("2026-05-21T09:00:00Z"),
    });
    assert_eq!(journey.state().status, Status::Closed);

    let note = journey.run(Command::AddNote {
        text: LongText::default(),
        at: at("2026-05-22T09:00:00Z"),
    });
    assert!(refusal(note).contains("reopen it"));
    journey.ok(Command::Reopen {
        reason: short("Resident reports the gate left open again"),
        at: at("2026-05-26T09:00:00Z"),
    });
    assert_eq!(journey.state().status, Status::UnderInvestigation);
    assert_eq!(journey.state().reopen_count, 1);

    assert_eq!(replay(&journey.events).as_ref(), journey.state.as_ref());
    assert_eq!(journey.state().version, journey.events.len() as u64);
}

#[test]
fn refused_steps_explain_the_code() {
    let mut journey = Journey::new();
    let not_logged = journey.run(Command::Close {
        reason: OptionalText::default(),
        at: at("2026-04-02T10:00:00Z"),
    });
    assert_eq!(not_logged, Err(DomainError::NotFound));

    journey.ok(log_command(
        at("2026-04-02T10:00:00Z"),
        vec![ServiceStandard::Parking, ServiceStandard::Courtesy],
    ));
    let early_response = journey.run(Command::IssueResponse {
        decision: short("No"),
        remedy: OptionalText::default(),
        at: at("2026-04-03T10:00:00Z"),
    });
    assert!(refusal(early_response).contains("must be acknowledged before"));
    let early_escalation = journey.run(Command::RequestStageTwo {
        reason: OptionalText::default(),
        at: at("2026-04-03T10:00:00Z"),
    });
    assert!(refusal(early_escalation).contains("only after the stage 1 response"));
    let early_close = journey.run(Command::Close {
        reason: OptionalText::default(),
        at: at("2026-04-03T10:00:00Z"),
    });
    assert!(refusal(early_close).contains("closed only after"));

    journey.ok(Command::Acknowledge {
        stage: Stage::One,
        handler: handler("Officer One"),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-04-07T10:00:00Z"),
    });
    let without_ombudsman = journey.run(Command::ExtendDeadline {
        reason: short("Busy"),
        working_days: 3,
        ombudsman_details_given: false,
        at: at("2026-04-08T10:00:00Z"),
    });
    assert!(refusal(without_ombudsman).contains("Ombudsman"));
    journey.ok(Command::ExtendDeadline {
        reason: short("Site visit"),
        working_days: 6,
        ombudsman_details_given: true,
        at: at("2026-04-08T10:00:00Z"),
    });
    let over_cap = journey.run(Command::ExtendDeadline {
        reason: short("More time"),
        working_days: 5,
        ombudsman_details_given: true,
        at: at("2026-04-09T10:00:00Z"),
    });
    assert!(refusal(over_cap).contains("at most 10 working days; 6 already granted"));

    journey.ok(Command::RecordFindings {
        findings: vec![FindingInput {
            standard: ServiceStandard::Parking,
            outcome: FindingOutcome::NotUpheld,
            summary: OptionalText::default(),
        }],
        at: at("2026-04-10T10:00:00Z"),
    });
    let missing = journey.run(Command::IssueResponse {
        decision: short("Not upheld"),
        remedy: OptionalText::default(),
        at: at("2026-04-10T10:00:00Z"),
    });
    assert!(refusal(missing).contains("missing: COURTESY"));
    let unalleged = journey.run(Command::RecordFindings {
        findings: vec![FindingInput {
            standard: ServiceStandard::NoSmoking,
            outcome: FindingOutcome::Upheld,
            summary: OptionalText::default(),
        }],
        at: at("2026-04-10T10:00:00Z"),
    });
    assert!(
        matches!(unalleged, Err(DomainError::InvalidInput(error)) if error.field == "findings[0].standard")
    );
    journey.ok(Command::RecordFindings {
        findings: vec![FindingInput {
            standard: ServiceStandard::Courtesy,
            outcome: FindingOutcome::PartlyUpheld,
            summary: OptionalText::default(),
        }],
        at: at("2026-04-10T10:00:00Z"),
    });
    let backdated_extension = journey.run(Command::ExtendDeadline {
        reason: short("Late paperwork"),
        working_days: 1,
        ombudsman_details_given: true,
        at: at("2026-04-06T10:00:00Z"),
    });
    assert!(
        matches!(backdated_extension, Err(DomainError::InvalidInput(error)) if error.field == "effective_at")
    );
    let before_acknowledgement = journey.run(Command::IssueResponse {
        decision: short("Partly upheld"),
        remedy: OptionalText::default(),
        at: at("2026-04-06T10:00:00Z"),
    });
    assert!(
        matches!(before_acknowledgement, Err(DomainError::InvalidInput(error)) if error.field == "effective_at")
    );
}

#[test]
fn events_round_trip_through_their_stored_form() {
    let mut journey = Journey::new();
    journey.ok(log_command(
        at("2026-04-02T10:00:00Z"),
        vec![ServiceStandard::Other],
    ));
    journey.ok(Command::Withdraw {
        reason: OptionalText::default(),
        at: at("2026-04-03T10:00:00Z"),
    });
    for event in &journey.events {
        let payload = event.to_payload();
        assert!(
            payload.get("type").is_none(),
            "the type is stored beside the payload"
        );
        let decoded = Event::from_payload(event.event_type(), event.schema_version(), &payload);
        assert_eq!(decoded.ok().as_ref(), Some(event));
    }
    assert!(Event::from_payload("ComplaintReceived", 99, &serde_json::json!({})).is_err());
}

#[test]
fn complaints_written_in_schema_version_one_still_read() {
    let mut journey = Journey::new();
    journey.ok(log_command(
        at("2026-04-02T10:00:00Z"),
        vec![ServiceStandard::Parking],
    ));
    let received = &journey.events[0];
    assert_eq!(received.schema_version(), 3);
    // The shape version 1 stored: no `reasonable_adjustments`.
    let mut version_one = received.to_payload();
    let removed = version_one
        .as_object_mut()
        .and_then(|fields| fields.remove("reasonable_adjustments"));
    assert!(removed.is_some());
    let decoded = Event::from_payload("ComplaintReceived", 1, &version_one)
        .unwrap_or_else(|error| panic!("a version 1 event still reads: {error}"));
    assert_eq!(&decoded, received);
    let text = version_one.to_string();
    let decoded = Event::from_payload("ComplaintReceived", 1, StoredPayload::Text(&text))
        .unwrap_or_else(|error| panic!("a version 1 event's stored text still reads: {error}"));
    assert_eq!(&decoded, received);
    // Version 2 stored every personal field in the clear, as version 3 does when nothing is
    // sealed.
    let decoded = Event::from_payload("ComplaintReceived", 2, &received.to_payload())
        .unwrap_or_else(|error| panic!("a version 2 event still reads: {error}"));
    assert_eq!(&decoded, received);
}

/// Commands a random liaison officer might try, in any order.
fn arbitrary_command() -> impl Strategy<Value = Command> {
    let hours = 0i64..(24 * 60);
    let base = at("2026-03-02T09:00:00Z");
    let moment = hours.prop_map(move |h| base + Duration::hours(h));
    prop_oneof![
        (
            moment.clone(),
            prop::bool::ANY,
            prop::sample::select(vec!["Ann", "Bob", "ann"])
        )
            .prop_map(|(at, two, name)| Command::Acknowledge {
                stage: if two { Stage::Two } else { Stage::One },
                handler: handler(name),
                complaint_definition: OptionalText::default(),
                outcome_sought: OptionalText::default(),
                at,
            }),
        (moment.clone(), 1u32..12, prop::bool::ANY).prop_map(|(at, days, given)| {
            Command::ExtendDeadline {
                reason: short("Reason"),
                working_days: days,
                ombudsman_details_given: given,
                at,
            }
        }),
        (
            moment.clone(),
            prop::sample::select(vec![
                FindingOutcome::Upheld,
                FindingOutcome::PartlyUpheld,
                FindingOutcome::NotUpheld
            ])
        )
            .prop_map(|(at, outcome)| Command::RecordFindings {
                findings: vec![FindingInput {
                    standard: ServiceStandard::Tidiness,
                    outcome,
                    summary: OptionalText::default(),
                }],
                at,
            }),
        moment.clone().prop_map(|at| Command::IssueResponse {
            decision: short("Decision"),
            remedy: OptionalText::default(),
            at,
        }),
        moment.clone().prop_map(|at| Command::RequestStageTwo {
            reason: OptionalText::default(),
            at,
        }),
        moment.clone().prop_map(|at| Command::Close {
            reason: OptionalText::default(),
            at,
        }),
        moment.clone().prop_map(|at| Command::Reopen {
            reason: short("Again"),
            at,
        }),
        moment.clone().prop_map(|at| Command::Withdraw {
            reason: OptionalText::default(),
            at,
        }),
        moment.prop_map(|at| Command::AddNote {
            text: LongText::default(),
            at,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_commands_never_break_the_code(commands in prop::collection::vec(arbitrary_command(), 1..40)) {
        let mut journey = Journey::new();
        journey.ok(log_command(at("2026-03-02T09:00:00Z"), vec![ServiceStandard::Tidiness]));
        for command in commands {
            let before = journey.state().clone();
            let Ok(events) = journey.run(command) else {
                // A refused command changes nothing.
                prop_assert_eq!(journey.state(), &before);
                continue;
            };
            let after = journey.state();
            prop_assert!(!events.is_empty());
            // Every accepted event moves the version by one.
            prop_assert_eq!(after.version, before.version + events.len() as u64);
            // Nothing but reopening follows closure or withdrawal.
            if before.status.is_ended() {
                let reopened = matches!(events[0], Event::ComplaintReopened { .. });
                prop_assert!(reopened, "only reopening may follow closure or withdrawal");
            }
            // Stage 2 exists only after a stage 1 response.
            if after.stage == Stage::Two {
                prop_assert!(after.stage_one.responded_at.is_some());
                let two = after.stage_two.as_ref();
                prop_assert!(two.is_some());
                if let (Some(first), Some(second)) = (&after.stage_one.handler, two.and_then(|s| s.handler.as_ref())) {
                    prop_assert!(!first.as_str().eq_ignore_ascii_case(second.as_str()));
                }
            }
            for progress in [Some(&after.stage_one), after.stage_two.as_ref()].into_iter().flatten() {
                // No response before acknowledgement, extensions within the cap.
                if progress.responded_at.is_some() {
                    prop_assert!(progress.acknowledged_at.is_some());
                }
                prop_assert!(progress.extension_working_days <= 20);
                // Every recorded deadline is a working day.
                prop_assert!(journey.calendar.is_working_day(progress.acknowledgement_due));
                if let Some(due) = progress.response_due {
                    prop_assert!(journey.calendar.is_working_day(due));
                    prop_assert!(due > england_date(progress.started_at));
                }
            }
            // The caps hold for each stage whatever happened since, reopenings included.
            prop_assert!(after.stage_one.extension_working_days <= 10);
        }
        // The running clock a read model keeps event by event agrees with the aggregate's.
        let folded = journey.events.iter().fold(None, clock_after);
        prop_assert_eq!(folded, journey.state().running_clock());
        // Replaying the events gives exactly the state that handling produced.
        let replayed = replay(&journey.events);
        prop_assert_eq!(replayed.as_ref(), journey.state.as_ref());
        for event in &journey.events {
            let decoded = Event::from_payload(event.event_type(), event.schema_version(), &event.to_payload());
            let decoded = decoded.ok();
            prop_assert_eq!(decoded.as_ref(), Some(event));
            // As a catch-up's bulk read hands it on: the stored text, parsed straight into the event.
            let text = event.to_payload().to_string();
            let from_text = Event::from_payload(event.event_type(), event.schema_version(), StoredPayload::Text(&text));
            let from_text = from_text.ok();
            prop_assert_eq!(from_text.as_ref(), Some(event));
        }
    }
}

/// The effective time each dated step of the history records, in order (findings, notes and
/// escalations are stamped by the server's clock and not dated by the caller).
fn dated_steps(events: &[Event]) -> Vec<DateTime<Utc>> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ComplaintReceived { received_at, .. } => Some(*received_at),
            Event::ComplaintAcknowledged {
                acknowledged_at, ..
            } => Some(*acknowledged_at),
            Event::DeadlineExtended { extended_at, .. } => Some(*extended_at),
            Event::ResponseIssued { responded_at, .. } => Some(*responded_at),
            Event::StageTwoRequested { requested_at, .. } => Some(*requested_at),
            Event::ComplaintClosed { closed_at, .. } => Some(*closed_at),
            Event::ComplaintWithdrawn { withdrawn_at, .. } => Some(*withdrawn_at),
            Event::ComplaintReopened { reopened_at, .. } => Some(*reopened_at),
            _ => None,
        })
        .collect()
}

fn refused_field(result: Result<Vec<Event>, DomainError>) -> (String, String) {
    match result {
        Err(DomainError::InvalidInput(error)) => (error.field, error.reason),
        Err(DomainError::OutsideCalendar { field, error }) => (field, error.to_string()),
        other => panic!("expected a refused field, got {other:?}"),
    }
}

#[test]
fn a_reopening_dated_before_the_withdrawal_is_refused() {
    let mut journey = Journey::new();
    journey.ok(log_command(
        at("2026-04-02T10:00:00Z"),
        vec![ServiceStandard::Parking],
    ));
    journey.ok(Command::Withdraw {
        reason: OptionalText::default(),
        at: at("2026-06-01T10:00:00Z"),
    });
    let backdated = journey.run(Command::Reopen {
        reason: short("The resident changed their mind"),
        at: at("2026-05-01T10:00:00Z"),
    });
    let (field, reason) = refused_field(backdated);
    assert_eq!(field, "effective_at");
    assert!(
        reason.contains("withdrawn at 2026-06-01 10:00:00 UTC"),
        "{reason}"
    );
    journey.ok(Command::Reopen {
        reason: short("The resident changed their mind"),
        at: at("2026-06-01T10:00:00Z"),
    });
    // The acknowledgement clock restarts from the reopening, not from a month before it.
    assert_eq!(
        journey.state().stage_one.acknowledgement_due,
        date("2026-06-08")
    );
}

#[test]
fn a_complaint_received_before_2020_counts_the_christmas_2019_holidays() {
    let mut journey = Journey::new();
    journey.ok(log_command(
        at("2019-12-24T10:00:00Z"),
        vec![ServiceStandard::Parking],
    ));
    assert_eq!(
        journey.state().stage_one.acknowledgement_due,
        date("2020-01-03")
    );
}

#[test]
fn a_deadline_the_calendar_cannot_count_is_refused_naming_the_field() {
    let mut journey = Journey::new();
    let (field, reason) = refused_field(journey.run(log_command(
        at("2011-12-20T10:00:00Z"),
        vec![ServiceStandard::Parking],
    )));
    assert_eq!(field, "received_at");
    assert!(
        reason.contains("covers 2012-01-01 to 2030-12-31"),
        "{reason}"
    );

    // A calendar that knows 2026 only: a complaint received in December is accepted, but the
    // steps whose deadlines would fall in 2027 are refused, each naming its own field.
    journey.calendar = parsed(WorkingDayCalendar::from_gov_uk_json(
        r#"{"england-and-wales":{"events":[
            {"date":"2026-01-01"},{"date":"2026-12-25"},{"date":"2026-12-28"}]}}"#,
    ));
    journey.ok(log_command(
        at("2026-12-01T10:00:00Z"),
        vec![ServiceStandard::Parking],
    ));
    let acknowledged_late = journey.run(Command::Acknowledge {
        stage: Stage::One,
        handler: handler("Officer One"),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-12-21T10:00:00Z"),
    });
    assert_eq!(refused_field(acknowledged_late).0, "effective_at");
    journey.ok(Command::Acknowledge {
        stage: Stage::One,
        handler: handler("Officer One"),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at: at("2026-12-02T10:00:00Z"),
    });
    let long_extension = journey.run(Command::ExtendDeadline {
        reason: short("Waiting for a survey"),
        working_days: 10,
        ombudsman_details_given: true,
        at: at("2026-12-03T10:00:00Z"),
    });
    assert_eq!(refused_field(long_extension).0, "working_days");
    // Nothing refused reached the history.
    assert_eq!(journey.events.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn history_times_never_decrease(commands in prop::collection::vec(arbitrary_command(), 1..40)) {
        let mut journey = Journey::new();
        journey.ok(log_command(at("2026-03-02T09:00:00Z"), vec![ServiceStandard::Tidiness]));
        for command in commands {
            let before = journey.state().latest_step;
            let Ok(events) = journey.run(command) else {
                continue;
            };
            for at in dated_steps(&events) {
                prop_assert!(at >= before.at, "{at} was accepted after {} at {}", before.step, before.at);
            }
        }
        let times = dated_steps(&journey.events);
        prop_assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    }
}
