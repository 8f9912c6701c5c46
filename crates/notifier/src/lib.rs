//! The notifier: raises escalations when their time comes and tells people about them.
//!
//! - [`scheduler`] asks the escalation schedule (a read model indexed by due time) for ladder
//!   steps that are due and has each raised as an `EscalationRaised` event, whose id is derived
//!   from the complaint, deadline, level and clock start, so it is raised once whoever tries.
//! - [`deliveries`] works through the outbox the projection runner fills from those events:
//!   webhooks signed with HMAC-SHA256 ([`signature`], [`webhook`]) and email over SMTP
//!   ([`email`]), each tried with exponential back-off and jitter until it succeeds or is
//!   dead-lettered.
//!
//! Deliveries are at least once: a receiver may see a delivery again (after a crash between
//! sending and recording it, or a retry), always with the same delivery id to deduplicate on.

pub mod case;
pub mod deliveries;
pub mod email;
pub mod finding_email;
pub mod findings;
mod metrics;
mod rounds;
pub mod scheduler;
pub mod signature;
pub mod webhook;

pub use case::{CaseDetails, CaseLookup};
pub use deliveries::{DeliveryWorker, RetryPolicy, retry_delay};
pub use email::{EmailSender, Letter};
pub use findings::FindingEscalationRaiser;
pub use scheduler::{EscalationRaiser, RaiseOutcome, Scheduler};
pub use webhook::WebhookSender;

/// Why one delivery attempt failed; the message is kept with the delivery.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("SMTP failed: {0}")]
    Smtp(String),
    #[error("the message cannot be built: {0}")]
    Message(String),
    #[error("cannot look up the complaint: {0}")]
    Lookup(String),
    #[error("{0} is no longer configured")]
    NotConfigured(String),
}
