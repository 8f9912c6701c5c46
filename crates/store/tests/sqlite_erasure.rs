//! What the SQLite store leaves on disk: a deleted row is in neither the database file nor its
//! WAL once `checkpoint_and_truncate_wal` has run, and the store's directory and file are its
//! owner's alone.

use doorstep_store::{SqliteEventStore, SqliteSettings};

const SECRET: &str = "wrapped-key-that-must-not-survive-0123456789";

/// Whether any file in `directory` holds `needle`.
fn on_disk(directory: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(directory)
        .expect("the directory lists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.is_file())
        .any(|path| {
            let bytes = std::fs::read(&path).expect("a readable file");
            bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
}

#[tokio::test]
async fn a_deleted_row_is_overwritten_and_the_wal_truncated() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let data = directory.path().join("data");
    let database = data.join("log.db");
    let store = SqliteEventStore::open(SqliteSettings::new(&database))
        .await
        .expect("the store opens");
    sqlx::raw_sql("CREATE TABLE secrets (value TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("a table");
    for n in 0..20 {
        sqlx::query("INSERT INTO secrets (value) VALUES (?1)")
            .bind(format!("{SECRET}-{n}"))
            .execute(store.pool())
            .await
            .expect("inserted");
    }
    // Checkpointed into the database file, as a long-running server's rows are.
    assert!(
        store
            .checkpoint_and_truncate_wal()
            .await
            .expect("checkpointed")
    );
    assert!(on_disk(&data, SECRET));

    sqlx::query("DELETE FROM secrets")
        .execute(store.pool())
        .await
        .expect("deleted");
    assert!(
        store
            .checkpoint_and_truncate_wal()
            .await
            .expect("checkpointed")
    );
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    assert_eq!(
        std::fs::metadata(&wal).map(|metadata| metadata.len()).ok(),
        Some(0),
        "the WAL is truncated"
    );
    assert!(
        !on_disk(&data, SECRET),
        "the deleted rows are overwritten in the database file"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| {
            std::fs::metadata(path)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&database), 0o600);
        assert_eq!(mode(std::path::Path::new(&wal)), 0o600);
    }
    store.close().await;
}
