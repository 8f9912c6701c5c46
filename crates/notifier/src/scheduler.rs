//! The scheduler: asks the escalation schedule for the steps due now and has each raised.
//!
//! It never scans complaints: the schedule is a read model indexed by due time. Raising goes
//! through the complaint aggregate (the service implements [`EscalationRaiser`]), which refuses a
//! step whose clock has stopped or moved since the read model saw it, and the event id derived
//! from (complaint, deadline, level, clock start) makes a second raise, by a retry, a restart or
//! another replica, a no-op in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_projections::{DueEscalation, ProjectionError, ReadModel, UnreadableRow};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::findings::FindingEscalationRaiser;
use crate::metrics::NotifierMetrics;
use crate::rounds::run_rounds;

/// Steps read from the schedule per round.
const BATCH: u32 = 100;

/// What became of one attempt to raise a due step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaiseOutcome {
    Raised,
    /// Already raised, by this process earlier or by another replica.
    AlreadyRaised,
    /// The clock stopped or moved since the schedule was written; the read model will catch up.
    Stale,
}

/// Raises one due step on its complaint.
#[async_trait::async_trait]
pub trait EscalationRaiser: Send + Sync + 'static {
    async fn raise(
        &self,
        due: &DueEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, Box<dyn std::error::Error + Send + Sync>>;
}

/// Finds due steps and raises them, until told to stop. A clone shares the read model and the
/// raiser, so a test or a tool can run one round of it (`raise_due`) beside the spawned loop.
#[derive(Clone)]
pub struct Scheduler {
    read_model: ReadModel,
    raiser: Arc<dyn EscalationRaiser>,
    now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    poll_interval: Duration,
    metrics: NotifierMetrics,
    findings: Option<Arc<dyn FindingEscalationRaiser>>,
}

impl Scheduler {
    /// `now` is the service's clock, so tests decide what time it is.
    pub fn new(
        read_model: ReadModel,
        raiser: Arc<dyn EscalationRaiser>,
        now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
        poll_interval: Duration,
    ) -> Self {
        Self {
            read_model,
            raiser,
            now,
            poll_interval,
            metrics: NotifierMetrics::new(),
            findings: None,
        }
    }

    /// Also raises unresolved inspection findings' escalations, through `raiser`, each round.
    pub fn with_findings(mut self, raiser: Arc<dyn FindingEscalationRaiser>) -> Self {
        self.findings = Some(raiser);
        self
    }

    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let scheduler = &self;
            run_rounds(shutdown, self.poll_interval, move || async move {
                if let Err(error) = scheduler.raise_due().await {
                    tracing::error!(error = ?error, "escalation round failed; retrying");
                }
                false
            })
            .await;
        })
    }

    /// One round: raises every step due now (in batches), the Code deadlines' and, with
    /// [`Scheduler::with_findings`], unresolved inspection findings'. Returns how many it raised.
    ///
    /// A schedule row it cannot read is set aside with its reason (counted, and logged at error
    /// once) and the round goes on: one bad row must not keep every other complaint from
    /// escalating, round after round.
    pub async fn raise_due(&self) -> Result<usize, ProjectionError> {
        let now = (self.now)();
        let rows = self.read_model.due_escalation_rows(now, BATCH).await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(step) => due.push(step),
                Err(unreadable) => self.set_aside(&unreadable, now).await?,
            }
        }
        let mut raised = 0;
        for step in &due {
            // Each raise is a trace of its own, which the EscalationRaised event records.
            let span = tracing::info_span!(
                "notifier.raise_escalation",
                escalation_id = %step.escalation_id,
                complaint_id = step.complaint_id,
                deadline = step.deadline.code(),
                level = step.level.as_str(),
                trace_id = tracing::field::Empty,
            );
            doorstep_telemetry::record_trace_id(&span);
            let outcome = self.raiser.raise(step, now).instrument(span).await;
            match outcome {
                Ok(RaiseOutcome::Raised) => {
                    raised += 1;
                    self.metrics
                        .escalation_raised(step.deadline.code(), step.level.as_str());
                    tracing::info!(
                        escalation_id = %step.escalation_id,
                        complaint_id = step.complaint_id,
                        deadline = step.deadline.code(),
                        level = step.level.as_str(),
                        "escalation raised"
                    );
                }
                Ok(outcome) => tracing::debug!(
                    escalation_id = %step.escalation_id,
                    ?outcome,
                    "due step not raised"
                ),
                Err(error) => tracing::error!(
                    escalation_id = %step.escalation_id,
                    complaint_id = step.complaint_id,
                    error = %error,
                    "cannot raise an escalation; will try again"
                ),
            }
        }
        if let Some(findings) = &self.findings {
            raised += crate::findings::raise_due_findings(
                &self.read_model,
                findings.as_ref(),
                &self.metrics,
                now,
            )
            .await?;
        }
        Ok(raised)
    }

    async fn set_aside(
        &self,
        unreadable: &UnreadableRow,
        now: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        let newly = self
            .read_model
            .set_aside_escalation(&unreadable.key, &unreadable.reason, now)
            .await?;
        // Another scheduler may have set it aside first: it counted and logged it.
        if newly {
            self.metrics.row_set_aside(unreadable.table);
            tracing::error!(
                table = unreadable.table,
                escalation_id = unreadable.key,
                reason = unreadable.reason,
                "an escalation schedule row cannot be read; it is set aside and will not be \
                 raised until its complaint's clock changes or the read models are rebuilt"
            );
        }
        Ok(())
    }
}
