//! The complaint list projection against a real event store on every backend: it equals the
//! state replayed from each stream, and a rebuild from position 0 gives the same rows.

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use doorstep_domain::complaint::{
    Command, FindingInput, FindingOutcome, HandlingContext, Stage, apply, handle,
};
use doorstep_domain::input::{ComplaintId, Handler, OptionalText, ShortText};
use doorstep_domain::{ServiceStandard, WorkingDayCalendar};
use doorstep_projections::{ComplaintFilter, ComplaintRow};
use doorstep_store::{EventStore, StreamId};
use proptest::prelude::*;
use support::{Kind, TestBackend, append_complaint_events, log_complaint, valid};

fn log(id: ComplaintId, contractor: &str, received_at: DateTime<Utc>) -> Command {
    Command::Log(Box::new(log_complaint(id, contractor, received_at)))
}

fn step(kind: u8, at: DateTime<Utc>) -> Command {
    let short = |text: &str| valid(ShortText::parse("s", text));
    match kind % 8 {
        0 => Command::Acknowledge {
            stage: Stage::One,
            handler: valid(Handler::parse("h", "Ann")),
            complaint_definition: OptionalText::default(),
            outcome_sought: OptionalText::default(),
            at,
        },
        1 => Command::Acknowledge {
            stage: Stage::Two,
            handler: valid(Handler::parse("h", "Bob")),
            complaint_definition: OptionalText::default(),
            outcome_sought: OptionalText::default(),
            at,
        },
        2 => Command::RecordFindings {
            findings: vec![FindingInput {
                standard: ServiceStandard::Tidiness,
                outcome: FindingOutcome::Upheld,
                summary: OptionalText::default(),
            }],
            at,
        },
        3 => Command::IssueResponse {
            decision: short("Upheld"),
            remedy: OptionalText::default(),
            at,
        },
        4 => Command::RequestStageTwo {
            reason: OptionalText::default(),
            at,
        },
        5 => Command::Close {
            reason: OptionalText::default(),
            at,
        },
        6 => Command::Reopen {
            reason: short("Again"),
            at,
        },
        _ => Command::ExtendDeadline {
            reason: short("Busy"),
            working_days: 2,
            ombudsman_details_given: true,
            at,
        },
    }
}

/// Writes random complaint histories to the store and returns each complaint's final row.
async fn write_histories(store: &Arc<dyn EventStore>, histories: &[Vec<u8>]) -> Vec<ComplaintRow> {
    let calendar = WorkingDayCalendar::england_and_wales();
    let context = HandlingContext {
        calendar: &calendar,
        timescales: Default::default(),
    };
    let start: DateTime<Utc> = valid("2026-03-02T09:00:00Z".parse());
    let mut rows = Vec::new();
    for (index, steps) in histories.iter().enumerate() {
        let id = ComplaintId::from_uuid(uuid::Uuid::now_v7());
        let stream = StreamId::new("complaint", id);
        let contractor = if index % 2 == 0 { "acme" } else { "brick-co" };
        let received = start + Duration::hours(index as i64);
        let mut state = None;
        let mut commands = vec![log(id, contractor, received)];
        commands.extend(
            steps
                .iter()
                .enumerate()
                .map(|(n, kind)| step(*kind, received + Duration::days(n as i64 + 1))),
        );
        for command in commands {
            let Ok(events) = handle(state.as_ref(), command, &context) else {
                continue;
            };
            append_complaint_events(store, &stream, &events).await;
            for event in &events {
                state = apply(state, event);
            }
        }
        rows.push(ComplaintRow::from_state(&valid(state.ok_or("logged"))));
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.received_at));
    rows
}

async fn all_rows(read_model: &doorstep_projections::ReadModel) -> Vec<ComplaintRow> {
    let (rows, next) = valid(
        read_model
            .list_complaints(&ComplaintFilter::default(), 500, None)
            .await,
    );
    assert!(next.is_none());
    rows
}

/// One random history on one backend: the projection equals the replayed state, and a rebuild
/// from position 0 gives the same rows.
fn projection_equals_replay_and_its_rebuild(kind: Kind, histories: &[Vec<u8>]) {
    let runtime = valid(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    );
    runtime.block_on(async {
        let Some(backend) = TestBackend::open(kind).await else {
            return;
        };
        let expected = write_histories(&backend.store, histories).await;

        let (runner, read_model, _) = backend.projections().await;
        let head = valid(backend.store.head_position().await);
        assert_eq!(valid(runner.catch_up().await), head);
        assert_eq!(read_model.position(), head);
        let projected = all_rows(&read_model).await;
        assert_eq!(
            projected, expected,
            "the projection equals the replayed state"
        );

        valid(runner.reset().await);
        assert!(all_rows(&read_model).await.is_empty());
        valid(runner.catch_up().await);
        assert_eq!(
            all_rows(&read_model).await,
            projected,
            "a rebuild gives the same rows"
        );
        backend.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn projection_equals_replay_and_its_rebuild_on_sqlite(
        histories in prop::collection::vec(prop::collection::vec(0u8..8, 0..12), 1..12)
    ) {
        projection_equals_replay_and_its_rebuild(Kind::Sqlite, &histories);
    }

    #[test]
    fn projection_equals_replay_and_its_rebuild_on_postgres(
        histories in prop::collection::vec(prop::collection::vec(0u8..8, 0..12), 1..12)
    ) {
        projection_equals_replay_and_its_rebuild(Kind::Postgres, &histories);
    }
}

on_every_backend!(filters_and_pages);

async fn filters_and_pages(backend: TestBackend) {
    let expected = write_histories(&backend.store, &vec![vec![]; 7]).await;
    let (runner, read_model, _) = backend.projections().await;
    valid(runner.catch_up().await);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = valid(
            read_model
                .list_complaints(&ComplaintFilter::default(), 3, cursor.as_ref())
                .await,
        );
        assert!(page.len() <= 3);
        seen.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected, "pages cover every row once, newest first");

    let acme = ComplaintFilter {
        contractor_id: Some("acme".to_owned()),
        ..Default::default()
    };
    let (rows, _) = valid(read_model.list_complaints(&acme, 50, None).await);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|row| row.contractor_id == "acme"));

    let overdue = ComplaintFilter {
        overdue_on: Some(valid("2026-03-20".parse())),
        ..Default::default()
    };
    let (rows, _) = valid(read_model.list_complaints(&overdue, 50, None).await);
    assert_eq!(
        rows.len(),
        7,
        "none was acknowledged within five working days"
    );
    let not_yet = ComplaintFilter {
        overdue_on: Some(valid("2026-03-03".parse())),
        ..Default::default()
    };
    let (rows, _) = valid(read_model.list_complaints(&not_yet, 50, None).await);
    assert!(rows.is_empty());
    backend.close().await;
}
