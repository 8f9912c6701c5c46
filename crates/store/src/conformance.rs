//! The guarantees every [`EventStore`] backend must keep, as one suite that each backend runs.
//!
//! Each check is a plain async function that takes a store and panics with a message naming the
//! broken guarantee. A backend's test file instantiates all of them at once with
//! [`event_store_conformance_tests!`](crate::event_store_conformance_tests), so a check added
//! here runs against every backend without anyone having to remember to list it.
//!
//! Checks use streams with fresh random names and measure the log relative to its head when they
//! start, so they also pass against a store that already holds events. They do assume that
//! nothing else appends while they run.
//!
//! Every backend's positions strictly increase in the order readers see events, and one append's
//! events get consecutive positions; only some backends' positions are also gap-free (SQLite's
//! are, PostgreSQL's jump between transactions). The checks of gap-freedom are therefore separate,
//! and a backend that promises it asks for them (see the macro).

pub mod lifecycle;
pub mod resident_keys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::{
    AppendOutcome, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StreamId,
};

/// Instantiates one `#[tokio::test]` per conformance check.
///
/// `$fresh_store` names an async function returning `Option<(Arc<dyn EventStore>, impl Sized)>`:
/// a new, empty store, and whatever must stay alive while it is used (a temporary directory, a
/// test database); or `None` when the backend is unavailable here, which makes every check
/// return at once (the function should say loudly why). Adding `gap_free_positions` also runs
/// the checks that positions are gap-free from 1, for backends that promise it. The test crate
/// needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// async fn fresh_store() -> Option<(Arc<dyn EventStore>, tempfile::TempDir)> { /* ... */ }
/// doorstep_store::event_store_conformance_tests!(fresh_store, gap_free_positions);
/// ```
#[macro_export]
macro_rules! event_store_conformance_tests {
    ($fresh_store:path, gap_free_positions) => {
        $crate::event_store_conformance_tests!($fresh_store);
        $crate::event_store_conformance_tests!(@each $fresh_store;
            positions_are_gap_free_from_one,
        );
    };
    ($fresh_store:path) => {
        $crate::event_store_conformance_tests!(@each $fresh_store;
            append_to_new_stream_with_no_stream,
            append_to_new_stream_with_exact_zero,
            exact_version_mismatch_reports_the_actual_version,
            no_stream_on_an_existing_stream_conflicts,
            any_always_appends,
            idempotent_retry_returns_the_original_outcome_and_writes_nothing,
            same_event_id_with_other_content_is_a_duplicate,
            partially_stored_append_is_a_duplicate,
            duplicate_event_id_within_one_append_is_refused,
            empty_append_is_refused,
            read_stream_from_a_version_with_a_limit,
            read_all_is_in_position_order,
            read_all_bulk_returns_what_read_all_returns,
            find_event_returns_the_recorded_event,
            head_position_and_watch_head_advance,
            count_after_counts_the_readable_events_past_a_position,
            concurrent_appends_are_each_stored_exactly_once,
            appends_of_every_size_are_stored_whole_and_in_order,
            concurrent_exact_appends_have_one_winner_per_version,
            refused_appends_do_not_disturb_concurrent_ones,
            event_fields_round_trip,
        );
    };
    (@each $fresh_store:path; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((store, keep_alive)) = $fresh_store().await else {
                    return;
                };
                $crate::conformance::$check(store).await;
                drop(keep_alive);
            }
        )+
    };
}

/// Enough to read a whole test log in one call.
const EVERYTHING: usize = 1_000_000;

/// How long a check waits for something that should happen at once, before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// A stream of `category` that no other test uses.
pub fn fresh_stream(category: &str) -> StreamId {
    StreamId::new(category, Uuid::now_v7())
}

fn test_metadata() -> EventMetadata {
    EventMetadata {
        actor: "conformance-suite".to_owned(),
        source_channel: "grpc".to_owned(),
        ..EventMetadata::default()
    }
}

fn new_event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload,
        metadata: test_metadata(),
    }
}

/// A `Numbered` event carrying `index`, with a fresh event id.
pub fn numbered_event(index: usize) -> NewEvent {
    new_event("Numbered", json!({ "index": index }))
}

fn numbered_events(count: usize) -> Vec<NewEvent> {
    (0..count).map(numbered_event).collect()
}

async fn append_ok(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendOutcome {
    match store.append(stream, expected, events).await {
        Ok(outcome) => outcome,
        Err(error) => panic!("append to {stream} with {expected:?} should succeed: {error:?}"),
    }
}

/// Appends `count` numbered events, panicking as [`append_ok`] does.
async fn append_numbered(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    count: usize,
) -> AppendOutcome {
    append_ok(store, stream, expected, numbered_events(count)).await
}

async fn whole_stream(store: &dyn EventStore, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 0, EVERYTHING)
        .await
        .expect("read_stream should succeed")
}

async fn head(store: &dyn EventStore) -> u64 {
    store
        .head_position()
        .await
        .expect("head_position should succeed")
}

async fn events_after(store: &dyn EventStore, position: u64) -> Vec<RecordedEvent> {
    store
        .read_all(position + 1, EVERYTHING)
        .await
        .expect("read_all should succeed")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.version).collect()
}

/// The events' positions, in order.
pub fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position).collect()
}

/// Panics, naming `what`, unless `positions` strictly increase.
pub fn assert_strictly_increasing(positions: &[u64], what: &str) {
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{what}: positions should strictly increase, got {positions:?}"
    );
}

/// Panics unless every stream among `events` (read in position order) has the versions 1, 2, 3…
pub fn assert_versions_gap_free_per_stream(events: &[RecordedEvent]) {
    let mut versions_by_stream: BTreeMap<&StreamId, Vec<u64>> = BTreeMap::new();
    for event in events {
        versions_by_stream
            .entry(&event.stream_id)
            .or_default()
            .push(event.version);
    }
    for (stream, stream_versions) in versions_by_stream {
        let expected_versions: Vec<u64> = (1..=stream_versions.len() as u64).collect();
        assert_eq!(
            stream_versions, expected_versions,
            "stream {stream} has gap-free versions in position order"
        );
    }
}

/// Panics unless each raw SQL statement that tried to change the log was refused by the
/// append-only triggers, and the log still holds just the one `Numbered` event it held before.
pub async fn assert_refused_as_append_only<T, E: std::fmt::Display>(
    store: &dyn EventStore,
    refusals: Vec<(&str, Result<T, E>)>,
) {
    for (statement, result) in refusals {
        let Err(error) = result else {
            panic!("the triggers should refuse the statement {statement}");
        };
        assert!(
            error.to_string().contains("events are append-only"),
            "{statement} should be refused by the append-only trigger, got {error}"
        );
    }
    let stored = store
        .read_all(1, 10)
        .await
        .expect("read_all should succeed");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "Numbered", "the event is unchanged");
}

/// Waits for racing tasks that each answer with the `(version, event id)` of the appends they won,
/// and gathers the winners of each version.
pub async fn winners_by_version(
    mut tasks: tokio::task::JoinSet<Vec<(u64, Uuid)>>,
) -> HashMap<u64, Vec<Uuid>> {
    let mut winners_by_version: HashMap<u64, Vec<Uuid>> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        for (version, event_id) in joined.expect("a racing task panicked") {
            winners_by_version
                .entry(version)
                .or_default()
                .push(event_id);
        }
    }
    winners_by_version
}

/// Panics unless each stored event's version had exactly one winner, that event.
pub fn assert_one_winner_per_version(
    winners_by_version: &HashMap<u64, Vec<Uuid>>,
    stored: &[RecordedEvent],
) {
    for event in stored {
        assert_eq!(
            winners_by_version.get(&event.version),
            Some(&vec![event.event_id]),
            "version {} should have exactly one winner, the stored event",
            event.version
        );
    }
}

fn event_ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.event_id).collect()
}

fn assert_version_conflict(
    result: Result<AppendOutcome, StoreError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(StoreError::VersionConflict {
            stream: conflict_stream,
            expected: conflict_expected,
            actual: conflict_actual,
        }) => {
            assert_eq!(
                &conflict_stream, stream,
                "the conflict should name the stream"
            );
            assert_eq!(
                conflict_expected, expected,
                "the conflict should echo the expectation"
            );
            assert_eq!(
                conflict_actual, actual,
                "the conflict should report the actual version"
            );
        }
        other => panic!(
            "append to {stream} with {expected:?} should conflict at version {actual}, got {other:?}"
        ),
    }
}

fn assert_duplicate_event_id(result: Result<AppendOutcome, StoreError>, event_id: Uuid) {
    match result {
        Err(StoreError::DuplicateEventId {
            event_id: reported_event_id,
        }) => assert_eq!(
            reported_event_id, event_id,
            "DuplicateEventId should name the clashing event"
        ),
        other => {
            panic!("append should be refused with DuplicateEventId({event_id}), got {other:?}")
        }
    }
}

/// `NoStream` creates a stream; its events get versions from 1 and consecutive positions past
/// the head.
pub async fn append_to_new_stream_with_no_stream(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let head_before = head(store).await;

    let outcome = append_numbered(store, &stream, ExpectedVersion::NoStream, 2).await;

    assert_eq!(
        outcome.version, 2,
        "two events on a new stream end at version 2"
    );
    assert!(
        outcome.position > head_before + 1,
        "positions continue the log past the head {head_before}, got {}",
        outcome.position
    );
    assert!(!outcome.already_stored, "a first append is not a retry");
    let stored = whole_stream(store, &stream).await;
    assert_eq!(versions(&stored), vec![1, 2], "stream versions start at 1");
    assert_eq!(
        positions(&stored),
        vec![outcome.position - 1, outcome.position],
        "one append's events get consecutive positions, the last one reported"
    );
    assert_eq!(
        head(store).await,
        outcome.position,
        "the append is the new head"
    );
}

/// `Exact(0)` is the same as `NoStream` for a new stream, and `Exact(n)` extends a stream at n.
pub async fn append_to_new_stream_with_exact_zero(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");

    let first = append_numbered(store, &stream, ExpectedVersion::Exact(0), 1).await;
    let second = append_numbered(store, &stream, ExpectedVersion::Exact(1), 3).await;

    assert_eq!(
        first.version, 1,
        "Exact(0) on a new stream appends at version 1"
    );
    assert_eq!(
        second.version, 4,
        "Exact(1) then three events ends at version 4"
    );
    assert_eq!(
        versions(&whole_stream(store, &stream).await),
        vec![1, 2, 3, 4]
    );
}

/// A wrong `Exact` is refused with the actual version and writes nothing.
pub async fn exact_version_mismatch_reports_the_actual_version(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    append_numbered(store, &stream, ExpectedVersion::NoStream, 3).await;
    let head_before = head(store).await;

    for expected in [ExpectedVersion::Exact(1), ExpectedVersion::Exact(5)] {
        let result = store.append(&stream, expected, numbered_events(1)).await;
        assert_version_conflict(result, &stream, expected, 3);
    }
    let unknown_stream = fresh_stream("complaint");
    let result = store
        .append(
            &unknown_stream,
            ExpectedVersion::Exact(2),
            numbered_events(1),
        )
        .await;
    assert_version_conflict(result, &unknown_stream, ExpectedVersion::Exact(2), 0);

    assert_eq!(
        head(store).await,
        head_before,
        "a refused append writes nothing"
    );
    assert_eq!(whole_stream(store, &stream).await.len(), 3);
    assert!(whole_stream(store, &unknown_stream).await.is_empty());
}

/// `NoStream` on a stream that has events conflicts.
pub async fn no_stream_on_an_existing_stream_conflicts(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    append_numbered(store, &stream, ExpectedVersion::NoStream, 2).await;

    let result = store
        .append(&stream, ExpectedVersion::NoStream, numbered_events(1))
        .await;

    assert_version_conflict(result, &stream, ExpectedVersion::NoStream, 2);
    assert_eq!(
        whole_stream(store, &stream).await.len(),
        2,
        "nothing was added"
    );
}

/// `Any` appends to new and existing streams alike.
pub async fn any_always_appends(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("visit");

    let first = append_ok(store, &stream, ExpectedVersion::Any, numbered_events(1)).await;
    let second = append_ok(store, &stream, ExpectedVersion::Any, numbered_events(2)).await;

    assert_eq!(first.version, 1, "Any on a new stream starts it");
    assert_eq!(second.version, 3, "Any on an existing stream extends it");
    assert_eq!(versions(&whole_stream(store, &stream).await), vec![1, 2, 3]);
}

/// Sending the same events again (a caller's retry after a time-out) answers with where they
/// landed the first time and writes nothing, even when the stream has moved on since.
pub async fn idempotent_retry_returns_the_original_outcome_and_writes_nothing(
    store: Arc<dyn EventStore>,
) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let events = numbered_events(2);
    let original = append_ok(store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    let head_after_original = head(store).await;

    let retry = append_ok(store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    assert_eq!(
        retry,
        AppendOutcome {
            already_stored: true,
            ..original
        },
        "a retry reports the original version and position"
    );
    assert_eq!(
        head(store).await,
        head_after_original,
        "a retry writes nothing"
    );
    assert!(events_after(store, head_after_original).await.is_empty());

    append_numbered(store, &stream, ExpectedVersion::Exact(2), 1).await;
    let late_retry = append_ok(store, &stream, ExpectedVersion::Exact(0), events).await;
    assert_eq!(
        late_retry,
        AppendOutcome {
            already_stored: true,
            ..original
        },
        "idempotency is checked before the expected version"
    );
    assert_eq!(whole_stream(store, &stream).await.len(), 3);
}

/// An id that is stored with another payload, type, schema version or stream is a clash, not
/// a retry.
pub async fn same_event_id_with_other_content_is_a_duplicate(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let original = new_event("ComplaintLogged", json!({ "summary": "gate left open" }));
    append_ok(store, &stream, ExpectedVersion::Any, vec![original.clone()]).await;
    let head_before = head(store).await;

    let other_payload = NewEvent {
        payload: json!({ "summary": "van parked on the lawn" }),
        ..original.clone()
    };
    let other_type = NewEvent {
        event_type: "ComplaintWithdrawn".to_owned(),
        ..original.clone()
    };
    let other_schema = NewEvent {
        schema_version: original.schema_version + 1,
        ..original.clone()
    };
    for clash in [other_payload, other_type, other_schema] {
        let result = store
            .append(&stream, ExpectedVersion::Any, vec![clash])
            .await;
        assert_duplicate_event_id(result, original.event_id);
    }
    let other_stream = fresh_stream("complaint");
    let result = store
        .append(&other_stream, ExpectedVersion::Any, vec![original.clone()])
        .await;
    assert_duplicate_event_id(result, original.event_id);

    assert_eq!(head(store).await, head_before, "a clash writes nothing");
}

/// When only some of an append's events are stored, it is neither a retry nor new.
pub async fn partially_stored_append_is_a_duplicate(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let stored = new_event("Stored", json!({}));
    let fresh = new_event("Fresh", json!({}));
    append_ok(store, &stream, ExpectedVersion::Any, vec![stored.clone()]).await;
    let head_before = head(store).await;

    let stored_first = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![stored.clone(), fresh.clone()],
        )
        .await;
    assert_duplicate_event_id(stored_first, stored.event_id);
    let stored_last = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![fresh.clone(), stored.clone()],
        )
        .await;
    assert_duplicate_event_id(stored_last, stored.event_id);

    assert_eq!(
        head(store).await,
        head_before,
        "a partial overlap writes nothing"
    );
    let found = store
        .find_event(fresh.event_id)
        .await
        .expect("find_event should succeed");
    assert!(
        found.is_none(),
        "the new event of a refused append is not stored"
    );
}

/// One append cannot carry the same id twice.
pub async fn duplicate_event_id_within_one_append_is_refused(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let event = new_event("Twice", json!({}));

    let result = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![event.clone(), event.clone()],
        )
        .await;

    assert_duplicate_event_id(result, event.event_id);
    assert!(whole_stream(store, &stream).await.is_empty());
}

/// An append without events is a caller's mistake, whatever the expected version.
pub async fn empty_append_is_refused(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let head_before = head(store).await;

    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
    ] {
        let result = store.append(&stream, expected, Vec::new()).await;
        assert!(
            matches!(result, Err(StoreError::EmptyAppend)),
            "an empty append with {expected:?} should be refused with EmptyAppend, got {result:?}"
        );
    }
    assert_eq!(head(store).await, head_before);
}

/// `read_stream` starts at a version, stops at a limit and never shows other streams' events.
pub async fn read_stream_from_a_version_with_a_limit(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let neighbour = fresh_stream("complaint");
    for _ in 0..5 {
        append_ok(store, &stream, ExpectedVersion::Any, numbered_events(1)).await;
        append_ok(store, &neighbour, ExpectedVersion::Any, numbered_events(1)).await;
    }

    let read = |from_version: u64, limit: usize| {
        let stream = stream.clone();
        async move {
            let events = store
                .read_stream(&stream, from_version, limit)
                .await
                .expect("read_stream should succeed");
            assert!(
                events.iter().all(|event| event.stream_id == stream),
                "read_stream returned another stream's event"
            );
            versions(&events)
        }
    };
    assert_eq!(
        read(0, EVERYTHING).await,
        vec![1, 2, 3, 4, 5],
        "from 0 reads all"
    );
    assert_eq!(
        read(1, EVERYTHING).await,
        vec![1, 2, 3, 4, 5],
        "from 1 reads all"
    );
    assert_eq!(
        read(3, EVERYTHING).await,
        vec![3, 4, 5],
        "from_version is inclusive"
    );
    assert_eq!(read(2, 2).await, vec![2, 3], "limit caps the count");
    assert_eq!(
        read(6, EVERYTHING).await,
        Vec::<u64>::new(),
        "past the end is empty"
    );
    assert_eq!(
        read(1, 0).await,
        Vec::<u64>::new(),
        "a zero limit reads nothing"
    );
    let unknown = store
        .read_stream(&fresh_stream("complaint"), 0, EVERYTHING)
        .await
        .expect("read_stream of an unknown stream should succeed");
    assert!(unknown.is_empty(), "an unknown stream reads as empty");
}

/// A bulk read's events with their payloads parsed, as `read_all` returns them.
pub fn parsed(events: Vec<crate::BulkEvent>) -> Vec<RecordedEvent> {
    events
        .into_iter()
        .map(|event| event.parsed().expect("a bulk read's payload is JSON"))
        .collect()
}

/// `read_all_bulk` returns exactly what `read_all` returns (each payload as its JSON text), for
/// ranges starting and ending anywhere (inside an append, between appends, past the head), paged
/// with every limit, and for payloads and metadata that a hand-made encoding could get wrong:
/// unicode, escapes, control characters, numbers at the edges of their types, nesting, and
/// non-object payloads.
pub async fn read_all_bulk_returns_what_read_all_returns(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let head_before = head(store).await;
    let payloads = [
        json!({ "text": "Ünïcödé — 苦情 🏠 \u{202e}right-to-left\u{202c}", "empty": "" }),
        json!({ "escapes": "quote \" backslash \\ slash / newline \n tab \t return \r" }),
        json!({ "control": "start of heading \u{1} bell \u{7} escape \u{1b} delete \u{7f}", "key \"quoted\"": 1 }),
        json!({ "max": u64::MAX, "min": i64::MIN, "huge": 1.5e300, "tiny": -2.5e-10, "zero": 0.0 }),
        json!({ "over_u64": 123_456_789_012_345_678_901_234_567_890.0_f64, "negative_zero": -0.0 }),
        json!([1, [2, [3, { "nested": null }]], true, false, "]},[{"]),
        json!("a bare string ]"),
        json!(12_345_678_901_234_567_u64),
        json!(null),
        json!({}),
        json!({ "index": 10 }),
    ];
    let streams = [
        fresh_stream("complaint"),
        fresh_stream("visit"),
        fresh_stream("contractor"),
    ];
    let mut appended = 0;
    for (round, stream) in streams.iter().cycle().take(7).enumerate() {
        let events: Vec<NewEvent> = (0..=round % 4)
            .map(|index| {
                let payload = payloads[(appended + index) % payloads.len()].clone();
                let mut event = new_event("Unusual \"type\" ✓", payload);
                if index % 2 == 1 {
                    event.metadata = EventMetadata {
                        actor: "résident \"O'Brien\" \\ \n".to_owned(),
                        causation_id: Some(Uuid::now_v7()),
                        correlation_id: Some(Uuid::now_v7()),
                        request_id: Some("req-🏠-\u{1}".to_owned()),
                        source_channel: "post".to_owned(),
                        command_fingerprint: Some("f".repeat(64)),
                        trace_id: Some("0af7651916cd43dd8448eb211c80319c".to_owned()),
                        span_id: Some("b7ad6b7169203331".to_owned()),
                    };
                }
                event
            })
            .collect();
        appended += events.len();
        append_ok(store, stream, ExpectedVersion::Any, events).await;
    }
    let ours = events_after(store, head_before).await;
    assert_eq!(ours.len(), appended, "every appended event is readable");
    let first = ours[0].position;
    let last = ours[ours.len() - 1].position;

    let bulk_whole = parsed(
        store
            .read_all_bulk(first, EVERYTHING)
            .await
            .expect("read_all_bulk should succeed"),
    );
    assert_eq!(
        bulk_whole, ours,
        "a bulk read of the whole range equals read_all"
    );
    let payloads_read: Vec<&serde_json::Value> =
        bulk_whole.iter().map(|event| &event.payload).collect();
    assert!(
        payloads
            .iter()
            .all(|payload| payloads_read.contains(&payload)),
        "every unusual payload comes back as it was appended"
    );

    let mut starts: Vec<u64> = ours.iter().map(|event| event.position).collect();
    starts.extend([last + 1, last + 1000]);
    for from in starts {
        for limit in [0, 1, 2, 3, 5, 8, EVERYTHING] {
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
                bulk, expected,
                "read_all_bulk({from}, {limit}) equals read_all({from}, {limit})"
            );
        }
    }

    for limit in [1, 2, 3, 4, 7] {
        let mut paged = Vec::new();
        let mut from = first;
        loop {
            let page = parsed(
                store
                    .read_all_bulk(from, limit)
                    .await
                    .expect("read_all_bulk should succeed"),
            );
            let Some(page_last) = page.last().map(|event| event.position) else {
                break;
            };
            paged.extend(page);
            from = page_last + 1;
        }
        assert_eq!(
            paged, ours,
            "paging read_all_bulk by {limit} reads the log once, in order"
        );
    }
}

/// `read_all` returns the whole log in position order, keeps append order, pages by position
/// and ends at the head.
pub async fn read_all_is_in_position_order(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let head_before = head(store).await;
    let streams = [
        fresh_stream("complaint"),
        fresh_stream("visit"),
        fresh_stream("contractor"),
    ];
    let mut appended_ids = Vec::new();
    for round in 0..3 {
        for stream in &streams {
            let events = numbered_events(round + 1);
            appended_ids.extend(events.iter().map(|event| event.event_id));
            append_ok(store, stream, ExpectedVersion::Any, events).await;
        }
    }
    let head_after = head(store).await;

    let whole_log = store
        .read_all(1, EVERYTHING)
        .await
        .expect("read_all should succeed");
    assert_strictly_increasing(&positions(&whole_log), "the whole log");
    assert_eq!(
        whole_log.last().map(|event| event.position),
        Some(head_after),
        "the log ends at the head"
    );

    let ours = events_after(store, head_before).await;
    assert_eq!(event_ids(&ours), appended_ids, "the log keeps append order");

    let page = store
        .read_all(ours[1].position, 3)
        .await
        .expect("read_all should succeed");
    assert_eq!(
        positions(&page),
        positions(&ours[1..4]),
        "from_position is inclusive and limit caps the count"
    );
    let between = store
        .read_all(ours[1].position + 1, 1)
        .await
        .expect("read_all should succeed");
    assert_eq!(
        positions(&between),
        vec![ours[2].position],
        "a from_position past one event starts at the next"
    );
    let from_zero = store
        .read_all(0, 1)
        .await
        .expect("read_all from 0 should succeed");
    assert_eq!(
        positions(&from_zero),
        positions(&whole_log[..1]),
        "from 0 starts at the first event"
    );
    assert!(
        events_after(store, head_after).await.is_empty(),
        "past the head is empty"
    );
}

/// For backends with gap-free positions: the log numbers its events 1, 2, 3, ... with no gap,
/// each append lands right after the head, and neither refused nor concurrent appends leave a
/// hole.
pub async fn positions_are_gap_free_from_one(store: Arc<dyn EventStore>) {
    const TASKS: usize = 30;
    let head_before = head(store.as_ref()).await;
    let stream = fresh_stream("complaint");

    let first = append_numbered(store.as_ref(), &stream, ExpectedVersion::NoStream, 2).await;
    assert_eq!(
        first.position,
        head_before + 2,
        "an append lands right after the head"
    );
    let refused = store
        .append(&stream, ExpectedVersion::NoStream, numbered_events(1))
        .await;
    assert_version_conflict(refused, &stream, ExpectedVersion::NoStream, 2);
    let second = append_numbered(store.as_ref(), &stream, ExpectedVersion::Exact(2), 1).await;
    assert_eq!(
        second.position,
        head_before + 3,
        "a refused append leaves no gap"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for task_index in 0..TASKS {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        tasks.spawn(async move {
            if task_index % 3 == 0 {
                // Stale: refused.
                let _ = store
                    .append(&stream, ExpectedVersion::Exact(0), numbered_events(2))
                    .await;
            } else {
                append_ok(
                    store.as_ref(),
                    &fresh_stream("visit"),
                    ExpectedVersion::NoStream,
                    numbered_events(task_index % 2 + 1),
                )
                .await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an appending task panicked");
    }

    let head_after = head(store.as_ref()).await;
    let whole_log = store
        .read_all(1, EVERYTHING)
        .await
        .expect("read_all should succeed");
    assert_eq!(
        positions(&whole_log),
        (1..=head_after).collect::<Vec<_>>(),
        "the log is gap-free from 1"
    );
}

/// `find_event` returns exactly what the reads return, and `None` for an unknown id.
pub async fn find_event_returns_the_recorded_event(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let events = numbered_events(3);
    let wanted_id = events[1].event_id;
    append_ok(store, &stream, ExpectedVersion::NoStream, events).await;

    let found = store
        .find_event(wanted_id)
        .await
        .expect("find_event should succeed")
        .expect("a stored event should be found");

    let from_stream = whole_stream(store, &stream).await;
    assert_eq!(found, from_stream[1], "find_event agrees with read_stream");
    assert_eq!(found.version, 2);
    let missing = store
        .find_event(Uuid::now_v7())
        .await
        .expect("find_event of an unknown id should succeed");
    assert!(missing.is_none(), "an unknown id is not found");
}

/// The head moves with every append, and `watch_head` tells followers without polling.
pub async fn head_position_and_watch_head_advance(store: Arc<dyn EventStore>) {
    let head_before = head(store.as_ref()).await;
    let mut follower = store.watch_head();
    let stream = fresh_stream("complaint");

    let first = append_numbered(store.as_ref(), &stream, ExpectedVersion::Any, 3).await;
    assert!(
        first.position > head_before + 2,
        "three events land past the head"
    );
    assert_eq!(
        head(store.as_ref()).await,
        first.position,
        "head_position is the last position"
    );
    tokio::time::timeout(PATIENCE, follower.wait_for(|seen| *seen >= first.position))
        .await
        .expect("watch_head should reach the new head in time")
        .expect("watch_head should stay open while the store is open");

    // A follower that waits before the append is woken by it.
    let mut waiting_follower = store.watch_head();
    waiting_follower.mark_unchanged();
    let waiter = tokio::spawn(async move {
        waiting_follower
            .changed()
            .await
            .expect("watch_head should stay open while the store is open");
        *waiting_follower.borrow()
    });
    let second = append_numbered(store.as_ref(), &stream, ExpectedVersion::Any, 1).await;
    let seen = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("a waiting follower should be woken in time")
        .expect("the follower task should not panic");
    assert!(seen > first.position, "the follower sees a later head");
    assert!(
        seen <= second.position,
        "the follower never sees past the head"
    );
}

/// A reader that has processed up to a position learns how many events it has still to read.
pub async fn count_after_counts_the_readable_events_past_a_position(store: Arc<dyn EventStore>) {
    let head_before = head(store.as_ref()).await;
    let stream = fresh_stream("complaint");
    let first = append_numbered(store.as_ref(), &stream, ExpectedVersion::Any, 3).await;
    append_numbered(
        store.as_ref(),
        &fresh_stream("complaint"),
        ExpectedVersion::Any,
        2,
    )
    .await;
    let count = |position| {
        let store = store.clone();
        async move {
            store
                .count_after(position)
                .await
                .expect("count_after should answer")
        }
    };
    assert_eq!(
        count(head_before).await,
        5,
        "five events after the old head"
    );
    assert_eq!(
        count(first.position).await,
        2,
        "two after the first append's last"
    );
    assert_eq!(
        count(head(store.as_ref()).await).await,
        0,
        "none after the head"
    );
}

/// Many tasks appending at once, some to one shared stream, lose nothing and store nothing
/// twice, and the log stays in order.
pub async fn concurrent_appends_are_each_stored_exactly_once(store: Arc<dyn EventStore>) {
    const TASKS: usize = 60;
    let head_before = head(store.as_ref()).await;
    let shared_stream = fresh_stream("programme");

    let mut tasks = tokio::task::JoinSet::new();
    for task_index in 0..TASKS {
        let store = Arc::clone(&store);
        let shared_stream = shared_stream.clone();
        tasks.spawn(async move {
            let mut appended = Vec::new();
            if task_index % 3 == 0 {
                let events = numbered_events(2);
                appended.extend(events.iter().map(|event| event.event_id));
                append_ok(store.as_ref(), &shared_stream, ExpectedVersion::Any, events).await;
            } else {
                let own_stream = fresh_stream("complaint");
                let first = numbered_events(1);
                let second = numbered_events(1);
                appended.extend(first.iter().chain(&second).map(|event| event.event_id));
                append_ok(
                    store.as_ref(),
                    &own_stream,
                    ExpectedVersion::NoStream,
                    first,
                )
                .await;
                append_ok(
                    store.as_ref(),
                    &own_stream,
                    ExpectedVersion::Exact(1),
                    second,
                )
                .await;
            }
            appended
        });
    }
    let mut appended_ids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        appended_ids.extend(joined.expect("an appending task panicked"));
    }

    let stored = events_after(store.as_ref(), head_before).await;
    assert_strictly_increasing(&positions(&stored), "concurrent appends");
    assert_eq!(
        stored.len(),
        appended_ids.len(),
        "every event is stored once"
    );
    assert_eq!(
        stored.last().map(|event| event.position),
        Some(head(store.as_ref()).await),
        "the log ends at the head"
    );
    let stored_ids: HashSet<Uuid> = event_ids(&stored).into_iter().collect();
    assert_eq!(stored_ids.len(), stored.len(), "no event is stored twice");
    assert_eq!(stored_ids, appended_ids, "every appended event is stored");

    assert_versions_gap_free_per_stream(&stored);
}

/// Appends of many sizes (one event to two hundred), alone and many at once, each stored whole:
/// every event at its version, with its own payload, in the order appended, at consecutive
/// positions (a batching writer must not interleave appends it commits together); and the log in
/// position order. The sizes straddle powers of two, where a writer that splits a batch into
/// statements of fixed sizes would cut an append.
pub async fn appends_of_every_size_are_stored_whole_and_in_order(store: Arc<dyn EventStore>) {
    const SIZES: [usize; 12] = [1, 2, 3, 7, 31, 63, 64, 65, 100, 127, 128, 200];
    let head_before = head(store.as_ref()).await;
    let mut expected: Vec<(StreamId, usize)> = Vec::new();
    let alone = fresh_stream("programme");
    append_numbered(store.as_ref(), &alone, ExpectedVersion::NoStream, 200).await;
    expected.push((alone, 200));

    let barrier = Arc::new(Barrier::new(SIZES.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for size in SIZES {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            let stream = fresh_stream("programme");
            barrier.wait().await;
            append_numbered(store.as_ref(), &stream, ExpectedVersion::NoStream, size).await;
            (stream, size)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        expected.push(joined.expect("an appending task panicked"));
    }

    for (stream, size) in &expected {
        let stored = whole_stream(store.as_ref(), stream).await;
        let indexes: Vec<Option<u64>> = stored
            .iter()
            .map(|event| event.payload["index"].as_u64())
            .collect();
        let appended: Vec<Option<u64>> = (0..*size).map(|index| Some(index as u64)).collect();
        assert_eq!(
            indexes, appended,
            "{stream}: every event of {size}, in order"
        );
        assert_eq!(
            stored.iter().map(|event| event.version).collect::<Vec<_>>(),
            (1..=*size as u64).collect::<Vec<_>>(),
            "{stream}: versions 1 to {size}"
        );
        let positions = positions(&stored);
        assert!(
            positions.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{stream}: one append's events are at consecutive positions, got {positions:?}"
        );
    }
    let stored = events_after(store.as_ref(), head_before).await;
    let total: usize = expected.iter().map(|(_, size)| size).sum();
    assert_eq!(stored.len(), total, "every event is stored once");
    assert_strictly_increasing(&positions(&stored), "the log");
}

/// Many tasks racing to extend one stream from the same version: exactly one wins each round,
/// and every loser learns the version that won, so no update is lost.
pub async fn concurrent_exact_appends_have_one_winner_per_version(store: Arc<dyn EventStore>) {
    const TASKS: usize = 16;
    const ROUNDS: u64 = 8;
    let stream = fresh_stream("complaint");
    let barrier = Arc::new(Barrier::new(TASKS));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                // Every task has finished the previous round once all have reached the barrier,
                // so the stream is at exactly `round` here.
                barrier.wait().await;
                let event = new_event("Raced", json!({ "round": round }));
                let event_id = event.event_id;
                let expected = ExpectedVersion::Exact(round);
                match store.append(&stream, expected, vec![event]).await {
                    Ok(outcome) => {
                        assert_eq!(
                            outcome.version,
                            round + 1,
                            "a winner lands on the next version"
                        );
                        wins.push((outcome.version, event_id));
                    }
                    Err(error) => {
                        assert_version_conflict(Err(error), &stream, expected, round + 1);
                    }
                }
            }
            wins
        });
    }
    let winners_by_version = winners_by_version(tasks).await;

    let stored = whole_stream(store.as_ref(), &stream).await;
    assert_eq!(versions(&stored), (1..=ROUNDS).collect::<Vec<_>>());
    assert_one_winner_per_version(&winners_by_version, &stored);
}

/// Appends that are refused while others are being written at the same moment leave no trace,
/// and the others are written in full.
pub async fn refused_appends_do_not_disturb_concurrent_ones(store: Arc<dyn EventStore>) {
    const TASKS: usize = 40;
    let contested = fresh_stream("complaint");
    append_numbered(store.as_ref(), &contested, ExpectedVersion::NoStream, 1).await;
    let already_stored = new_event("AlreadyStored", json!({}));
    append_ok(
        store.as_ref(),
        &contested,
        ExpectedVersion::Any,
        vec![already_stored.clone()],
    )
    .await;
    let head_before = head(store.as_ref()).await;

    let mut tasks = tokio::task::JoinSet::new();
    for task_index in 0..TASKS {
        let store = Arc::clone(&store);
        let contested = contested.clone();
        let already_stored = already_stored.clone();
        tasks.spawn(async move {
            let events = numbered_events(2);
            let result = match task_index % 4 {
                0 => {
                    store
                        .append(&contested, ExpectedVersion::Exact(0), events.clone())
                        .await
                }
                1 => {
                    let clash = vec![events[0].clone(), already_stored];
                    store.append(&contested, ExpectedVersion::Any, clash).await
                }
                _ => {
                    let own_stream = fresh_stream("visit");
                    store
                        .append(&own_stream, ExpectedVersion::NoStream, events.clone())
                        .await
                }
            };
            (task_index, events, result)
        });
    }
    let mut written_ids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (task_index, events, result) = joined.expect("an appending task panicked");
        match task_index % 4 {
            0 => assert!(
                matches!(result, Err(StoreError::VersionConflict { actual: 2, .. })),
                "a stale Exact(0) should conflict at version 2, got {result:?}"
            ),
            1 => assert!(
                matches!(result, Err(StoreError::DuplicateEventId { .. })),
                "a partially stored append should be a duplicate, got {result:?}"
            ),
            _ => {
                let outcome = result.expect("an append to its own stream should succeed");
                assert_eq!(outcome.version, 2);
                written_ids.extend(events.iter().map(|event| event.event_id));
            }
        }
    }

    let stored = events_after(store.as_ref(), head_before).await;
    assert_strictly_increasing(&positions(&stored), "appends beside refusals");
    assert_eq!(
        stored.len(),
        written_ids.len(),
        "refusals leave nothing behind"
    );
    let stored_ids: HashSet<Uuid> = event_ids(&stored).into_iter().collect();
    assert_eq!(
        stored_ids, written_ids,
        "exactly the accepted appends are stored"
    );
    assert_eq!(whole_stream(store.as_ref(), &contested).await.len(), 2);
}

/// Every field of an event reads back exactly as it was appended, whichever read is used, and
/// `recorded_at` is the time of the append.
pub async fn event_fields_round_trip(store: Arc<dyn EventStore>) {
    let store = store.as_ref();
    let stream = fresh_stream("complaint");
    let full_metadata = EventMetadata {
        actor: "officer:ada".to_owned(),
        causation_id: Some(Uuid::now_v7()),
        correlation_id: Some(Uuid::new_v4()),
        request_id: Some("req-42".to_owned()),
        source_channel: "phone".to_owned(),
        command_fingerprint: Some("sha256:0123abcd".to_owned()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        span_id: Some("00f067aa0ba902b7".to_owned()),
    };
    let rich_payload = json!({
        "summary": "Gate left open — dog escaped 🐕",
        "standards": ["GATES_SECURED", "COURTESY"],
        "nested": { "empty_object": {}, "empty_list": [], "nothing": null, "flag": true },
        "numbers": { "negative": -17, "float": 0.1, "large": 18_446_744_073_709_551_615_u64 },
        "quote\"and\\backslash": "line\nbreak\ttab",
    });
    let appended = vec![
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ComplaintLogged".to_owned(),
            schema_version: 7,
            payload: rich_payload,
            metadata: full_metadata,
        },
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "ComplaintAcknowledged".to_owned(),
            schema_version: 0,
            payload: json!("just a string"),
            metadata: test_metadata(),
        },
    ];
    let before = Utc::now();
    append_ok(store, &stream, ExpectedVersion::NoStream, appended.clone()).await;
    let after = Utc::now();

    let from_stream = whole_stream(store, &stream).await;
    assert_eq!(from_stream.len(), appended.len());
    for (recorded, original) in from_stream.iter().zip(&appended) {
        assert_eq!(recorded.stream_id, stream);
        assert_eq!(recorded.event_id, original.event_id);
        assert_eq!(recorded.event_type, original.event_type);
        assert_eq!(recorded.schema_version, original.schema_version);
        assert_eq!(
            recorded.payload, original.payload,
            "the payload round-trips"
        );
        assert_eq!(
            recorded.metadata, original.metadata,
            "the metadata round-trips"
        );
        // Backends may keep less than nanoseconds; a millisecond of slack covers truncation.
        let slack = chrono::TimeDelta::milliseconds(1);
        assert!(
            recorded.recorded_at >= before - slack && recorded.recorded_at <= after + slack,
            "recorded_at {} should lie between {before} and {after}",
            recorded.recorded_at
        );

        let found = store
            .find_event(original.event_id)
            .await
            .expect("find_event should succeed")
            .expect("the event should be found");
        assert_eq!(
            &found, recorded,
            "find_event returns the same event, to the microsecond"
        );
        let from_log = store
            .read_all(recorded.position, 1)
            .await
            .expect("read_all should succeed");
        assert_eq!(
            from_log.first(),
            Some(recorded),
            "read_all returns the same event"
        );
    }
}
