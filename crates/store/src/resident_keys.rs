//! Residents' data keys, as the privacy layer hands them over: wrapped (encrypted, base64) by a
//! master key generation, one per resident reference, in the event store's own database (tables
//! from the migrations `0100_resident_keys` and `0101_master_key_generations`), and the residents
//! who were forgotten. The store holds bytes and generations only: wrapping and opening keys is
//! the caller's.
//!
//! On SQLite a destroyed key leaves no byte behind in the live files: the store's connections
//! zero what a transaction deletes (`secure_delete`), and [`ResidentKeyStore::forget`]
//! checkpoints the WAL into the database file and truncates it before it returns. PostgreSQL
//! keeps dead row versions until vacuum and its WAL in archives; there, and for every backup,
//! erasure is complete once the master key generation that wrapped the key has been rotated away.

pub(crate) mod queries;

use async_trait::async_trait;

use crate::lease::{LeaseError, ServerLease};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamId};

/// A resident's data key as stored: wrapped (base64) by a master key generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub wrapped: String,
    pub generation: u32,
}

/// A stored key to re-wrap: its resident, and the key as stored.
#[derive(Debug, Clone)]
pub struct KeyToRewrap {
    pub reference: String,
    pub key: WrappedKey,
}

/// Computes a key's new wrapping during a rotation, or refuses (a key that does not open, say),
/// which rolls the whole re-wrap back.
pub type Rewrap<'a> = dyn Fn(&KeyToRewrap) -> Result<String, RewrapRefused> + Send + Sync + 'a;

/// Why the caller's [`Rewrap`] refused a key: its own error, kept whole for it to inspect.
pub type RewrapRefused = Box<dyn std::error::Error + Send + Sync>;

/// Why the resident key store failed.
#[derive(Debug, thiserror::Error)]
pub enum ResidentKeyError {
    #[error("the resident key store failed")]
    Database(#[from] sqlx::Error),
    #[error("a stored resident key is unreadable: {0}")]
    Corrupt(String),
    #[error("readers kept the write-ahead log from being checkpointed and truncated")]
    WalNotTruncated,
    #[error("the resident key store is shutting down")]
    Closed,
    /// A batch of new keys failed as a whole; each key in it hears why.
    #[error("the batch holding this resident key failed: {0}")]
    BatchFailed(String),
}

/// Why a rotation's re-wrap stopped (nothing of it was committed).
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error(transparent)]
    Keys(#[from] ResidentKeyError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The caller's [`Rewrap`] refused a key.
    #[error(transparent)]
    Refused(RewrapRefused),
}

impl From<sqlx::Error> for RewrapError {
    fn from(error: sqlx::Error) -> Self {
        Self::Keys(error.into())
    }
}

/// A new resident's key, to be stored with the first events sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewResidentKey {
    pub reference: String,
    /// The key, wrapped by master key `generation` (base64).
    pub wrapped: String,
    pub generation: u32,
}

/// Where resident keys are kept: the event store's database, whichever backend it is.
#[async_trait]
pub trait ResidentKeyStore: Send + Sync + 'static {
    /// Stores `key` as its resident's key and appends `events` (sealed under it), as
    /// [`crate::EventStore::append`] does; refuses with [`StoreError::ResidentHasKey`], appending
    /// nothing, when the resident has a key already. A key stored for an append refused for
    /// another reason (its idempotency key reused for another complaint, a version conflict) may
    /// stay, unused, as one stored by [`ResidentKeyStore::insert_keys`] would.
    ///
    /// On SQLite the key and the events commit in one transaction of the writer's batch (one
    /// commit, one flush, no second queue); on PostgreSQL the key is inserted first, in a
    /// transaction of its own that commits without a flush, as `insert_keys` does.
    async fn append_with_new_key(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        key: NewResidentKey,
    ) -> Result<AppendOutcome, StoreError>;

    /// The wrapped key of a resident, if they have one.
    async fn wrapped_key(&self, reference: &str) -> Result<Option<WrappedKey>, ResidentKeyError>;

    /// Stores each `(reference, wrapped key)` unless the resident already has a key, in one
    /// statement (so one commit), and returns the references whose row this call inserted. Of
    /// two rows for one reference the first is the one stored. Every key given is wrapped by
    /// master key `generation`.
    ///
    /// **Architecture Invariant:** the commit does not wait for the disk. A key matters only once
    /// an event sealed with it is stored, and that event's commit does wait: the database's log
    /// is written in order, so flushing the event's commit flushes the key's, which came before
    /// it. A key lost in a power cut before then belonged to no acknowledged complaint. (On
    /// SQLite the connection commits with `synchronous = NORMAL`, in WAL mode, and is back to
    /// `FULL` before any other use; on PostgreSQL the transaction sets
    /// `synchronous_commit = off`.) This spares intake one flush per group of new residents.
    async fn insert_keys(
        &self,
        rows: &[(String, String)],
        generation: u32,
    ) -> Result<Vec<String>, ResidentKeyError>;

    /// Destroys the resident's key and records that they were forgotten, in one transaction.
    /// Returns whether a key existed. On SQLite it returns once the WAL has been checkpointed
    /// and truncated, so the key is in no live file (a retry after a failure here does it again).
    async fn forget(&self, reference: &str) -> Result<bool, ResidentKeyError>;

    /// Whether the resident was forgotten (for complaints logged before sealing).
    async fn is_forgotten(&self, reference: &str) -> Result<bool, ResidentKeyError>;

    /// How many resident keys are stored.
    async fn key_count(&self) -> Result<u64, ResidentKeyError>;

    /// The master key generations that wrap at least one stored key, in ascending order.
    async fn generations_in_use(&self) -> Result<Vec<u32>, ResidentKeyError>;

    /// Re-wraps every stored key not wrapped by `target` with `rewrap`, and records `target` as
    /// its generation, in one transaction: either every key moves or none does. Returns how many
    /// moved. On PostgreSQL the transaction first takes the servers' lease exclusively (see
    /// [`ServerLease`]), so it refuses while a server runs; on SQLite the caller holds the
    /// lease file ([`ServerLease::sqlite_exclusive`]). Afterwards the SQLite WAL is
    /// checkpointed and truncated, so the earlier wrappings are left neither there nor (with
    /// `secure_delete`) in the database file.
    async fn rewrap_all(&self, target: u32, rewrap: &Rewrap<'_>) -> Result<u64, RewrapError>;

    /// A server's shared lease on the database, held for as long as the server runs, so that
    /// no master key rotation runs beside it.
    async fn server_lease(&self) -> Result<ServerLease, LeaseError>;

    /// Whether other server processes may share this database (replicas on PostgreSQL), so that
    /// a master key made up by one of them would not be the others'.
    fn shared_by_replicas(&self) -> bool;
}

/// `impl ResidentKeyStore for $store`: the reads, the same on every backend (one statement on
/// the store's pool), written here once, and the backend's own writes, lease and answer to
/// `shared_by_replicas`, given as `$writes`.
macro_rules! impl_resident_key_store {
    ($store:ty, $queries:path, { $($writes:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::resident_keys::ResidentKeyStore for $store {
            async fn wrapped_key(
                &self,
                reference: &str,
            ) -> Result<Option<$crate::WrappedKey>, $crate::ResidentKeyError> {
                use $queries as queries;
                queries::wrapped_key(self.pool(), reference).await
            }

            async fn is_forgotten(&self, reference: &str) -> Result<bool, $crate::ResidentKeyError> {
                use $queries as queries;
                queries::is_forgotten(self.pool(), reference).await
            }

            async fn key_count(&self) -> Result<u64, $crate::ResidentKeyError> {
                use $queries as queries;
                queries::key_count(self.pool()).await
            }

            async fn generations_in_use(&self) -> Result<Vec<u32>, $crate::ResidentKeyError> {
                use $queries as queries;
                queries::generations_in_use(self.pool()).await
            }

            $($writes)*
        }
    };
}
pub(crate) use impl_resident_key_store;

/// The new wrapping of each key, computed before anything is written.
pub(crate) fn rewrapped(
    keys: &[KeyToRewrap],
    rewrap: &Rewrap<'_>,
) -> Result<Vec<(String, String)>, RewrapError> {
    keys.iter()
        .map(|key| {
            let wrapped = rewrap(key).map_err(RewrapError::Refused)?;
            Ok((key.reference.clone(), wrapped))
        })
        .collect()
}
