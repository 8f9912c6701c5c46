//! Runners of several replicas share one database's read models and one checkpoint: each batch
//! is applied by one of them only, so racing runners leave the rows one runner would.

#[macro_use]
mod support;

use chrono::{DateTime, Duration, Utc};
use support::{ComplaintWriter, TestBackend, valid};

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

async fn racing_runners_apply_each_event_once(backend: TestBackend) {
    let start = at("2026-04-01T09:00:00Z");
    for minute in 0..40 {
        ComplaintWriter::log(&backend, start + Duration::minutes(minute)).await;
    }
    let (first, _, database) = backend.projections().await;
    let (second, _, _) = backend.projections().await;
    // One event per batch, so that the two claim the checkpoint as often as they can.
    let (first, second) = (
        first.with_catch_up_batch_size(1),
        second.with_catch_up_batch_size(1),
    );
    let (first_reached, second_reached) = tokio::join!(first.catch_up(), second.catch_up());
    let head = valid(first_reached);
    assert_eq!(valid(second_reached), head);
    let raced = valid(database.snapshot().await);
    assert_eq!(raced["complaint_list"].len(), 40);

    // What one runner alone makes of the same log.
    valid(first.reset().await);
    assert_eq!(valid(first.catch_up().await), head);
    assert_eq!(raced, valid(database.snapshot().await));
    backend.close().await;
}

on_every_backend!(racing_runners_apply_each_event_once);
