//! The registry of running servers, on both backends: a server registers itself, renews its row,
//! and removes it on a clean stop; a row whose expiry has passed (a server that crashed) is not
//! listed, so it never blocks maintenance for long. Times are passed in, so expiry is driven by
//! the test rather than waited for.

use chrono::{DateTime, Duration, Utc};
use doorstep_store::{
    PostgresEventStore, PostgresSettings, RunningServer, ServerRegistry, SqliteEventStore,
    SqliteSettings,
};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

fn server(id: &str, started: DateTime<Utc>) -> RunningServer {
    RunningServer {
        server_id: id.to_owned(),
        host: "host-a".to_owned(),
        pid: 4242,
        address: "127.0.0.1:50051".to_owned(),
        role: "all".to_owned(),
        started_at: started,
        heartbeat_at: started,
        expires_at: started + Duration::seconds(30),
    }
}

async fn the_registry_follows_servers_and_forgets_crashed_ones(registry: &dyn ServerRegistry) {
    let start = at("2026-12-05T10:00:00.123456Z");
    assert_eq!(registry.running(start).await.expect("listed"), Vec::new());

    let first = server("server-1", start);
    registry.register(&first).await.expect("registered");
    let second = server("server-2", start + Duration::seconds(1));
    registry.register(&second).await.expect("registered");
    assert_eq!(
        registry.running(start).await.expect("listed"),
        vec![first.clone(), second.clone()],
        "every field read back as written, oldest first"
    );

    // The first renews its row; the second stops renewing (it crashed).
    let later = start + Duration::seconds(25);
    assert!(
        registry
            .heartbeat("server-1", later, later + Duration::seconds(30))
            .await
            .expect("renewed")
    );
    let after_expiry = start + Duration::seconds(40);
    let running = registry.running(after_expiry).await.expect("listed");
    assert_eq!(
        running
            .iter()
            .map(|s| s.server_id.as_str())
            .collect::<Vec<_>>(),
        vec!["server-1"],
        "the crashed server's row has expired"
    );
    assert_eq!(running[0].heartbeat_at, later);

    registry.deregister("server-1").await.expect("removed");
    assert_eq!(registry.running(start).await.expect("listed").len(), 1);
    assert!(
        !registry
            .heartbeat("server-1", later, later)
            .await
            .expect("a heartbeat of a removed row"),
        "a removed row is not renewed"
    );
    // Registering again replaces the row.
    registry.register(&second).await.expect("registered again");
    assert_eq!(registry.running(start).await.expect("listed"), vec![second]);
}

#[tokio::test]
async fn sqlite_registry() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteEventStore::open(SqliteSettings::new(directory.path().join("events.db")))
        .await
        .expect("the store opens");
    the_registry_follows_servers_and_forgets_crashed_ones(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_registry() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let store = PostgresEventStore::open(PostgresSettings::new(database.url()))
        .await
        .expect("the store opens");
    the_registry_follows_servers_and_forgets_crashed_ones(&store).await;
    store.close().await;
}
