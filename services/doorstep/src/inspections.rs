//! `doorstep.v1.InspectionService`: what the landlord's officers see on site, each inspection a
//! stream of its own (`inspection-<id>`, the id derived from the caller's `request_id`), and the
//! raising of unresolved findings' escalations for the notifier.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_api::v1::inspection_service_server::InspectionService;
use doorstep_commands::{Aggregate, CommandLog, CommandOrigin, IdPolicy, Refusal};
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::escalation::EscalationPolicy;
use doorstep_domain::inspection::{
    Finding, FindingRules, FindingState, Inspection, InspectionCommand, InspectionDetails,
    InspectionEvent, InspectionId, ObservationResult, PlannedFindingEscalation, apply_inspection,
    finding_escalation_id, handle_inspection,
};
use doorstep_domain::stream::Category;
use doorstep_domain::{DomainError, InvalidInput, WorkingDayCalendar};
use doorstep_notifier::{FindingEscalationRaiser, RaiseOutcome};
use doorstep_projections::{DueFindingEscalation, InspectionFilter, InspectionRow, ReadModel};
use doorstep_store::EventStore;
use tonic::Request;

use crate::clock::Clock;
use crate::contractors::ContractorRules;
use crate::convert;
use crate::error::{ApiError, answered_by};
use crate::parse::{self, inspections as parse_inspections};
use crate::request::{command_origin, wait_for_read_model};
use crate::visits::VisitContractors;

/// The inspection's rules, with the calendar and the working days a finding is given.
pub struct InspectionRules {
    pub calendar: Arc<WorkingDayCalendar>,
    pub finding_due_working_days: u32,
}

impl Aggregate for InspectionRules {
    type State = Inspection;
    type Command = InspectionCommand;
    type Event = InspectionEvent;
    const CATEGORY: Category = Category::Inspection;
    const NOUN: &'static str = "inspection";

    fn decide(
        &self,
        state: Option<&Inspection>,
        command: InspectionCommand,
    ) -> Result<Vec<InspectionEvent>, DomainError> {
        handle_inspection(
            state,
            command,
            FindingRules {
                calendar: &self.calendar,
                due_working_days: self.finding_due_working_days,
            },
        )
    }

    fn evolve(state: Option<Inspection>, event: &InspectionEvent) -> Option<Inspection> {
        apply_inspection(state, event)
    }

    fn version(state: &Inspection) -> u64 {
        state.version
    }

    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<InspectionEvent, EventDecodeError> {
        InspectionEvent::from_payload(event_type, schema_version, payload)
    }
}

pub type InspectionLog = CommandLog<InspectionRules>;

const DEFAULT_INSPECTION_PAGE: u32 = 100;
const MAX_INSPECTION_PAGE: u32 = 500;

pub struct InspectionApi {
    log: InspectionLog,
    contractors: CommandLog<ContractorRules>,
    read_model: ReadModel,
    clock: Arc<dyn Clock>,
    visits: Arc<VisitContractors>,
}

impl InspectionApi {
    pub fn new(
        store: Arc<dyn EventStore>,
        rules: InspectionRules,
        read_model: ReadModel,
        clock: Arc<dyn Clock>,
        visits: Arc<VisitContractors>,
    ) -> Self {
        Self {
            log: CommandLog::new(store.clone(), rules),
            contractors: CommandLog::new(store, ContractorRules),
            read_model,
            clock,
            visits,
        }
    }

    /// What only the log can tell about details: the contractor is registered, the contract is
    /// one of its contracts, each standard is one of the contract's, and a recorded visit is by
    /// the same contractor.
    async fn check_details(&self, details: &InspectionDetails) -> Result<(), ApiError> {
        let contractor = self
            .contractors
            .load(&details.contractor_id)
            .await?
            .state
            .ok_or_else(|| {
                InvalidInput::new("details.contractor_id", "is not a registered contractor")
            })?;
        let contract = contractor
            .contract(&details.contract_reference)
            .ok_or_else(|| {
                InvalidInput::new(
                    "details.contract_reference",
                    format!("is not a contract of {}", details.contractor_id),
                )
            })?;
        for (index, observation) in details.observations.iter().enumerate() {
            if !contract.standards.contains(&observation.standard) {
                return Err(InvalidInput::new(
                    format!("details.observations[{index}].standard"),
                    format!(
                        "is not a standard of contract {}",
                        details.contract_reference
                    ),
                )
                .into());
            }
        }
        if let Some(visit_id) = &details.visit_id {
            self.visits
                .check_belongs("details.visit_id", visit_id, &details.contractor_id)
                .await?;
        }
        Ok(())
    }

    async fn record_inspection(
        &self,
        request: Request<v1::RecordInspectionRequest>,
    ) -> Result<v1::RecordInspectionResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let now = self.clock.now();
        let body = request.get_ref();
        let details = parse_inspections::details(body.details.as_ref(), now)?;
        let request_id = parse_inspections::required_request_id(&body.request_id)?;
        self.check_details(&details).await?;
        let inspection_id = InspectionId::for_request(&request_id);
        let origin = command_origin(&request, Some(request_id), "grpc")?;
        let command = InspectionCommand::Record {
            inspection_id,
            details,
            at: now,
        };
        let executed = self
            .log
            .execute(&inspection_id, None, &origin, command)
            .await??;
        Ok(v1::RecordInspectionResponse {
            inspection_id: inspection_id.to_string(),
            version: executed.written.version,
            position: executed.written.position,
            duplicate: executed.written.duplicate,
            findings: executed.state.findings.iter().map(finding).collect(),
        })
    }

    async fn correct_inspection(
        &self,
        request: Request<v1::CorrectInspectionRequest>,
    ) -> Result<v1::CorrectInspectionResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let now = self.clock.now();
        let body = request.get_ref();
        let inspection_id = parse_inspections::inspection_id(&body.inspection_id)?;
        let details = parse_inspections::details(body.details.as_ref(), now)?;
        let reason = doorstep_domain::input::ShortText::parse("reason", &body.reason)?;
        let request_id = parse::request_id(&body.request_id)?;
        self.check_details(&details).await?;
        let origin = command_origin(&request, request_id, "grpc")?;
        let command = InspectionCommand::Correct {
            details,
            reason,
            at: now,
        };
        let executed = self
            .log
            .execute(&inspection_id, body.expected_version, &origin, command)
            .await??;
        Ok(v1::CorrectInspectionResponse {
            inspection: Some(inspection(&executed.state)),
            position: executed.written.position,
            duplicate: executed.written.duplicate,
        })
    }

    async fn resolve_inspection_finding(
        &self,
        request: Request<v1::ResolveInspectionFindingRequest>,
    ) -> Result<v1::ResolveInspectionFindingResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let now = self.clock.now();
        let body = request.get_ref();
        let inspection_id = parse_inspections::inspection_id(&body.inspection_id)?;
        let finding_id = parse_inspections::finding_id(&body.finding_id)?;
        let resolution = doorstep_domain::input::ShortText::parse("resolution", &body.resolution)?;
        let resolved_by = doorstep_domain::input::Handler::parse("resolved_by", &body.resolved_by)?;
        let resolved_at = parse::effective_at("resolved_at", body.resolved_at.as_ref(), now)?;
        let request_id = parse::request_id(&body.request_id)?;
        let origin = command_origin(&request, request_id, "grpc")?;
        let command = InspectionCommand::ResolveFinding {
            finding_id,
            resolution,
            resolved_by,
            resolved_at,
        };
        let executed = self
            .log
            .execute(&inspection_id, None, &origin, command)
            .await??;
        Ok(v1::ResolveInspectionFindingResponse {
            inspection: Some(inspection(&executed.state)),
            position: executed.written.position,
            duplicate: executed.written.duplicate,
        })
    }

    async fn get_inspection(
        &self,
        request: Request<v1::GetInspectionRequest>,
    ) -> Result<v1::GetInspectionResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let principal = crate::auth::principal(&request)?;
        let inspection_id = parse_inspections::inspection_id(&request.get_ref().inspection_id)?;
        let loaded = self.log.load(&inspection_id).await?;
        // Another contractor's inspection answers exactly as one that does not exist.
        let found = loaded
            .state
            .as_ref()
            .filter(|found| principal.may_see_contractor(&found.details.contractor_id))
            .ok_or_else(|| ApiError::NotFound("no inspection has this id".to_owned()))?;
        Ok(v1::GetInspectionResponse {
            inspection: Some(inspection(found)),
        })
    }

    async fn list_inspections(
        &self,
        request: Request<v1::ListInspectionsRequest>,
    ) -> Result<v1::ListInspectionsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let principal = crate::auth::principal(&request)?.clone();
        let body = request.into_inner();
        let mut filter = InspectionFilter {
            contractor_id: if body.contractor_id.trim().is_empty() {
                None
            } else {
                Some(
                    parse::contractor_id("contractor_id", &body.contractor_id)?
                        .as_str()
                        .to_owned(),
                )
            },
            open_findings_only: body.open_findings_only,
        };
        if let Some(own) = principal.contractor_scope() {
            match &filter.contractor_id {
                Some(named) if named != own.as_str() => {
                    return Err(ApiError::PermissionDenied(
                        "a contractor may list only its own inspections".to_owned(),
                    ));
                }
                _ => filter.contractor_id = Some(own.as_str().to_owned()),
            }
        }
        let page_size =
            parse::page_size(body.page_size, DEFAULT_INSPECTION_PAGE, MAX_INSPECTION_PAGE)?;
        let after = parse_inspections::page_token(&body.page_token)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let rows = self
            .read_model
            .list_inspections(&filter, page_size, after)
            .await?;
        let full_page = u32::try_from(rows.len()).unwrap_or(u32::MAX) >= page_size;
        let next_page_token = match rows.last() {
            Some(last) if full_page => parse_inspections::next_page_token(last.position),
            _ => String::new(),
        };
        Ok(v1::ListInspectionsResponse {
            inspections: rows.iter().map(summary).collect(),
            next_page_token,
        })
    }
}

answered_by! {
    /// Delegates every call to [`InspectionApi`]'s own methods and answers in one step.
    InspectionService, InspectionApi {
        fn record_inspection(v1::RecordInspectionRequest) -> v1::RecordInspectionResponse;
        fn correct_inspection(v1::CorrectInspectionRequest) -> v1::CorrectInspectionResponse;
        fn resolve_inspection_finding(v1::ResolveInspectionFindingRequest) -> v1::ResolveInspectionFindingResponse;
        fn get_inspection(v1::GetInspectionRequest) -> v1::GetInspectionResponse;
        fn list_inspections(v1::ListInspectionsRequest) -> v1::ListInspectionsResponse;
    }
}

fn result(result: ObservationResult) -> v1::ObservationResult {
    match result {
        ObservationResult::Met => v1::ObservationResult::Met,
        ObservationResult::NotMet => v1::ObservationResult::NotMet,
        ObservationResult::NotObserved => v1::ObservationResult::NotObserved,
    }
}

fn details(details: &InspectionDetails) -> v1::InspectionDetails {
    v1::InspectionDetails {
        contractor_id: details.contractor_id.to_string(),
        contract_reference: details.contract_reference.to_string(),
        uprn: details.uprn.as_str().to_owned(),
        visit_id: details
            .visit_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        inspected_at: Some(convert::timestamp(details.inspected_at)),
        inspecting_officer: details.inspecting_officer.to_string(),
        observations: details
            .observations
            .iter()
            .map(|observation| v1::Observation {
                standard: convert::standard(observation.standard) as i32,
                result: result(observation.result) as i32,
                note: observation.note.to_string(),
            })
            .collect(),
        photo_references: details
            .photo_references
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn finding(finding: &Finding) -> v1::InspectionFinding {
    let mut view = v1::InspectionFinding {
        finding_id: finding.finding_id.to_string(),
        standard: convert::standard(finding.standard) as i32,
        opened_at: Some(convert::timestamp(finding.opened_at)),
        due_date: finding.due_date.to_string(),
        state: v1::FindingState::Open as i32,
        escalated_levels: finding
            .escalated_levels
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..Default::default()
    };
    match &finding.state {
        FindingState::Open => {}
        FindingState::Resolved {
            resolution,
            resolved_by,
            resolved_at,
        } => {
            view.state = v1::FindingState::Resolved as i32;
            view.resolution = resolution.to_string();
            view.resolved_by = resolved_by.to_string();
            view.resolved_at = Some(convert::timestamp(*resolved_at));
        }
        FindingState::Withdrawn { .. } => view.state = v1::FindingState::Withdrawn as i32,
    }
    view
}

fn inspection(inspection: &Inspection) -> v1::Inspection {
    v1::Inspection {
        inspection_id: inspection.id.to_string(),
        details: Some(details(&inspection.details)),
        findings: inspection.findings.iter().map(finding).collect(),
        recorded_at: Some(convert::timestamp(inspection.recorded_at)),
        corrections: inspection.corrections,
        version: inspection.version,
    }
}

fn summary(row: &InspectionRow) -> v1::InspectionSummary {
    v1::InspectionSummary {
        inspection_id: row.inspection_id.clone(),
        contractor_id: row.contractor_id.clone(),
        contract_reference: row.contract_reference.clone(),
        uprn: row.uprn.clone(),
        inspected_at: Some(convert::timestamp(row.inspected_at)),
        met: row.met,
        not_met: row.not_met,
        not_observed: row.not_observed,
        open_findings: row.open_findings,
        position: row.position,
    }
}

/// Who the log says raised a finding escalation.
const NOTIFIER_ACTOR: &str = crate::notifier::NOTIFIER_ACTOR;

/// Raises finding escalations on inspections through the same log and rules as every command.
pub struct FindingEscalations {
    log: InspectionLog,
    policy: EscalationPolicy,
}

impl FindingEscalations {
    pub fn new(log: InspectionLog, policy: EscalationPolicy) -> Self {
        Self { log, policy }
    }

    async fn raise_on(
        &self,
        due: &DueFindingEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, ApiError> {
        let inspection_id = InspectionId::parse("inspection_id", &due.inspection_id)?;
        // The id is derived again rather than trusted from the read model.
        let id = finding_escalation_id(due.finding_id, &due.level);
        let origin = CommandOrigin {
            actor: NOTIFIER_ACTOR.to_owned(),
            source_channel: "notifier".to_owned(),
            request_id: None,
            fingerprint: format!("finding-escalation/{id}"),
        };
        let mut already_raised = false;
        let raised = self
            .log
            .execute_when(
                &inspection_id,
                None,
                &origin,
                IdPolicy::Escalation(id),
                |state| {
                    let Some(inspection) = state else {
                        return Err(Refusal::NotFound { noun: "inspection" });
                    };
                    if inspection
                        .finding(due.finding_id)
                        .is_some_and(|finding| finding.escalated_levels.contains(&due.level))
                    {
                        already_raised = true;
                        return Ok(None);
                    }
                    Ok(Some(InspectionCommand::RaiseFindingEscalation {
                        escalation: PlannedFindingEscalation {
                            escalation_id: id,
                            finding_id: due.finding_id,
                            level: due.level.clone(),
                            due_at: due.due_at,
                            recipients: self
                                .policy
                                .recipients(&due.level, &inspection.details.contractor_id),
                        },
                        at: now,
                    }))
                },
            )
            .await?;
        Ok(match raised {
            Ok(None) if already_raised => RaiseOutcome::AlreadyRaised,
            Ok(None) => return Err(ApiError::internal(std::io::Error::other("nothing decided"))),
            Ok(Some(executed)) if executed.written.duplicate => RaiseOutcome::AlreadyRaised,
            Ok(Some(_)) => RaiseOutcome::Raised,
            // Resolved or withdrawn since the schedule was written; the read model drops the
            // step when it catches up.
            Err(
                Refusal::NotFound { .. }
                | Refusal::Domain(DomainError::NotAllowed(_) | DomainError::InvalidInput(_)),
            ) => RaiseOutcome::Stale,
            Err(refusal) => return Err(refusal.into()),
        })
    }
}

#[async_trait::async_trait]
impl FindingEscalationRaiser for FindingEscalations {
    async fn raise(
        &self,
        due: &DueFindingEscalation,
        now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, Box<dyn std::error::Error + Send + Sync>> {
        self.raise_on(due, now).await.map_err(Into::into)
    }
}
