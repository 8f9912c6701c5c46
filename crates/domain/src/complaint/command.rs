//! Commands: what a caller asks the complaint to do, already parsed from the request.

use chrono::{DateTime, Utc};

use uuid::Uuid;

use super::{FindingOutcome, Stage};
use crate::escalation::PlannedEscalation;
use crate::input::{
    Address, ComplaintId, ContractorId, EmailAddress, Handler, LongText, OptionalText, PersonName,
    PhoneNumber, ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use crate::standard::ServiceStandard;

#[derive(Debug, Clone, PartialEq)]
pub struct ResidentInput {
    pub reference: ResidentReference,
    pub name: PersonName,
    pub phone: Option<PhoneNumber>,
    pub email: Option<EmailAddress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyInput {
    pub uprn: Uprn,
    pub address: Address,
}

/// A new complaint, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct LogComplaint {
    pub complaint_id: ComplaintId,
    pub channel: String,
    pub source_system: SourceSystem,
    pub resident: ResidentInput,
    pub property: PropertyInput,
    pub contractor_id: ContractorId,
    pub visit_id: Option<VisitId>,
    /// One or more, without repeats.
    pub standards: Vec<ServiceStandard>,
    pub description: LongText,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub outcome_sought: OptionalText,
    pub reasonable_adjustments: OptionalText,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindingInput {
    pub standard: ServiceStandard,
    pub outcome: FindingOutcome,
    pub summary: OptionalText,
}

/// Every step a complaint can be asked to take. `at` is when the step happened in the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Log(Box<LogComplaint>),
    Acknowledge {
        stage: Stage,
        handler: Handler,
        complaint_definition: OptionalText,
        outcome_sought: OptionalText,
        at: DateTime<Utc>,
    },
    ExtendDeadline {
        reason: ShortText,
        working_days: u32,
        ombudsman_details_given: bool,
        at: DateTime<Utc>,
    },
    RecordFindings {
        findings: Vec<FindingInput>,
        at: DateTime<Utc>,
    },
    IssueResponse {
        decision: ShortText,
        remedy: OptionalText,
        at: DateTime<Utc>,
    },
    RequestStageTwo {
        reason: OptionalText,
        at: DateTime<Utc>,
    },
    Close {
        reason: OptionalText,
        at: DateTime<Utc>,
    },
    Reopen {
        reason: ShortText,
        at: DateTime<Utc>,
    },
    Withdraw {
        reason: OptionalText,
        at: DateTime<Utc>,
    },
    AddNote {
        text: LongText,
        at: DateTime<Utc>,
    },
    /// Raised by the notifier's scheduler, never by a caller.
    RaiseEscalation {
        escalation: Box<PlannedEscalation>,
        at: DateTime<Utc>,
    },
    AcknowledgeEscalation {
        escalation_id: Uuid,
        by: Handler,
        note: OptionalText,
        at: DateTime<Utc>,
    },
}
