//! A server switching to a new read-model generation: the `ReadModel` handle every service
//! shares serves the new one from the next query, and a `min_position` wait begun on the old one
//! follows the switch rather than failing when the old runner stops. And a new generation's
//! tables are exactly the ones a reset empties and a snapshot reads.

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

/// A snapshot compares builds only if it reads every read model, and a rebuild is whole only if
/// a reset empties every one: both go by the reset's list of tables. A migration that adds a
/// table without adding it there fails here, not in a rebuild that silently keeps stale rows.
async fn a_snapshot_reads_every_table_the_migrations_create(backend: TestBackend) {
    let url = match backend.kind {
        support::Kind::Sqlite => format!("{}?mode=rwc", backend.url),
        support::Kind::Postgres => backend.url.clone(),
    };
    // A new generation holds the read models' tables alone: not the log's, which generation 0
    // may share a database with, nor the delivery outbox, which stays in generation 0.
    let database = valid(ReadModelDatabase::open_generation(&url, 1).await);
    let listing = match database.backend() {
        doorstep_projections::Backend::Sqlite => {
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        }
        doorstep_projections::Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let created: std::collections::BTreeSet<String> =
        valid(sqlx::query_scalar(listing).fetch_all(database.pool()).await)
            .into_iter()
            .filter(|table| table != "_doorstep_projection_migrations")
            .collect();
    let read: std::collections::BTreeSet<String> = valid(database.snapshot().await)
        .into_keys()
        .map(str::to_owned)
        .collect();
    assert!(
        created.contains("complaint_list"),
        "tables listed: {created:?}"
    );
    assert_eq!(
        read, created,
        "every table the migrations create is in the reset's list (RESET in runner.rs)"
    );
    database.close().await;
    backend.close().await;
}

on_every_backend!(a_snapshot_reads_every_table_the_migrations_create);
