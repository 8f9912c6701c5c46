//! The `Contractor` aggregate: the landlord's registry of the firms that work in residents' homes,
//! what they agreed to, whether they may work now, and their equality audits.

mod contract;

pub use contract::{
    ContractSignOff, EqualityConditions, EqualityTraining, LiaisonLead, ResidentChampion,
    ResidentLiaison, StandardsSignOff, attributed_lead, equality_audit_overdue,
    oldest_audit_in_time, standard_set,
};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::complaint::DomainError;
use crate::input::{
    ContractorId, InvalidInput, LongText, OptionalText, PersonName, PhoneNumber, ShortText, VisitId,
};
use crate::standard::ServiceStandard;

/// A contract the contractor works under, with the service standards it agreed to.
///
/// The liaison and equality conditions were added later: stored contracts without them read
/// back as None, and a contract without them is stored as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    pub reference: ShortText,
    pub standards: Vec<ServiceStandard>,
    /// Who leads resident liaison, and the contact residents are given; None: not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liaison: Option<ResidentLiaison>,
    /// The equality conditions the contractor accepted; None: not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equality_conditions: Option<EqualityConditions>,
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
    RecordStandardsSignOff {
        sign_off: StandardsSignOff,
        at: DateTime<Utc>,
    },
    RecordEqualityTraining {
        training: EqualityTraining,
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
    StandardsSignedOff {
        sign_off: StandardsSignOff,
        recorded_at: DateTime<Utc>,
    },
    EqualityTrainingRecorded {
        training: EqualityTraining,
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
            Self::StandardsSignedOff { .. } => "StandardsSignedOff",
            Self::EqualityTrainingRecorded { .. } => "EqualityTrainingRecorded",
        }
    }

    pub fn schema_version(&self) -> u32 {
        1
    }

    pub fn to_payload(&self) -> serde_json::Value {
        crate::payload::untagged(self)
    }

    pub fn from_payload<'a>(
        event_type: &str,
        schema_version: u32,
        payload: impl Into<crate::payload::StoredPayload<'a>>,
    ) -> Result<Self, crate::complaint::EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload)
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
    /// Each current contract's sign-off standing, in the profile's contract order.
    pub sign_offs: Vec<ContractSignOff>,
    /// Every training record, in the order recorded.
    pub equality_training: Vec<EqualityTraining>,
    pub version: u64,
}

impl Contractor {
    /// The most recent audit by audit date.
    pub fn latest_equality_audit(&self) -> Option<&EqualityAudit> {
        self.equality_audits
            .iter()
            .max_by_key(|audit| audit.audit_date)
    }

    /// The contract with this reference, if the contractor works under it.
    pub fn contract(&self, reference: &ShortText) -> Option<&ContractTerms> {
        self.profile
            .contracts
            .iter()
            .find(|contract| &contract.reference == reference)
    }

    /// The liaison lead a complaint about this contractor is attributed to (see
    /// [`attributed_lead`]).
    pub fn liaison_lead(&self) -> Option<LiaisonLead> {
        attributed_lead(
            self.profile
                .contracts
                .iter()
                .map(|contract| contract.liaison.as_ref()),
        )
    }
}

/// Each contract of `profile` with its sign-off standing after the profile replaced `before`: a
/// contract keeps its standing while its standards are the same set, and goes stale (keeping
/// its latest sign-off) when they change; a new contract starts not signed off.
fn sign_offs_after_update(
    before: &[ContractSignOff],
    old_profile: &ContractorProfile,
    profile: &ContractorProfile,
) -> Vec<ContractSignOff> {
    profile
        .contracts
        .iter()
        .map(|contract| {
            let previous = before
                .iter()
                .find(|standing| standing.contract_reference == contract.reference);
            let unchanged = old_profile
                .contracts
                .iter()
                .find(|old| old.reference == contract.reference)
                .is_some_and(|old| {
                    standard_set(&old.standards) == standard_set(&contract.standards)
                });
            ContractSignOff {
                contract_reference: contract.reference.clone(),
                signed_off: unchanged && previous.is_some_and(|standing| standing.signed_off),
                latest: previous.and_then(|standing| standing.latest.clone()),
            }
        })
        .collect()
}

fn unsigned(profile: &ContractorProfile) -> Vec<ContractSignOff> {
    sign_offs_after_update(&[], profile, profile)
}

/// A sign-off must name one of the contractor's contracts and list exactly its standards.
fn check_sign_off(contractor: &Contractor, sign_off: &StandardsSignOff) -> Result<(), DomainError> {
    let Some(contract) = contractor.contract(&sign_off.contract_reference) else {
        return Err(InvalidInput::new(
            "sign_off.contract_reference",
            format!(
                "is not a contract of contractor {}; record the contract with UpdateContractor first",
                contractor.id
            ),
        )
        .into());
    };
    if standard_set(&contract.standards) != standard_set(&sign_off.standards) {
        let codes: Vec<&str> = contract.standards.iter().map(|s| s.code()).collect();
        return Err(InvalidInput::new(
            "sign_off.standards",
            format!(
                "must be exactly the contract's standards ({}): champions sign off what the \
                 contract holds",
                codes.join(", ")
            ),
        )
        .into());
    }
    Ok(())
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
        ContractorCommand::RecordStandardsSignOff { sign_off, at } => {
            check_sign_off(contractor, &sign_off)?;
            Ok(vec![ContractorEvent::StandardsSignedOff {
                sign_off,
                recorded_at: at,
            }])
        }
        ContractorCommand::RecordEqualityTraining { training, at } => {
            Ok(vec![ContractorEvent::EqualityTrainingRecorded {
                training,
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
                sign_offs: unsigned(profile),
                equality_training: Vec::new(),
                version: 1,
            })
        });
    }
    let mut contractor = state?;
    contractor.version += 1;
    match event {
        ContractorEvent::ContractorRegistered { .. } => {}
        ContractorEvent::ContractorUpdated { profile, .. } => {
            contractor.sign_offs =
                sign_offs_after_update(&contractor.sign_offs, &contractor.profile, profile);
            contractor.profile = profile.clone();
        }
        ContractorEvent::ContractorSuspended { .. } => {
            contractor.status = ContractorStatus::Suspended;
        }
        ContractorEvent::ContractorReinstated { .. } => {
            contractor.status = ContractorStatus::Active;
        }
        ContractorEvent::EqualityAuditRecorded { audit, .. } => {
            contractor.equality_audits.push(audit.clone());
        }
        ContractorEvent::StandardsSignedOff { sign_off, .. } => {
            if let Some(standing) = contractor
                .sign_offs
                .iter_mut()
                .find(|standing| standing.contract_reference == sign_off.contract_reference)
            {
                standing.signed_off = true;
                standing.latest = Some(sign_off.clone());
            }
        }
        ContractorEvent::EqualityTrainingRecorded { training, .. } => {
            contractor.equality_training.push(training.clone());
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

    pub fn from_payload<'a>(
        event_type: &str,
        schema_version: u32,
        payload: impl Into<crate::payload::StoredPayload<'a>>,
    ) -> Result<Self, crate::complaint::EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload)
    }
}
