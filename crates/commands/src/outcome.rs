//! The two levels of a write's result: refused by the rules, or failed in storage.

use doorstep_domain::DomainError;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::stream::StreamNameError;
use doorstep_store::StoreError;

/// What a write answers: `Err` when storage failed, `Ok(Err)` when the command was refused.
pub type Outcome<T> = Result<Result<T, Refusal>, Failure>;

/// Where a write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    pub position: u64,
    /// True when this was a retry of a call already written: nothing new was stored.
    pub duplicate: bool,
}

/// A command the rules or the log refuse; the caller can act on it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The domain refused the command (never `DomainError::NotFound`: see [`Refusal::NotFound`]).
    #[error(transparent)]
    Domain(DomainError),
    /// The command needs an aggregate that has no events.
    #[error("no {noun} has this id")]
    NotFound { noun: &'static str },
    /// The caller pinned a version and the stream is at another.
    #[error("the record is at version {actual}, not the expected {expected}")]
    VersionConflict { expected: u64, actual: u64 },
    /// The key was already used by a call with other content.
    #[error("{key_field} was already used for a different request")]
    KeyReused { key_field: &'static str },
    /// Other writers kept changing the stream while the command was decided.
    #[error("the record kept changing while this command was decided; retry it")]
    Contention,
}

impl Refusal {
    /// The domain's refusal, with "not found" naming the aggregate.
    pub fn from_domain(error: DomainError, noun: &'static str) -> Self {
        match error {
            DomainError::NotFound => Self::NotFound { noun },
            other => Self::Domain(other),
        }
    }
}

/// Storage failed, or holds what it never should; the caller cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored event cannot be decoded")]
    Decode(#[from] EventDecodeError),
    #[error("a stored stream name is corrupt")]
    StreamName(#[from] StreamNameError),
    /// The events could not be made ready to store (e.g. sealing personal data failed).
    #[error("the events cannot be prepared for storing")]
    Prepare(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Inconsistent(&'static str),
}
