//! The `Contractor` aggregate: the landlord's registry of the firms that work in residents' homes,
//! what they agreed to, whether they may work now, and their equality audits.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::complaint::DomainError;
use crate::input::{
    ContractorId, LongText, OptionalText, PersonName, PhoneNumber, ShortText, VisitId,
};
use crate::standard::ServiceStandard;

/// A contract the contractor works under, with the service standards it agreed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    pub reference: ShortText,
    pub standards: Vec<ServiceStandard>,
}

/// What the registry holds about a contractor and shows residents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractorProfile {
    pub legal_name: ShortText,
    pub trading_names: Vec<ShortText>,
    /// Where residents can see the logo the operatives wear.
    pub logo_url: OptionalText,
    /// The named contact residents are given.
    pub public_contact_name: PersonName,
    /// The number residents can ring to check a caller is genuine.
    pub public_phone: PhoneNumber,
    pub contracts: Vec<ContractTerms>,
}

/// The overall result of an equality audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditOutcome {
    Satisfactory,
    ImprovementRequired,
    Unsatisfactory,
}

impl AuditOutcome {
    pub fn code(self) -> &'static str {
        match self {
            Self::Satisfactory => "SATISFACTORY",
            Self::ImprovementRequired => "IMPROVEMENT_REQUIRED",
            Self::Unsatisfactory => "UNSATISFACTORY",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::Satisfactory,
            Self::ImprovementRequired,
            Self::Unsatisfactory,
        ]
        .into_iter()
        .find(|outcome| outcome.code() == code)
    }
}

/// An equality and diversity audit of the contractor: the landlord's duties bind its contractors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EqualityAudit {
    pub audit_date: NaiveDate,
    pub auditor: ShortText,
    pub workforce_diversity: LongText,
    pub equality_policy_and_procedures: LongText,
    pub requirements_not_met: LongText,
    pub staff_experience_and_training: LongText,
    pub outcome: AuditOutcome,
}

/// Whether the contractor may work in residents' homes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractorStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContractorCommand {
    Register {
        contractor_id: ContractorId,
        profile: ContractorProfile,
        at: DateTime<Utc>,
    },
    Update {
        profile: ContractorProfile,
        at: DateTime<Utc>,
    },
    Suspend {
        reason: ShortText,
        at: DateTime<Utc>,
    },
    Reinstate {
        reason: OptionalText,
        at: DateTime<Utc>,
    },
    RecordEqualityAudit {
        audit: EqualityAudit,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContractorEvent {
    ContractorRegistered {
        contractor_id: ContractorId,
        profile: ContractorProfile,
        registered_at: DateTime<Utc>,
    },
    ContractorUpdated {
        profile: ContractorProfile,
        updated_at: DateTime<Utc>,
    },
    ContractorSuspended {
        reason: ShortText,
        suspended_at: DateTime<Utc>,
    },
    ContractorReinstated {
        reason: OptionalText,
        reinstated_at: DateTime<Utc>,
    },
    EqualityAuditRecorded {
        audit: EqualityAudit,
        recorded_at: DateTime<Utc>,
    },
}

impl ContractorEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ContractorRegistered { .. } => "ContractorRegistered",
            Self::ContractorUpdated { .. } => "ContractorUpdated",
            Self::ContractorSuspended { .. } => "ContractorSuspended",
            Self::ContractorReinstated { .. } => "ContractorReinstated",
            Self::EqualityAuditRecorded { .. } => "EqualityAuditRecorded",
        }
    }

    pub fn schema_version(&self) -> u32 {
        1
    }

    pub fn to_payload(&self) -> serde_json::Value {
        crate::payload::untagged(self)
    }

    pub fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, crate::complaint::EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload.clone())
    }
}

/// A contractor as the registry sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contractor {
    pub id: ContractorId,
    pub profile: ContractorProfile,
    pub status: ContractorStatus,
    pub registered_at: DateTime<Utc>,
    /// Every audit, in the order recorded.
    pub equality_audits: Vec<EqualityAudit>,
    pub version: u64,
}

impl Contractor {
    /// The most recent audit by audit date.
    pub fn latest_equality_audit(&self) -> Option<&EqualityAudit> {
        self.equality_audits
            .iter()
            .max_by_key(|audit| audit.audit_date)
    }
}

/// Decides what a command does to the contractor in `state` (None: not registered).
pub fn handle_contractor(
    state: Option<&Contractor>,
    command: ContractorCommand,
) -> Result<Vec<ContractorEvent>, DomainError> {
    let Some(contractor) = state else {
        return match command {
            ContractorCommand::Register {
                contractor_id,
                profile,
                at,
            } => Ok(vec![ContractorEvent::ContractorRegistered {
                contractor_id,
                profile,
                registered_at: at,
            }]),
            _ => Err(DomainError::NotFound),
        };
    };
    match command {
        ContractorCommand::Register { .. } => Err(DomainError::NotAllowed(format!(
            "contractor {} is already registered; update it instead",
            contractor.id
        ))),
        ContractorCommand::Update { profile, at } => Ok(vec![ContractorEvent::ContractorUpdated {
            profile,
            updated_at: at,
        }]),
        ContractorCommand::Suspend { reason, at } => {
            if contractor.status == ContractorStatus::Suspended {
                return Err(DomainError::NotAllowed(
                    "the contractor is already suspended".to_owned(),
                ));
            }
            Ok(vec![ContractorEvent::ContractorSuspended {
                reason,
                suspended_at: at,
            }])
        }
        ContractorCommand::Reinstate { reason, at } => {
            if contractor.status == ContractorStatus::Active {
                return Err(DomainError::NotAllowed(
                    "the contractor is not suspended".to_owned(),
                ));
            }
            Ok(vec![ContractorEvent::ContractorReinstated {
                reason,
                reinstated_at: at,
            }])
        }
        ContractorCommand::RecordEqualityAudit { audit, at } => {
            Ok(vec![ContractorEvent::EqualityAuditRecorded {
                audit,
                recorded_at: at,
            }])
        }
    }
}

/// Folds one event into the contractor's state.
pub fn apply_contractor(state: Option<Contractor>, event: &ContractorEvent) -> Option<Contractor> {
    if let ContractorEvent::ContractorRegistered {
        contractor_id,
        profile,
        registered_at,
    } = event
    {
        return state.or_else(|| {
            Some(Contractor {
                id: contractor_id.clone(),
                profile: profile.clone(),
                status: ContractorStatus::Active,
                registered_at: *registered_at,
                equality_audits: Vec::new(),
                version: 1,
            })
        });
    }
    let mut contractor = state?;
    contractor.version += 1;
    match event {
        ContractorEvent::ContractorRegistered { .. } => {}
        ContractorEvent::ContractorUpdated { profile, .. } => contractor.profile = profile.clone(),
        ContractorEvent::ContractorSuspended { .. } => {
            contractor.status = ContractorStatus::Suspended;
        }
        ContractorEvent::ContractorReinstated { .. } => {
            contractor.status = ContractorStatus::Active;
        }
        ContractorEvent::EqualityAuditRecorded { audit, .. } => {
            contractor.equality_audits.push(audit.clone());
        }
    }
    Some(contractor)
}

/// A completed visit to a home: the exposure behind every breach rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub visit_id: VisitId,
    pub contractor_id: ContractorId,
    pub uprn: crate::input::Uprn,
    pub work_order_reference: ShortText,
    pub visit_date: NaiveDate,
}

/// The one event of a visit's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum VisitEvent {
    VisitRecorded { visit: Visit },
}

impl VisitEvent {
    pub fn event_type(&self) -> &'static str {
        "VisitRecorded"
    }

    pub fn schema_version(&self) -> u32 {
        1
    }

    pub fn to_payload(&self) -> serde_json::Value {
        crate::payload::untagged(self)
    }

    pub fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, crate::complaint::EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload.clone())
    }
}
