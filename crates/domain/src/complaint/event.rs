//! Events: facts about a complaint, stored forever. Their JSON shape is a stored contract: add
//! optional fields freely, but change a field's meaning only with a new schema version.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use super::Stage;
use crate::escalation::{Deadline, EscalationLevel};
use crate::input::{
    Address, ComplaintId, ContractorId, EmailAddress, Handler, LongText, OptionalText, PersonName,
    PhoneNumber, ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use crate::standard::ServiceStandard;

/// The outcome of investigating one alleged standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingOutcome {
    Upheld,
    PartlyUpheld,
    NotUpheld,
}

impl FindingOutcome {
    pub fn code(self) -> &'static str {
        match self {
            Self::Upheld => "UPHELD",
            Self::PartlyUpheld => "PARTLY_UPHELD",
            Self::NotUpheld => "NOT_UPHELD",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub standard: ServiceStandard,
    pub outcome: FindingOutcome,
    #[serde(default)]
    pub summary: OptionalText,
    pub stage: Stage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resident {
    pub reference: ResidentReference,
    pub name: PersonName,
    pub phone: Option<PhoneNumber>,
    pub email: Option<EmailAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub uprn: Uprn,
    pub address: Address,
}

/// Everything that happens to a complaint.
// Events are decoded one stream at a time, never held in bulk, so the size of the intake variant
// costs nothing worth an extra allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    ComplaintReceived {
        complaint_id: ComplaintId,
        channel: String,
        source_system: SourceSystem,
        resident: Resident,
        property: Property,
        contractor_id: ContractorId,
        visit_id: Option<VisitId>,
        standards: Vec<ServiceStandard>,
        description: LongText,
        occurred_at: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
        outcome_sought: OptionalText,
        /// Adjustments the resident needs in how the landlord deals with them (large print, a
        /// call-back time, an advocate): added in schema version 2.
        reasonable_adjustments: OptionalText,
        acknowledgement_due: NaiveDate,
        calendar_version: String,
    },
    ComplaintAcknowledged {
        stage: Stage,
        handler: Handler,
        complaint_definition: OptionalText,
        outcome_sought: OptionalText,
        acknowledged_at: DateTime<Utc>,
        response_due: NaiveDate,
    },
    DeadlineExtended {
        stage: Stage,
        reason: ShortText,
        working_days: u32,
        ombudsman_details_given: bool,
        extended_at: DateTime<Utc>,
        response_due: NaiveDate,
    },
    FindingsRecorded {
        stage: Stage,
        findings: Vec<Finding>,
        recorded_at: DateTime<Utc>,
    },
    ResponseIssued {
        stage: Stage,
        decision: ShortText,
        remedy: OptionalText,
        responded_at: DateTime<Utc>,
    },
    StageTwoRequested {
        reason: OptionalText,
        requested_at: DateTime<Utc>,
        acknowledgement_due: NaiveDate,
    },
    ComplaintClosed {
        stage: Stage,
        reason: OptionalText,
        closed_at: DateTime<Utc>,
    },
    ComplaintReopened {
        stage: Stage,
        reason: ShortText,
        reopened_at: DateTime<Utc>,
        /// Set when the complaint goes back to waiting for acknowledgement.
        acknowledgement_due: Option<NaiveDate>,
        /// Set when the complaint goes back under investigation.
        response_due: Option<NaiveDate>,
    },
    ComplaintWithdrawn {
        stage: Stage,
        reason: OptionalText,
        withdrawn_at: DateTime<Utc>,
    },
    NoteAdded {
        text: LongText,
        added_at: DateTime<Utc>,
    },
    /// A step of a deadline's escalation ladder fell due while the deadline's clock was running.
    /// Its event id is `escalation_id`, derived from (complaint, deadline, level, clock start).
    EscalationRaised {
        escalation_id: Uuid,
        /// The complaint's contractor, so a subscriber can route the escalation without reading
        /// the complaint.
        contractor_id: ContractorId,
        deadline: Deadline,
        level: EscalationLevel,
        /// The deadline's date when the step fell due.
        deadline_date: NaiveDate,
        /// When the deadline's clock (re)started: receipt, acknowledgement or reopening.
        clock_started_at: DateTime<Utc>,
        due_at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
        /// Everyone told, from the policy in force when it was raised.
        recipients: Vec<EmailAddress>,
    },
    /// Somebody took ownership of a raised escalation.
    EscalationAcknowledged {
        escalation_id: Uuid,
        acknowledged_by: Handler,
        note: OptionalText,
        acknowledged_at: DateTime<Utc>,
    },
}

/// Why a stored event could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type} v{schema_version}: {reason}")]
pub struct EventDecodeError {
    pub event_type: String,
    pub schema_version: u32,
    pub reason: String,
}

impl Event {
    /// The schema version this event is written with today.
    pub fn schema_version(&self) -> u32 {
        super::upcast::current_schema_version(self.event_type())
    }

    /// The stored event type, e.g. `ComplaintReceived`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ComplaintReceived { .. } => "ComplaintReceived",
            Self::ComplaintAcknowledged { .. } => "ComplaintAcknowledged",
            Self::DeadlineExtended { .. } => "DeadlineExtended",
            Self::FindingsRecorded { .. } => "FindingsRecorded",
            Self::ResponseIssued { .. } => "ResponseIssued",
            Self::StageTwoRequested { .. } => "StageTwoRequested",
            Self::ComplaintClosed { .. } => "ComplaintClosed",
            Self::ComplaintReopened { .. } => "ComplaintReopened",
            Self::ComplaintWithdrawn { .. } => "ComplaintWithdrawn",
            Self::NoteAdded { .. } => "NoteAdded",
            Self::EscalationRaised { .. } => "EscalationRaised",
            Self::EscalationAcknowledged { .. } => "EscalationAcknowledged",
        }
    }

    /// The stored payload: the event's fields, without its type (which is stored beside it).
    pub fn to_payload(&self) -> serde_json::Value {
        crate::payload::untagged(self)
    }

    /// Reads a stored event back, upcasting an older schema version to the current one.
    pub fn from_payload<'a>(
        event_type: &str,
        schema_version: u32,
        payload: impl Into<crate::payload::StoredPayload<'a>>,
    ) -> Result<Self, EventDecodeError> {
        // A payload already in the current shape (nearly every one) is read where it lies.
        let payload = payload.into();
        if schema_version == super::upcast::current_schema_version(event_type) {
            return crate::payload::tagged(event_type, schema_version, payload);
        }
        let stored = payload.to_value(event_type, schema_version)?;
        let (_, current) = super::upcast::upcast(event_type, schema_version, stored)?;
        crate::payload::tagged(event_type, schema_version, &current)
    }

    /// One line for a person reading the complaint's history.
    pub fn summary(&self) -> String {
        match self {
            Self::ComplaintReceived {
                standards,
                acknowledgement_due,
                ..
            } => {
                let codes: Vec<&str> = standards.iter().map(|s| s.code()).collect();
                format!(
                    "Complaint received alleging {}; acknowledgement due {acknowledgement_due}",
                    codes.join(", ")
                )
            }
            Self::ComplaintAcknowledged {
                stage,
                handler,
                response_due,
                ..
            } => format!("Acknowledged at {stage} by {handler}; response due {response_due}"),
            Self::DeadlineExtended {
                stage,
                working_days,
                response_due,
                ..
            } => format!(
                "{stage} response deadline extended by {working_days} working days to {response_due}"
            ),
            Self::FindingsRecorded {
                stage, findings, ..
            } => {
                let parts: Vec<String> = findings
                    .iter()
                    .map(|f| format!("{} {}", f.standard.code(), f.outcome.code()))
                    .collect();
                format!("Findings recorded at {stage}: {}", parts.join(", "))
            }
            Self::ResponseIssued { stage, .. } => format!("{stage} response issued"),
            Self::StageTwoRequested {
                acknowledgement_due,
                ..
            } => format!("Resident asked for stage 2; acknowledgement due {acknowledgement_due}"),
            Self::ComplaintClosed { stage, .. } => format!("Closed at {stage}"),
            Self::ComplaintReopened { stage, .. } => format!("Reopened at {stage}"),
            Self::ComplaintWithdrawn { stage, .. } => format!("Withdrawn at {stage}"),
            Self::NoteAdded { .. } => "Note added".to_owned(),
            Self::EscalationRaised {
                deadline,
                level,
                deadline_date,
                recipients,
                ..
            } => format!(
                "Escalation `{level}` raised for the {deadline} due {deadline_date}; {} told",
                match recipients.len() {
                    0 => "nobody by email".to_owned(),
                    1 => "1 person".to_owned(),
                    count => format!("{count} people"),
                }
            ),
            Self::EscalationAcknowledged {
                escalation_id,
                acknowledged_by,
                ..
            } => format!("Escalation {escalation_id} acknowledged by {acknowledged_by}"),
        }
    }
}
