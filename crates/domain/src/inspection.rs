//! The `Inspection` aggregate: what the landlord's own officer saw on site, standard by standard,
//! and the findings a "not met" observation opens.
//!
//! A finding must be resolved within a number of working days (a setting) counted from the day
//! it was opened; the notifier escalates one left open past its due date up its own ladder
//! ([`finding_escalation_id`] makes each level's raise happen at most once). A correction is a
//! new event that replaces the details whole: standards newly "not met" open findings, and open
//! findings whose standard is no longer "not met" are withdrawn.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::{WorkingDayCalendar, england_date};
use crate::complaint::{DomainError, EventDecodeError};
use crate::escalation::EscalationLevel;
use crate::input::{
    ContractorId, EmailAddress, Handler, InvalidInput, OptionalText, RequestKey, ShortText, Uprn,
    VisitId,
};
use crate::standard::ServiceStandard;

/// Namespace of inspection ids, finding ids and finding escalation ids. The names hashed under
/// it are stored contracts (pinned by a test): a retry is recognised only while they stay.
const INSPECTION_NAMESPACE: Uuid = Uuid::from_u128(0x51a7_c0de_4e2b_4d6f_9b1a_7e3c_2f80_d417);

/// An inspection's id: derived from the caller's request key, so a retried record finds the
/// inspection its first attempt made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InspectionId(Uuid);

impl InspectionId {
    pub fn for_request(key: &RequestKey) -> Self {
        Self(Uuid::new_v5(
            &INSPECTION_NAMESPACE,
            format!("inspection/{key}").as_bytes(),
        ))
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        Uuid::parse_str(value.trim())
            .map(Self)
            .map_err(|_| InvalidInput::new(field, "must be an inspection id (a UUID)"))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for InspectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of the finding a "not met" observation of `standard` opened at `opened_at`.
pub fn finding_id(
    inspection_id: InspectionId,
    standard: ServiceStandard,
    opened_at: DateTime<Utc>,
) -> Uuid {
    Uuid::new_v5(
        &INSPECTION_NAMESPACE,
        format!(
            "finding/{inspection_id}/{}/{}",
            standard.code(),
            opened_at.timestamp_micros()
        )
        .as_bytes(),
    )
}

/// The id of a finding's escalation at `level`, also its event's id: raised once per level.
pub fn finding_escalation_id(finding_id: Uuid, level: &EscalationLevel) -> Uuid {
    Uuid::new_v5(
        &INSPECTION_NAMESPACE,
        format!("finding-escalation/{finding_id}/{level}").as_bytes(),
    )
}

/// What the officer saw for one standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ObservationResult {
    Met,
    NotMet,
    NotObserved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub standard: ServiceStandard,
    pub result: ObservationResult,
    pub note: OptionalText,
}

/// What an inspection records, and a correction replaces whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionDetails {
    pub contractor_id: ContractorId,
    pub contract_reference: ShortText,
    pub uprn: Uprn,
    pub visit_id: Option<VisitId>,
    pub inspected_at: DateTime<Utc>,
    pub inspecting_officer: Handler,
    pub observations: Vec<Observation>,
    /// Ids or URLs of photos, never the images.
    pub photo_references: Vec<ShortText>,
}

impl InspectionDetails {
    /// The standards seen not met.
    pub fn not_met(&self) -> impl Iterator<Item = ServiceStandard> + '_ {
        self.observations
            .iter()
            .filter(|observation| observation.result == ObservationResult::NotMet)
            .map(|observation| observation.standard)
    }
}

/// A finding's escalation, worked out by the notifier from the finding's ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFindingEscalation {
    pub escalation_id: Uuid,
    pub finding_id: Uuid,
    pub level: EscalationLevel,
    pub due_at: DateTime<Utc>,
    pub recipients: Vec<EmailAddress>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InspectionCommand {
    Record {
        inspection_id: InspectionId,
        details: InspectionDetails,
        at: DateTime<Utc>,
    },
    Correct {
        details: InspectionDetails,
        reason: ShortText,
        at: DateTime<Utc>,
    },
    ResolveFinding {
        finding_id: Uuid,
        resolution: ShortText,
        resolved_by: Handler,
        resolved_at: DateTime<Utc>,
    },
    RaiseFindingEscalation {
        escalation: PlannedFindingEscalation,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InspectionEvent {
    InspectionRecorded {
        inspection_id: InspectionId,
        details: InspectionDetails,
        recorded_at: DateTime<Utc>,
    },
    InspectionCorrected {
        details: InspectionDetails,
        reason: ShortText,
        corrected_at: DateTime<Utc>,
    },
    FindingOpened {
        finding_id: Uuid,
        contractor_id: ContractorId,
        standard: ServiceStandard,
        opened_at: DateTime<Utc>,
        due_date: NaiveDate,
    },
    FindingWithdrawn {
        finding_id: Uuid,
        withdrawn_at: DateTime<Utc>,
    },
    FindingResolved {
        finding_id: Uuid,
        resolution: ShortText,
        resolved_by: Handler,
        resolved_at: DateTime<Utc>,
    },
    FindingEscalated {
        escalation_id: Uuid,
        finding_id: Uuid,
        contractor_id: ContractorId,
        standard: ServiceStandard,
        level: EscalationLevel,
        due_date: NaiveDate,
        due_at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
        recipients: Vec<EmailAddress>,
    },
}

impl InspectionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::InspectionRecorded { .. } => "InspectionRecorded",
            Self::InspectionCorrected { .. } => "InspectionCorrected",
            Self::FindingOpened { .. } => "FindingOpened",
            Self::FindingWithdrawn { .. } => "FindingWithdrawn",
            Self::FindingResolved { .. } => "FindingResolved",
            Self::FindingEscalated { .. } => "FindingEscalated",
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
    ) -> Result<Self, EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload)
    }
}

/// Where a finding stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingState {
    Open,
    Resolved {
        resolution: ShortText,
        resolved_by: Handler,
        resolved_at: DateTime<Utc>,
    },
    Withdrawn {
        withdrawn_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub finding_id: Uuid,
    pub standard: ServiceStandard,
    pub opened_at: DateTime<Utc>,
    pub due_date: NaiveDate,
    pub state: FindingState,
    /// Levels raised so far, in order.
    pub escalated_levels: Vec<EscalationLevel>,
}

impl Finding {
    pub fn is_open(&self) -> bool {
        self.state == FindingState::Open
    }
}

/// An inspection as its stream tells it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub id: InspectionId,
    pub details: InspectionDetails,
    pub recorded_at: DateTime<Utc>,
    pub corrections: u32,
    pub findings: Vec<Finding>,
    pub version: u64,
}

impl Inspection {
    pub fn finding(&self, finding_id: Uuid) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|finding| finding.finding_id == finding_id)
    }
}

/// What deciding an inspection command needs beyond the state: the calendar that counts a
/// finding's working days, and how many it is given.
#[derive(Debug, Clone, Copy)]
pub struct FindingRules<'a> {
    pub calendar: &'a WorkingDayCalendar,
    pub due_working_days: u32,
}

impl FindingRules<'_> {
    /// The findings that not-met `standards` open at `at`, due `due_working_days` after the day
    /// of `at` in England. `field` names the request field that dated them.
    fn open(
        &self,
        inspection_id: InspectionId,
        contractor_id: &ContractorId,
        standards: impl Iterator<Item = ServiceStandard>,
        at: DateTime<Utc>,
        field: &str,
    ) -> Result<Vec<InspectionEvent>, DomainError> {
        let mut opened = Vec::new();
        for standard in standards {
            let due_date = self
                .calendar
                .try_add_working_days(england_date(at), self.due_working_days)
                .map_err(|error| DomainError::OutsideCalendar {
                    field: field.to_owned(),
                    error,
                })?;
            opened.push(InspectionEvent::FindingOpened {
                finding_id: finding_id(inspection_id, standard, at),
                contractor_id: contractor_id.clone(),
                standard,
                opened_at: at,
                due_date,
            });
        }
        Ok(opened)
    }
}

/// Decides what a command does to the inspection in `state` (None: not recorded).
pub fn handle_inspection(
    state: Option<&Inspection>,
    command: InspectionCommand,
    rules: FindingRules<'_>,
) -> Result<Vec<InspectionEvent>, DomainError> {
    let Some(inspection) = state else {
        return match command {
            InspectionCommand::Record {
                inspection_id,
                details,
                at,
            } => {
                let findings = rules.open(
                    inspection_id,
                    &details.contractor_id,
                    details.not_met(),
                    details.inspected_at,
                    "details.inspected_at",
                )?;
                let mut events = vec![InspectionEvent::InspectionRecorded {
                    inspection_id,
                    details,
                    recorded_at: at,
                }];
                events.extend(findings);
                Ok(events)
            }
            _ => Err(DomainError::NotFound),
        };
    };
    match command {
        InspectionCommand::Record { .. } => Err(DomainError::NotAllowed(format!(
            "inspection {} is already recorded; correct it instead",
            inspection.id
        ))),
        InspectionCommand::Correct {
            details,
            reason,
            at,
        } => correct(inspection, details, reason, at, rules),
        InspectionCommand::ResolveFinding {
            finding_id,
            resolution,
            resolved_by,
            resolved_at,
        } => {
            let finding = known_finding(inspection, finding_id)?;
            match &finding.state {
                FindingState::Open => {}
                FindingState::Resolved { resolved_at, .. } => {
                    return Err(DomainError::NotAllowed(format!(
                        "the finding was already resolved on {}",
                        england_date(*resolved_at)
                    )));
                }
                FindingState::Withdrawn { .. } => {
                    return Err(DomainError::NotAllowed(
                        "the finding was withdrawn by a correction; there is nothing to resolve"
                            .to_owned(),
                    ));
                }
            }
            if resolved_at < finding.opened_at {
                return Err(InvalidInput::new(
                    "resolved_at",
                    format!(
                        "must not be before the finding was opened ({})",
                        finding.opened_at.to_rfc3339()
                    ),
                )
                .into());
            }
            Ok(vec![InspectionEvent::FindingResolved {
                finding_id,
                resolution,
                resolved_by,
                resolved_at,
            }])
        }
        InspectionCommand::RaiseFindingEscalation { escalation, at } => {
            let finding = known_finding(inspection, escalation.finding_id)?;
            if !finding.is_open() {
                return Err(DomainError::NotAllowed(
                    "the finding is no longer open".to_owned(),
                ));
            }
            if finding.escalated_levels.contains(&escalation.level) {
                return Err(DomainError::NotAllowed(format!(
                    "level `{}` was already raised for this finding",
                    escalation.level
                )));
            }
            Ok(vec![InspectionEvent::FindingEscalated {
                escalation_id: escalation.escalation_id,
                finding_id: finding.finding_id,
                contractor_id: inspection.details.contractor_id.clone(),
                standard: finding.standard,
                level: escalation.level,
                due_date: finding.due_date,
                due_at: escalation.due_at,
                raised_at: at,
                recipients: escalation.recipients,
            }])
        }
    }
}

fn known_finding(inspection: &Inspection, finding_id: Uuid) -> Result<&Finding, DomainError> {
    inspection.finding(finding_id).ok_or_else(|| {
        InvalidInput::new("finding_id", "is not a finding of this inspection").into()
    })
}

/// A correction: the new details, findings opened for standards newly not met, and open
/// findings withdrawn whose standard is no longer not met.
fn correct(
    inspection: &Inspection,
    details: InspectionDetails,
    reason: ShortText,
    at: DateTime<Utc>,
    rules: FindingRules<'_>,
) -> Result<Vec<InspectionEvent>, DomainError> {
    let was_not_met: Vec<ServiceStandard> = inspection.details.not_met().collect();
    let now_not_met: Vec<ServiceStandard> = details.not_met().collect();
    let newly = now_not_met
        .iter()
        .copied()
        .filter(|standard| !was_not_met.contains(standard));
    let opened = rules.open(
        inspection.id,
        &details.contractor_id,
        newly,
        at,
        "details.observations",
    )?;
    let withdrawn = inspection
        .findings
        .iter()
        .filter(|finding| finding.is_open() && !now_not_met.contains(&finding.standard))
        .map(|finding| InspectionEvent::FindingWithdrawn {
            finding_id: finding.finding_id,
            withdrawn_at: at,
        });
    let mut events = vec![InspectionEvent::InspectionCorrected {
        details,
        reason,
        corrected_at: at,
    }];
    events.extend(withdrawn);
    events.extend(opened);
    Ok(events)
}

/// Folds one event into the inspection's state.
pub fn apply_inspection(state: Option<Inspection>, event: &InspectionEvent) -> Option<Inspection> {
    if let InspectionEvent::InspectionRecorded {
        inspection_id,
        details,
        recorded_at,
    } = event
    {
        return state.or_else(|| {
            Some(Inspection {
                id: *inspection_id,
                details: details.clone(),
                recorded_at: *recorded_at,
                corrections: 0,
                findings: Vec::new(),
                version: 1,
            })
        });
    }
    let mut inspection = state?;
    inspection.version += 1;
    match event {
        InspectionEvent::InspectionRecorded { .. } => {}
        InspectionEvent::InspectionCorrected { details, .. } => {
            inspection.details = details.clone();
            inspection.corrections += 1;
        }
        InspectionEvent::FindingOpened {
            finding_id,
            standard,
            opened_at,
            due_date,
            ..
        } => inspection.findings.push(Finding {
            finding_id: *finding_id,
            standard: *standard,
            opened_at: *opened_at,
            due_date: *due_date,
            state: FindingState::Open,
            escalated_levels: Vec::new(),
        }),
        InspectionEvent::FindingWithdrawn {
            finding_id,
            withdrawn_at,
        } => {
            if let Some(finding) = find(&mut inspection, *finding_id) {
                finding.state = FindingState::Withdrawn {
                    withdrawn_at: *withdrawn_at,
                };
            }
        }
        InspectionEvent::FindingResolved {
            finding_id,
            resolution,
            resolved_by,
            resolved_at,
        } => {
            if let Some(finding) = find(&mut inspection, *finding_id) {
                finding.state = FindingState::Resolved {
                    resolution: resolution.clone(),
                    resolved_by: resolved_by.clone(),
                    resolved_at: *resolved_at,
                };
            }
        }
        InspectionEvent::FindingEscalated {
            finding_id, level, ..
        } => {
            if let Some(finding) = find(&mut inspection, *finding_id) {
                finding.escalated_levels.push(level.clone());
            }
        }
    }
    Some(inspection)
}

fn find(inspection: &mut Inspection, finding_id: Uuid) -> Option<&mut Finding> {
    inspection
        .findings
        .iter_mut()
        .find(|finding| finding.finding_id == finding_id)
}

/// The default ladder of an unresolved finding: the contract manager once its due day has
/// ended, then the head of service five working days later.
pub fn default_finding_ladder() -> Vec<(String, i32)> {
    vec![
        ("contract_manager".to_owned(), 0),
        ("head_of_service".to_owned(), 5),
    ]
}

impl InspectionEvent {
    /// One line a person reads in the inspection's history.
    pub fn summary(&self) -> String {
        match self {
            Self::InspectionRecorded { details, .. } => format!(
                "Inspection of {} recorded: {} standards checked",
                details.contractor_id,
                details.observations.len()
            ),
            Self::InspectionCorrected { reason, .. } => format!("Inspection corrected: {reason}"),
            Self::FindingOpened {
                standard, due_date, ..
            } => format!(
                "Finding opened: {} not met; resolve by {due_date}",
                standard.label()
            ),
            Self::FindingWithdrawn { .. } => "Finding withdrawn by a correction".to_owned(),
            Self::FindingResolved { resolution, .. } => format!("Finding resolved: {resolution}"),
            Self::FindingEscalated { level, .. } => format!("Finding escalated to `{level}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names hashed into ids are stored contracts: these must never change.
    #[test]
    fn derived_ids_are_pinned() {
        let key = RequestKey::parse("request_id", "inspection-1").unwrap_or_else(|e| panic!("{e}"));
        let inspection = InspectionId::for_request(&key);
        assert_eq!(
            inspection,
            InspectionId(Uuid::new_v5(
                &INSPECTION_NAMESPACE,
                b"inspection/inspection-1"
            ))
        );
        let at: DateTime<Utc> = "2026-04-02T09:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let finding = finding_id(inspection, ServiceStandard::Tidiness, at);
        assert_eq!(
            finding,
            Uuid::new_v5(
                &INSPECTION_NAMESPACE,
                format!("finding/{inspection}/TIDINESS/{}", at.timestamp_micros()).as_bytes()
            )
        );
        let level =
            EscalationLevel::parse("level", "contract_manager").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            finding_escalation_id(finding, &level),
            Uuid::new_v5(
                &INSPECTION_NAMESPACE,
                format!("finding-escalation/{finding}/contract_manager").as_bytes()
            )
        );
    }
}
