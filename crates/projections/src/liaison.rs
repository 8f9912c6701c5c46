//! Complaint handling grouped by who leads resident liaison: the liaison leads' counters
//! (`liaison_handling_counters`, kept beside the contractors' by `handling_counters`), the
//! contractors behind each lead (`liaison_contractor_months`, one row per lead, contractor and
//! month), and the notifier escalations raised on its complaints, which are read as each
//! contractor's are: the escalations raised in the months asked for, each joined to its
//! complaint's handling row by key.

use std::collections::BTreeMap;

use sqlx::{AnyPool, Row};

use crate::ProjectionError;
use crate::handling::count;
use crate::handling_counters::{self, HandlingSummary};
use crate::month::Month;
use crate::upsert::MultiRowUpsert;

/// Adds complaints to `liaison_contractor_months`: (lead, contractor, month, complaints).
pub(crate) const ADD_CONTRACTOR_COMPLAINTS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO liaison_contractor_months (liaison_lead, contractor_id, month, complaints)",
    width: 4,
    on_conflict: "ON CONFLICT (liaison_lead, contractor_id, month) DO UPDATE SET \
                  complaints = liaison_contractor_months.complaints + excluded.complaints",
};

/// How the complaints attributed to one liaison lead and received in a range were handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadHandling {
    pub handling: HandlingSummary,
    /// Contractors with complaints in the range attributed to the lead.
    pub contractors: u64,
    /// Notifier escalations raised in the range on the lead's complaints (by month raised), and
    /// those raised once a Code deadline had passed.
    pub escalations_raised: u64,
    pub escalations_past_deadline: u64,
}

pub(crate) async fn lead_handling(
    pool: &AnyPool,
    from: Month,
    to: Month,
) -> Result<BTreeMap<String, LeadHandling>, ProjectionError> {
    let mut leads: BTreeMap<String, LeadHandling> =
        handling_counters::lead_summaries(pool, from, to)
            .await?
            .into_iter()
            .map(|(lead, handling)| {
                let figures = LeadHandling {
                    handling,
                    ..LeadHandling::default()
                };
                (lead, figures)
            })
            .collect();
    let contractors = sqlx::query(
        "SELECT liaison_lead, CAST(COUNT(DISTINCT contractor_id) AS BIGINT) AS contractors \
         FROM liaison_contractor_months WHERE month >= $1 AND month <= $2 AND complaints > 0 \
         GROUP BY liaison_lead",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(pool)
    .await?;
    for row in &contractors {
        let lead: String = row.try_get("liaison_lead")?;
        leads.entry(lead).or_default().contractors = count(row, "contractors")?;
    }
    // An escalation is the lead's whose complaint is: the month it was raised counts, as in
    // each contractor's figures.
    let escalations = sqlx::query(
        "SELECT h.liaison_lead, CAST(COUNT(*) AS BIGINT) AS raised, \
         CAST(COALESCE(SUM(e.after_deadline), 0) AS BIGINT) AS past_deadline \
         FROM escalations e JOIN complaint_handling h ON h.complaint_id = e.complaint_id \
         WHERE e.raised_month >= $1 AND e.raised_month <= $2 GROUP BY h.liaison_lead",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(pool)
    .await?;
    for row in &escalations {
        let lead: String = row.try_get("liaison_lead")?;
        let figures = leads.entry(lead).or_default();
        figures.escalations_raised = count(row, "raised")?;
        figures.escalations_past_deadline = count(row, "past_deadline")?;
    }
    Ok(leads)
}
