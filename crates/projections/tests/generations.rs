//! A server switching to a new read-model generation: the `ReadModel` handle every service
//! shares serves the new one from the next query, and a `min_position` wait begun on the old one
//! follows the switch rather than failing when the old runner stops.

#[macro_use]
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_projections::{ProjectionRunner, ReadModelDatabase};
use support::{ComplaintWriter, TestBackend, calendar, valid};

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

async fn a_wait_begun_on_the_old_generation_follows_the_switch(backend: TestBackend) {
    let (old_runner, served, old_database) = backend.projections().await;
    ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    let head = valid(old_runner.catch_up().await);
    // A caller waits for its own write, not applied yet, on the handle every service shares.
    let waiting = tokio::spawn({
        let served = served.clone();
        async move { served.wait_for(head + 1, Duration::from_secs(30)).await }
    });
    tokio::task::yield_now().await;

    // The next generation, built beside it up to the head, goes live.
    // The service's SQLite URLs let SQLite create the file (`mode=rwc`).
    let url = match backend.kind {
        support::Kind::Sqlite => format!("{}?mode=rwc", backend.url),
        support::Kind::Postgres => backend.url.clone(),
    };
    let database = valid(ReadModelDatabase::open_generation(&url, 1).await);
    let (runner, next) =
        valid(ProjectionRunner::open(backend.store.clone(), database.clone(), calendar()).await);
    assert_eq!(valid(runner.catch_up().await), head);
    served.serve(&next);
    assert!(served.serves_same_as(&next));
    // The old runner stops, as a server stops it after the switch.
    drop(old_runner);

    // The caller's write lands; only the new generation applies it.
    ComplaintWriter::log(&backend, at("2026-04-02T10:00:00Z")).await;
    assert!(valid(runner.catch_up().await) > head);
    assert!(
        valid(waiting.await),
        "the wait followed the switch and saw the write applied"
    );
    assert_eq!(served.position(), next.position());
    assert_eq!(valid(database.snapshot().await)["complaint_list"].len(), 2);
    assert_eq!(
        valid(old_database.snapshot().await)["complaint_list"].len(),
        1,
        "the old generation was left as it was"
    );
    database.close().await;
    old_database.close().await;
    backend.close().await;
}

on_every_backend!(a_wait_begun_on_the_old_generation_follows_the_switch);
