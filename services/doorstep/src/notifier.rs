//! The notifier inside the server: raising due escalations through the complaint aggregate, and
//! building the scheduler and the delivery worker from the settings.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::complaint::Command;
use doorstep_domain::escalation::{EscalationPolicy, PlannedEscalation, escalation_id};
use doorstep_domain::input::ComplaintId;
use doorstep_domain::{DomainError, WorkingDayCalendar};
use doorstep_notifier::{
    DeliveryWorker, EmailSender, EscalationRaiser, RaiseOutcome, Scheduler, WebhookSender,
};
use doorstep_projections::{DueEscalation, EscalationPlanner, ReadModel};
use doorstep_store::{ExpectedVersion, StoreError};

use crate::aggregate_log::{CommandOrigin, new_events};
use crate::clock::Clock;
use crate::complaint_log::ComplaintLog;
use crate::error::ApiError;
use crate::settings::Settings;

/// Who the log says raised an escalation.
pub const NOTIFIER_ACTOR: &str = "doorstep-notifier";
/// Tries when another write to the complaint gets in between reading and appending.
const CONFLICT_RETRIES: usize = 5;

/// What the projection runner needs to schedule escalations and fill the outbox.
pub fn planner(
    settings: &Settings,
    policy: EscalationPolicy,
    calendar: WorkingDayCalendar,
) -> EscalationPlanner {
    EscalationPlanner {
        policy,
        calendar,
        webhook_urls: settings
            .notifier
            .webhooks
            .iter()
            .map(|webhook| webhook.url.trim().to_owned())
            .collect(),
        email: settings.notifier.email.is_some(),
    }
}

/// Raises escalations on complaints through the same log and rules as every other command.
pub struct ComplaintEscalations {
    log: ComplaintLog,
    policy: EscalationPolicy,
}

impl ComplaintEscalations {
    pub fn new(log: ComplaintLog, policy: EscalationPolicy) -> Self {
        Self { log, policy }
    }

    async fn raise_on(
        &self,
        due: &DueEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, ApiError> {
        let complaint_id = ComplaintId::parse("complaint_id", &due.complaint_id)?;
        // The id is derived again rather than trusted from the read model.
        let id = escalation_id(
            &complaint_id,
            due.deadline,
            &due.level,
            due.clock_started_at,
        );
        let stream = ComplaintLog::stream_of(&complaint_id);
        for _ in 0..CONFLICT_RETRIES {
            let loaded = self.log.load(&complaint_id).await?;
            let Some(complaint) = loaded.state else {
                return Ok(RaiseOutcome::Stale);
            };
            if complaint.escalation(id).is_some() {
                return Ok(RaiseOutcome::AlreadyRaised);
            }
            let planned = PlannedEscalation {
                escalation_id: id,
                contractor_id: complaint.contractor_id.clone(),
                deadline: due.deadline,
                level: due.level.clone(),
                deadline_date: due.deadline_date,
                clock_started_at: due.clock_started_at,
                due_at: due.due_at,
                recipients: self.policy.recipients(&due.level, &complaint.contractor_id),
            };
            let command = Command::RaiseEscalation {
                escalation: Box::new(planned),
                at: now,
            };
            let events = match self.log.aggregate_decide(&complaint, command) {
                Ok(events) => events,
                // The clock stopped or moved since the schedule was written; the read model
                // drops the step when it catches up.
                Err(DomainError::NotAllowed(_)) => return Ok(RaiseOutcome::Stale),
                Err(error) => return Err(error.into()),
            };
            let origin = CommandOrigin {
                actor: NOTIFIER_ACTOR.to_owned(),
                source_channel: "notifier".to_owned(),
                request_id: None,
                fingerprint: format!("escalation/{id}"),
            };
            let stored = new_events(&events, &origin, |index| (index == 0).then_some(id));
            match self
                .log
                .store()
                .append(&stream, ExpectedVersion::Exact(complaint.version), stored)
                .await
            {
                Ok(outcome) if outcome.already_stored => return Ok(RaiseOutcome::AlreadyRaised),
                Ok(_) => return Ok(RaiseOutcome::Raised),
                // Another replica (or a retry) stored this escalation id first.
                Err(StoreError::DuplicateEventId { .. }) => return Ok(RaiseOutcome::AlreadyRaised),
                // Another write got in first: decide again on the new state.
                Err(StoreError::VersionConflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(ApiError::Contention)
    }
}

#[async_trait::async_trait]
impl EscalationRaiser for ComplaintEscalations {
    async fn raise(
        &self,
        due: &DueEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, Box<dyn std::error::Error + Send + Sync>> {
        self.raise_on(due, now).await.map_err(Into::into)
    }
}

/// The scheduler and the delivery worker, ready to spawn; a clone runs the same rounds on demand
/// (`scheduler.raise_due()`, `deliveries.deliver_due()`), which is how tests drive them.
#[derive(Clone)]
pub struct Notifier {
    pub scheduler: Scheduler,
    pub deliveries: DeliveryWorker,
}

impl Notifier {
    pub fn build(
        settings: &Settings,
        log: ComplaintLog,
        policy: EscalationPolicy,
        calendar: WorkingDayCalendar,
        read_model: ReadModel,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, doorstep_notifier::DeliveryError> {
        let notifier = &settings.notifier;
        let poll_interval = Duration::from_millis(notifier.poll_interval_ms);
        let timeout = Duration::from_millis(notifier.timeout_ms);
        let raiser = Arc::new(ComplaintEscalations::new(log, policy));
        let scheduler = Scheduler::new(
            read_model.clone(),
            raiser,
            Arc::new(move || clock.now()),
            poll_interval,
        );
        let webhook = WebhookSender::new(
            notifier
                .webhooks
                .iter()
                .map(|webhook| (webhook.url.trim().to_owned(), webhook.secret.clone())),
            timeout,
        )?;
        let email = notifier
            .email
            .as_ref()
            .map(|email| {
                EmailSender::new(
                    &email.smtp_host,
                    email.smtp_port,
                    &email.from,
                    timeout,
                    calendar.clone(),
                )
            })
            .transpose()?;
        let deliveries = DeliveryWorker::new(
            read_model,
            webhook,
            email,
            notifier.retry_policy(),
            poll_interval,
        );
        Ok(Self {
            scheduler,
            deliveries,
        })
    }
}
