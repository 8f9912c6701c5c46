//! Doorstep's domain: residents' complaints about contractors, driven through the Housing
//! Ombudsman's two-stage Complaint Handling Code.
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of tokio, sqlx or tonic.
//! Time and the working-day calendar are passed in, so every rule is a pure function.

pub mod calendar;
pub mod complaint;
pub mod contractor;
pub mod escalation;
pub mod input;
pub mod inspection;
mod payload;
pub mod resident;
pub mod standard;
pub mod statistics;
pub mod stream;

pub use calendar::{CalendarError, OutsideCalendar, WorkingDayCalendar, england_date};
pub use complaint::{
    CodeTimescales, Command, Complaint, DomainError, Event, FindingOutcome, HandlingContext, Stage,
    Status, apply, handle, replay,
};
pub use input::InvalidInput;
pub use payload::StoredPayload;
pub use standard::ServiceStandard;
