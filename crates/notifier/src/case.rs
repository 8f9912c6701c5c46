//! What an escalation email says about its complaint beyond the escalation itself: who the
//! contractor is by name, what was alleged, who handles it and, for the landlord's staff only,
//! the resident's reference and the property. It is looked up when the email is written rather
//! than copied into the outbox, so the outbox holds no personal data and an erasure also reaches
//! emails not sent yet.

use chrono::{DateTime, Utc};

/// A complaint as an escalation email describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseDetails {
    /// The contractor's legal name, as registered; `None` when it is not registered.
    pub contractor_name: Option<String>,
    /// The names the contractor trades under.
    pub contractor_trading_names: Vec<String>,
    /// The service standards alleged, in words.
    pub standards: Vec<String>,
    /// When the complaint was received.
    pub received_at: Option<DateTime<Utc>>,
    /// The member of staff handling the current stage, if one is recorded.
    pub handler: Option<String>,
    /// The resident's reference: shown to the landlord's staff only.
    pub resident_reference: String,
    /// The property's address: shown to the landlord's staff only; `None` once the resident's
    /// personal data has been erased.
    pub property_address: Option<String>,
}

/// Finds a complaint's details for its escalation emails (the service's, which reads the
/// complaint's stream and the contractor registry).
#[async_trait::async_trait]
pub trait CaseLookup: Send + Sync + 'static {
    /// The complaint's details; `None` when there is no such complaint.
    async fn case(
        &self,
        complaint_id: &str,
    ) -> Result<Option<CaseDetails>, Box<dyn std::error::Error + Send + Sync>>;
}
