//! The complaint's state, folded from its events.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use uuid::Uuid;

use super::event::{Property, Resident};
use super::{Event, Finding, Stage};
use crate::escalation::{Deadline, EscalationLevel, RunningClock};
use crate::input::{
    ComplaintId, ContractorId, Handler, LongText, OptionalText, ShortText, SourceSystem, VisitId,
};
use crate::standard::ServiceStandard;

/// Where the complaint is within its current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    AwaitingAcknowledgement,
    UnderInvestigation,
    Responded,
    Closed,
    Withdrawn,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Self::AwaitingAcknowledgement => "AWAITING_ACKNOWLEDGEMENT",
            Self::UnderInvestigation => "UNDER_INVESTIGATION",
            Self::Responded => "RESPONDED",
            Self::Closed => "CLOSED",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::AwaitingAcknowledgement,
            Self::UnderInvestigation,
            Self::Responded,
            Self::Closed,
            Self::Withdrawn,
        ]
        .into_iter()
        .find(|status| status.code() == code)
    }

    /// Closed and withdrawn complaints take no step but reopening.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Closed | Self::Withdrawn)
    }
}

/// One stage's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageProgress {
    /// Receipt (stage 1) or the escalation request (stage 2).
    pub started_at: DateTime<Utc>,
    /// When the clock now running started: the stage's start, its acknowledgement, or the latest
    /// reopening. Escalations are raised once per level per clock.
    pub clock_started_at: DateTime<Utc>,
    pub acknowledgement_due: NaiveDate,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub handler: Option<Handler>,
    pub complaint_definition: OptionalText,
    pub outcome_sought: OptionalText,
    pub response_due: Option<NaiveDate>,
    pub extension_working_days: u32,
    pub responded_at: Option<DateTime<Utc>>,
    pub decision: Option<ShortText>,
    pub remedy: OptionalText,
}

impl StageProgress {
    fn started(started_at: DateTime<Utc>, acknowledgement_due: NaiveDate) -> Self {
        Self {
            started_at,
            clock_started_at: started_at,
            acknowledgement_due,
            acknowledged_at: None,
            handler: None,
            complaint_definition: OptionalText::default(),
            outcome_sought: OptionalText::default(),
            response_due: None,
            extension_working_days: 0,
            responded_at: None,
            decision: None,
            remedy: OptionalText::default(),
        }
    }

    /// The deadline still to be met, if any: acknowledgement first, then response.
    pub fn pending_deadline(&self) -> Option<NaiveDate> {
        if self.acknowledged_at.is_none() {
            return Some(self.acknowledgement_due);
        }
        if self.responded_at.is_none() {
            return self.response_due;
        }
        None
    }
}

/// The latest-dated step of the Code a caller took (receipt, acknowledgement, extension,
/// response, escalation to stage 2, closure, withdrawal, reopening). No later step may be dated
/// before it, so a complaint's history reads in order. Findings, notes and escalations are
/// stamped with the server's clock rather than dated by the caller, so they do not count: a step
/// done on time and entered late may still be dated when it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestStep {
    /// The step in the words of a sentence: "received", "closed", ….
    pub step: &'static str,
    pub at: DateTime<Utc>,
}

/// A complaint as the Code sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub id: ComplaintId,
    pub channel: String,
    pub source_system: SourceSystem,
    pub resident: Resident,
    pub property: Property,
    pub contractor_id: ContractorId,
    pub visit_id: Option<VisitId>,
    pub standards: Vec<ServiceStandard>,
    pub description: LongText,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub outcome_sought: OptionalText,
    pub reasonable_adjustments: OptionalText,
    pub calendar_version: String,
    pub status: Status,
    pub stage: Stage,
    pub stage_one: StageProgress,
    pub stage_two: Option<StageProgress>,
    /// The latest finding per standard (a stage 2 review may change a stage 1 finding).
    pub findings: BTreeMap<ServiceStandard, Finding>,
    pub reopen_count: u32,
    pub note_count: u32,
    /// Every escalation raised, in the order raised.
    pub escalations: Vec<RaisedEscalation>,
    pub latest_step: LatestStep,
    /// How many events have been applied: the stream version.
    pub version: u64,
}

impl Complaint {
    pub fn current_stage(&self) -> &StageProgress {
        match (self.stage, &self.stage_two) {
            (Stage::Two, Some(stage_two)) => stage_two,
            _ => &self.stage_one,
        }
    }

    fn current_stage_mut(&mut self) -> &mut StageProgress {
        match (self.stage, &mut self.stage_two) {
            (Stage::Two, Some(stage_two)) => stage_two,
            _ => &mut self.stage_one,
        }
    }

    /// The deadline the complaint is waiting on, if it is open.
    pub fn pending_deadline(&self) -> Option<NaiveDate> {
        if self.status.is_ended() {
            return None;
        }
        self.current_stage().pending_deadline()
    }

    /// The Code deadline whose clock is running, if any.
    pub fn running_clock(&self) -> Option<RunningClock> {
        if self.status.is_ended() {
            return None;
        }
        let progress = self.current_stage();
        let deadline = if progress.acknowledged_at.is_none() {
            Deadline::acknowledgement(self.stage)
        } else if progress.responded_at.is_none() {
            Deadline::response(self.stage)
        } else {
            return None;
        };
        Some(RunningClock {
            deadline,
            due: progress.pending_deadline()?,
            started_at: progress.clock_started_at,
        })
    }

    pub fn escalation(&self, escalation_id: Uuid) -> Option<&RaisedEscalation> {
        self.escalations
            .iter()
            .find(|escalation| escalation.escalation_id == escalation_id)
    }
}

/// An escalation raised on the complaint, and who took it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedEscalation {
    pub escalation_id: Uuid,
    pub deadline: Deadline,
    pub level: EscalationLevel,
    pub clock_started_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<Handler>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// Folds one event into the state. An event that cannot follow the state (only a corrupt stream
/// holds one) leaves the state as it was, apart from the version.
pub fn apply(state: Option<Complaint>, event: &Event) -> Option<Complaint> {
    if let Event::ComplaintReceived { .. } = event {
        if state.is_some() {
            return state;
        }
        return received(event);
    }
    let mut complaint = state?;
    complaint.version += 1;
    if let Some(step) = dated_step(event) {
        // The latest date, not the latest event: a stream written before steps were held in
        // order may hold one dated before its predecessor.
        if step.at >= complaint.latest_step.at {
            complaint.latest_step = step;
        }
    }
    complaint.follow(event);
    Some(complaint)
}

/// The complaint a `ComplaintReceived` event starts; None for any other event.
fn received(event: &Event) -> Option<Complaint> {
    let Event::ComplaintReceived {
        complaint_id,
        channel,
        source_system,
        resident,
        property,
        contractor_id,
        visit_id,
        standards,
        description,
        occurred_at,
        received_at,
        outcome_sought,
        reasonable_adjustments,
        acknowledgement_due,
        calendar_version,
    } = event
    else {
        return None;
    };
    Some(Complaint {
        id: *complaint_id,
        channel: channel.clone(),
        source_system: source_system.clone(),
        resident: resident.clone(),
        property: property.clone(),
        contractor_id: contractor_id.clone(),
        visit_id: visit_id.clone(),
        standards: standards.clone(),
        description: description.clone(),
        occurred_at: *occurred_at,
        received_at: *received_at,
        outcome_sought: outcome_sought.clone(),
        reasonable_adjustments: reasonable_adjustments.clone(),
        calendar_version: calendar_version.clone(),
        status: Status::AwaitingAcknowledgement,
        stage: Stage::One,
        stage_one: StageProgress::started(*received_at, *acknowledgement_due),
        stage_two: None,
        findings: BTreeMap::new(),
        reopen_count: 0,
        note_count: 0,
        escalations: Vec::new(),
        latest_step: LatestStep {
            step: "received",
            at: *received_at,
        },
        version: 1,
    })
}

impl Complaint {
    /// What one event after intake changes, apart from the version and the latest step.
    fn follow(&mut self, event: &Event) {
        match event {
            Event::ComplaintReceived { .. } => {}
            Event::ComplaintAcknowledged {
                handler,
                complaint_definition,
                outcome_sought,
                acknowledged_at,
                response_due,
                ..
            } => self.acknowledged(
                handler,
                complaint_definition,
                outcome_sought,
                *acknowledged_at,
                *response_due,
            ),
            Event::DeadlineExtended {
                working_days,
                response_due,
                ..
            } => {
                let stage = self.current_stage_mut();
                stage.extension_working_days += working_days;
                stage.response_due = Some(*response_due);
            }
            Event::FindingsRecorded { findings, .. } => {
                for finding in findings {
                    self.findings.insert(finding.standard, finding.clone());
                }
            }
            Event::ResponseIssued {
                decision,
                remedy,
                responded_at,
                ..
            } => self.responded(decision, remedy, *responded_at),
            Event::StageTwoRequested {
                requested_at,
                acknowledgement_due,
                ..
            } => self.stage_two_started(*requested_at, *acknowledgement_due),
            Event::ComplaintClosed { .. } => self.status = Status::Closed,
            Event::ComplaintWithdrawn { .. } => self.status = Status::Withdrawn,
            Event::ComplaintReopened {
                acknowledgement_due,
                response_due,
                reopened_at,
                ..
            } => self.reopened(*acknowledgement_due, *response_due, *reopened_at),
            Event::NoteAdded { .. } => self.note_count += 1,
            Event::EscalationRaised {
                escalation_id,
                deadline,
                level,
                clock_started_at,
                raised_at,
                ..
            } => self.escalations.push(RaisedEscalation::new(
                *escalation_id,
                *deadline,
                level,
                *clock_started_at,
                *raised_at,
            )),
            Event::EscalationAcknowledged {
                escalation_id,
                acknowledged_by,
                acknowledged_at,
                ..
            } => self.escalation_acknowledged(*escalation_id, acknowledged_by, *acknowledged_at),
        }
    }

    fn acknowledged(
        &mut self,
        handler: &Handler,
        complaint_definition: &OptionalText,
        outcome_sought: &OptionalText,
        acknowledged_at: DateTime<Utc>,
        response_due: NaiveDate,
    ) {
        let stage = self.current_stage_mut();
        stage.acknowledged_at = Some(acknowledged_at);
        stage.handler = Some(handler.clone());
        stage.complaint_definition = complaint_definition.clone();
        stage.outcome_sought = outcome_sought.clone();
        stage.response_due = Some(response_due);
        stage.clock_started_at = acknowledged_at;
        self.status = Status::UnderInvestigation;
    }

    fn responded(
        &mut self,
        decision: &ShortText,
        remedy: &OptionalText,
        responded_at: DateTime<Utc>,
    ) {
        let stage = self.current_stage_mut();
        stage.responded_at = Some(responded_at);
        stage.decision = Some(decision.clone());
        stage.remedy = remedy.clone();
        self.status = Status::Responded;
    }

    fn stage_two_started(&mut self, requested_at: DateTime<Utc>, acknowledgement_due: NaiveDate) {
        self.stage = Stage::Two;
        self.stage_two = Some(StageProgress::started(requested_at, acknowledgement_due));
        self.status = Status::AwaitingAcknowledgement;
    }

    /// The current stage starts its clock again, unanswered.
    fn reopened(
        &mut self,
        acknowledgement_due: Option<NaiveDate>,
        response_due: Option<NaiveDate>,
        reopened_at: DateTime<Utc>,
    ) {
        self.reopen_count += 1;
        let stage = self.current_stage_mut();
        stage.clock_started_at = reopened_at;
        stage.responded_at = None;
        stage.decision = None;
        stage.remedy = OptionalText::default();
        // Extensions already granted still count against the stage's cap.
        if let Some(due) = acknowledgement_due {
            stage.acknowledgement_due = due;
        }
        stage.response_due = response_due;
        self.status = if stage.acknowledged_at.is_some() {
            Status::UnderInvestigation
        } else {
            Status::AwaitingAcknowledgement
        };
    }

    fn escalation_acknowledged(
        &mut self,
        escalation_id: Uuid,
        acknowledged_by: &Handler,
        acknowledged_at: DateTime<Utc>,
    ) {
        if let Some(escalation) = self
            .escalations
            .iter_mut()
            .find(|escalation| escalation.escalation_id == escalation_id)
        {
            escalation.acknowledged_by = Some(acknowledged_by.clone());
            escalation.acknowledged_at = Some(acknowledged_at);
        }
    }
}

impl RaisedEscalation {
    /// An escalation just raised, taken on by nobody yet.
    fn new(
        escalation_id: Uuid,
        deadline: Deadline,
        level: &EscalationLevel,
        clock_started_at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
    ) -> Self {
        Self {
            escalation_id,
            deadline,
            level: level.clone(),
            clock_started_at,
            raised_at,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }
}

/// The Code step an event records and when the caller dated it; None for events stamped by the
/// server's clock.
fn dated_step(event: &Event) -> Option<LatestStep> {
    let (step, at) = match event {
        Event::ComplaintReceived { received_at, .. } => ("received", received_at),
        Event::ComplaintAcknowledged {
            acknowledged_at, ..
        } => ("acknowledged", acknowledged_at),
        Event::DeadlineExtended { extended_at, .. } => ("extended", extended_at),
        Event::ResponseIssued { responded_at, .. } => ("answered", responded_at),
        Event::StageTwoRequested { requested_at, .. } => ("escalated to stage 2", requested_at),
        Event::ComplaintClosed { closed_at, .. } => ("closed", closed_at),
        Event::ComplaintWithdrawn { withdrawn_at, .. } => ("withdrawn", withdrawn_at),
        Event::ComplaintReopened { reopened_at, .. } => ("reopened", reopened_at),
        Event::FindingsRecorded { .. }
        | Event::NoteAdded { .. }
        | Event::EscalationRaised { .. }
        | Event::EscalationAcknowledged { .. } => return None,
    };
    Some(LatestStep { step, at: *at })
}

/// Folds a whole stream.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Complaint> {
    events.into_iter().fold(None, apply)
}
