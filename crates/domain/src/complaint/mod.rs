//! The `Complaint` aggregate under the Complaint Handling Code.
//!
//! [`handle`] decides which events a command produces (or why the Code refuses it) from the
//! current state; [`apply`] folds one event into the state. Both are pure: replaying a complaint's
//! events always rebuilds the state that handling saw.

mod command;
mod decide;
mod event;
mod state;
mod upcast;

pub use command::{Command, FindingInput, LogComplaint, PropertyInput, ResidentInput};
pub use decide::{CodeTimescales, HandlingContext, handle};
pub use event::{Event, EventDecodeError, Finding, FindingOutcome, Property, Resident};
pub use state::{Complaint, LatestStep, RaisedEscalation, StageProgress, Status, apply, replay};
pub use upcast::{current_schema_version, upcast};

use serde::{Deserialize, Serialize};

use crate::calendar::OutsideCalendar;
use crate::input::InvalidInput;

/// The Code's two stages; there is no stage 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    One,
    Two,
}

impl Stage {
    pub fn number(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage {}", self.number())
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The Code does not allow this step now; the message is for a liaison officer.
    #[error("{0}")]
    NotAllowed(String),
    /// A field is wrong in a way only the complaint's state can tell.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The command needs a complaint that has not been logged.
    #[error("no such complaint")]
    NotFound,
    /// The complaint has no escalation with this id.
    #[error("the complaint has no escalation with this id")]
    EscalationNotFound,
    /// A deadline from this step cannot be counted: the working-day calendar does not cover its
    /// start or its end. `field` is the request field that dated the step.
    #[error("{field}: {error}")]
    OutsideCalendar {
        field: String,
        #[source]
        error: OutsideCalendar,
    },
}

impl DomainError {
    fn not_allowed(message: impl Into<String>) -> Self {
        Self::NotAllowed(message.into())
    }
}
