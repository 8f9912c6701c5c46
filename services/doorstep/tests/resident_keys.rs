//! The resident key store's batch insert on both backends: one statement stores a batch of new
//! keys, the first row of a resident wins over a later one in the same batch, a resident who has
//! a key keeps it, and the statement says which rows it stored. On SQLite the batch commits
//! without a flush of its own, and must leave the pool's connections flushing every commit. Each
//! key records its master key generation, and a rotation's re-wrap moves every key or none.

use doorstep_server::privacy::keys::{KeyDatabase, RewrapError, WrappedKey};
use doorstep_store::{PostgresEventStore, PostgresSettings, SqliteEventStore, SqliteSettings};

fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(reference, key)| ((*reference).to_owned(), (*key).to_owned()))
        .collect()
}

async fn first_row_wins_and_existing_keys_stay(keys: KeyDatabase) {
    let mut inserted = keys
        .insert_keys(
            &rows(&[("a", "key-a1"), ("b", "key-b"), ("a", "key-a2")]),
            1,
        )
        .await
        .expect("the batch is stored");
    inserted.sort();
    assert_eq!(inserted, ["a", "b"], "each reference reported once");
    assert_eq!(
        keys.wrapped_key("a").await.expect("readable"),
        Some(wrapped("key-a1", 1)),
        "the first row of a resident in the batch is the one stored"
    );

    let inserted = keys
        .insert_keys(&rows(&[("a", "key-a3"), ("c", "key-c")]), 2)
        .await
        .expect("the second batch is stored");
    assert_eq!(inserted, ["c"], "a resident with a key keeps it");
    assert_eq!(
        keys.wrapped_key("a").await.expect("readable"),
        Some(wrapped("key-a1", 1))
    );
    assert_eq!(
        keys.wrapped_key("c").await.expect("readable"),
        Some(wrapped("key-c", 2)),
        "each key records the master key generation that wraps it"
    );
    assert_eq!(keys.key_count().await.expect("countable"), 3);
    assert_eq!(keys.generations_in_use().await.expect("readable"), [1, 2]);

    // A re-wrap moves every key or none: one that fails leaves them all as they were.
    let failed = keys
        .rewrap_all(3, |row| {
            if row.reference == "c" {
                Err(RewrapError::Unopenable {
                    reference: row.reference.clone(),
                    generation: row.key.generation,
                })
            } else {
                Ok(format!("{}-rewrapped", row.key.wrapped))
            }
        })
        .await;
    assert!(matches!(failed, Err(RewrapError::Unopenable { .. })));
    assert_eq!(keys.generations_in_use().await.expect("readable"), [1, 2]);
    assert_eq!(
        keys.wrapped_key("a").await.expect("readable"),
        Some(wrapped("key-a1", 1))
    );
    let moved = keys
        .rewrap_all(3, |row| Ok(format!("{}-rewrapped", row.key.wrapped)))
        .await
        .expect("the re-wrap commits");
    assert_eq!(moved, 3);
    assert_eq!(keys.generations_in_use().await.expect("readable"), [3]);
    assert_eq!(
        keys.wrapped_key("b").await.expect("readable"),
        Some(wrapped("key-b-rewrapped", 3))
    );
}

fn wrapped(key: &str, generation: u32) -> WrappedKey {
    WrappedKey {
        wrapped: key.to_owned(),
        generation,
    }
}

#[tokio::test]
async fn sqlite_batch_inserts_keep_the_first_key_per_resident() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteEventStore::open(SqliteSettings::new(directory.path().join("log.db")))
        .await
        .expect("the store opens");
    first_row_wins_and_existing_keys_stay(KeyDatabase::Sqlite(store.clone())).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_batch_inserts_keep_the_first_key_per_resident() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let store = PostgresEventStore::open(PostgresSettings::new(database.url().to_owned()))
        .await
        .expect("the store opens");
    first_row_wins_and_existing_keys_stay(KeyDatabase::Postgres(store.pool().clone())).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_key_batches_leave_every_pooled_connection_flushing_its_commits() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let settings = SqliteSettings::new(directory.path().join("log.db"));
    let pool_size = settings.read_pool_size;
    let store = SqliteEventStore::open(settings)
        .await
        .expect("the store opens");
    let keys = KeyDatabase::Sqlite(store.clone());
    let batches = (0..16).map(|batch| {
        let keys = keys.clone();
        async move {
            let rows = rows(&[(&format!("resident-{batch}"), "wrapped")]);
            keys.insert_keys(&rows, 1)
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
