//! Doorstep's application layer: one path for every write.
//!
//! [`CommandLog::execute`] runs a command against an aggregate's stream: it loads and folds the
//! stream, asks the pure domain what the command produces, derives the events' ids from an
//! [`IdPolicy`], appends them expecting the version it read, and on a duplicate event id compares
//! the stored command fingerprint to tell the same call (its first result, `duplicate = true`)
//! from the same key sent with other content ([`Refusal::KeyReused`]). A conflict with another
//! writer is decided again on the new state unless the caller pinned a version. Facts that need
//! no aggregate to decide them (a new complaint, a visit, an erasure) are appended once with
//! [`CommandLog::start`] / [`record`].
//!
//! Results are two-level, `Result<Result<T, Refusal>, Failure>`: a [`Refusal`] is the domain or
//! the log saying no to this command (the caller can act on it), a [`Failure`] is the storage
//! failing. Neither knows anything of gRPC; the server maps both at its edge.

mod aggregate;
mod log;
mod metadata;
mod outcome;
mod policy;

pub use aggregate::{Aggregate, StoredEvent};
pub use log::{CommandLog, Executed, Landed, Loaded, record, start, start_with};
pub use metadata::{CommandOrigin, new_events};
pub use outcome::{Failure, Outcome, Refusal, Written};
pub use policy::{IdPolicy, REQUEST_NAMESPACE};
