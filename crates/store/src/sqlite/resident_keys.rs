//! Resident keys on SQLite. Every write holds [`SqliteEventStore::exclusive_write`] for its
//! transaction, so it queues behind the event writer's batch instead of polling for the file's
//! write lock; erasure and rotation end by checkpointing and truncating the WAL.

use crate::SqliteEventStore;
use crate::lease::{LeaseError, ServerLease};
use crate::resident_keys::queries::{
    SQLITE_COMMIT_WITH_FLUSH, SQLITE_COMMIT_WITHOUT_FLUSH, sqlite as queries,
};
use crate::resident_keys::{
    ResidentKeyError, Rewrap, RewrapError, impl_resident_key_store, rewrapped,
};

impl_resident_key_store!(SqliteEventStore, crate::resident_keys::queries::sqlite, {
    async fn append_with_new_key(
        &self,
        stream: &crate::StreamId,
        expected: crate::ExpectedVersion,
        events: Vec<crate::NewEvent>,
        key: crate::NewResidentKey,
    ) -> Result<crate::AppendOutcome, crate::StoreError> {
        // The writer stores the key in the batch's transaction, before its events.
        crate::precheck::validate_append(&events)?;
        crate::writer_queue::submit(
            &self.shared.appends,
            "sqlite",
            stream,
            expected,
            events,
            Some(key),
        )
        .await
    }

    async fn insert_keys(
        &self,
        rows: &[(String, String)],
        generation: u32,
    ) -> Result<Vec<String>, ResidentKeyError> {
        let _writing = self.exclusive_write().await;
        let mut connection = self.pool().acquire().await?;
        sqlx::raw_sql(SQLITE_COMMIT_WITHOUT_FLUSH)
            .execute(&mut *connection)
            .await?;
        let inserted = queries::insert_keys(&mut connection, rows, generation).await;
        // The pool's other users expect every commit to wait for the disk; a connection that
        // cannot be set back is closed rather than lent out again.
        if sqlx::raw_sql(SQLITE_COMMIT_WITH_FLUSH)
            .execute(&mut *connection)
            .await
            .is_err()
        {
            connection.close_on_drop();
        }
        inserted
    }

    async fn forget(&self, reference: &str) -> Result<bool, ResidentKeyError> {
        let deleted = {
            let _writing = self.exclusive_write().await;
            let mut transaction = self.pool().begin().await?;
            let deleted = queries::delete_and_record(&mut transaction, reference).await?;
            transaction.commit().await?;
            deleted
        };
        truncate_wal(self).await?;
        Ok(deleted)
    }

    async fn rewrap_all(&self, target: u32, rewrap: &Rewrap<'_>) -> Result<u64, RewrapError> {
        let moved = {
            let _writing = self.exclusive_write().await;
            let mut transaction = self.pool().begin().await?;
            let keys = queries::keys_to_rewrap(&mut transaction, target, false).await?;
            let updates = rewrapped(&keys, rewrap)?;
            queries::update_keys(&mut transaction, &updates, target).await?;
            transaction.commit().await?;
            updates.len() as u64
        };
        truncate_wal(self).await?;
        Ok(moved)
    }

    async fn server_lease(&self) -> Result<ServerLease, LeaseError> {
        ServerLease::sqlite_shared(self.path())
    }

    fn shared_by_replicas(&self) -> bool {
        false
    }
});

/// Checkpoints the WAL into the database file and truncates it, or fails.
async fn truncate_wal(store: &SqliteEventStore) -> Result<(), ResidentKeyError> {
    let truncated = store
        .checkpoint_and_truncate_wal()
        .await
        .map_err(|error| match error {
            crate::StoreError::Database(error) => ResidentKeyError::Database(error),
            crate::StoreError::Closed => ResidentKeyError::Closed,
            other => ResidentKeyError::Corrupt(other.to_string()),
        })?;
    if truncated {
        Ok(())
    } else {
        Err(ResidentKeyError::WalNotTruncated)
    }
}
