//! The read models stop at an event they cannot apply (order matters, and the checkpoint is
//! shared), and say so: the runner reports where it is stuck (position, event id, why), having
//! applied everything before it, and reports it cleared once it gets past.

#[macro_use]
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::complaint::Command;
use doorstep_domain::input::LongText;
use doorstep_projections::{ReadModel, Stall};
use doorstep_store::StreamId;
use support::{ComplaintWriter, TestBackend, append, valid};
use tokio::sync::watch;

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

/// Waits (up to 30 s) until the runner's stall report satisfies `condition`.
async fn stall_becomes(read_model: &ReadModel, condition: impl Fn(&Option<Stall>) -> bool) {
    let mut stall = read_model.watch_stall();
    let waited = tokio::time::timeout(Duration::from_secs(30), stall.wait_for(|s| condition(s)));
    assert!(
        matches!(waited.await, Ok(Ok(_))),
        "the stall report became {:?}",
        read_model.stalled()
    );
}

async fn an_event_that_cannot_be_decoded_stops_the_read_models_at_it(backend: TestBackend) {
    let (runner, read_model, _database) = backend.projections().await;
    let before = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    // A known type whose payload this build cannot decode.
    let unknown = StreamId::new("complaint", uuid::Uuid::now_v7());
    append(
        &backend.store,
        &unknown,
        [(
            "ComplaintReceived",
            3,
            serde_json::json!({"not": "a complaint"}),
        )],
    )
    .await;
    let after = ComplaintWriter::log(&backend, at("2026-04-02T10:00:00Z")).await;
    let log = valid(backend.store.read_all(1, 100).await);
    let Some(index) = log.iter().position(|event| event.stream_id == unknown) else {
        panic!("the planted event is in the log")
    };
    let (bad, last_good) = (&log[index], &log[index - 1]);

    let (stop, stopped) = watch::channel(false);
    let running = runner.spawn(stopped);
    stall_becomes(&read_model, Option::is_some).await;
    let Some(stall) = read_model.stalled() else {
        panic!("stuck")
    };
    assert_eq!(stall.position, bad.position);
    assert_eq!(stall.event_id, bad.event_id);
    assert_eq!(stall.event_type, "ComplaintReceived");
    assert_eq!(stall.stream_id, unknown.as_str());
    assert!(
        stall.reason.contains("cannot be read by this build"),
        "{}",
        stall.reason
    );
    // Everything before it is applied (it was in the same batch); nothing after it is.
    assert_eq!(read_model.position(), last_good.position);
    assert!(valid(read_model.complaint_handling(&before.id.to_string()).await).is_some());
    assert!(valid(read_model.complaint_handling(&after.id.to_string()).await).is_none());

    let _ = stop.send(true);
    valid(running.await);
    backend.close().await;
}

async fn the_read_models_get_past_a_row_they_could_not_read_once_it_is_fixed(backend: TestBackend) {
    let (runner, read_model, database) = backend.projections().await;
    let mut complaint = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    valid(runner.catch_up().await);
    let id = complaint.id.to_string();
    let original: String = valid(
        sqlx::query_scalar(
            "SELECT clock_started_at FROM escalation_clocks WHERE complaint_id = $1",
        )
        .bind(&id)
        .fetch_one(database.pool())
        .await,
    );
    let set_clock = |value: String| {
        let database = database.clone();
        let id = id.clone();
        async move {
            valid(
                sqlx::query(
                    "UPDATE escalation_clocks SET clock_started_at = $1 WHERE complaint_id = $2",
                )
                .bind(value)
                .bind(id)
                .execute(database.pool())
                .await,
            );
        }
    };
    set_clock("2026-02-30T09:00:00Z".to_owned()).await;
    complaint
        .run(
            &backend,
            Command::AddNote {
                text: valid(LongText::parse("text", "Called the resident back.")),
                at: at("2026-04-03T09:00:00Z"),
            },
        )
        .await;
    let log = valid(backend.store.read_all(1, 100).await);
    let Some(note) = log.last() else {
        panic!("the note is in the log")
    };

    let (stop, stopped) = watch::channel(false);
    let running = runner.spawn(stopped);
    stall_becomes(&read_model, Option::is_some).await;
    let stall = read_model.stalled();
    assert_eq!(
        stall.as_ref().map(|stall| stall.event_id),
        Some(note.event_id)
    );
    assert!(
        stall
            .as_ref()
            .is_some_and(|stall| stall.reason.contains("invalid time 2026-02-30")),
        "{stall:?}"
    );

    // The operator puts the row right (or rebuilds the read models): the runner gets past.
    set_clock(original).await;
    stall_becomes(&read_model, Option::is_none).await;
    assert!(
        read_model
            .wait_for(note.position, Duration::from_secs(30))
            .await
    );

    let _ = stop.send(true);
    valid(running.await);
    backend.close().await;
}

/// The runner says "not stuck" after every batch, but only to itself: a watcher of the stall
/// report (the health monitor) is woken when it turns stuck or unstuck, never per batch.
async fn applying_batches_wakes_no_stall_watcher(backend: TestBackend) {
    let (runner, read_model, _database) = backend.projections().await;
    let mut stall = read_model.watch_stall();
    stall.mark_unchanged();
    let (stop, stopped) = watch::channel(false);
    let running = runner.spawn(stopped);
    for hour in ["09", "10", "11"] {
        ComplaintWriter::log(&backend, at(&format!("2026-04-02T{hour}:00:00Z"))).await;
        let head = valid(backend.store.read_all(1, 100).await)
            .last()
            .map_or(0, |event| event.position);
        assert!(read_model.wait_for(head, Duration::from_secs(30)).await);
    }
    // The runner applied the third batch after it had finished with the first two (and said
    // "not stuck" after each).
    assert!(
        !valid(stall.has_changed()),
        "a batch woke the stall watcher"
    );
    assert!(read_model.stalled().is_none());

    let _ = stop.send(true);
    valid(running.await);
    backend.close().await;
}

on_every_backend!(
    applying_batches_wakes_no_stall_watcher,
    an_event_that_cannot_be_decoded_stops_the_read_models_at_it,
    the_read_models_get_past_a_row_they_could_not_read_once_it_is_fixed,
);
