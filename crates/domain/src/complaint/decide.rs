//! The Complaint Handling Code's rules: which step is allowed when, and what it records.

use chrono::{DateTime, Utc};

use super::event::{Property, Resident};
use super::{Command, Complaint, DomainError, Event, Finding, FindingInput, Stage, Status};
use crate::calendar::{WorkingDayCalendar, england_date};
use crate::escalation::PlannedEscalation;
use crate::input::{Handler, InvalidInput, OptionalText, ShortText};
use crate::standard::ServiceStandard;

/// The Code's timescales in working days. The defaults are the Code's; stage 2's extension cap
/// is still to be confirmed, so every figure is a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeTimescales {
    pub stage_one_acknowledgement: u32,
    pub stage_one_response: u32,
    pub stage_one_extension_cap: u32,
    pub stage_two_acknowledgement: u32,
    pub stage_two_response: u32,
    pub stage_two_extension_cap: u32,
}

impl Default for CodeTimescales {
    fn default() -> Self {
        Self {
            stage_one_acknowledgement: 5,
            stage_one_response: 10,
            stage_one_extension_cap: 10,
            stage_two_acknowledgement: 5,
            stage_two_response: 20,
            stage_two_extension_cap: 20,
        }
    }
}

impl CodeTimescales {
    fn acknowledgement(&self, stage: Stage) -> u32 {
        match stage {
            Stage::One => self.stage_one_acknowledgement,
            Stage::Two => self.stage_two_acknowledgement,
        }
    }

    fn response(&self, stage: Stage) -> u32 {
        match stage {
            Stage::One => self.stage_one_response,
            Stage::Two => self.stage_two_response,
        }
    }

    fn extension_cap(&self, stage: Stage) -> u32 {
        match stage {
            Stage::One => self.stage_one_extension_cap,
            Stage::Two => self.stage_two_extension_cap,
        }
    }
}

/// What the rules need besides the complaint: the calendar and the timescales in force.
#[derive(Debug, Clone)]
pub struct HandlingContext<'a> {
    pub calendar: &'a WorkingDayCalendar,
    pub timescales: CodeTimescales,
}

impl HandlingContext<'_> {
    /// The deadline `working_days` after the step `field` dated at `from`; refused when the
    /// calendar cannot count it.
    fn due(
        &self,
        field: &str,
        from: DateTime<Utc>,
        working_days: u32,
    ) -> Result<chrono::NaiveDate, DomainError> {
        self.due_after(field, england_date(from), working_days)
    }

    fn due_after(
        &self,
        field: &str,
        start: chrono::NaiveDate,
        working_days: u32,
    ) -> Result<chrono::NaiveDate, DomainError> {
        self.calendar
            .try_add_working_days(start, working_days)
            .map_err(|error| DomainError::OutsideCalendar {
                field: field.to_owned(),
                error,
            })
    }
}

/// Decides what `command` does to the complaint in `state` (None: not logged yet).
pub fn handle(
    state: Option<&Complaint>,
    command: Command,
    context: &HandlingContext<'_>,
) -> Result<Vec<Event>, DomainError> {
    let Some(complaint) = state else {
        return match command {
            Command::Log(log) => Ok(vec![received(*log, context)?]),
            _ => Err(DomainError::NotFound),
        };
    };
    match command {
        Command::Log(_) => Err(DomainError::not_allowed(
            "this complaint has already been logged",
        )),
        Command::Reopen { reason, at } => reopen(complaint, reason, at, context),
        // An escalation may be taken on after the complaint has ended: somebody still owns the
        // lateness it recorded.
        Command::AcknowledgeEscalation {
            escalation_id,
            by,
            note,
            at,
        } => acknowledge_escalation(complaint, escalation_id, by, note, at),
        _ if complaint.status.is_ended() => Err(ended(complaint)),
        Command::Acknowledge {
            stage,
            handler,
            complaint_definition,
            outcome_sought,
            at,
        } => acknowledge(
            complaint,
            context,
            stage,
            handler,
            complaint_definition,
            outcome_sought,
            at,
        ),
        Command::ExtendDeadline {
            reason,
            working_days,
            ombudsman_details_given,
            at,
        } => extend_deadline(
            complaint,
            context,
            reason,
            working_days,
            ombudsman_details_given,
            at,
        ),
        Command::RecordFindings { findings, at } => record_findings(complaint, findings, at),
        Command::IssueResponse {
            decision,
            remedy,
            at,
        } => issue_response(complaint, decision, remedy, at),
        Command::RequestStageTwo { reason, at } => {
            request_stage_two(complaint, context, reason, at)
        }
        Command::Close { reason, at } => close(complaint, reason, at),
        Command::Withdraw { reason, at } => withdraw(complaint, reason, at),
        Command::AddNote { text, at } => Ok(vec![Event::NoteAdded { text, added_at: at }]),
        Command::RaiseEscalation { escalation, at } => raise_escalation(complaint, *escalation, at),
    }
}

/// Why a step other than reopening is refused on an ended complaint.
fn ended(complaint: &Complaint) -> DomainError {
    DomainError::not_allowed(format!(
        "the complaint is {}; reopen it before taking any other step",
        if complaint.status == Status::Closed {
            "closed"
        } else {
            "withdrawn"
        }
    ))
}

/// Acknowledges the complaint at its current stage and sets the stage's response deadline.
fn acknowledge(
    complaint: &Complaint,
    context: &HandlingContext<'_>,
    stage: Stage,
    handler: Handler,
    complaint_definition: OptionalText,
    outcome_sought: OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if complaint.stage != stage {
        return Err(DomainError::not_allowed(format!(
            "the complaint is at {}, not {stage}",
            complaint.stage
        )));
    }
    if complaint.status != Status::AwaitingAcknowledgement {
        return Err(DomainError::not_allowed(format!(
            "{stage} has already been acknowledged"
        )));
    }
    not_before(
        at,
        complaint.current_stage().started_at,
        "acknowledged",
        "started",
    )?;
    follows_latest_step(complaint, at, "acknowledged")?;
    if stage == Stage::Two {
        let stage_one_handler = complaint.stage_one.handler.as_ref();
        if stage_one_handler.is_some_and(|first| same_person(first.as_str(), handler.as_str())) {
            return Err(DomainError::not_allowed(
                "the stage 2 handler must not be the person who handled stage 1",
            ));
        }
    }
    Ok(vec![Event::ComplaintAcknowledged {
        stage,
        handler,
        complaint_definition,
        outcome_sought,
        acknowledged_at: at,
        response_due: context.due("effective_at", at, context.timescales.response(stage))?,
    }])
}

/// Extends the current stage's response deadline, within the stage's cap.
fn extend_deadline(
    complaint: &Complaint,
    context: &HandlingContext<'_>,
    reason: ShortText,
    working_days: u32,
    ombudsman_details_given: bool,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    require_under_investigation(complaint, "extended")?;
    if !ombudsman_details_given {
        return Err(DomainError::not_allowed(
            "an extension must give the resident the Housing Ombudsman's contact details",
        ));
    }
    let stage = complaint.stage;
    let progress = complaint.current_stage();
    not_before(
        at,
        progress.acknowledged_at.unwrap_or(progress.started_at),
        "extended",
        "acknowledged",
    )?;
    follows_latest_step(complaint, at, "extended")?;
    let cap = context.timescales.extension_cap(stage);
    let total = progress.extension_working_days.saturating_add(working_days);
    if total > cap {
        return Err(DomainError::not_allowed(format!(
            "{stage} extensions may total at most {cap} working days; {} already granted",
            progress.extension_working_days
        )));
    }
    let current_due = progress.response_due.unwrap_or_else(|| england_date(at));
    Ok(vec![Event::DeadlineExtended {
        stage,
        reason,
        working_days,
        ombudsman_details_given,
        extended_at: at,
        response_due: context.due_after("working_days", current_due, working_days)?,
    }])
}

/// Records findings on standards the complaint alleges.
fn record_findings(
    complaint: &Complaint,
    findings: Vec<FindingInput>,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    require_under_investigation(complaint, "given findings")?;
    for (index, finding) in findings.iter().enumerate() {
        if !complaint.standards.contains(&finding.standard) {
            return Err(InvalidInput::new(
                format!("findings[{index}].standard"),
                format!(
                    "{} is not one of the standards this complaint alleges",
                    finding.standard
                ),
            )
            .into());
        }
    }
    Ok(vec![Event::FindingsRecorded {
        stage: complaint.stage,
        findings: findings
            .into_iter()
            .map(|finding| Finding {
                standard: finding.standard,
                outcome: finding.outcome,
                summary: finding.summary,
                stage: complaint.stage,
            })
            .collect(),
        recorded_at: at,
    }])
}

/// Issues the current stage's response, once every alleged standard has a finding.
fn issue_response(
    complaint: &Complaint,
    decision: ShortText,
    remedy: OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    require_under_investigation(complaint, "answered")?;
    let missing = missing_findings(complaint);
    if !missing.is_empty() {
        return Err(DomainError::not_allowed(format!(
            "record a finding for every alleged standard before responding; missing: {}",
            missing.join(", ")
        )));
    }
    let acknowledged_at = complaint
        .current_stage()
        .acknowledged_at
        .unwrap_or(complaint.received_at);
    not_before(at, acknowledged_at, "answered", "acknowledged")?;
    follows_latest_step(complaint, at, "answered")?;
    Ok(vec![Event::ResponseIssued {
        stage: complaint.stage,
        decision,
        remedy,
        responded_at: at,
    }])
}

/// Escalates a complaint answered at stage 1 to stage 2.
fn request_stage_two(
    complaint: &Complaint,
    context: &HandlingContext<'_>,
    reason: OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if complaint.stage == Stage::Two {
        return Err(DomainError::not_allowed(
            "the Code has two stages only; after the stage 2 response the resident may refer the complaint to the Housing Ombudsman",
        ));
    }
    if complaint.status != Status::Responded {
        return Err(DomainError::not_allowed(
            "stage 2 can be requested only after the stage 1 response has been issued",
        ));
    }
    let responded_at = complaint
        .stage_one
        .responded_at
        .unwrap_or(complaint.received_at);
    not_before(at, responded_at, "escalated", "answered at stage 1")?;
    follows_latest_step(complaint, at, "escalated to stage 2")?;
    Ok(vec![Event::StageTwoRequested {
        reason,
        requested_at: at,
        acknowledgement_due: context.due(
            "effective_at",
            at,
            context.timescales.acknowledgement(Stage::Two),
        )?,
    }])
}

/// Closes a complaint whose current stage has been answered.
fn close(
    complaint: &Complaint,
    reason: OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if complaint.status != Status::Responded {
        return Err(DomainError::not_allowed(format!(
            "a complaint can be closed only after its {} response has been issued; withdraw it instead if the resident no longer wishes to pursue it",
            complaint.stage
        )));
    }
    let responded_at = complaint
        .current_stage()
        .responded_at
        .unwrap_or(complaint.received_at);
    not_before(at, responded_at, "closed", "answered")?;
    follows_latest_step(complaint, at, "closed")?;
    Ok(vec![Event::ComplaintClosed {
        stage: complaint.stage,
        reason,
        closed_at: at,
    }])
}

/// Withdraws the complaint at the resident's wish.
fn withdraw(
    complaint: &Complaint,
    reason: OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    not_before(
        at,
        complaint.current_stage().started_at,
        "withdrawn",
        "received",
    )?;
    follows_latest_step(complaint, at, "withdrawn")?;
    Ok(vec![Event::ComplaintWithdrawn {
        stage: complaint.stage,
        reason,
        withdrawn_at: at,
    }])
}

/// Raises one step of the running clock's ladder. Refused when that clock is no longer running
/// (the step was taken, extended past, or the complaint ended), when the step is not yet due, or
/// when this level was already raised for this clock.
fn raise_escalation(
    complaint: &Complaint,
    escalation: PlannedEscalation,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let Some(clock) = complaint.running_clock() else {
        return Err(DomainError::not_allowed(
            "no Code deadline is running on this complaint",
        ));
    };
    if clock.deadline != escalation.deadline || clock.started_at != escalation.clock_started_at {
        return Err(DomainError::not_allowed(format!(
            "the {} clock that started at {} is no longer running",
            escalation.deadline, escalation.clock_started_at
        )));
    }
    if clock.due != escalation.deadline_date {
        return Err(DomainError::not_allowed(format!(
            "the {} deadline has moved to {}",
            escalation.deadline, clock.due
        )));
    }
    if escalation.due_at > at {
        return Err(DomainError::not_allowed(format!(
            "the `{}` escalation is not due until {}",
            escalation.level, escalation.due_at
        )));
    }
    let already_raised = complaint.escalations.iter().any(|raised| {
        raised.escalation_id == escalation.escalation_id
            || (raised.deadline == escalation.deadline
                && raised.level == escalation.level
                && raised.clock_started_at == escalation.clock_started_at)
    });
    if already_raised {
        return Err(DomainError::not_allowed(format!(
            "the `{}` escalation has already been raised for this {} clock",
            escalation.level, escalation.deadline
        )));
    }
    if escalation.contractor_id != complaint.contractor_id {
        return Err(DomainError::not_allowed(
            "the escalation names another contractor than the complaint's",
        ));
    }
    Ok(vec![Event::EscalationRaised {
        escalation_id: escalation.escalation_id,
        contractor_id: escalation.contractor_id,
        deadline: escalation.deadline,
        level: escalation.level,
        deadline_date: escalation.deadline_date,
        clock_started_at: escalation.clock_started_at,
        due_at: escalation.due_at,
        raised_at: at,
        recipients: escalation.recipients,
    }])
}

fn acknowledge_escalation(
    complaint: &Complaint,
    escalation_id: uuid::Uuid,
    by: crate::input::Handler,
    note: crate::input::OptionalText,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let escalation = complaint
        .escalation(escalation_id)
        .ok_or(DomainError::EscalationNotFound)?;
    if let Some(by_whom) = &escalation.acknowledged_by {
        return Err(DomainError::not_allowed(format!(
            "this escalation has already been acknowledged by {by_whom}"
        )));
    }
    not_before(at, escalation.raised_at, "acknowledged", "escalated")?;
    Ok(vec![Event::EscalationAcknowledged {
        escalation_id,
        acknowledged_by: by,
        note,
        acknowledged_at: at,
    }])
}

fn received(log: super::LogComplaint, context: &HandlingContext<'_>) -> Result<Event, DomainError> {
    let acknowledgement_due = context.due(
        "received_at",
        log.received_at,
        context.timescales.acknowledgement(Stage::One),
    )?;
    Ok(Event::ComplaintReceived {
        complaint_id: log.complaint_id,
        channel: log.channel,
        source_system: log.source_system,
        resident: Resident {
            reference: log.resident.reference,
            name: log.resident.name,
            phone: log.resident.phone,
            email: log.resident.email,
        },
        property: Property {
            uprn: log.property.uprn,
            address: log.property.address,
        },
        contractor_id: log.contractor_id,
        visit_id: log.visit_id,
        standards: log.standards,
        description: log.description,
        occurred_at: log.occurred_at,
        received_at: log.received_at,
        outcome_sought: log.outcome_sought,
        reasonable_adjustments: log.reasonable_adjustments,
        acknowledgement_due,
        calendar_version: context.calendar.version().to_owned(),
    })
}

fn reopen(
    complaint: &Complaint,
    reason: crate::input::ShortText,
    at: DateTime<Utc>,
    context: &HandlingContext<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !complaint.status.is_ended() {
        return Err(DomainError::not_allowed(
            "only a closed or withdrawn complaint can be reopened",
        ));
    }
    follows_latest_step(complaint, at, "reopened")?;
    let stage = complaint.stage;
    // A complaint withdrawn before acknowledgement goes back to waiting for one; otherwise the
    // investigation resumes and the response clock restarts from the reopening.
    let acknowledged = complaint.current_stage().acknowledged_at.is_some();
    let (acknowledgement_due, response_due) = if acknowledged {
        (
            None,
            Some(context.due("effective_at", at, context.timescales.response(stage))?),
        )
    } else {
        (
            Some(context.due(
                "effective_at",
                at,
                context.timescales.acknowledgement(stage),
            )?),
            None,
        )
    };
    Ok(vec![Event::ComplaintReopened {
        stage,
        reason,
        reopened_at: at,
        acknowledgement_due,
        response_due,
    }])
}

fn require_under_investigation(complaint: &Complaint, step: &str) -> Result<(), DomainError> {
    match complaint.status {
        Status::UnderInvestigation => Ok(()),
        Status::AwaitingAcknowledgement => Err(DomainError::not_allowed(format!(
            "{} must be acknowledged before it can be {step}",
            complaint.stage
        ))),
        _ => Err(DomainError::not_allowed(format!(
            "the {} response has already been issued; it can no longer be {step}",
            complaint.stage
        ))),
    }
}

fn missing_findings(complaint: &Complaint) -> Vec<&'static str> {
    complaint
        .standards
        .iter()
        .filter(|standard| !complaint.findings.contains_key(standard))
        .map(|standard: &ServiceStandard| standard.code())
        .collect()
}

fn not_before(
    at: DateTime<Utc>,
    earlier: DateTime<Utc>,
    step: &str,
    earlier_step: &str,
) -> Result<(), DomainError> {
    if at < earlier {
        return Err(InvalidInput::new(
            "effective_at",
            format!("the complaint cannot be {step} before it was {earlier_step} ({earlier})"),
        )
        .into());
    }
    Ok(())
}

/// Refuses a step dated before the latest step the complaint has taken, so its history never
/// runs backwards (a reopening dated before the closure would start a clock in the past).
fn follows_latest_step(
    complaint: &Complaint,
    at: DateTime<Utc>,
    step: &str,
) -> Result<(), DomainError> {
    let latest = complaint.latest_step;
    if at < latest.at {
        return Err(InvalidInput::new(
            "effective_at",
            format!(
                "the complaint cannot be {step} before its latest step: it was {} at {}",
                latest.step, latest.at
            ),
        )
        .into());
    }
    Ok(())
}

/// Handlers are compared as people type them: case and surrounding spaces do not matter.
fn same_person(first: &str, second: &str) -> bool {
    first.trim().eq_ignore_ascii_case(second.trim())
}
