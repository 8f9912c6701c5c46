//! The guarantees that involve a backend's life beyond one open store: durability across closing
//! and reopening, group commit, appends larger than a batch, an orderly close, and corrupt rows.
//!
//! These checks need more than [`EventStore`]: to open the same database again, to set a small
//! batch limit, to count commits and to write a row behind the store's back. A backend provides
//! that through [`StoreHarness`] and runs every check with
//! [`event_store_lifecycle_tests!`](crate::event_store_lifecycle_tests).

use uuid::Uuid;

use super::{append_ok, fresh_stream, numbered_events, positions};
use crate::{AppendOutcome, EventStore, ExpectedVersion, StoreError};

/// Instantiates one `#[tokio::test]` per lifecycle check.
///
/// `$fresh_harness` names an async function returning `Option<impl StoreHarness>`: a harness on a
/// new, empty database (which it keeps alive), or `None` when the backend is unavailable here.
#[macro_export]
macro_rules! event_store_lifecycle_tests {
    ($fresh_harness:path) => {
        $crate::event_store_lifecycle_tests!(@each $fresh_harness;
            data_survives_close_and_reopen,
            group_commit_batches_concurrent_appends,
            an_append_larger_than_the_batch_limit_commits_whole,
            concurrent_identical_retries_write_once,
            close_lets_queued_appends_finish,
            appends_and_reads_after_close_report_closed,
            undecodable_row_is_reported_as_corrupt,
        );
    };
    (@each $fresh_harness:path; $($check:ident),+ $(,)?) => {
        $crate::event_store_lifecycle_tests!(@each_in lifecycle, $fresh_harness; $($check),+);
    };
    // Also for the harness-based checks of other modules of the suite (`resident_keys`).
    (@each_in $module:ident, $fresh_harness:path; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(harness) = $fresh_harness().await else {
                    return;
                };
                $crate::conformance::$module::$check(harness).await;
            }
        )+
    };
}

/// One backend's database, opened as often as a check needs. (Its futures need not be `Send`:
/// the checks await them on the test's own task.)
pub trait StoreHarness: 'static {
    type Store: EventStore + Clone + 'static;

    /// Whether the backend's positions are 1, 2, 3, … with no gap (SQLite's are), so the checks
    /// can hold them to exact positions and heads.
    const GAP_FREE_POSITIONS: bool;

    /// Opens a store on the harness's database, with at most `max_batch_events` events per
    /// commit when given.
    fn open(&self, max_batch_events: Option<usize>) -> impl Future<Output = Self::Store>;

    /// How many transactions the store has committed.
    fn commits(store: &Self::Store) -> u64;

    /// Closes the store after its queued appends.
    fn close(store: &Self::Store) -> impl Future<Output = ()>;

    /// Writes an event row at position 1 whose metadata cannot be decoded, as a broken tool
    /// might, through the store's own connections.
    fn insert_undecodable_row(store: &Self::Store) -> impl Future<Output = ()>;
}

/// Starts `count` appends at once, each of one event to its own new stream; each task answers
/// with its event's id and the append's result.
pub fn spawn_appends<S: EventStore + Clone + 'static>(
    store: &S,
    count: usize,
) -> tokio::task::JoinSet<(Uuid, Result<AppendOutcome, StoreError>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for new_event in numbered_events(count) {
        let store = store.clone();
        tasks.spawn(async move {
            let event_id = new_event.event_id;
            let result = store
                .append(
                    &fresh_stream("complaint"),
                    ExpectedVersion::NoStream,
                    vec![new_event],
                )
                .await;
            (event_id, result)
        });
    }
    tasks
}

/// Waits for every spawned append and panics unless each succeeded.
async fn all_succeed(
    mut tasks: tokio::task::JoinSet<(Uuid, Result<AppendOutcome, StoreError>)>,
    what: &str,
) {
    while let Some(joined) = tasks.join_next().await {
        let (_, result) = joined.expect("an appending task panicked");
        if let Err(error) = result {
            panic!("{what} should succeed: {error:?}");
        }
    }
}

pub async fn data_survives_close_and_reopen<H: StoreHarness>(harness: H) {
    let complaint = fresh_stream("complaint");
    let store = harness.open(None).await;
    append_ok(
        &store,
        &complaint,
        ExpectedVersion::NoStream,
        numbered_events(2),
    )
    .await;
    let written = store.read_all(1, 100).await.expect("read_all");
    H::close(&store).await;
    let head_before = written.last().expect("two events were written").position;

    let reopened = harness.open(None).await;
    let read_back = reopened
        .read_all(1, 100)
        .await
        .expect("read_all after reopening");
    assert_eq!(
        read_back, written,
        "every event survives reopening unchanged"
    );
    assert_eq!(reopened.head_position().await.expect("head"), head_before);
    assert_eq!(
        *reopened.watch_head().borrow(),
        head_before,
        "watch_head starts at the stored head"
    );
    let outcome = append_ok(
        &reopened,
        &complaint,
        ExpectedVersion::Exact(2),
        numbered_events(1),
    )
    .await;
    assert_eq!(outcome.version, 3, "versions continue where they stopped");
    assert!(
        outcome.position > head_before,
        "positions continue past the stored head"
    );
    if H::GAP_FREE_POSITIONS {
        assert_eq!(
            (head_before, outcome.position),
            (2, 3),
            "gap-free positions continue where they stopped"
        );
    }
    H::close(&reopened).await;
}

pub async fn group_commit_batches_concurrent_appends<H: StoreHarness>(harness: H) {
    const APPENDS: usize = 200;
    let store = harness.open(None).await;
    all_succeed(spawn_appends(&store, APPENDS), "every append").await;

    let stored = store.read_all(1, APPENDS * 2).await.expect("read_all");
    assert_eq!(stored.len(), APPENDS);
    if H::GAP_FREE_POSITIONS {
        assert_eq!(store.head_position().await.expect("head"), APPENDS as u64);
    }
    let commits = H::commits(&store);
    assert!(
        commits < APPENDS as u64,
        "{APPENDS} concurrent appends should share transactions, but took {commits}"
    );
    H::close(&store).await;
}

pub async fn an_append_larger_than_the_batch_limit_commits_whole<H: StoreHarness>(harness: H) {
    let store = harness.open(Some(3)).await;
    let large = fresh_stream("programme");
    let small = spawn_appends(&store, 20);
    let outcome = append_ok(
        &store,
        &large,
        ExpectedVersion::NoStream,
        numbered_events(10),
    )
    .await;
    all_succeed(small, "every small append").await;

    assert_eq!(outcome.version, 10);
    let stored = store
        .read_stream(&large, 1, 100)
        .await
        .expect("read_stream");
    let first = stored[0].position;
    assert_eq!(
        positions(&stored),
        (first..first + 10).collect::<Vec<_>>(),
        "one append's events are never split or interleaved"
    );
    assert_eq!(store.read_all(1, 100).await.expect("read_all").len(), 30);
    if H::GAP_FREE_POSITIONS {
        assert_eq!(store.head_position().await.expect("head"), 30);
    }
    H::close(&store).await;
}

pub async fn concurrent_identical_retries_write_once<H: StoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let complaint = fresh_stream("complaint");
    let events = numbered_events(2);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        let complaint = complaint.clone();
        let events = events.clone();
        tasks.spawn(async move {
            store
                .append(&complaint, ExpectedVersion::NoStream, events)
                .await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(
            joined
                .expect("a retrying task panicked")
                .expect("a retry should succeed"),
        );
    }

    let fresh_writes: Vec<&AppendOutcome> = outcomes
        .iter()
        .filter(|outcome| !outcome.already_stored)
        .collect();
    assert_eq!(
        fresh_writes.len(),
        1,
        "exactly one of the identical appends writes"
    );
    let written = *fresh_writes[0];
    assert!(
        outcomes
            .iter()
            .all(|outcome| (outcome.version, outcome.position)
                == (written.version, written.position)),
        "every caller hears where the events landed: {outcomes:?}"
    );
    assert_eq!(store.head_position().await.expect("head"), written.position);
    H::close(&store).await;
}

pub async fn close_lets_queued_appends_finish<H: StoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let mut tasks = spawn_appends(&store, 100);
    tokio::task::yield_now().await;
    H::close(&store).await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("an appending task panicked") {
            (event_id, Ok(_)) => accepted.push(event_id),
            (event_id, Err(StoreError::Closed)) => refused.push(event_id),
            (_, Err(error)) => panic!("an append should succeed or see Closed, got {error:?}"),
        }
    }

    let reopened = harness.open(None).await;
    for event_id in &accepted {
        let found = reopened.find_event(*event_id).await.expect("find_event");
        assert!(
            found.is_some(),
            "an append answered Ok before close is stored"
        );
    }
    for event_id in &refused {
        let found = reopened.find_event(*event_id).await.expect("find_event");
        assert!(found.is_none(), "an append answered Closed is not stored");
    }
    let stored = reopened.read_all(1, 1_000).await.expect("read_all");
    assert_eq!(stored.len(), accepted.len());
    H::close(&reopened).await;
}

pub async fn appends_and_reads_after_close_report_closed<H: StoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let clone = store.clone();
    H::close(&store).await;
    H::close(&store).await;

    let append = clone
        .append(
            &fresh_stream("complaint"),
            ExpectedVersion::Any,
            numbered_events(1),
        )
        .await;
    assert!(
        matches!(append, Err(StoreError::Closed)),
        "an append after close should be refused with Closed, got {append:?}"
    );
    let read = clone.read_all(1, 10).await;
    assert!(
        matches!(read, Err(StoreError::Closed)),
        "a read after close should be refused with Closed, got {read:?}"
    );
}

pub async fn undecodable_row_is_reported_as_corrupt<H: StoreHarness>(harness: H) {
    let store = harness.open(None).await;
    H::insert_undecodable_row(&store).await;

    let read = store.read_all(1, 10).await;
    assert!(
        matches!(read, Err(StoreError::Corrupt { position: 1, .. })),
        "an undecodable row should be reported as Corrupt at position 1, got {read:?}"
    );
    H::close(&store).await;
}
