//! The inspection read models against a real event store on every backend: each inspection's
//! row, the "what we saw" counters and the finding schedule equal what the replayed aggregates
//! say, through corrections, resolutions, withdrawals and escalations; and a rebuild gives the
//! same rows without queueing any delivery twice.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use doorstep_domain::escalation::{EscalationLevel, LadderStep, ladder_due_times};
use doorstep_domain::input::{
    ContractorId, EmailAddress, Handler, OptionalText, RequestKey, ShortText, Uprn,
};
use doorstep_domain::inspection::{
    FindingRules, Inspection, InspectionCommand, InspectionDetails, InspectionId, Observation,
    ObservationResult, PlannedFindingEscalation, apply_inspection, finding_escalation_id,
    handle_inspection,
};
use doorstep_domain::{ServiceStandard, WorkingDayCalendar, england_date};
use doorstep_projections::{
    EscalationPlanner, FindingLadder, InspectionCounts, InspectionFilter, InspectionRow, Month,
    ProjectionRunner, ReadModel,
};
use doorstep_store::StreamId;
use support::{TestBackend, append, valid};

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

fn level(name: &str) -> EscalationLevel {
    valid(EscalationLevel::parse("level", name))
}

fn ladder() -> FindingLadder {
    FindingLadder {
        steps: vec![
            LadderStep {
                level: level("contract_manager"),
                offset_working_days: 0,
            },
            LadderStep {
                level: level("head_of_service"),
                offset_working_days: 5,
            },
        ],
        calendar: WorkingDayCalendar::england_and_wales(),
        warning_time: FindingLadder::default().warning_time,
    }
}

/// An inspection written through the real rules and the real store.
struct InspectionWriter {
    id: InspectionId,
    state: Option<Inspection>,
}

impl InspectionWriter {
    async fn record(backend: &TestBackend, key: &str, details: InspectionDetails) -> Self {
        let id = InspectionId::for_request(&valid(RequestKey::parse("request_id", key)));
        let mut writer = Self { id, state: None };
        let recorded_at = details.inspected_at;
        writer
            .run(
                backend,
                InspectionCommand::Record {
                    inspection_id: id,
                    details,
                    at: recorded_at,
                },
            )
            .await;
        writer
    }

    fn inspection(&self) -> &Inspection {
        self.state.as_ref().unwrap_or_else(|| panic!("recorded"))
    }

    async fn run(&mut self, backend: &TestBackend, command: InspectionCommand) {
        let calendar = WorkingDayCalendar::england_and_wales();
        let rules = FindingRules {
            calendar: &calendar,
            due_working_days: 5,
        };
        let events = valid(handle_inspection(self.state.as_ref(), command, rules));
        for event in &events {
            self.state = apply_inspection(self.state.take(), event);
        }
        append(
            &backend.store,
            &StreamId::new("inspection", self.id),
            events.iter().map(|event| {
                (
                    event.event_type(),
                    event.schema_version(),
                    event.to_payload(),
                )
            }),
        )
        .await;
    }

    /// Raises the finding's next ladder step, as the notifier would.
    async fn escalate(&mut self, backend: &TestBackend, finding: usize, name: &str, now: &str) {
        let finding_id = self.inspection().findings[finding].finding_id;
        let command = InspectionCommand::RaiseFindingEscalation {
            escalation: PlannedFindingEscalation {
                escalation_id: finding_escalation_id(finding_id, &level(name)),
                finding_id,
                level: level(name),
                due_at: at(now),
                recipients: vec![valid(EmailAddress::parse(
                    "e",
                    "contracts@landlord.example",
                ))],
            },
            at: at(now),
        };
        self.run(backend, command).await;
    }
}

fn details(
    contractor: &str,
    inspected_at: &str,
    observations: &[(ServiceStandard, ObservationResult)],
) -> InspectionDetails {
    InspectionDetails {
        contractor_id: valid(ContractorId::parse("c", contractor)),
        contract_reference: valid(ShortText::parse("r", "RETRO-2026-01")),
        uprn: valid(Uprn::parse("u", "100023336956")),
        visit_id: None,
        inspected_at: at(inspected_at),
        inspecting_officer: valid(Handler::parse("o", "Officer One")),
        observations: observations
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

async fn projections(backend: &TestBackend) -> (ProjectionRunner, ReadModel) {
    let (runner, read_model, _) = backend.projections().await;
    let runner = runner
        .with_escalations(EscalationPlanner {
            webhook_urls: vec!["http://receiver.example/hooks".to_owned()],
            ..EscalationPlanner::default()
        })
        .with_finding_ladder(ladder());
    (runner, read_model)
}

use ObservationResult::{Met, NotMet, NotObserved};
use ServiceStandard::{Courtesy, GatesSecured, Parking, Protection, Tidiness};

/// Four inspections in April and May 2026 of two contractors, with a correction that moves one
/// to May and to the other contractor, resolutions, a withdrawal and escalations.
async fn programme(backend: &TestBackend) -> Vec<InspectionWriter> {
    let mut a = InspectionWriter::record(
        backend,
        "a",
        details(
            "acme-retrofit",
            "2026-04-14T08:00:00Z",
            &[
                (Tidiness, NotMet),
                (GatesSecured, Met),
                (Parking, NotObserved),
            ],
        ),
    )
    .await;
    let mut b = InspectionWriter::record(
        backend,
        "b",
        details(
            "acme-retrofit",
            "2026-04-15T08:00:00Z",
            &[(Protection, NotMet), (Courtesy, NotMet)],
        ),
    )
    .await;
    let c = InspectionWriter::record(
        backend,
        "c",
        details("brick-and-co", "2026-04-30T22:30:00Z", &[(Tidiness, Met)]),
    )
    .await;
    let mut d = InspectionWriter::record(
        backend,
        "d",
        details(
            "acme-retrofit",
            "2026-04-20T08:00:00Z",
            &[(Courtesy, NotMet)],
        ),
    )
    .await;
    // a: courtesy was not met either; its tidiness finding reaches the contract manager and is
    // then resolved.
    a.run(
        backend,
        InspectionCommand::Correct {
            details: details(
                "acme-retrofit",
                "2026-04-14T08:00:00Z",
                &[
                    (Tidiness, NotMet),
                    (GatesSecured, Met),
                    (Parking, NotObserved),
                    (Courtesy, NotMet),
                ],
            ),
            reason: valid(ShortText::parse("r", "courtesy left out")),
            at: at("2026-04-15T09:00:00Z"),
        },
    )
    .await;
    a.escalate(backend, 0, "contract_manager", "2026-04-21T23:00:00Z")
        .await;
    a.run(
        backend,
        InspectionCommand::ResolveFinding {
            finding_id: a.inspection().findings[0].finding_id,
            resolution: valid(ShortText::parse("r", "swept")),
            resolved_by: valid(Handler::parse("h", "Site Team")),
            resolved_at: at("2026-04-22T09:00:00Z"),
        },
    )
    .await;
    // b: protection put right at once; courtesy escalates twice.
    b.run(
        backend,
        InspectionCommand::ResolveFinding {
            finding_id: b.inspection().findings[0].finding_id,
            resolution: valid(ShortText::parse("r", "sheets laid")),
            resolved_by: valid(Handler::parse("h", "Site Team")),
            resolved_at: at("2026-04-15T12:00:00Z"),
        },
    )
    .await;
    b.escalate(backend, 1, "contract_manager", "2026-04-22T23:00:00Z")
        .await;
    b.escalate(backend, 1, "head_of_service", "2026-04-29T23:00:00Z")
        .await;
    // d: it was brick's work, inspected on 1 May, and courtesy was met: its finding is
    // withdrawn, and the counters move to brick and May.
    d.run(
        backend,
        InspectionCommand::Correct {
            details: details("brick-and-co", "2026-05-01T08:00:00Z", &[(Courtesy, Met)]),
            reason: valid(ShortText::parse("r", "wrong contractor")),
            at: at("2026-05-01T09:00:00Z"),
        },
    )
    .await;
    vec![a, b, c, d]
}

/// The list row the replayed aggregate says an inspection has, at `position`.
fn expected_row(inspection: &Inspection, position: u64) -> InspectionRow {
    let count = |result: ObservationResult| {
        inspection
            .details
            .observations
            .iter()
            .filter(|observation| observation.result == result)
            .count() as u32
    };
    InspectionRow {
        inspection_id: inspection.id.to_string(),
        contractor_id: inspection.details.contractor_id.to_string(),
        contract_reference: inspection.details.contract_reference.to_string(),
        uprn: inspection.details.uprn.as_str().to_owned(),
        inspected_at: inspection.details.inspected_at,
        met: count(Met),
        not_met: count(NotMet),
        not_observed: count(NotObserved),
        open_findings: inspection.findings.iter().filter(|f| f.is_open()).count() as u32,
        position,
    }
}

/// The counters the replayed aggregates say, for months `from..=to`.
fn expected_counts(
    inspections: &[&Inspection],
    from: Month,
    to: Month,
) -> BTreeMap<String, InspectionCounts> {
    let mut counts: BTreeMap<String, InspectionCounts> = BTreeMap::new();
    for inspection in inspections {
        let month = Month::of(england_date(inspection.details.inspected_at));
        if month < from || month > to {
            continue;
        }
        let entry = counts
            .entry(inspection.details.contractor_id.to_string())
            .or_default();
        entry.inspections += 1;
        for observation in &inspection.details.observations {
            let (observations, not_met) = match observation.result {
                Met => (1, 0),
                NotMet => (1, 1),
                NotObserved => continue,
            };
            let standard = entry.standards.entry(observation.standard).or_default();
            standard.0 += observations;
            standard.1 += not_met;
        }
    }
    counts
}

async fn read_models_follow_the_replayed_aggregates(backend: TestBackend) {
    let writers = programme(&backend).await;
    let (runner, read_model) = projections(&backend).await;
    valid(runner.catch_up().await);

    let mut expected = Vec::new();
    for writer in &writers {
        let stream = StreamId::new("inspection", writer.id);
        let events = valid(backend.store.read_stream(&stream, 1, 1_000).await);
        let last = events.last().map_or(0, |event| event.position);
        expected.push(expected_row(writer.inspection(), last));
    }
    expected.sort_by_key(|row| row.position);
    let listed = valid(
        read_model
            .list_inspections(&InspectionFilter::default(), 100, 0)
            .await,
    );
    assert_eq!(listed, expected);
    let open = valid(
        read_model
            .list_inspections(
                &InspectionFilter {
                    contractor_id: Some("acme-retrofit".to_owned()),
                    open_findings_only: true,
                },
                100,
                0,
            )
            .await,
    );
    let expected_open: Vec<InspectionRow> = expected
        .iter()
        .filter(|row| row.contractor_id == "acme-retrofit" && row.open_findings > 0)
        .cloned()
        .collect();
    assert_eq!(open, expected_open);
    assert_eq!(open.len(), 2, "a's courtesy and b's courtesy are open");

    let states: Vec<&Inspection> = writers.iter().map(InspectionWriter::inspection).collect();
    for (from, to) in [
        ("2026-04", "2026-04"),
        ("2026-05", "2026-05"),
        ("2026-01", "2026-12"),
    ] {
        let (from, to) = (valid(Month::parse(from)), valid(Month::parse(to)));
        let counted = valid(read_model.inspection_counts(from, to, None).await);
        // Months whose every inspection moved away keep rows of zeros: compare what is counted.
        let counted: BTreeMap<String, InspectionCounts> = counted
            .into_iter()
            .map(|(id, mut counts)| {
                counts
                    .standards
                    .retain(|_, (observations, _)| *observations > 0);
                (id, counts)
            })
            .filter(|(_, counts)| counts.inspections > 0 || !counts.standards.is_empty())
            .collect();
        assert_eq!(counted, expected_counts(&states, from, to), "{from}..{to}");
    }

    // The schedule: each open finding's first step not raised yet, and nothing else.
    let calendar = WorkingDayCalendar::england_and_wales();
    let mut expected_due = Vec::new();
    for inspection in &states {
        for finding in inspection.findings.iter().filter(|f| f.is_open()) {
            if let Some(step) = ladder_due_times(
                finding.due_date,
                &ladder().steps,
                &calendar,
                ladder().warning_time,
            )
            .into_iter()
            .find(|step| !finding.escalated_levels.contains(&step.level))
            {
                expected_due.push((
                    finding_escalation_id(finding.finding_id, &step.level),
                    step.level,
                    step.due_at,
                ));
            }
        }
    }
    expected_due.sort_by_key(|(id, _, due_at)| (*due_at, *id));
    let due: Vec<_> = valid(
        read_model
            .due_finding_escalation_rows(at("2030-01-01T00:00:00Z"), 100)
            .await,
    )
    .into_iter()
    .map(|row| {
        let row = valid(row.map_err(|unreadable| unreadable.reason));
        (row.escalation_id, row.level, row.due_at)
    })
    .collect();
    let mut due_sorted = due.clone();
    due_sorted.sort_by_key(|(id, _, due_at)| (*due_at, *id));
    assert_eq!(due_sorted, expected_due);
    // a's courtesy (opened by the correction) waits for the contract manager; b's courtesy has
    // climbed the whole ladder.
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1, level("contract_manager"));
    assert_eq!(valid(read_model.finding_escalations().await).len(), 3);
    backend.close().await;
}

async fn a_rebuild_gives_the_same_rows_and_queues_nothing_twice(backend: TestBackend) {
    programme(&backend).await;
    let (runner, _) = projections(&backend).await;
    valid(runner.catch_up().await);
    let (_, _, database) = backend.projections().await;
    let before = valid(database.snapshot().await);
    let deliveries = || async {
        let count: i64 = valid(
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM escalation_deliveries")
                .fetch_one(database.pool())
                .await,
        );
        count
    };
    assert_eq!(deliveries().await, 3, "one webhook delivery per escalation");
    assert!(!before["inspections"].is_empty());
    valid(runner.reset().await);
    assert!(valid(database.snapshot().await)["inspection_month"].is_empty());
    valid(runner.catch_up().await);
    assert_eq!(valid(database.snapshot().await), before);
    assert_eq!(deliveries().await, 3);
    backend.close().await;
}

on_every_backend!(
    read_models_follow_the_replayed_aggregates,
    a_rebuild_gives_the_same_rows_and_queues_nothing_twice,
);
