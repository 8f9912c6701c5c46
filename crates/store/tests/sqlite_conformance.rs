//! The SQLite event store against the backend-neutral conformance suite, then the guarantees
//! only the SQLite backend makes: durability across reopening, append-only triggers, group
//! commit and an orderly shutdown.

use std::path::Path;
use std::sync::Arc;

use doorstep_store::conformance::lifecycle::{StoreHarness, spawn_appends};
use doorstep_store::conformance::{
    assert_refused_as_append_only, fresh_stream as stream, numbered_event as event, parsed,
};
use doorstep_store::{EventStore, ExpectedVersion, SqliteEventStore, SqliteSettings};
use serde_json::json;
use tempfile::TempDir;

/// A new store in its own temporary directory, which lives as long as the returned guard. SQLite
/// is always available.
async fn fresh_store() -> Option<(Arc<dyn EventStore>, TempDir)> {
    let (store, directory) = fresh_sqlite_store().await;
    Some((Arc::new(store), directory))
}

doorstep_store::event_store_conformance_tests!(fresh_store, gap_free_positions);
doorstep_store::event_store_lifecycle_tests!(fresh_harness);
doorstep_store::resident_key_store_conformance_tests!(fresh_harness);

/// One SQLite file in its own temporary directory, opened as often as a check asks.
struct SqliteHarness {
    directory: TempDir,
}

async fn fresh_harness() -> Option<SqliteHarness> {
    let directory = TempDir::new().expect("a temporary directory should be creatable");
    Some(SqliteHarness { directory })
}

impl StoreHarness for SqliteHarness {
    type Store = SqliteEventStore;
    const GAP_FREE_POSITIONS: bool = true;

    async fn open(&self, max_batch_events: Option<usize>) -> SqliteEventStore {
        let defaults = SqliteSettings::new(database_path(self.directory.path()));
        let settings = SqliteSettings {
            max_batch_events: max_batch_events.unwrap_or(defaults.max_batch_events),
            ..defaults
        };
        SqliteEventStore::open(settings)
            .await
            .expect("the store should open")
    }

    fn commits(store: &SqliteEventStore) -> u64 {
        store.commits()
    }

    async fn close(store: &SqliteEventStore) {
        store.close().await;
    }

    async fn insert_undecodable_row(store: &SqliteEventStore) {
        sqlx::query(
            "INSERT INTO events (position, stream_id, version, event_id, event_type, \
             schema_version, payload, metadata, recorded_at) \
             VALUES (1, 'complaint-x', 1, 'not-a-uuid', 'Broken', 1, '{}', '{}', 'yesterday')",
        )
        .execute(store.pool())
        .await
        .expect("a raw insert through the pool should succeed");
    }
}

async fn fresh_sqlite_store() -> (SqliteEventStore, TempDir) {
    let directory = TempDir::new().expect("a temporary directory should be creatable");
    let store = open_store(directory.path()).await;
    (store, directory)
}

fn database_path(directory: &Path) -> std::path::PathBuf {
    directory.join("events.sqlite3")
}

async fn open_store(directory: &Path) -> SqliteEventStore {
    SqliteEventStore::open(SqliteSettings::new(database_path(directory)))
        .await
        .expect("the store should open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_refuse_update_and_delete_through_the_pool() {
    let (store, _directory) = fresh_sqlite_store().await;
    store
        .append(&stream("complaint"), ExpectedVersion::Any, vec![event(0)])
        .await
        .expect("the append should succeed");

    let update = sqlx::query("UPDATE events SET event_type = 'Rewritten'")
        .execute(store.pool())
        .await;
    let delete = sqlx::query("DELETE FROM events")
        .execute(store.pool())
        .await;

    assert_refused_as_append_only(&store, vec![("UPDATE", update), ("DELETE", delete)]).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_missing_parent_directories() {
    let directory = TempDir::new().expect("a temporary directory should be creatable");
    let nested_path = directory
        .path()
        .join("data")
        .join("doorstep")
        .join("events.sqlite3");

    let store = SqliteEventStore::open(SqliteSettings::new(&nested_path))
        .await
        .expect("the store should open in a directory that does not exist yet");

    assert!(nested_path.exists(), "the database file is created");
    store.close().await;
}

/// Commits never checkpoint; a background task does, and it must also let SQLite start the WAL
/// over while appends keep coming, or the WAL file grows without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_appends() {
    const APPENDERS: usize = 32;
    const EVENTS_EACH: usize = 500;
    let (store, directory) = fresh_sqlite_store().await;
    let text = "x".repeat(4_000);

    // 16,000 events of about 4 KB: 64 MB of pages written to the WAL.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..APPENDERS {
        let store = store.clone();
        let text = text.clone();
        tasks.spawn(async move {
            for index in 0..EVENTS_EACH {
                let mut new_event = event(index);
                new_event.payload = json!({ "index": index, "text": text });
                store
                    .append(&stream("bulk"), ExpectedVersion::NoStream, vec![new_event])
                    .await
                    .expect("every append should succeed");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an appending task panicked");
    }

    let wal = std::fs::metadata(format!("{}-wal", database_path(directory.path()).display()))
        .expect("the WAL file exists while the store is open");
    assert!(
        wal.len() < 40 * 1024 * 1024,
        "the WAL should be started over as it fills, but holds {} bytes",
        wal.len()
    );
    assert_eq!(
        store.head_position().await.expect("head"),
        (APPENDERS * EVENTS_EACH) as u64
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_can_write_read_model_tables_alongside_appends() {
    let (store, _directory) = fresh_sqlite_store().await;
    sqlx::query("CREATE TABLE complaint_counts (contractor TEXT PRIMARY KEY, complaints INTEGER)")
        .execute(store.pool())
        .await
        .expect("creating a read-model table through the pool should succeed");

    let mut appends = spawn_appends(&store, 50);
    for index in 0..50_i64 {
        sqlx::query("INSERT INTO complaint_counts VALUES (?1, ?2)")
            .bind(format!("contractor-{index}"))
            .bind(index)
            .execute(store.pool())
            .await
            .expect("writing a read model while appends run should succeed");
    }
    while let Some(joined) = appends.join_next().await {
        let (_, result) = joined.expect("an appending task panicked");
        result.expect("every append should succeed");
    }

    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM complaint_counts")
        .fetch_one(store.pool())
        .await
        .expect("reading the read model should succeed");
    assert_eq!(rows, 50);
    assert_eq!(store.head_position().await.expect("head"), 50);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_write_holds_the_writer_between_transactions() {
    let (store, _directory) = fresh_sqlite_store().await;
    sqlx::query("CREATE TABLE side_rows (value INTEGER)")
        .execute(store.pool())
        .await
        .expect("creating a table through the pool should succeed");

    let writing = store.exclusive_write().await;
    let mut appends = spawn_appends(&store, 3);
    // The pool writes without waiting on SQLite's lock, because the writer cannot take it.
    sqlx::query("INSERT INTO side_rows VALUES (1)")
        .execute(store.pool())
        .await
        .expect("a write under the guard should succeed");
    let waited =
        tokio::time::timeout(std::time::Duration::from_millis(300), appends.join_next()).await;
    assert!(
        waited.is_err(),
        "an append must wait while another write holds the guard"
    );
    assert_eq!(store.head_position().await.expect("head"), 0);

    drop(writing);
    while let Some(joined) = appends.join_next().await {
        let (_, result) = joined.expect("an appending task panicked");
        result.expect("every append should succeed once the guard is dropped");
    }
    assert_eq!(store.head_position().await.expect("head"), 3);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_use_wal_full_sync_and_foreign_keys() {
    let (store, _directory) = fresh_sqlite_store().await;

    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("journal_mode should be readable");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .expect("synchronous should be readable");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .expect("foreign_keys should be readable");

    assert_eq!(journal_mode, "wal");
    assert_eq!(synchronous, 2, "synchronous should be FULL (2)");
    assert_eq!(foreign_keys, 1, "foreign keys should be enforced");
    store.close().await;
}

/// A batch of resident keys commits with `synchronous = NORMAL` on a pooled connection (see
/// `ResidentKeyStore::insert_keys`); every pooled connection must be back to FULL afterwards,
/// since the pool's other users expect each commit to wait for the disk.
#[tokio::test]
async fn key_batches_leave_every_pooled_connection_flushing_its_commits() {
    use doorstep_store::ResidentKeyStore;

    let directory = TempDir::new().expect("a temporary directory");
    let settings = SqliteSettings::new(database_path(directory.path()));
    let pool_size = settings.read_pool_size;
    let store = SqliteEventStore::open(settings)
        .await
        .expect("the store opens");
    let batches = (0..16).map(|batch| {
        let store = store.clone();
        async move {
            let rows = [(format!("resident-{batch}"), "wrapped".to_owned())];
            store
                .insert_keys(&rows, 1)
                .await
                .expect("the batch is stored")
        }
    });
    let inserted = futures::future::join_all(batches).await;
    assert_eq!(inserted.iter().map(Vec::len).sum::<usize>(), 16);

    // Hold every pooled connection at once, so each one is checked.
    let mut connections = Vec::new();
    for _ in 0..pool_size {
        connections.push(store.pool().acquire().await.expect("a pooled connection"));
    }
    for connection in &mut connections {
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **connection)
            .await
            .expect("synchronous is readable");
        assert_eq!(synchronous, 2, "every pooled connection is back to FULL");
    }
    drop(connections);
    store.close().await;
}

/// `read_all_bulk` reads in pieces of a few thousand events: across the pieces' boundaries, and
/// for limits just below, at and above them, it returns exactly what `read_all` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_read_equals_read_all_across_its_pieces() {
    let (store, _directory) = fresh_sqlite_store().await;
    let streams = [stream("complaint"), stream("visit"), stream("contractor")];
    let mut appended = 0;
    let mut append_size = 1;
    while appended < 4_321 {
        let events = (appended..appended + append_size).map(event).collect();
        store
            .append(&streams[appended % 3], ExpectedVersion::Any, events)
            .await
            .expect("the append should succeed");
        appended += append_size;
        append_size = append_size % 97 + 13;
    }
    let whole = store
        .read_all(1, usize::MAX)
        .await
        .expect("read_all should succeed");
    assert_eq!(whole.len(), appended, "every event is readable");

    for (from, limit) in [
        (1, usize::MAX),
        (1, 1_999),
        (1, 2_000),
        (1, 2_001),
        (1_999, 2),
        (2_000, 4_000),
        (2_001, 2_000),
        (4_000, 10),
        (4_321, 5),
        (4_322, 5),
        (1, 0),
    ] {
        let expected = store
            .read_all(from, limit)
            .await
            .expect("read_all should succeed");
        let bulk = parsed(
            store
                .read_all_bulk(from, limit)
                .await
                .expect("read_all_bulk should succeed"),
        );
        assert_eq!(
            bulk.len(),
            expected.len(),
            "read_all_bulk({from}, {limit}) reads as many events as read_all"
        );
        assert!(
            bulk == expected,
            "read_all_bulk({from}, {limit}) equals read_all({from}, {limit})"
        );
    }
    store.close().await;
}

/// A stored row that does not decode fails the bulk read with the error `read_all` gives, naming
/// the row, also when the bulk encoding itself cannot carry it (a text with a newline where a
/// timestamp belongs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_read_reports_a_corrupt_row_as_read_all_does() {
    let (store, _directory) = fresh_sqlite_store().await;
    store
        .append(
            &stream("complaint"),
            ExpectedVersion::Any,
            (0..6).map(event).collect(),
        )
        .await
        .expect("the append should succeed");
    for statement in [
        "DROP TRIGGER events_refuse_update",
        "UPDATE events SET event_id = 'not-a-uuid' WHERE position = 3",
        "UPDATE events SET recorded_at = 'yesterday' || char(10) || 'noon' WHERE position = 5",
    ] {
        sqlx::query(statement)
            .execute(store.pool())
            .await
            .expect("the test's corruption should apply");
    }

    for (from, corrupt_position) in [(1, 3), (4, 5)] {
        let expected = store
            .read_all(from, 100)
            .await
            .expect_err("read_all of a corrupt row should fail");
        let bulk = store
            .read_all_bulk(from, 100)
            .await
            .expect_err("read_all_bulk of a corrupt row should fail");
        assert!(
            matches!(bulk, doorstep_store::StoreError::Corrupt { position, .. } if position == corrupt_position),
            "the bulk read names row {corrupt_position}: {bulk}"
        );
        assert_eq!(
            bulk.to_string(),
            expected.to_string(),
            "the same error as read_all"
        );
    }
    let before_corruption = store
        .read_all_bulk(1, 2)
        .await
        .expect("the rows before the corrupt one still read");
    assert_eq!(before_corruption.len(), 2);
    store.close().await;
}
