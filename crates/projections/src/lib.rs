//! Read models derived from the event log.
//!
//! **Architecture invariant:** a read model is derived data. It is changed only by the
//! [`ProjectionRunner`], which applies each batch of events and its checkpoint in one transaction,
//! so a crash never applies an event twice or skips one, and dropping the tables and replaying
//! from position 0 gives the same rows.

mod complaint_list;
mod database;
mod runner;

pub use complaint_list::{ComplaintFilter, ComplaintRow, PageCursor, next_row};
pub use database::{Backend, ReadModelDatabase};
pub use runner::{ProjectionRunner, ReadModel};

/// Why a read model could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database error")]
    Database(#[from] sqlx::Error),
    #[error("read model migration error")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("event store error")]
    Store(#[from] doorstep_store::StoreError),
    #[error("read model row for complaint {complaint_id} is invalid: {reason}")]
    CorruptRow {
        complaint_id: String,
        reason: String,
    },
    #[error("the read-model database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("page token is not one this service issued")]
    InvalidPageToken,
}
