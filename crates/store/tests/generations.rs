//! The registry of read-model generations, on both backends: an upgraded database serves
//! generation 0; a rebuild registers the next one as building (or finds the one a stopped rebuild
//! left, to resume it), reports its progress, and makes it live in one step that retires the old
//! one; each running server records the generation it serves.

use chrono::{DateTime, Duration, Utc};
use doorstep_store::{
    GenerationRegistry, GenerationState, PostgresEventStore, PostgresSettings, RunningServer,
    ServerRegistry, SqliteEventStore, SqliteSettings,
};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

async fn generations_are_built_resumed_and_switched<S>(store: &S)
where
    S: GenerationRegistry + ServerRegistry,
{
    let start = at("2026-12-05T10:00:00.123456Z");
    assert_eq!(store.live_generation().await.expect("read"), 0);

    let (building, resumed) = store.begin_building(start).await.expect("begun");
    assert_eq!((building.generation, resumed), (1, false));
    assert_eq!(building.state, GenerationState::Building);
    // A second rebuild (or the same one run again after a crash) finds it: it resumes.
    let (again, resumed) = store
        .begin_building(start + Duration::seconds(5))
        .await
        .expect("found");
    assert_eq!((again.generation, resumed), (1, true));
    assert_eq!(again.started_at, start, "it is the same build");

    assert!(
        store
            .report_progress(1, 500, 1_600, 4_000.5)
            .await
            .expect("reported")
    );
    let current = store.current_generations().await.expect("listed");
    assert_eq!(current.len(), 2, "{current:?}");
    assert_eq!(current[0].state, GenerationState::Live);
    assert_eq!(
        (
            current[1].position,
            current[1].target,
            current[1].events_per_second
        ),
        (500, 1_600, 4_000.5)
    );
    assert_eq!(
        store.live_generation().await.expect("read"),
        0,
        "still serving 0"
    );

    let switched_at = start + Duration::seconds(60);
    assert_eq!(
        store.switch_live(1, switched_at).await.expect("switched"),
        0
    );
    assert_eq!(store.live_generation().await.expect("read"), 1);
    let current = store.current_generations().await.expect("listed");
    assert_eq!(current.len(), 1, "generation 0 is retired: {current:?}");
    assert_eq!(current[0].switched_at, Some(switched_at));
    assert!(
        !store
            .report_progress(1, 1_600, 1_600, 0.0)
            .await
            .expect("asked"),
        "a live generation takes no progress reports"
    );
    assert!(
        store.switch_live(1, switched_at).await.is_err(),
        "only a building generation goes live"
    );

    // The next build is generation 2; discarded, it never goes live, and the next is 3.
    let (next, _) = store.begin_building(switched_at).await.expect("begun");
    assert_eq!(next.generation, 2);
    store.discard_building(2).await.expect("discarded");
    let (next, resumed) = store.begin_building(switched_at).await.expect("begun");
    assert_eq!((next.generation, resumed), (3, false));
    assert_eq!(store.live_generation().await.expect("read"), 1);

    // Servers record what they serve; an expired row is not counted.
    let server = RunningServer {
        server_id: "server-1".to_owned(),
        host: "host-a".to_owned(),
        pid: 4242,
        address: "127.0.0.1:50051".to_owned(),
        role: "all".to_owned(),
        started_at: start,
        heartbeat_at: start,
        expires_at: start + Duration::seconds(30),
    };
    store.register(&server).await.expect("registered");
    assert_eq!(
        store.serving_generations(start).await.expect("listed"),
        vec![("server-1".to_owned(), 0)]
    );
    store
        .set_serving_generation("server-1", 1)
        .await
        .expect("recorded");
    assert_eq!(
        store.serving_generations(start).await.expect("listed"),
        vec![("server-1".to_owned(), 1)]
    );
    assert_eq!(
        store
            .serving_generations(start + Duration::seconds(31))
            .await
            .expect("listed"),
        Vec::new()
    );
}

#[tokio::test]
async fn sqlite_generations() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteEventStore::open(SqliteSettings::new(directory.path().join("events.db")))
        .await
        .expect("the store opens");
    generations_are_built_resumed_and_switched(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_generations() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let store = PostgresEventStore::open(PostgresSettings::new(database.url()))
        .await
        .expect("the store opens");
    generations_are_built_resumed_and_switched(&store).await;
    store.close().await;
}
