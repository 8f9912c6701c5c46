//! Raising the escalations of inspection findings left unresolved past their due date: the same
//! scheduler round as the Code deadlines, from a schedule of its own (`finding_schedule`).
//!
//! Raising goes through the inspection aggregate (the service implements
//! [`FindingEscalationRaiser`]), which refuses a finding resolved or withdrawn since the schedule
//! was written, and the event id derived from (finding, level) makes a second raise a no-op in
//! the store.

use chrono::{DateTime, Utc};
use doorstep_projections::{DueFindingEscalation, ProjectionError, ReadModel};

use crate::metrics::NotifierMetrics;
use crate::scheduler::RaiseOutcome;

/// Raises one due finding step on its inspection.
#[async_trait::async_trait]
pub trait FindingEscalationRaiser: Send + Sync + 'static {
    async fn raise(
        &self,
        due: &DueFindingEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, Box<dyn std::error::Error + Send + Sync>>;
}

/// Finding steps read per round.
const BATCH: u32 = 100;

/// The deadline attribute finding escalations are counted under.
pub const FINDING_DEADLINE: &str = "INSPECTION_FINDING";

/// One round over the finding schedule: raises every step due at `now`; returns how many.
pub(crate) async fn raise_due_findings(
    read_model: &ReadModel,
    raiser: &dyn FindingEscalationRaiser,
    metrics: &NotifierMetrics,
    now: DateTime<Utc>,
) -> Result<usize, ProjectionError> {
    let rows = read_model.due_finding_escalation_rows(now, BATCH).await?;
    let mut raised = 0;
    for row in rows {
        let step = match row {
            Ok(step) => step,
            Err(unreadable) => {
                if read_model
                    .set_aside_finding_escalation(&unreadable.key, &unreadable.reason, now)
                    .await?
                {
                    metrics.row_set_aside(unreadable.table);
                    tracing::error!(
                        table = unreadable.table,
                        escalation_id = unreadable.key,
                        reason = unreadable.reason,
                        "a finding schedule row cannot be read; it is set aside"
                    );
                }
                continue;
            }
        };
        match raiser.raise(&step, now).await {
            Ok(RaiseOutcome::Raised) => {
                raised += 1;
                metrics.escalation_raised(FINDING_DEADLINE, step.level.as_str());
                tracing::info!(
                    escalation_id = %step.escalation_id,
                    finding_id = %step.finding_id,
                    inspection_id = step.inspection_id,
                    level = step.level.as_str(),
                    "finding escalation raised"
                );
            }
            Ok(outcome) => tracing::debug!(
                escalation_id = %step.escalation_id,
                ?outcome,
                "due finding step not raised"
            ),
            Err(error) => tracing::error!(
                escalation_id = %step.escalation_id,
                inspection_id = step.inspection_id,
                error = %error,
                "cannot raise a finding escalation; will try again"
            ),
        }
    }
    Ok(raised)
}
