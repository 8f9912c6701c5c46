//! The escalation ladder in simulated days: when each level falls due around bank holidays, and
//! that a complaint left alone raises every level exactly once while a handled one stops.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use doorstep_domain::complaint::{Command, Complaint};
use doorstep_domain::escalation::{
    Audience, Deadline, EscalationLevel, EscalationPolicy, LadderStep, default_ladder,
    end_of_england_day, ladder_due_times, plan, shift_working_days, working_days_late,
};
use doorstep_domain::input::{EmailAddress, Handler, LongText, OptionalText, ShortText};
use doorstep_domain::{DomainError, Event, ServiceStandard, WorkingDayCalendar, england_date};
use proptest::prelude::*;
use support::{at, date, decide, log_command, parsed};

mod support;

fn level(name: &str) -> EscalationLevel {
    parsed(EscalationLevel::parse("level", name))
}

fn email(address: &str) -> EmailAddress {
    parsed(EmailAddress::parse("email", address))
}

fn eight_o_clock() -> NaiveTime {
    NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_else(|| panic!("08:00 is a time"))
}

fn default_steps() -> Vec<LadderStep> {
    default_ladder()
        .into_iter()
        .map(|(name, offset)| LadderStep {
            level: level(&name),
            offset_working_days: offset,
        })
        .collect()
}

fn policy() -> EscalationPolicy {
    let ladders = Deadline::ALL
        .into_iter()
        .map(|deadline| (deadline, default_steps()))
        .collect();
    let recipients = BTreeMap::from([
        (level("breach"), vec![email("liaison@landlord.example")]),
        (
            level("head_of_service"),
            vec![email("head@landlord.example")],
        ),
    ]);
    let contractor = BTreeMap::from([(
        "acme-retrofit".to_owned(),
        BTreeMap::from([(
            level("contract_manager"),
            vec![email("complaints@acme.example")],
        )]),
    )]);
    parsed(EscalationPolicy::new(ladders, recipients, contractor))
}

/// A complaint and a scheduler that wakes every simulated hour and raises whatever is due.
struct Simulation {
    calendar: WorkingDayCalendar,
    policy: EscalationPolicy,
    state: Option<Complaint>,
    now: DateTime<Utc>,
    raised: Vec<Event>,
}

impl Simulation {
    /// A simulation starting at `start`, when a complaint about a gate left open is logged.
    fn logged_at(start: DateTime<Utc>) -> Self {
        let mut simulation = Self {
            calendar: WorkingDayCalendar::england_and_wales(),
            policy: policy(),
            state: None,
            now: start,
            raised: Vec::new(),
        };
        simulation
            .run(log_command(start, vec![ServiceStandard::GatesSecured]))
            .unwrap_or_else(|error| panic!("{error}"));
        simulation
    }

    fn run(&mut self, command: Command) -> Result<Vec<Event>, DomainError> {
        decide(&mut self.state, &self.calendar, command)
    }

    fn complaint(&self) -> &Complaint {
        self.state
            .as_ref()
            .unwrap_or_else(|| panic!("complaint not logged"))
    }

    /// What the scheduler does on each tick: every due step of the running clock, raised
    /// through the aggregate (which refuses one already raised).
    fn tick(&mut self) {
        let complaint = self.complaint().clone();
        let Some(clock) = complaint.running_clock() else {
            return;
        };
        for step in plan(
            &complaint.id,
            &complaint.contractor_id,
            &clock,
            &self.policy,
            &self.calendar,
        ) {
            if step.due_at > self.now {
                continue;
            }
            let command = Command::RaiseEscalation {
                escalation: Box::new(step),
                at: self.now,
            };
            // A second attempt at the same step is refused by the aggregate itself.
            if let Ok(events) = self.run(command.clone()) {
                assert!(self.run(command).is_err(), "a step can be raised only once");
                self.raised.extend(events);
            }
        }
    }

    fn advance_to(&mut self, until: DateTime<Utc>) {
        while self.now < until {
            self.now += Duration::hours(1);
            self.tick();
        }
    }

    /// (deadline, level, day raised in England) of every escalation so far.
    fn raised_days(&self) -> Vec<(Deadline, String, NaiveDate)> {
        self.raised
            .iter()
            .filter_map(|event| match event {
                Event::EscalationRaised {
                    deadline,
                    level,
                    raised_at,
                    ..
                } => Some((*deadline, level.to_string(), england_date(*raised_at))),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn due_times_skip_easter_warn_at_eight_and_otherwise_fall_at_midnight_in_england() {
    let calendar = WorkingDayCalendar::england_and_wales();
    // A deadline on Tuesday 7 April 2026: Good Friday (3rd) and Easter Monday (6th) are bank
    // holidays, so the working day before it is Thursday 2 April.
    let due = ladder_due_times(
        date("2026-04-07"),
        &default_steps(),
        &calendar,
        eight_o_clock(),
    );
    let times: Vec<(String, DateTime<Utc>)> = due
        .into_iter()
        .map(|step| (step.level.to_string(), step.due_at))
        .collect();
    assert_eq!(
        times,
        vec![
            // British Summer Time: 08:00 in London is 07:00 UTC, midnight is 23:00 UTC. The
            // warning is on the morning of Thursday 2 April, not as that day ends.
            ("warning".to_owned(), at("2026-04-02T07:00:00Z")),
            ("breach".to_owned(), at("2026-04-07T23:00:00Z")),
            ("liaison_officer".to_owned(), at("2026-04-09T23:00:00Z")),
            ("contract_manager".to_owned(), at("2026-04-14T23:00:00Z")),
            ("head_of_service".to_owned(), at("2026-04-21T23:00:00Z")),
        ]
    );
    // In winter midnight in London is midnight UTC; Christmas and Boxing Day (observed Monday
    // 28 December 2026) are skipped.
    assert_eq!(
        end_of_england_day(shift_working_days(&calendar, date("2026-12-24"), 1)),
        at("2026-12-30T00:00:00Z")
    );
    assert_eq!(
        shift_working_days(&calendar, date("2026-12-29"), -1),
        date("2026-12-24")
    );
}

/// When the warning (one working day before) of a deadline on `deadline` comes, at `time`.
fn warning_for(deadline: &str, time: NaiveTime) -> DateTime<Utc> {
    let calendar = WorkingDayCalendar::england_and_wales();
    let due = ladder_due_times(date(deadline), &default_steps(), &calendar, time);
    due[0].due_at
}

#[test]
fn the_warning_comes_on_the_morning_of_the_last_working_day_before_the_deadline_in_uk_time() {
    // A Monday deadline: the warning is read on the Friday morning, not at midnight on Saturday.
    assert_eq!(
        warning_for("2026-12-14", eight_o_clock()),
        at("2026-12-11T08:00:00Z")
    );
    // Across a bank holiday: a deadline on Tuesday 29 December 2026 (Christmas Day, then Boxing
    // Day observed on Monday 28th) is warned on the morning of Thursday 24 December.
    assert_eq!(
        warning_for("2026-12-29", eight_o_clock()),
        at("2026-12-24T08:00:00Z")
    );
    // The clocks go back on Sunday 25 October 2026: the Friday before is still summer time
    // (08:00 is 07:00 UTC) and the Monday after is winter time (08:00 UTC).
    assert_eq!(
        warning_for("2026-10-26", eight_o_clock()),
        at("2026-10-23T07:00:00Z")
    );
    assert_eq!(
        warning_for("2026-10-27", eight_o_clock()),
        at("2026-10-26T08:00:00Z")
    );
    // The clocks go forward on Sunday 29 March 2026: the Friday before is winter time, the
    // Monday after summer time.
    assert_eq!(
        warning_for("2026-03-30", eight_o_clock()),
        at("2026-03-27T08:00:00Z")
    );
    assert_eq!(
        warning_for("2026-03-31", eight_o_clock()),
        at("2026-03-30T07:00:00Z")
    );
    // A configured time is UK time too.
    let half_seven = NaiveTime::from_hms_opt(7, 30, 0).unwrap_or_else(|| panic!("a time"));
    assert_eq!(
        warning_for("2026-07-07", half_seven),
        at("2026-07-06T06:30:00Z")
    );
    // The policy's warning time is 08:00 unless it is given another.
    assert_eq!(policy().warning_time(), eight_o_clock());
    assert_eq!(
        policy().with_warning_time(half_seven).warning_time(),
        half_seven
    );
}

#[test]
fn only_addresses_the_landlord_lists_as_staff_are_written_to_as_staff() {
    let policy = policy();
    assert_eq!(policy.audience("liaison@landlord.example"), Audience::Staff);
    assert_eq!(policy.audience(" Head@Landlord.example "), Audience::Staff);
    assert_eq!(
        policy.audience("complaints@acme.example"),
        Audience::Contractor
    );
    // An address the settings no longer list gets the copy with the least personal data.
    assert_eq!(
        policy.audience("someone@elsewhere.example"),
        Audience::Contractor
    );
    // Listed both as staff and for a contractor: a contractor's copy.
    let both = parsed(EscalationPolicy::new(
        Deadline::ALL
            .into_iter()
            .map(|deadline| (deadline, default_steps()))
            .collect(),
        BTreeMap::from([(level("breach"), vec![email("shared@acme.example")])]),
        BTreeMap::from([(
            "acme-retrofit".to_owned(),
            BTreeMap::from([(level("warning"), vec![email("shared@acme.example")])]),
        )]),
    ));
    assert_eq!(both.audience("shared@acme.example"), Audience::Contractor);
}

#[test]
fn a_complaint_left_alone_climbs_the_whole_ladder_once() {
    // Received on Thursday 2 April 2026, before Easter: acknowledgement due Monday 13 April.
    let mut simulation = Simulation::logged_at(at("2026-04-02T09:00:00Z"));
    simulation.advance_to(at("2026-05-15T00:00:00Z"));
    let ack = Deadline::StageOneAcknowledgement;
    assert_eq!(
        simulation.raised_days(),
        vec![
            // The working day before Monday 13 April is Friday 10 April: the warning comes at
            // 08:00 that morning, to be read with two working days left.
            (ack, "warning".to_owned(), date("2026-04-10")),
            (ack, "breach".to_owned(), date("2026-04-14")),
            (ack, "liaison_officer".to_owned(), date("2026-04-16")),
            (ack, "contract_manager".to_owned(), date("2026-04-21")),
            (ack, "head_of_service".to_owned(), date("2026-04-28")),
        ]
    );
    // Recipients: the level's own, plus the contractor's for its contract manager.
    let recipients: Vec<Vec<String>> = simulation
        .raised
        .iter()
        .filter_map(|event| match event {
            Event::EscalationRaised { recipients, .. } => Some(
                recipients
                    .iter()
                    .map(|address| address.as_str().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(recipients[1], vec!["liaison@landlord.example".to_owned()]);
    assert_eq!(recipients[3], vec!["complaints@acme.example".to_owned()]);
    // The head of service sees how late it is: ten working days.
    assert_eq!(
        working_days_late(
            &simulation.calendar,
            date("2026-04-13"),
            at("2026-04-28T09:00:00Z")
        ),
        10
    );
}

#[test]
fn acknowledging_stops_the_clock_extending_moves_it_and_reopening_restarts_it() {
    let handler = parsed(Handler::parse("handler", "Ann Officer"));
    let mut simulation = Simulation::logged_at(at("2026-04-02T09:00:00Z"));
    // Acknowledged late on Wednesday 15 April: warning and breach raised, nothing more.
    simulation.advance_to(at("2026-04-15T10:00:00Z"));
    simulation
        .run(Command::Acknowledge {
            stage: doorstep_domain::Stage::One,
            handler: handler.clone(),
            complaint_definition: OptionalText::default(),
            outcome_sought: OptionalText::default(),
            at: simulation.now,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    // Response due ten working days after 15 April: Wednesday 29 April. Extended by five on
    // the morning of 29 April, after the warning, to Thursday 7 May (Monday 4 May is the early
    // May bank holiday).
    simulation.advance_to(at("2026-04-29T10:00:00Z"));
    let extended = simulation
        .run(Command::ExtendDeadline {
            reason: parsed(ShortText::parse("reason", "Waiting for the contractor")),
            working_days: 5,
            ombudsman_details_given: true,
            at: simulation.now,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(matches!(
        extended.as_slice(),
        [Event::DeadlineExtended { response_due, .. }] if *response_due == date("2026-05-07")
    ));
    simulation.advance_to(at("2026-05-08T10:00:00Z"));
    let days = simulation.raised_days();
    let ack = Deadline::StageOneAcknowledgement;
    let response = Deadline::StageOneResponse;
    assert_eq!(
        days,
        vec![
            (ack, "warning".to_owned(), date("2026-04-10")),
            (ack, "breach".to_owned(), date("2026-04-14")),
            // The warning for the old date (on the morning of 28 April) was raised before the
            // extension…
            (response, "warning".to_owned(), date("2026-04-28")),
            // …and is not raised again for the new one; the breach follows the new date.
            (response, "breach".to_owned(), date("2026-05-08")),
        ]
    );
    // Closing stops everything; reopening starts the response clock again, with new ids.
    simulation
        .run(Command::AddNote {
            text: LongText::default(),
            at: simulation.now,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    let first_ids: Vec<uuid::Uuid> = simulation
        .raised
        .iter()
        .filter_map(|event| match event {
            Event::EscalationRaised { escalation_id, .. } => Some(*escalation_id),
            _ => None,
        })
        .collect();
    simulation
        .run(Command::Withdraw {
            reason: OptionalText::default(),
            at: simulation.now,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    simulation.advance_to(at("2026-06-01T10:00:00Z"));
    assert_eq!(
        simulation.raised.len(),
        4,
        "a withdrawn complaint escalates nothing"
    );
    simulation
        .run(Command::Reopen {
            reason: parsed(ShortText::parse("reason", "Resident came back")),
            at: simulation.now,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    simulation.advance_to(at("2026-06-30T10:00:00Z"));
    let after_reopen: Vec<&Event> = simulation.raised[4..].iter().collect();
    assert_eq!(
        after_reopen.len(),
        5,
        "the whole ladder again for the new clock"
    );
    for event in after_reopen {
        let Event::EscalationRaised {
            escalation_id,
            deadline,
            clock_started_at,
            ..
        } = event
        else {
            panic!("not an escalation");
        };
        assert_eq!(*deadline, response);
        assert_eq!(*clock_started_at, at("2026-06-01T10:00:00Z"));
        assert!(!first_ids.contains(escalation_id));
    }
}

#[test]
fn escalations_are_acknowledged_once() {
    let mut simulation = Simulation::logged_at(at("2026-04-02T09:00:00Z"));
    simulation.advance_to(at("2026-04-15T00:00:00Z"));
    let Some(Event::EscalationRaised { escalation_id, .. }) = simulation.raised.get(1).cloned()
    else {
        panic!("the breach was raised");
    };
    let acknowledge = |id| Command::AcknowledgeEscalation {
        escalation_id: id,
        by: parsed(Handler::parse("by", "Head of Service")),
        note: OptionalText::default(),
        at: at("2026-04-15T09:00:00Z"),
    };
    simulation
        .run(acknowledge(escalation_id))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(matches!(
        simulation.run(acknowledge(escalation_id)),
        Err(DomainError::NotAllowed(_))
    ));
    assert!(matches!(
        simulation.run(acknowledge(uuid::Uuid::nil())),
        Err(DomainError::EscalationNotFound)
    ));
    let escalation = simulation
        .complaint()
        .escalation(escalation_id)
        .unwrap_or_else(|| panic!("known"));
    assert_eq!(
        escalation.acknowledged_by.as_ref().map(Handler::as_str),
        Some("Head of Service")
    );
}

#[test]
fn policies_that_cannot_work_are_refused_naming_the_key() {
    let backwards = vec![
        LadderStep {
            level: level("breach"),
            offset_working_days: 0,
        },
        LadderStep {
            level: level("warning"),
            offset_working_days: -1,
        },
    ];
    let error = EscalationPolicy::new(
        BTreeMap::from([(Deadline::StageOneResponse, backwards)]),
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .err()
    .unwrap_or_else(|| panic!("refused"));
    assert_eq!(error.key, "escalation.ladders.stage_one_response[1]");
    let error = EscalationPolicy::new(
        BTreeMap::from([(Deadline::StageOneResponse, default_steps())]),
        BTreeMap::from([(level("head_of_servcie"), vec![email("a@b.example")])]),
        BTreeMap::new(),
    )
    .err()
    .unwrap_or_else(|| panic!("refused"));
    assert_eq!(error.key, "escalation.recipients.head_of_servcie");
}

proptest! {
    #[test]
    fn steps_fall_due_in_order_at_the_end_of_a_working_day(
        offset in 0i64..(10 * 365),
        mut offsets in prop::collection::btree_set(-15i32..40, 1..8),
    ) {
        let calendar = WorkingDayCalendar::england_and_wales();
        let deadline = calendar.add_working_days(date("2020-01-01") + Duration::days(offset), 5);
        let steps: Vec<LadderStep> = std::mem::take(&mut offsets)
            .into_iter()
            .enumerate()
            .map(|(index, offset)| LadderStep { level: level(&format!("level_{index}")), offset_working_days: offset })
            .collect();
        let due = ladder_due_times(deadline, &steps, &calendar, eight_o_clock());
        for pair in due.windows(2) {
            prop_assert!(pair[0].due_at < pair[1].due_at);
        }
        for step in &due {
            // A warning fires at 08:00 UK time on its working day; any other step as its working
            // day ends, so the instant before it is in that day.
            let day = if step.offset_working_days < 0 {
                let local = step.due_at.with_timezone(&chrono_tz::Europe::London);
                prop_assert_eq!(local.time(), eight_o_clock());
                local.date_naive()
            } else {
                england_date(step.due_at - Duration::seconds(1))
            };
            prop_assert!(calendar.is_working_day(day));
            prop_assert_eq!(calendar.working_days_between(deadline, day), i64::from(step.offset_working_days));
            if step.offset_working_days >= 0 {
                prop_assert_eq!(
                    working_days_late(&calendar, deadline, step.due_at),
                    step.offset_working_days.unsigned_abs()
                );
            }
        }
    }
}
