//! The contractor registry, the performance counters and the complaint-handling clocks against a
//! real event store on every backend:
//!
//! - a random history of contractors, visits and complaints gives exactly the figures computed
//!   here from the replayed aggregates, and a rebuild from position 0 gives identical tables;
//! - a hand-checked reporting year gives the CH01/CH02 counts worked out by hand;
//! - `verify_contractor` finds contractors by name and phone number however they are written.

#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use doorstep_domain::complaint::{
    Command, Complaint, DomainError, FindingInput, FindingOutcome, HandlingContext, LogComplaint,
    Stage, StageProgress, apply, handle,
};
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, Contractor, ContractorCommand, ContractorProfile,
    ContractorStatus, EqualityAudit, EqualityTraining, LiaisonLead, ResidentChampion,
    ResidentLiaison, StandardsSignOff, Visit, VisitEvent, apply_contractor, handle_contractor,
};
use doorstep_domain::input::{
    ComplaintId, ContractorId, Handler, LongText, OptionalText, PersonName, PhoneNumber,
    ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use doorstep_domain::{Event, ServiceStandard, WorkingDayCalendar, england_date};
use doorstep_projections::{
    ContractorFigures, ContractorRow, ContractorTotals, HandlingCounts, HandlingRow,
    HandlingSummary, LeadHandling, Month, ProjectionRunner, ReadModel, StageClock, StageCounts,
    StandardFigures, is_breach,
};
use doorstep_store::{EventStore, StreamId};
use proptest::prelude::*;
use support::{Kind, TestBackend, append, append_complaint_events, calendar, log_complaint, valid};

// ---------------------------------------------------------------------------------------------
// Writing through the domain.

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

fn date(text: &str) -> NaiveDate {
    valid(text.parse())
}

fn month(text: &str) -> Month {
    valid(Month::parse(text))
}

fn short(text: &str) -> ShortText {
    valid(ShortText::parse("text", text))
}

fn log_command(
    id: ComplaintId,
    contractor: &str,
    visit: Option<&str>,
    standards: Vec<ServiceStandard>,
    received_at: DateTime<Utc>,
) -> Command {
    // By phone through the call centre; otherwise the support module's complaint.
    Command::Log(Box::new(LogComplaint {
        channel: "PHONE".to_owned(),
        source_system: valid(SourceSystem::parse("source_system", "call-centre")),
        visit_id: visit.map(|visit| valid(VisitId::parse("v", visit))),
        standards,
        ..log_complaint(id, contractor, received_at)
    }))
}

fn acknowledge(stage: Stage, handler: &str, at: DateTime<Utc>) -> Command {
    Command::Acknowledge {
        stage,
        handler: valid(Handler::parse("h", handler)),
        complaint_definition: OptionalText::default(),
        outcome_sought: OptionalText::default(),
        at,
    }
}

fn findings(outcomes: &[(ServiceStandard, FindingOutcome)], at: DateTime<Utc>) -> Command {
    Command::RecordFindings {
        findings: outcomes
            .iter()
            .map(|(standard, outcome)| FindingInput {
                standard: *standard,
                outcome: *outcome,
                summary: OptionalText::default(),
            })
            .collect(),
        at,
    }
}

fn respond(at: DateTime<Utc>) -> Command {
    Command::IssueResponse {
        decision: short("Decided"),
        remedy: OptionalText::default(),
        at,
    }
}

fn extend(working_days: u32, at: DateTime<Utc>) -> Command {
    Command::ExtendDeadline {
        reason: short("Waiting for the contractor"),
        working_days,
        ombudsman_details_given: true,
        at,
    }
}

fn escalate(at: DateTime<Utc>) -> Command {
    Command::RequestStageTwo {
        reason: OptionalText::default(),
        at,
    }
}

/// One complaint written through `handle` and the real store, with the handling clock computed
/// independently of the projection: from the aggregate's state after every event, keeping each
/// stage's dates as they stood when its first response was issued.
struct ComplaintWriter {
    id: ComplaintId,
    stream: StreamId,
    state: Option<Complaint>,
    clocks: [Option<StageClock>; 2],
    /// The lead its contractor's contracts named when it was logged.
    liaison_lead: Option<LiaisonLead>,
}

impl ComplaintWriter {
    fn new() -> Self {
        let id = ComplaintId::from_uuid(uuid::Uuid::now_v7());
        Self {
            id,
            stream: StreamId::new("complaint", id),
            state: None,
            clocks: [None, None],
            liaison_lead: None,
        }
    }

    /// Handles `command`; a refused command writes nothing.
    async fn run(
        &mut self,
        store: &Arc<dyn EventStore>,
        context: &HandlingContext<'_>,
        command: Command,
    ) -> Result<(), DomainError> {
        let events = handle(self.state.as_ref(), command, context)?;
        append_complaint_events(store, &self.stream, &events).await;
        for event in &events {
            self.state = apply(self.state.take(), event);
            self.follow_clocks(matches!(event, Event::DeadlineExtended { .. }));
        }
        Ok(())
    }

    /// Like `run`, for a step the test expects the Code to allow.
    async fn must(
        &mut self,
        store: &Arc<dyn EventStore>,
        context: &HandlingContext<'_>,
        command: Command,
    ) {
        valid(self.run(store, context, command).await);
    }

    fn follow_clocks(&mut self, extended: bool) {
        let Some(state) = &self.state else { return };
        let stages = [Some(&state.stage_one), state.stage_two.as_ref()];
        for (clock, progress) in self.clocks.iter_mut().zip(stages) {
            let Some(progress) = progress else { continue };
            follow_clock(clock, progress, extended);
        }
    }

    fn state(&self) -> &Complaint {
        self.state
            .as_ref()
            .unwrap_or_else(|| panic!("complaint {} was logged", self.id))
    }

    /// The row the handling model must hold for this complaint.
    fn expected_handling(&self) -> HandlingRow {
        let state = self.state();
        let received_date = england_date(state.received_at);
        HandlingRow {
            complaint_id: state.id.to_string(),
            contractor_id: state.contractor_id.as_str().to_owned(),
            month: Month::of(received_date),
            visit_id: state.visit_id.as_ref().map(|v| v.as_str().to_owned()),
            received_date,
            stage_one: self.clocks[0]
                .clone()
                .unwrap_or_else(|| panic!("stage 1 started")),
            stage_two: self.clocks[1].clone(),
            escalated: state.stage_two.is_some(),
            reopen_count: state.reopen_count,
            version: state.version,
            liaison_lead: self.liaison_lead,
        }
    }
}

fn follow_clock(clock: &mut Option<StageClock>, progress: &StageProgress, extended: bool) {
    let clock = clock.get_or_insert_with(|| StageClock {
        started: england_date(progress.started_at),
        acknowledgement_due: progress.acknowledgement_due,
        acknowledged: None,
        response_due_original: None,
        response_due: None,
        responded: None,
    });
    if clock.responded.is_some() {
        return;
    }
    clock.acknowledgement_due = progress.acknowledgement_due;
    clock.acknowledged = progress.acknowledged_at.map(england_date);
    // A deadline set by anything but an extension (acknowledgement, reopening) is an original one.
    if !extended && clock.response_due != progress.response_due {
        clock.response_due_original = progress.response_due;
    }
    clock.response_due = progress.response_due;
    clock.responded = progress.responded_at.map(england_date);
}

async fn run_contractor(
    store: &Arc<dyn EventStore>,
    states: &mut BTreeMap<String, Contractor>,
    contractor_id: &str,
    command: ContractorCommand,
) -> Result<(), DomainError> {
    let events = handle_contractor(states.get(contractor_id), command)?;
    append(
        store,
        &StreamId::new("contractor", contractor_id),
        events.iter().map(|event| {
            (
                event.event_type(),
                event.schema_version(),
                event.to_payload(),
            )
        }),
    )
    .await;
    for event in &events {
        if let Some(next) = apply_contractor(states.remove(contractor_id), event) {
            states.insert(contractor_id.to_owned(), next);
        }
    }
    Ok(())
}

async fn record_visit(store: &Arc<dyn EventStore>, visit: &Visit) {
    let event = VisitEvent::VisitRecorded {
        visit: visit.clone(),
    };
    append(
        store,
        &StreamId::new("visit", &visit.visit_id),
        [(
            event.event_type(),
            event.schema_version(),
            event.to_payload(),
        )],
    )
    .await;
}

fn profile(legal_name: &str, trading_names: &[&str], phone: &str) -> ContractorProfile {
    ContractorProfile {
        legal_name: short(legal_name),
        trading_names: trading_names.iter().map(|name| short(name)).collect(),
        logo_url: valid(OptionalText::parse(
            "logo_url",
            "https://example.org/logo.png",
        )),
        public_contact_name: valid(PersonName::parse("contact", "Pat Contact")),
        public_phone: valid(PhoneNumber::parse("phone", phone)),
        contracts: vec![ContractTerms {
            reference: short("RETRO-2026-01"),
            standards: ServiceStandard::ALL.to_vec(),
            liaison: None,
            equality_conditions: None,
        }],
    }
}

fn audit(audit_date: NaiveDate, outcome: AuditOutcome, not_met: &str) -> EqualityAudit {
    EqualityAudit {
        audit_date,
        auditor: short("E&D team"),
        workforce_diversity: LongText::default(),
        equality_policy_and_procedures: LongText::default(),
        requirements_not_met: valid(LongText::parse("not_met", not_met)),
        staff_experience_and_training: LongText::default(),
        outcome,
    }
}

// ---------------------------------------------------------------------------------------------
// (a) A random history against figures computed from the replayed aggregates.

/// `ghost` is never registered: complaints and visits may still name it.
const CONTRACTORS: [&str; 4] = ["acme", "brick-co", "cladding.ltd", "ghost"];
const NAMES: [&str; 3] = ["Acme Retrofit", "Brick & Co", "Cladding"];
const TRADING_NAMES: [&str; 4] = [
    "Warm Homes",
    "Acme Insulation",
    "Brick Co North",
    "Loft Pros",
];
const PHONES: [&str; 4] = [
    "020 7946 0018",
    "+44 161 496 0000",
    "0113 496 0999",
    "(0121) 496-0123",
];
const ALLEGED: [ServiceStandard; 3] = [
    ServiceStandard::Tidiness,
    ServiceStandard::Courtesy,
    ServiceStandard::GatesSecured,
];
const OUTCOMES: [FindingOutcome; 3] = [
    FindingOutcome::Upheld,
    FindingOutcome::PartlyUpheld,
    FindingOutcome::NotUpheld,
];
/// Visits are named v0, v1, …; complaints may name up to this many, more than are recorded.
const VISIT_NAMES: usize = 8;
/// Where in the writing order a contractor step or visit goes: before complaint `slot`, or after
/// every complaint when `slot` is past the last.
const SLOTS: usize = 12;

#[derive(Debug, Clone)]
struct ContractorStep {
    slot: usize,
    contractor: usize,
    kind: u8,
    variant: u8,
}

#[derive(Debug, Clone)]
struct VisitPlan {
    contractor: usize,
    day: u32,
    /// None: the work-order system never records it.
    slot: Option<usize>,
}

#[derive(Debug, Clone)]
struct ComplaintPlan {
    contractor: usize,
    visit: Option<usize>,
    standards: u8,
    hour: u32,
    steps: Vec<(u8, u8)>,
}

#[derive(Debug, Clone)]
struct History {
    contractor_steps: Vec<ContractorStep>,
    visits: Vec<VisitPlan>,
    complaints: Vec<ComplaintPlan>,
}

fn history() -> impl Strategy<Value = History> {
    let contractor_step = (0..=SLOTS, 0usize..3, 0u8..7, any::<u8>()).prop_map(
        |(slot, contractor, kind, variant)| ContractorStep {
            slot,
            contractor,
            kind,
            variant,
        },
    );
    let visit = (0usize..4, 0u32..180, prop::option::weighted(0.8, 0..=SLOTS)).prop_map(
        |(contractor, day, slot)| VisitPlan {
            contractor,
            day,
            slot,
        },
    );
    let complaint = (
        0usize..4,
        prop::option::weighted(0.7, 0..VISIT_NAMES),
        1u8..8,
        0u32..(180 * 24),
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..20),
    )
        .prop_map(
            |(contractor, visit, standards, hour, steps)| ComplaintPlan {
                contractor,
                visit,
                standards,
                hour,
                steps,
            },
        );
    (
        prop::collection::vec(contractor_step, 0..10),
        prop::collection::vec(visit, 0..10),
        prop::collection::vec(complaint, 1..SLOTS),
    )
        .prop_map(|(contractor_steps, visits, complaints)| History {
            contractor_steps,
            visits,
            complaints,
        })
}

fn contractor_command(step: &ContractorStep, at: DateTime<Utc>) -> ContractorCommand {
    let variant = usize::from(step.variant);
    let legal_name = format!(
        "{} {}",
        NAMES[step.contractor],
        ["Ltd", "Limited", "Ltd."][variant % 3]
    );
    let trading: Vec<&str> = TRADING_NAMES
        .iter()
        .enumerate()
        .filter(|(index, _)| variant >> index & 1 == 1)
        .map(|(_, name)| *name)
        .collect();
    let mut profile = profile(
        &legal_name,
        &trading,
        PHONES[(step.contractor + variant) % 4],
    );
    // Each contract's liaison lead (or none), and its standards: all, or some, so that updates
    // change them and sign-offs go stale.
    let lead = |bits: usize| {
        [
            Some(LiaisonLead::InHouse),
            Some(LiaisonLead::Contractor),
            None,
        ][bits % 3]
            .map(|lead| ResidentLiaison {
                lead,
                contact_name: valid(PersonName::parse("contact", "Robin Liaison")),
            })
    };
    profile.contracts[0].liaison = lead(variant >> 4);
    if variant >> 6 & 1 == 1 {
        profile.contracts[0].standards = ALLEGED.to_vec();
    }
    if variant >> 7 & 1 == 1 {
        profile.contracts.push(ContractTerms {
            reference: short("RETRO-2027-02"),
            standards: ALLEGED.to_vec(),
            liaison: lead(variant >> 5),
            equality_conditions: None,
        });
    }
    match step.kind {
        5 => ContractorCommand::RecordStandardsSignOff {
            sign_off: StandardsSignOff {
                contract_reference: short(["RETRO-2026-01", "RETRO-2027-02"][variant % 2]),
                champions: vec![ResidentChampion {
                    reference: valid(ResidentReference::parse("champion", "RC-1")),
                    published_name: None,
                }],
                signed_off_on: date("2026-01-01"),
                // Refused when it is not the contract's standards, as in the service.
                standards: if variant >> 2 & 1 == 1 {
                    ALLEGED.to_vec()
                } else {
                    ServiceStandard::ALL.to_vec()
                },
                comments: OptionalText::default(),
            },
            at,
        },
        6 => ContractorCommand::RecordEqualityTraining {
            training: EqualityTraining {
                trained_on: date("2026-01-01"),
                course: short("Equality and diversity"),
                staff_trained: u32::from(step.variant) + 1,
            },
            at,
        },
        0 => ContractorCommand::Register {
            contractor_id: valid(ContractorId::parse("c", CONTRACTORS[step.contractor])),
            profile,
            at,
        },
        1 => ContractorCommand::Update { profile, at },
        2 => ContractorCommand::Suspend {
            reason: short("Smoking on site"),
            at,
        },
        3 => ContractorCommand::Reinstate {
            reason: OptionalText::default(),
            at,
        },
        _ => ContractorCommand::RecordEqualityAudit {
            audit: audit(
                date("2025-01-01") + Duration::days(i64::from(step.variant % 8) * 30),
                [
                    AuditOutcome::Satisfactory,
                    AuditOutcome::ImprovementRequired,
                    AuditOutcome::Unsatisfactory,
                ][variant % 3],
                &format!("Requirement {variant}"),
            ),
            at,
        },
    }
}

/// The next step of a complaint: mostly one the Code allows in its current state, so that
/// histories get as far as stage 2 reviews and reopenings, and now and then any step at all, so
/// that refused steps are exercised too.
fn complaint_step(
    state: &Complaint,
    choice: u8,
    bits: u8,
    standards: &[ServiceStandard],
    at: DateTime<Utc>,
) -> Command {
    use doorstep_domain::Status;
    let findings = || {
        let outcomes: Vec<(ServiceStandard, FindingOutcome)> = standards
            .iter()
            .enumerate()
            .map(|(index, standard)| (*standard, OUTCOMES[usize::from(bits >> (2 * index)) % 3]))
            .collect();
        findings(&outcomes, at)
    };
    let acknowledge = || match state.stage {
        Stage::One => acknowledge(Stage::One, "Ann", at),
        Stage::Two => acknowledge(Stage::Two, "Bob", at),
    };
    let withdraw = || Command::Withdraw {
        reason: OptionalText::default(),
        at,
    };
    let note = || Command::AddNote {
        text: LongText::default(),
        at,
    };
    let mut allowed: Vec<Command> = match state.status {
        Status::AwaitingAcknowledgement => {
            vec![
                acknowledge(),
                acknowledge(),
                acknowledge(),
                acknowledge(),
                acknowledge(),
                withdraw(),
            ]
        }
        Status::UnderInvestigation => vec![
            findings(),
            findings(),
            findings(),
            respond(at),
            respond(at),
            respond(at),
            respond(at),
            extend(1 + u32::from(bits % 4), at),
            withdraw(),
            note(),
        ],
        Status::Responded => vec![
            escalate(at),
            escalate(at),
            escalate(at),
            Command::Close {
                reason: OptionalText::default(),
                at,
            },
            withdraw(),
        ],
        Status::Closed | Status::Withdrawn => vec![Command::Reopen {
            reason: short("The resident came back"),
            at,
        }],
    };
    if choice % 8 == 7 {
        // Anything, allowed or not.
        allowed = vec![
            acknowledge(),
            findings(),
            respond(at),
            escalate(at),
            extend(1 + u32::from(bits % 4), at),
            withdraw(),
            note(),
        ];
    }
    let index = usize::from(choice / 8) % allowed.len();
    allowed.swap_remove(index)
}

/// What the test wrote, folded by the domain.
struct Written {
    complaints: Vec<ComplaintWriter>,
    /// Recorded visits by id.
    visits: BTreeMap<String, Visit>,
    contractors: BTreeMap<String, Contractor>,
}

/// Writes the history in its order, catching the projection up half-way so that later events
/// land on counters already committed.
async fn write_history(
    store: &Arc<dyn EventStore>,
    history: &History,
    read_model_catch_up: impl AsyncFn(),
) -> Written {
    let calendar = WorkingDayCalendar::england_and_wales();
    let context = HandlingContext {
        calendar: &calendar,
        timescales: Default::default(),
    };
    let start = at("2026-01-01T00:00:00Z");
    let mut written = Written {
        complaints: Vec::new(),
        visits: BTreeMap::new(),
        contractors: BTreeMap::new(),
    };
    // Two contractors are registered from the start; the third only if the history says so.
    for (contractor, contractor_id) in CONTRACTORS.iter().enumerate().take(2) {
        let step = ContractorStep {
            slot: 0,
            contractor,
            kind: 0,
            variant: 1,
        };
        let command = contractor_command(&step, start);
        valid(run_contractor(store, &mut written.contractors, contractor_id, command).await);
    }
    let last_slot = history.complaints.len();
    for slot in 0..=last_slot {
        let in_slot = |plan: usize| plan == slot || (slot == last_slot && plan > last_slot);
        for step in history.contractor_steps.iter().filter(|s| in_slot(s.slot)) {
            let command = contractor_command(step, start + Duration::hours(slot as i64));
            // Steps the registry refuses (updating the unregistered, suspending twice) write
            // nothing, as in the service.
            let _ = run_contractor(
                store,
                &mut written.contractors,
                CONTRACTORS[step.contractor],
                command,
            )
            .await;
        }
        for (index, plan) in history.visits.iter().enumerate() {
            if !plan.slot.is_some_and(in_slot) {
                continue;
            }
            let visit = Visit {
                visit_id: valid(VisitId::parse("v", &format!("v{index}"))),
                contractor_id: valid(ContractorId::parse("c", CONTRACTORS[plan.contractor])),
                uprn: valid(Uprn::parse("u", "123456")),
                work_order_reference: short("WO-1"),
                visit_date: date("2026-01-01") + Duration::days(i64::from(plan.day)),
            };
            record_visit(store, &visit).await;
            written
                .visits
                .insert(visit.visit_id.as_str().to_owned(), visit);
        }
        if slot == last_slot / 2 {
            read_model_catch_up().await;
        }
        let Some(plan) = history.complaints.get(slot) else {
            continue;
        };
        let standards: Vec<ServiceStandard> = ALLEGED
            .iter()
            .enumerate()
            .filter(|(index, _)| plan.standards >> index & 1 == 1)
            .map(|(_, standard)| *standard)
            .collect();
        let received = start + Duration::hours(i64::from(plan.hour));
        let visit = plan.visit.map(|visit| format!("v{visit}"));
        let mut complaint = ComplaintWriter::new();
        complaint.liaison_lead = written
            .contractors
            .get(CONTRACTORS[plan.contractor])
            .and_then(Contractor::liaison_lead);
        let log = log_command(
            complaint.id,
            CONTRACTORS[plan.contractor],
            visit.as_deref(),
            standards.clone(),
            received,
        );
        complaint.must(store, &context, log).await;
        let mut step_at = received;
        for (choice, bits) in &plan.steps {
            // One to eight days between steps: some responses in time, some late.
            step_at += Duration::days(1 + i64::from(bits >> 5));
            let command = complaint_step(complaint.state(), *choice, *bits, &standards, step_at);
            // Steps the Code refuses write nothing.
            let _ = complaint.run(store, &context, command).await;
        }
        written.complaints.push(complaint);
    }
    written
}

fn in_months(value: Month, from: Month, to: Month) -> bool {
    from <= value && value <= to
}

impl Written {
    /// Upheld (and partly upheld) findings per visit, over every complaint naming the visit.
    fn upheld_by_visit(&self) -> BTreeMap<String, u64> {
        let mut upheld = BTreeMap::new();
        for complaint in &self.complaints {
            let state = complaint.state();
            let Some(visit) = &state.visit_id else {
                continue;
            };
            let breaches = state
                .findings
                .values()
                .filter(|finding| is_breach(finding.outcome))
                .count() as u64;
            *upheld.entry(visit.as_str().to_owned()).or_default() += breaches;
        }
        upheld
    }

    fn expected_figures(&self, contractor: &str, from: Month, to: Month) -> ContractorFigures {
        let upheld = self.upheld_by_visit();
        let visits: Vec<&Visit> = self
            .visits
            .values()
            .filter(|visit| {
                visit.contractor_id.as_str() == contractor
                    && in_months(Month::of(visit.visit_date), from, to)
            })
            .collect();
        let handling: Vec<HandlingRow> = self
            .complaints
            .iter()
            .map(ComplaintWriter::expected_handling)
            .filter(|row| row.contractor_id == contractor && in_months(row.month, from, to))
            .collect();
        let mut standards: BTreeMap<ServiceStandard, StandardFigures> = BTreeMap::new();
        for complaint in &self.complaints {
            let state = complaint.state();
            let month = Month::of(england_date(state.received_at));
            if state.contractor_id.as_str() != contractor || !in_months(month, from, to) {
                continue;
            }
            for standard in &state.standards {
                let figures = standards.entry(*standard).or_insert(StandardFigures {
                    standard: *standard,
                    reported: 0,
                    upheld: 0,
                    partly_upheld: 0,
                    not_upheld: 0,
                });
                figures.reported += 1;
                match state.findings.get(standard).map(|finding| finding.outcome) {
                    Some(FindingOutcome::Upheld) => figures.upheld += 1,
                    Some(FindingOutcome::PartlyUpheld) => figures.partly_upheld += 1,
                    Some(FindingOutcome::NotUpheld) => figures.not_upheld += 1,
                    None => {}
                }
            }
        }
        ContractorFigures {
            contractor_id: contractor.to_owned(),
            from_month: from,
            to_month: to,
            visits: visits.len() as u64,
            visits_with_upheld_breach: visits
                .iter()
                .filter(|visit| upheld.get(visit.visit_id.as_str()).is_some_and(|n| *n > 0))
                .count() as u64,
            complaints: handling.len() as u64,
            standards: standards.into_values().collect(),
            escalations: handling.iter().filter(|row| row.escalated).count() as u64,
            reopened: handling.iter().filter(|row| row.reopen_count > 0).count() as u64,
            // This model's histories raise no notifier escalations (tests/escalations.rs does).
            escalations_raised: 0,
            escalations_past_deadline: 0,
            handling: expected_summary(&handling),
        }
    }

    fn expected_programme(&self, from: Month, to: Month) -> Vec<ContractorTotals> {
        let mut named: BTreeSet<String> = self.contractors.keys().cloned().collect();
        named.extend(
            self.visits
                .values()
                .filter(|visit| in_months(Month::of(visit.visit_date), from, to))
                .map(|visit| visit.contractor_id.as_str().to_owned()),
        );
        named.extend(
            self.complaints
                .iter()
                .map(ComplaintWriter::expected_handling)
                .filter(|row| in_months(row.month, from, to))
                .map(|row| row.contractor_id),
        );
        named
            .into_iter()
            .map(|contractor| {
                let figures = self.expected_figures(&contractor, from, to);
                ContractorTotals {
                    legal_name: self
                        .contractors
                        .get(&contractor)
                        .map(|c| c.profile.legal_name.as_str().to_owned())
                        .unwrap_or_default(),
                    visits: figures.visits,
                    upheld_breaches: figures.upheld_breaches(),
                    reported: figures.reported_breaches(),
                    contractor_id: contractor,
                }
            })
            .collect()
    }

    /// Each liaison lead's figures, counted complaint by complaint ('' for unknown).
    fn expected_leads(&self, from: Month, to: Month) -> BTreeMap<String, LeadHandling> {
        let mut rows: BTreeMap<String, Vec<HandlingRow>> = BTreeMap::new();
        for row in self
            .complaints
            .iter()
            .map(ComplaintWriter::expected_handling)
            .filter(|row| in_months(row.month, from, to))
        {
            let lead = row.liaison_lead.map_or("", LiaisonLead::code).to_owned();
            rows.entry(lead).or_default().push(row);
        }
        rows.into_iter()
            .map(|(lead, rows)| {
                let contractors: BTreeSet<&str> =
                    rows.iter().map(|row| row.contractor_id.as_str()).collect();
                let figures = LeadHandling {
                    handling: expected_summary(&rows),
                    contractors: contractors.len() as u64,
                    // This model's histories raise no notifier escalations.
                    escalations_raised: 0,
                    escalations_past_deadline: 0,
                };
                (lead, figures)
            })
            .collect()
    }

    fn expected_report(&self, from: Month, to: Month) -> HandlingCounts {
        let rows: Vec<HandlingRow> = self
            .complaints
            .iter()
            .map(ComplaintWriter::expected_handling)
            .collect();
        let in_dates =
            |value: Option<NaiveDate>| value.is_some_and(|d| in_months(Month::of(d), from, to));
        let counts = |clocks: Vec<&StageClock>| {
            let responded: Vec<&&StageClock> =
                clocks.iter().filter(|c| in_dates(c.responded)).collect();
            StageCounts {
                received: clocks.iter().filter(|c| in_dates(Some(c.started))).count() as u64,
                responded: responded.len() as u64,
                responded_within_original_due: responded
                    .iter()
                    .filter(|c| c.responded_within_original_due() == Some(true))
                    .count() as u64,
                responded_within_extended_due: responded
                    .iter()
                    .filter(|c| c.responded_within_extended_due() == Some(true))
                    .count() as u64,
            }
        };
        HandlingCounts {
            stage_one: counts(rows.iter().map(|row| &row.stage_one).collect()),
            stage_two: counts(
                rows.iter()
                    .filter_map(|row| row.stage_two.as_ref())
                    .collect(),
            ),
        }
    }
}

/// The handling summary of some complaints' rows, counted one by one: the oracle for the
/// counters the read model keeps.
fn expected_summary(rows: &[HandlingRow]) -> HandlingSummary {
    let calendar = WorkingDayCalendar::england_and_wales();
    let mut summary = HandlingSummary {
        complaints: rows.len() as u64,
        escalations: rows.iter().filter(|row| row.escalated).count() as u64,
        reopened: rows.iter().filter(|row| row.reopen_count > 0).count() as u64,
        ..HandlingSummary::default()
    };
    let mut to_acknowledge = BTreeMap::<i64, u64>::new();
    let mut to_respond = BTreeMap::<i64, u64>::new();
    for clock in rows
        .iter()
        .flat_map(|row| std::iter::once(&row.stage_one).chain(row.stage_two.as_ref()))
    {
        let days = |to: NaiveDate| calendar.working_days_between(clock.started, to).max(0);
        if let Some(acknowledged) = clock.acknowledged {
            *to_acknowledge.entry(days(acknowledged)).or_default() += 1;
        }
        if let Some(responded) = clock.responded {
            *to_respond.entry(days(responded)).or_default() += 1;
            summary.answered += 1;
            summary.answered_within_original_due +=
                u64::from(clock.responded_within_original_due() == Some(true));
            summary.answered_within_extended_due +=
                u64::from(clock.responded_within_extended_due() == Some(true));
        }
    }
    summary.days_to_acknowledge = to_acknowledge.into_iter().collect();
    summary.days_to_respond = to_respond.into_iter().collect();
    summary
}

async fn all_contractors(
    read_model: &ReadModel,
    status: Option<ContractorStatus>,
) -> Vec<ContractorRow> {
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = valid(
            read_model
                .list_contractors(status, 2, cursor.as_ref())
                .await,
        );
        assert!(page.len() <= 2);
        rows.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return rows,
        }
    }
}

async fn check_against_domain(read_model: &ReadModel, written: &Written) {
    let ranges = [
        ("2026-01", "2026-12"),
        ("2026-02", "2026-03"),
        ("2026-04", "2026-04"),
        ("2025-01", "2025-12"),
    ];
    for (from, to) in ranges {
        let (from, to) = (month(from), month(to));
        for contractor in CONTRACTORS {
            let figures = valid(
                read_model
                    .contractor_performance(contractor, from, to)
                    .await,
            );
            assert_eq!(
                figures,
                written.expected_figures(contractor, from, to),
                "{contractor} {from}..{to}"
            );
        }
        assert_eq!(
            valid(read_model.programme_performance(from, to).await),
            written.expected_programme(from, to),
            "programme {from}..{to}"
        );
        assert_eq!(
            valid(read_model.liaison_lead_handling(from, to).await),
            written.expected_leads(from, to),
            "liaison leads {from}..{to}"
        );
    }
    for (from, to) in [
        ("2026-01", "2026-03"),
        ("2026-04", "2027-03"),
        ("2026-03", "2026-05"),
    ] {
        let (from, to) = (month(from), month(to));
        assert_eq!(
            valid(read_model.handling_report(from, to).await),
            written.expected_report(from, to),
            "handling {from}..{to}"
        );
    }

    let expected: Vec<ContractorRow> = written
        .contractors
        .values()
        .map(ContractorRow::from_state)
        .collect();
    for contractor in CONTRACTORS {
        assert_eq!(
            valid(read_model.contractor(contractor).await),
            written
                .contractors
                .get(contractor)
                .map(ContractorRow::from_state),
            "{contractor}"
        );
    }
    assert_eq!(all_contractors(read_model, None).await, expected);
    let suspended: Vec<ContractorRow> = expected
        .iter()
        .filter(|row| row.status == ContractorStatus::Suspended)
        .cloned()
        .collect();
    assert_eq!(
        all_contractors(read_model, Some(ContractorStatus::Suspended)).await,
        suspended
    );
    for row in &expected {
        for query in [row.legal_name.to_uppercase(), row.public_phone.clone()]
            .into_iter()
            .chain(row.trading_names.iter().map(|name| format!("  {name} ")))
        {
            let found = valid(read_model.verify_contractor(&query).await);
            assert!(found.contains(row), "{query:?} finds {}", row.contractor_id);
        }
    }
}

fn counters_equal_replayed_domain_and_rebuild(kind: Kind, history: &History) {
    let runtime = valid(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    );
    runtime.block_on(async {
        let Some(backend) = TestBackend::open(kind).await else {
            return;
        };
        let (runner, read_model, database) = backend.projections().await;
        let written = write_history(&backend.store, history, async || {
            valid(runner.catch_up().await);
        })
        .await;
        let head = valid(backend.store.head_position().await);
        assert_eq!(valid(runner.catch_up().await), head);
        check_against_domain(&read_model, &written).await;

        let tables = valid(database.snapshot().await);
        valid(runner.reset().await);
        let emptied = valid(database.snapshot().await);
        assert!(
            emptied.values().all(Vec::is_empty),
            "reset empties every table"
        );
        valid(runner.catch_up().await);
        assert_eq!(
            valid(database.snapshot().await),
            tables,
            "a rebuild gives the same tables"
        );
        // The rebuild above applies the whole log in one batch; one event per batch must give
        // the same rows (counters summed per batch, rows read and written once per batch).
        let (one_by_one, _) = valid(
            ProjectionRunner::open(backend.store.clone(), database.clone(), calendar()).await,
        );
        let one_by_one = one_by_one.with_catch_up_batch_size(1);
        valid(one_by_one.reset().await);
        assert_eq!(valid(one_by_one.catch_up().await), head);
        assert_eq!(
            valid(database.snapshot().await),
            tables,
            "a rebuild one event per batch gives the same tables as one batch"
        );
        database.close().await;
        backend.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn counters_equal_replayed_domain_and_rebuild_on_sqlite(history in history()) {
        counters_equal_replayed_domain_and_rebuild(Kind::Sqlite, &history);
    }

    #[test]
    fn counters_equal_replayed_domain_and_rebuild_on_postgres(history in history()) {
        counters_equal_replayed_domain_and_rebuild(Kind::Postgres, &history);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) A reporting year checked by hand.

/// The reporting year 2026 runs from 1 April 2026 to 31 March 2027 (dates in England; British
/// Summer Time starts on 29 March 2026 and 28 March 2027). Response deadlines are ten working
/// days from acknowledgement at stage 1 and twenty at stage 2, skipping weekends and the bank
/// holidays 3 and 6 April and 31 August 2026.
///
/// | complaint | received (England)  | stage 1 response          | stage 2                        |
/// |-----------|---------------------|---------------------------|--------------------------------|
/// | A         | 31 Mar 2026 23:30   | 16 Apr, due 17 Apr: met   |                                |
/// | B         | 1 Apr 2026 00:30    | 21 Apr, due 20 Apr: late  |                                |
/// | C         | 1 Jun 2026          | 16 Jun, due 16 Jun: met   | asked 20 Jun; 15 Jul, due 20 Jul |
/// | D         | 1 Jul 2026          | 20 Jul, due 15 Jul, extended to 22 Jul | asked 1 Aug; 10 Sep, due 1 Sep: late |
/// | E         | 31 Mar 2027 23:30   | none                      |                                |
/// | F         | 1 Apr 2027 00:30    | none                      |                                |
/// | G         | 1 May 2026          | withdrawn                 |                                |
/// | H         | 20 Mar 2027         | 2 Apr 2027 (next year)    |                                |
/// | I         | 2 Mar 2026          | 10 Mar 2026               | asked 20 Mar; 10 Apr 2026, due 22 Apr |
async fn a_reporting_year_counts_as_worked_by_hand(backend: TestBackend) {
    let calendar = WorkingDayCalendar::england_and_wales();
    let context = HandlingContext {
        calendar: &calendar,
        timescales: Default::default(),
    };
    let store = &backend.store;
    let tidiness = [(ServiceStandard::Tidiness, FindingOutcome::Upheld)];
    let log = |complaint: &ComplaintWriter, received: &str| {
        log_command(
            complaint.id,
            "acme",
            None,
            vec![ServiceStandard::Tidiness],
            at(received),
        )
    };

    let mut a = ComplaintWriter::new();
    a.must(store, &context, log(&a, "2026-03-31T22:30:00Z"))
        .await;
    a.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2026-04-01T10:00:00Z")),
    )
    .await;
    a.must(
        store,
        &context,
        findings(&tidiness, at("2026-04-15T10:00:00Z")),
    )
    .await;
    a.must(store, &context, respond(at("2026-04-16T10:00:00Z")))
        .await;

    let mut b = ComplaintWriter::new();
    b.must(store, &context, log(&b, "2026-03-31T23:30:00Z"))
        .await;
    b.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2026-04-02T10:00:00Z")),
    )
    .await;
    b.must(
        store,
        &context,
        findings(&tidiness, at("2026-04-20T10:00:00Z")),
    )
    .await;
    b.must(store, &context, respond(at("2026-04-21T09:00:00Z")))
        .await;

    let mut c = ComplaintWriter::new();
    c.must(store, &context, log(&c, "2026-06-01T09:00:00Z"))
        .await;
    c.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2026-06-02T09:00:00Z")),
    )
    .await;
    c.must(
        store,
        &context,
        findings(&tidiness, at("2026-06-10T09:00:00Z")),
    )
    .await;
    // 16:00 UTC is 17:00 in England: still the due date.
    c.must(store, &context, respond(at("2026-06-16T16:00:00Z")))
        .await;
    c.must(store, &context, escalate(at("2026-06-20T10:00:00Z")))
        .await;
    c.must(
        store,
        &context,
        acknowledge(Stage::Two, "Bob", at("2026-06-22T10:00:00Z")),
    )
    .await;
    let not_upheld = [(ServiceStandard::Tidiness, FindingOutcome::NotUpheld)];
    c.must(
        store,
        &context,
        findings(&not_upheld, at("2026-07-10T10:00:00Z")),
    )
    .await;
    c.must(store, &context, respond(at("2026-07-15T10:00:00Z")))
        .await;

    let mut d = ComplaintWriter::new();
    d.must(store, &context, log(&d, "2026-07-01T09:00:00Z"))
        .await;
    d.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2026-07-01T11:00:00Z")),
    )
    .await;
    d.must(store, &context, extend(5, at("2026-07-14T09:00:00Z")))
        .await;
    d.must(
        store,
        &context,
        findings(&tidiness, at("2026-07-17T09:00:00Z")),
    )
    .await;
    d.must(store, &context, respond(at("2026-07-20T09:00:00Z")))
        .await;
    d.must(store, &context, escalate(at("2026-08-01T09:00:00Z")))
        .await;
    d.must(
        store,
        &context,
        acknowledge(Stage::Two, "Bob", at("2026-08-03T09:00:00Z")),
    )
    .await;
    d.must(store, &context, respond(at("2026-09-10T09:00:00Z")))
        .await;

    let mut e = ComplaintWriter::new();
    e.must(store, &context, log(&e, "2027-03-31T22:30:00Z"))
        .await;
    let mut f = ComplaintWriter::new();
    f.must(store, &context, log(&f, "2027-03-31T23:30:00Z"))
        .await;

    let mut g = ComplaintWriter::new();
    g.must(store, &context, log(&g, "2026-05-01T09:00:00Z"))
        .await;
    g.must(
        store,
        &context,
        Command::Withdraw {
            reason: OptionalText::default(),
            at: at("2026-05-02T09:00:00Z"),
        },
    )
    .await;

    let mut h = ComplaintWriter::new();
    h.must(store, &context, log(&h, "2027-03-20T09:00:00Z"))
        .await;
    h.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2027-03-22T09:00:00Z")),
    )
    .await;
    h.must(
        store,
        &context,
        findings(&tidiness, at("2027-03-30T09:00:00Z")),
    )
    .await;
    h.must(store, &context, respond(at("2027-04-02T09:00:00Z")))
        .await;

    let mut i = ComplaintWriter::new();
    i.must(store, &context, log(&i, "2026-03-02T09:00:00Z"))
        .await;
    i.must(
        store,
        &context,
        acknowledge(Stage::One, "Ann", at("2026-03-03T09:00:00Z")),
    )
    .await;
    i.must(
        store,
        &context,
        findings(&tidiness, at("2026-03-09T09:00:00Z")),
    )
    .await;
    i.must(store, &context, respond(at("2026-03-10T09:00:00Z")))
        .await;
    i.must(store, &context, escalate(at("2026-03-20T09:00:00Z")))
        .await;
    i.must(
        store,
        &context,
        acknowledge(Stage::Two, "Bob", at("2026-03-23T09:00:00Z")),
    )
    .await;
    i.must(store, &context, respond(at("2026-04-10T09:00:00Z")))
        .await;

    let (runner, read_model, database) = backend.projections().await;
    valid(runner.catch_up().await);

    let year = valid(
        read_model
            .handling_report(month("2026-04"), month("2027-03"))
            .await,
    );
    assert_eq!(
        year.stage_one,
        StageCounts {
            received: 6,                      // B, C, D, E, G, H
            responded: 4,                     // A, B, C, D
            responded_within_original_due: 2, // A, C
            responded_within_extended_due: 3, // A, C, D
        }
    );
    assert_eq!(
        year.stage_two,
        StageCounts {
            received: 2,                      // C, D
            responded: 3,                     // C, D, I
            responded_within_original_due: 2, // C, I
            responded_within_extended_due: 2, // C, I
        }
    );
    let year_before = valid(
        read_model
            .handling_report(month("2025-04"), month("2026-03"))
            .await,
    );
    assert_eq!(
        year_before,
        HandlingCounts {
            stage_one: StageCounts {
                received: 2, // A, I
                responded: 1,
                responded_within_original_due: 1,
                responded_within_extended_due: 1,
            },
            stage_two: StageCounts {
                received: 1, // I
                ..StageCounts::default()
            },
        }
    );

    // The deadlines behind those counts, as the handling rows hold them.
    let figures = valid(
        read_model
            .contractor_performance("acme", month("2026-04"), month("2027-03"))
            .await,
    );
    let mut rows = BTreeMap::new();
    for writer in [&b, &c, &d] {
        let row = valid(read_model.complaint_handling(&writer.id.to_string()).await)
            .unwrap_or_else(|| panic!("complaint {} has a handling row", writer.id));
        rows.insert(writer.id, row);
    }
    let row = |writer: &ComplaintWriter| rows[&writer.id].clone();
    let b_row = row(&b);
    assert_eq!(b_row.received_date, date("2026-04-01"));
    assert_eq!(b_row.month, month("2026-04"));
    assert_eq!(b_row.stage_one.acknowledgement_due, date("2026-04-10"));
    assert_eq!(
        b_row.stage_one.response_due_original,
        Some(date("2026-04-20"))
    );
    assert_eq!(b_row.stage_one.responded, Some(date("2026-04-21")));
    let d_row = row(&d);
    assert_eq!(
        d_row.stage_one,
        StageClock {
            started: date("2026-07-01"),
            acknowledgement_due: date("2026-07-08"),
            acknowledged: Some(date("2026-07-01")),
            response_due_original: Some(date("2026-07-15")),
            response_due: Some(date("2026-07-22")),
            responded: Some(date("2026-07-20")),
        }
    );
    assert_eq!(
        d_row
            .stage_two
            .as_ref()
            .and_then(|clock| clock.response_due),
        Some(date("2026-09-01"))
    );
    assert_eq!(
        row(&c)
            .stage_two
            .and_then(|clock| clock.response_due_original),
        Some(date("2026-07-20"))
    );
    assert_eq!(figures.complaints, 6);
    assert_eq!(figures.escalations, 2);
    assert_eq!(figures.reopened, 0);
    // C's finding was changed at stage 2: it counts once, as not upheld.
    assert_eq!(
        figures.standards,
        vec![StandardFigures {
            standard: ServiceStandard::Tidiness,
            reported: 6,
            upheld: 3, // B, D, H
            partly_upheld: 0,
            not_upheld: 1, // C
        }]
    );
    assert_eq!(figures.standards[0].pending(), 2); // E, G
    database.close().await;
    backend.close().await;
}

// ---------------------------------------------------------------------------------------------
// (c) Verifying the person at the door.

async fn verify_contractor_by_name_and_phone(backend: TestBackend) {
    let store = &backend.store;
    let mut states = BTreeMap::new();
    let registered_at = at("2026-01-05T09:00:00Z");
    let acme = profile(
        "Acme Retrofit Ltd.",
        &["Acme Insulation", "Warm Homes (North)"],
        "020 7946 0018",
    );
    let brick = profile(
        "Brick & Co Limited",
        &["Warm Homes North"],
        "+44 161 496 0000",
    );
    for (id, profile) in [("acme", acme.clone()), ("brick-co", brick)] {
        let command = ContractorCommand::Register {
            contractor_id: valid(ContractorId::parse("c", id)),
            profile,
            at: registered_at,
        };
        valid(run_contractor(store, &mut states, id, command).await);
    }
    for (audit_date, outcome) in [
        ("2026-02-01", AuditOutcome::ImprovementRequired),
        ("2025-11-01", AuditOutcome::Unsatisfactory),
    ] {
        let command = ContractorCommand::RecordEqualityAudit {
            audit: audit(date(audit_date), outcome, "No equality policy"),
            at: registered_at,
        };
        valid(run_contractor(store, &mut states, "acme", command).await);
    }
    let (runner, read_model, database) = backend.projections().await;
    valid(runner.catch_up().await);

    let ids = |rows: Vec<ContractorRow>| -> Vec<String> {
        rows.into_iter().map(|row| row.contractor_id).collect()
    };
    let verify = async |query: &str| ids(valid(read_model.verify_contractor(query).await));
    assert_eq!(
        verify("  acme   RETROFIT ltd ").await,
        ["acme"],
        "legal name"
    );
    assert_eq!(verify("ACME INSULATION").await, ["acme"], "trading name");
    assert_eq!(verify("Brick & Co Limited").await, ["brick-co"]);
    assert_eq!(
        verify("warm homes north").await,
        ["acme", "brick-co"],
        "a shared trading name finds both, in id order"
    );
    for phone in [
        "02079460018",
        "(020) 7946-0018",
        "+44 (0)20 7946 0018",
        "020.7946.0018",
    ] {
        assert_eq!(verify(phone).await, ["acme"], "{phone}");
    }
    assert_eq!(verify("0161 496 0000").await, ["brick-co"]);
    assert_eq!(verify("Nobody Ltd").await, Vec::<String>::new(), "a miss");
    assert_eq!(
        verify("020 7946 0019").await,
        Vec::<String>::new(),
        "another number"
    );
    assert_eq!(verify("   ").await, Vec::<String>::new());

    let found = valid(read_model.verify_contractor("acme retrofit ltd").await);
    let acme_row = found
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("acme found"));
    assert!(acme_row.is_active());
    assert_eq!(acme_row.logo_url, "https://example.org/logo.png");
    assert_eq!(
        acme_row
            .latest_audit
            .map(|audit| (audit.audit_date, audit.outcome)),
        Some((date("2026-02-01"), AuditOutcome::ImprovementRequired)),
        "the latest audit by audit date, not the last recorded"
    );

    // A new profile replaces the lookup keys; a suspended contractor is still found, as
    // suspended, so the call centre can say it should not be working.
    let renamed = ContractorProfile {
        trading_names: vec![short("Acme Heat Pumps")],
        public_phone: valid(PhoneNumber::parse("phone", "0113 496 0999")),
        ..acme
    };
    let at_update = at("2026-03-01T09:00:00Z");
    for command in [
        ContractorCommand::Update {
            profile: renamed,
            at: at_update,
        },
        ContractorCommand::Suspend {
            reason: short("Operatives without identification"),
            at: at_update,
        },
    ] {
        valid(run_contractor(store, &mut states, "acme", command).await);
    }
    valid(runner.catch_up().await);
    assert_eq!(verify("acme insulation").await, Vec::<String>::new());
    assert_eq!(verify("020 7946 0018").await, Vec::<String>::new());
    assert_eq!(verify("acme heat pumps").await, ["acme"]);
    assert_eq!(verify("0113 496 0999").await, ["acme"]);
    let suspended = valid(read_model.contractor("acme").await);
    assert_eq!(
        suspended.as_ref().map(|row| row.status),
        Some(ContractorStatus::Suspended)
    );
    assert_eq!(suspended, states.get("acme").map(ContractorRow::from_state));
    let (active, next) = valid(
        read_model
            .list_contractors(Some(ContractorStatus::Active), 10, None)
            .await,
    );
    assert_eq!(ids(active), ["brick-co"]);
    assert!(next.is_none());
    database.close().await;
    backend.close().await;
}

on_every_backend!(
    a_reporting_year_counts_as_worked_by_hand,
    verify_contractor_by_name_and_phone
);
