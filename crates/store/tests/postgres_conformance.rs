//! The PostgreSQL event store against the backend-neutral conformance suite, then the guarantees
//! only the PostgreSQL backend makes: durability across reopening, append-only triggers, group
//! commit, readers that can never skip an event committed late, and several processes
//! ("replicas") writing one database.
//!
//! Each test gets a fresh database from `doorstep_test_postgres`; without PostgreSQL the tests
//! return at once, after the harness has said so loudly (`DOORSTEP_REQUIRE_POSTGRES=1` makes that
//! a failure instead).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use doorstep_store::conformance::lifecycle::{StoreHarness, spawn_appends};
use doorstep_store::conformance::{
    assert_one_winner_per_version, assert_refused_as_append_only, assert_strictly_increasing,
    assert_versions_gap_free_per_stream, fresh_stream as stream, numbered_event as event,
    positions, winners_by_version,
};
use doorstep_store::{
    EventStore, ExpectedVersion, NewEvent, PostgresEventStore, PostgresSettings, RecordedEvent,
    StoreError, StreamId,
};
use doorstep_test_postgres::TestDatabase;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::Barrier;
use uuid::Uuid;

/// How long a test waits for something that should happen at once, before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// A new store on its own database. The database is left behind in the throw-away cluster.
async fn fresh_store() -> Option<(Arc<dyn EventStore>, TestDatabase)> {
    let (store, database) = fresh_postgres_store().await?;
    Some((Arc::new(store), database))
}

doorstep_store::event_store_conformance_tests!(fresh_store);
doorstep_store::event_store_lifecycle_tests!(fresh_harness);
doorstep_store::resident_key_store_conformance_tests!(fresh_harness);

/// One test database, opened as often as a check asks.
struct PostgresHarness {
    database: TestDatabase,
}

async fn fresh_harness() -> Option<PostgresHarness> {
    let database = fresh_database().await?;
    Some(PostgresHarness { database })
}

impl StoreHarness for PostgresHarness {
    type Store = PostgresEventStore;
    const GAP_FREE_POSITIONS: bool = false;

    async fn open(&self, max_batch_events: Option<usize>) -> PostgresEventStore {
        let defaults = PostgresSettings::new(self.database.url());
        let settings = PostgresSettings {
            max_batch_events: max_batch_events.unwrap_or(defaults.max_batch_events),
            ..defaults
        };
        PostgresEventStore::open(settings)
            .await
            .expect("the store should open")
    }

    fn commits(store: &PostgresEventStore) -> u64 {
        store.commits()
    }

    async fn close(store: &PostgresEventStore) {
        store.close().await;
    }

    async fn insert_undecodable_row(store: &PostgresEventStore) {
        sqlx::query(
            "INSERT INTO events (position, stream_id, version, event_id, event_type, \
             schema_version, payload, metadata, recorded_at) \
             VALUES (1, 'complaint-x', 1, gen_random_uuid(), 'Broken', 1, '{}', '{}', now())",
        )
        .execute(store.pool())
        .await
        .expect("a raw insert through the pool should succeed");
    }
}

async fn fresh_postgres_store() -> Option<(PostgresEventStore, TestDatabase)> {
    let database = fresh_database().await?;
    let store = open_store(&database).await;
    Some((store, database))
}

/// A fresh database, with the store's logs on stderr when `TEST_LOG` is set.
async fn fresh_database() -> Option<TestDatabase> {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
            .with_test_writer()
            .try_init();
    }
    doorstep_test_postgres::fresh_database().await
}

async fn open_store(database: &TestDatabase) -> PostgresEventStore {
    PostgresEventStore::open(PostgresSettings::new(database.url()))
        .await
        .expect("the store should open")
}

async fn raw_connection(database: &TestDatabase) -> PgConnection {
    PgConnection::connect(database.url())
        .await
        .expect("a raw connection to the test database should open")
}

async fn wait_for_head(store: &PostgresEventStore, position: u64, who: &str) {
    let mut head = store.watch_head();
    tokio::time::timeout(PATIENCE, head.wait_for(|seen| *seen >= position))
        .await
        .unwrap_or_else(|_| panic!("{who}'s watch_head should reach {position} in time"))
        .expect("watch_head should stay open while the store is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_refuse_update_delete_and_truncate() {
    let Some((store, _database)) = fresh_postgres_store().await else {
        return;
    };
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
    let truncate = sqlx::query("TRUNCATE events").execute(store.pool()).await;

    let refusals = vec![
        ("UPDATE", update),
        ("DELETE", delete),
        ("TRUNCATE", truncate),
    ];
    assert_refused_as_append_only(&store, refusals).await;
    store.close().await;
}

/// A batch is normally inserted by one statement; a value PostgreSQL refuses (JSONB cannot hold
/// the character U+0000) must fail its own append only, while the appends sharing its batch
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_postgres_refuses_fails_its_append_alone() {
    const APPENDS: usize = 100;
    let Some((store, _database)) = fresh_postgres_store().await else {
        return;
    };

    let mut tasks = spawn_appends(&store, APPENDS);
    let refused_stream = stream("complaint");
    let mut refused_event = event(APPENDS);
    refused_event.payload = json!({ "text": "before\u{0}after" });
    let refused = store.append(
        &refused_stream,
        ExpectedVersion::NoStream,
        vec![refused_event],
    );
    let refused = refused.await;
    let mut stored_ids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (event_id, result) = joined.expect("an appending task panicked");
        result.expect("every other append should succeed");
        stored_ids.push(event_id);
    }

    assert!(
        matches!(refused, Err(StoreError::Database(_))),
        "the refused value should fail its append, got {refused:?}"
    );
    let stored = store
        .read_all(1, APPENDS * 2)
        .await
        .expect("read_all should succeed");
    assert_eq!(stored.len(), APPENDS, "every other append is stored");
    assert!(
        stored
            .iter()
            .all(|event| stored_ids.contains(&event.event_id))
    );
    assert!(
        store
            .read_stream(&refused_stream, 1, 10)
            .await
            .expect("read_stream should succeed")
            .is_empty(),
        "nothing of the refused append is stored"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_durable_before_they_are_acknowledged() {
    let Some((store, _database)) = fresh_postgres_store().await else {
        return;
    };
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(store.pool())
        .await
        .expect("synchronous_commit should be readable");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(store.pool())
        .await
        .expect("fsync should be readable");
    assert_eq!(
        synchronous_commit, "on",
        "an acknowledged append is flushed"
    );
    assert_eq!(fsync, "on", "the test cluster really flushes");
    store.close().await;
}

/// The reason positions come from transaction ids. Another writer's transaction takes its id
/// and writes an event, then stays open while this store appends and commits younger
/// transactions. A reader must not see the younger events yet: had it checkpointed past them,
/// it would never see the older transaction's event once that commits. Once it commits, the
/// reader sees everything, in position order, the older event first, with nothing skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_an_event_appear_below_its_checkpoint() {
    let Some((store, database)) = fresh_postgres_store().await else {
        return;
    };
    let first = store
        .append(
            &stream("complaint"),
            ExpectedVersion::NoStream,
            vec![event(0)],
        )
        .await
        .expect("the first append should succeed");

    // The follower reads everything readable whenever the head moves, as a projection does, and
    // remembers every event and checkpoint it has seen.
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut head = store.watch_head();
            let mut checkpoint = 0;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            while seen.len() < 5 {
                let batch = store
                    .read_all(checkpoint + 1, 1000)
                    .await
                    .expect("the follower's read should succeed");
                for recorded in batch {
                    assert!(
                        recorded.position > checkpoint,
                        "an event appeared at {} below the checkpoint {checkpoint}",
                        recorded.position
                    );
                    checkpoint = recorded.position;
                    seen.push(recorded);
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), head.changed()).await;
            }
            seen
        })
    };

    // The other writer: raw SQL in the same position scheme, holding its transaction open.
    let mut other_writer = raw_connection(&database).await;
    sqlx::raw_sql("BEGIN")
        .execute(&mut other_writer)
        .await
        .expect("BEGIN should succeed");
    let held_event_id = Uuid::now_v7();
    let held_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (position, stream_id, version, event_id, event_type, \
         schema_version, payload, metadata, recorded_at) \
         VALUES (pg_current_xact_id()::text::bigint * 1048576, $1, 1, $2, 'Held', 1, '{}', \
                 '{\"actor\": \"other-writer\", \"source_channel\": \"grpc\"}', now()) \
         RETURNING position",
    )
    .bind(stream("visit").as_str())
    .bind(held_event_id)
    .fetch_one(&mut other_writer)
    .await
    .expect("the held insert should succeed");
    let held_position = u64::try_from(held_position).expect("positions are positive");

    let younger_events: Vec<NewEvent> = (1..=3).map(event).collect();
    let younger_ids: Vec<Uuid> = younger_events.iter().map(|event| event.event_id).collect();
    let younger_appends_sent = std::time::Instant::now();
    let younger_appends = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for younger_event in younger_events {
                // Answers wait until the events are readable (or a time limit), so these
                // appends are sent together rather than one after another.
                let store = store.clone();
                outcomes.push(tokio::spawn(async move {
                    store
                        .append(
                            &stream("complaint"),
                            ExpectedVersion::NoStream,
                            vec![younger_event],
                        )
                        .await
                }));
            }
            let mut results = Vec::new();
            for outcome in outcomes {
                results.push(outcome.await.expect("an appending task panicked"));
            }
            results
        })
    };
    // `find_event` is not checkpointed: it shows the younger events as soon as they commit.
    for event_id in &younger_ids {
        tokio::time::timeout(PATIENCE, async {
            while store
                .find_event(*event_id)
                .await
                .expect("find_event should succeed")
                .is_none()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the younger appends should commit while the older transaction is open");
    }

    let committed_positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events ORDER BY position")
            .fetch_all(store.pool())
            .await
            .expect("reading the committed positions should succeed");
    let newest_committed = committed_positions.last().copied().unwrap_or_default();
    assert!(
        u64::try_from(newest_committed).expect("positive") > held_position,
        "the younger events sit above the held event, where a naive reader would skip it"
    );
    let readable = store.read_all(1, 1000).await.expect("read_all");
    assert_eq!(
        positions(&readable),
        vec![first.position],
        "nothing above the open transaction is readable"
    );
    assert_eq!(
        store.head_position().await.expect("head"),
        first.position,
        "the head stops below the open transaction"
    );
    assert_eq!(*store.watch_head().borrow(), first.position);
    // Past a time limit an append is answered anyway (it is durable); well before it, not yet.
    if younger_appends_sent.elapsed() < Duration::from_millis(1500) {
        assert!(
            !younger_appends.is_finished(),
            "appends are answered only once their events are readable"
        );
    }

    sqlx::raw_sql("COMMIT")
        .execute(&mut other_writer)
        .await
        .expect("COMMIT should succeed");
    let outcomes = tokio::time::timeout(PATIENCE, younger_appends)
        .await
        .expect("the younger appends should be answered once the older transaction ends")
        .expect("the appending task should not panic");
    let mut newest_outcome = 0;
    for outcome in outcomes {
        let outcome = outcome.expect("every younger append should succeed");
        assert!(outcome.position > held_position);
        newest_outcome = newest_outcome.max(outcome.position);
    }
    assert!(
        store.head_position().await.expect("head") >= newest_outcome,
        "an answered append is readable"
    );

    let everything = store.read_all(1, 1000).await.expect("read_all");
    assert_strictly_increasing(&positions(&everything), "the whole log");
    assert_eq!(everything.len(), 5);
    assert_eq!(everything[0].position, first.position);
    assert_eq!(
        (everything[1].event_id, everything[1].position),
        (held_event_id, held_position),
        "the older transaction's event comes right after the first append"
    );
    let seen = tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("the follower should see every event in time")
        .expect("the follower should not panic");
    assert_eq!(
        seen, everything,
        "the follower saw every event, none skipped"
    );
    store.close().await;
}

/// Two stores on one database are two server processes: each has its own writer and no shared
/// memory. Racing each other with `Exact` versions, exactly one append wins each version, every
/// loser hears the version that won, and each store's `watch_head` learns of the other's commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_with_exact_versions_have_one_winner_per_version() {
    const TASKS_PER_REPLICA: usize = 4;
    const ROUNDS: u64 = 10;
    let Some(database) = fresh_database().await else {
        return;
    };
    let replicas = [open_store(&database).await, open_store(&database).await];
    let contested = stream("complaint");
    let barrier = Arc::new(Barrier::new(TASKS_PER_REPLICA * replicas.len()));

    let mut tasks = tokio::task::JoinSet::new();
    for replica in &replicas {
        for _ in 0..TASKS_PER_REPLICA {
            let replica = replica.clone();
            let contested = contested.clone();
            let barrier = Arc::clone(&barrier);
            tasks.spawn(async move {
                let mut wins = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let new_event = event(usize::try_from(round).unwrap_or_default());
                    let event_id = new_event.event_id;
                    let expected = ExpectedVersion::Exact(round);
                    match replica.append(&contested, expected, vec![new_event]).await {
                        Ok(outcome) => {
                            assert_eq!(outcome.version, round + 1);
                            wins.push((outcome.version, event_id));
                        }
                        Err(StoreError::VersionConflict { actual, .. }) => {
                            assert_eq!(actual, round + 1, "a loser hears the version that won")
                        }
                        Err(error) => panic!("a racing append should win or conflict: {error:?}"),
                    }
                }
                wins
            });
        }
    }
    let winners_by_version = winners_by_version(tasks).await;

    let stored = replicas[0]
        .read_stream(&contested, 0, 1000)
        .await
        .expect("read_stream");
    assert_eq!(
        stored.iter().map(|event| event.version).collect::<Vec<_>>(),
        (1..=ROUNDS).collect::<Vec<_>>(),
        "no update is lost"
    );
    assert_one_winner_per_version(&winners_by_version, &stored);
    let final_head = stored.last().expect("ten events").position;
    for (replica, name) in replicas
        .iter()
        .zip(["the first replica", "the second replica"])
    {
        wait_for_head(replica, final_head, name).await;
        assert_eq!(replica.head_position().await.expect("head"), final_head);
    }
    for replica in &replicas {
        replica.close().await;
    }
}

/// Replicas appending to the same streams in opposite orders, with `Any`, clash on versions and
/// may deadlock each other; every append still lands exactly once and every stream's versions
/// stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_appending_to_shared_streams_lose_nothing() {
    const STREAMS: usize = 4;
    const APPENDS_PER_TASK: usize = 5;
    const TASKS_PER_REPLICA: usize = 6;
    let Some(database) = fresh_database().await else {
        return;
    };
    let replicas = [open_store(&database).await, open_store(&database).await];
    let streams: Vec<StreamId> = (0..STREAMS).map(|_| stream("programme")).collect();

    let mut tasks = tokio::task::JoinSet::new();
    for (replica_index, replica) in replicas.iter().enumerate() {
        for task_index in 0..TASKS_PER_REPLICA {
            let replica = replica.clone();
            let mut order = streams.clone();
            if replica_index == 1 {
                order.reverse();
            }
            order.rotate_left(task_index % STREAMS);
            tasks.spawn(async move {
                let mut appended = Vec::new();
                for (round, target) in order.iter().cycle().take(APPENDS_PER_TASK).enumerate() {
                    let new_event = event(round);
                    appended.push(new_event.event_id);
                    replica
                        .append(target, ExpectedVersion::Any, vec![new_event])
                        .await
                        .expect("an append with Any should always land");
                }
                appended
            });
        }
    }
    let mut appended = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        appended.extend(joined.expect("an appending task panicked"));
    }

    let everything = replicas[1].read_all(1, 10_000).await.expect("read_all");
    assert_strictly_increasing(&positions(&everything), "the whole log");
    let stored: HashSet<Uuid> = everything.iter().map(|event| event.event_id).collect();
    assert_eq!(stored.len(), everything.len(), "no event is stored twice");
    assert_eq!(stored, appended, "every append landed");
    assert_versions_gap_free_per_stream(&everything);
    for replica in &replicas {
        replica.close().await;
    }
}

/// A follower on one replica is woken by an append on another, through `NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_is_woken_by_another_replicas_append() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let writer = open_store(&database).await;
    let follower = open_store(&database).await;
    let mut head = follower.watch_head();
    head.mark_unchanged();

    let outcome = writer
        .append(
            &stream("complaint"),
            ExpectedVersion::NoStream,
            vec![event(0)],
        )
        .await
        .expect("the append should succeed");

    tokio::time::timeout(PATIENCE, head.changed())
        .await
        .expect("the follower should be woken in time")
        .expect("watch_head should stay open while the store is open");
    assert_eq!(*head.borrow(), outcome.position);
    let read = follower.read_all(1, 10).await.expect("read_all");
    assert_eq!(positions(&read), vec![outcome.position]);
    writer.close().await;
    follower.close().await;
}

/// The raw positions are what the design says: the writing transaction's id times 2^20, plus
/// the event's index within that transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_transaction_ids_times_two_to_the_twenty() {
    let Some((store, _database)) = fresh_postgres_store().await else {
        return;
    };
    let first = store
        .append(
            &stream("complaint"),
            ExpectedVersion::NoStream,
            vec![event(0), event(1), event(2)],
        )
        .await
        .expect("the append should succeed");
    let second = store
        .append(
            &stream("complaint"),
            ExpectedVersion::NoStream,
            vec![event(3)],
        )
        .await
        .expect("the append should succeed");

    let transaction_id = first.position >> 20;
    assert_eq!(
        first.position & 0xF_FFFF,
        2,
        "the third event of its transaction"
    );
    let row = sqlx::query("SELECT pg_xact_status($1::text::xid8) AS status")
        .bind(transaction_id.to_string())
        .fetch_one(store.pool())
        .await
        .expect("pg_xact_status should answer");
    let status: String = row.try_get("status").expect("status is text");
    assert_eq!(
        status, "committed",
        "the position names a committed transaction"
    );
    assert!(
        second.position >> 20 > transaction_id,
        "a later batch is a later transaction"
    );
    assert_eq!(second.position & 0xF_FFFF, 0);
    store.close().await;
}
