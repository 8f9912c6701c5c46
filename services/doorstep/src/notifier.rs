//! The notifier inside the server: raising due escalations through the complaint aggregate, and
//! building the scheduler and the delivery worker from the settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::complaint_log::ComplaintLog;
use crate::error::ApiError;
use crate::privacy::{Personal, ResidentVault};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use doorstep_commands::{CommandOrigin, IdPolicy, Refusal};
use doorstep_domain::complaint::{Command, Complaint};
use doorstep_domain::escalation::{EscalationPolicy, PlannedEscalation, escalation_id};
use doorstep_domain::input::ComplaintId;
use doorstep_domain::{DomainError, WorkingDayCalendar};
use doorstep_notifier::{
    CaseDetails, CaseLookup, DeliveryWorker, EmailSender, EscalationRaiser, RaiseOutcome,
    Scheduler, WebhookSender,
};
use doorstep_projections::{DueEscalation, EscalationPlanner, ReadModel};

/// Who the log says raised an escalation.
pub const NOTIFIER_ACTOR: &str = "doorstep-notifier";

/// The ladder the projection runner schedules unresolved inspection findings up.
/// Its warning time is the escalation policy's, as for the Code's deadlines.
pub fn finding_ladder(
    settings: &Settings,
    policy: &EscalationPolicy,
    calendar: WorkingDayCalendar,
) -> Result<doorstep_projections::FindingLadder, String> {
    Ok(doorstep_projections::FindingLadder {
        steps: settings.inspections.ladder()?,
        calendar,
        warning_time: policy.warning_time(),
    })
}

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
        let origin = CommandOrigin {
            actor: NOTIFIER_ACTOR.to_owned(),
            source_channel: "notifier".to_owned(),
            request_id: None,
            fingerprint: format!("escalation/{id}"),
        };
        let mut already_raised = false;
        let raised = self
            .log
            .execute_when(
                &complaint_id,
                None,
                &origin,
                IdPolicy::Escalation(id),
                |state| {
                    let Some(complaint) = state else {
                        return Err(Refusal::NotFound { noun: "complaint" });
                    };
                    if complaint.escalation(id).is_some() {
                        already_raised = true;
                        return Ok(None);
                    }
                    Ok(Some(self.raise_command(complaint, due, id, now)))
                },
            )
            .await?;
        Ok(match raised {
            Ok(None) if already_raised => RaiseOutcome::AlreadyRaised,
            Ok(None) => return Err(ApiError::internal(std::io::Error::other("nothing decided"))),
            // Another replica (or a retry) stored this escalation id first.
            Ok(Some(executed)) if executed.written.duplicate => RaiseOutcome::AlreadyRaised,
            Ok(Some(_)) => RaiseOutcome::Raised,
            // The complaint is gone from the log, or its clock stopped or moved since the
            // schedule was written; the read model drops the step when it catches up.
            Err(Refusal::NotFound { .. } | Refusal::Domain(DomainError::NotAllowed(_))) => {
                RaiseOutcome::Stale
            }
            Err(refusal) => return Err(refusal.into()),
        })
    }

    /// The command that raises the due step on `complaint`, to the policy's recipients.
    fn raise_command(
        &self,
        complaint: &Complaint,
        due: &DueEscalation,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Command {
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
        Command::RaiseEscalation {
            escalation: Box::new(planned),
            at: now,
        }
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

/// A complaint's details for its escalation emails, from its stream, the vault (the property's
/// address, sealed at intake) and the contractor registry.
pub struct ComplaintCases {
    log: ComplaintLog,
    vault: Arc<ResidentVault>,
    read_model: ReadModel,
}

impl ComplaintCases {
    pub fn new(log: ComplaintLog, vault: Arc<ResidentVault>, read_model: ReadModel) -> Self {
        Self {
            log,
            vault,
            read_model,
        }
    }

    async fn find(&self, complaint_id: &str) -> Result<Option<CaseDetails>, ApiError> {
        let complaint_id = ComplaintId::parse("complaint_id", complaint_id)?;
        let loaded = self.log.load(&complaint_id).await?;
        let Some(complaint) = loaded.state.as_ref() else {
            return Ok(None);
        };
        let intake = loaded
            .events
            .iter()
            .find(|(recorded, _)| recorded.event_type == "ComplaintReceived");
        let property_address = match intake {
            Some((recorded, _)) => match self
                .vault
                .open(&recorded.payload)
                .await
                .map_err(ApiError::internal)?
            {
                Personal::Opened(personal) => Some(personal.address),
                Personal::Plain => Some(complaint.property.address.as_str().to_owned()),
                Personal::Erased => None,
            },
            None => None,
        };
        let contractor = self
            .read_model
            .contractor(complaint.contractor_id.as_str())
            .await
            .map_err(ApiError::internal)?;
        Ok(Some(CaseDetails {
            contractor_name: contractor.as_ref().map(|row| row.legal_name.clone()),
            contractor_trading_names: contractor.map(|row| row.trading_names).unwrap_or_default(),
            standards: complaint
                .standards
                .iter()
                .map(|standard| standard.label().to_owned())
                .collect(),
            received_at: Some(complaint.received_at),
            handler: complaint
                .current_stage()
                .handler
                .as_ref()
                .map(|handler| handler.as_str().to_owned()),
            resident_reference: complaint.resident.reference.as_str().to_owned(),
            property_address,
        }))
    }
}

#[async_trait::async_trait]
impl CaseLookup for ComplaintCases {
    async fn case(
        &self,
        complaint_id: &str,
    ) -> Result<Option<CaseDetails>, Box<dyn std::error::Error + Send + Sync>> {
        self.find(complaint_id).await.map_err(Into::into)
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
        cases: Arc<ComplaintCases>,
    ) -> Result<Self, doorstep_notifier::DeliveryError> {
        let notifier = &settings.notifier;
        let poll_interval = Duration::from_millis(notifier.poll_interval_ms);
        let timeout = Duration::from_millis(notifier.timeout_ms);
        let findings = Arc::new(crate::inspections::FindingEscalations::new(
            crate::inspections::InspectionLog::new(
                log.store().clone(),
                crate::inspections::InspectionRules {
                    calendar: Arc::new(calendar.clone()),
                    finding_due_working_days: settings.inspections.finding_due_working_days,
                },
            ),
            policy.clone(),
        ));
        let raiser = Arc::new(ComplaintEscalations::new(log, policy.clone()));
        let now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync> = Arc::new(move || clock.now());
        let scheduler = Scheduler::new(read_model.clone(), raiser, now.clone(), poll_interval)
            .with_findings(findings);
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
                .map(|sender| {
                    sender
                        .with_policy(policy.clone())
                        .with_case_url_template(&settings.case_url_template())
                })
            })
            .transpose()?;
        let deliveries = DeliveryWorker::new(
            read_model,
            webhook,
            email,
            notifier.retry_policy(),
            poll_interval,
        )
        .with_cases(cases)
        .with_schedule_clock(now);
        Ok(Self {
            scheduler,
            deliveries,
        })
    }
}
