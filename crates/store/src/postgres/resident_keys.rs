//! Resident keys on PostgreSQL, shared by every replica on the database. A rotation's
//! transaction takes the servers' lease exclusively first, so it refuses while any server runs.

use crate::PostgresEventStore;
use crate::lease::{LeaseError, ServerLease, postgres_exclusive};
use crate::resident_keys::queries::{POSTGRES_BEGIN_WITHOUT_FLUSH, postgres as queries};
use crate::resident_keys::{
    ResidentKeyError, Rewrap, RewrapError, impl_resident_key_store, rewrapped,
};

impl_resident_key_store!(
    PostgresEventStore,
    crate::resident_keys::queries::postgres,
    {
        async fn append_with_new_key(
            &self,
            stream: &crate::StreamId,
            expected: crate::ExpectedVersion,
            events: Vec<crate::NewEvent>,
            key: crate::NewResidentKey,
        ) -> Result<crate::AppendOutcome, crate::StoreError> {
            // Checked before the key is stored, so an append PostgreSQL would refuse leaves none.
            crate::postgres::validate_postgres_append(&events)?;
            let rows = [(key.reference, key.wrapped)];
            let inserted = self
                .insert_keys(&rows, key.generation)
                .await
                .map_err(|error| match error {
                    ResidentKeyError::Database(error) => crate::postgres::read_error(error),
                    ResidentKeyError::Closed => crate::StoreError::Closed,
                    other => crate::StoreError::Database(sqlx::Error::Protocol(other.to_string())),
                })?;
            if inserted.is_empty() {
                return Err(crate::StoreError::ResidentHasKey);
            }
            crate::EventStore::append(self, stream, expected, events).await
        }

        async fn insert_keys(
            &self,
            rows: &[(String, String)],
            generation: u32,
        ) -> Result<Vec<String>, ResidentKeyError> {
            // One round trip opens the transaction and sets it to commit without a flush.
            let mut transaction = self.pool().begin_with(POSTGRES_BEGIN_WITHOUT_FLUSH).await?;
            let inserted = queries::insert_keys(&mut transaction, rows, generation).await?;
            transaction.commit().await?;
            Ok(inserted)
        }

        async fn forget(&self, reference: &str) -> Result<bool, ResidentKeyError> {
            let mut transaction = self.pool().begin().await?;
            let deleted = queries::delete_and_record(&mut transaction, reference).await?;
            transaction.commit().await?;
            Ok(deleted)
        }

        async fn rewrap_all(&self, target: u32, rewrap: &Rewrap<'_>) -> Result<u64, RewrapError> {
            let mut transaction = self.pool().begin().await?;
            postgres_exclusive(&mut transaction).await?;
            // Locked, so that nothing (a server started meanwhile is refused anyway) changes a row
            // between its read and its update.
            let keys = queries::keys_to_rewrap(&mut transaction, target, true).await?;
            let updates = rewrapped(&keys, rewrap)?;
            queries::update_keys(&mut transaction, &updates, target).await?;
            transaction.commit().await?;
            Ok(updates.len() as u64)
        }

        async fn server_lease(&self) -> Result<ServerLease, LeaseError> {
            ServerLease::postgres_shared(self.pool()).await
        }

        fn shared_by_replicas(&self) -> bool {
            true
        }
    }
);
