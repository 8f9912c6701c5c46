//! `doorstep.v1.ContractorService` and `doorstep.v1.VisitService`: the contractor registry and
//! the completed visits behind every breach rate.

use std::collections::HashMap;
use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_server::ContractorService;
use doorstep_api::v1::visit_service_server::VisitService;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::contractor::{
    Contractor, ContractorCommand, ContractorEvent, ContractorStatus, VisitEvent, apply_contractor,
    handle_contractor,
};
use doorstep_domain::input::{ContractorId, OptionalText, ShortText};
use doorstep_domain::{DomainError, InvalidInput, england_date};
use doorstep_projections::{ContractorCursor, ContractorRow, ReadModel};
use doorstep_store::{EventStore, ExpectedVersion, StoreError, StreamId};
use futures::StreamExt;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::aggregate_log::{Aggregate, AggregateLog, REQUEST_NAMESPACE, WriteResult, new_events};
use crate::clock::Clock;
use crate::convert;
use crate::error::ApiError;
use crate::parse;
use crate::request::{command_origin, wait_for_read_model};

/// The contractor registry's rules.
pub struct ContractorRules;

impl Aggregate for ContractorRules {
    type State = Contractor;
    type Command = ContractorCommand;
    type Event = ContractorEvent;
    const CATEGORY: &'static str = "contractor";
    const NOUN: &'static str = "contractor";

    fn decide(
        &self,
        state: Option<&Contractor>,
        command: ContractorCommand,
    ) -> Result<Vec<ContractorEvent>, DomainError> {
        handle_contractor(state, command)
    }

    fn evolve(state: Option<Contractor>, event: &ContractorEvent) -> Option<Contractor> {
        apply_contractor(state, event)
    }

    fn version(state: &Contractor) -> u64 {
        state.version
    }

    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<ContractorEvent, EventDecodeError> {
        ContractorEvent::from_payload(event_type, schema_version, payload)
    }
}

pub type ContractorLog = AggregateLog<ContractorRules>;

/// Whether `contractor_id` is in the registry, read from its stream so it is never stale.
pub async fn is_registered(
    store: &Arc<dyn EventStore>,
    contractor_id: &ContractorId,
) -> Result<bool, ApiError> {
    let first = store
        .read_stream(&ContractorLog::stream_of(contractor_id), 1, 1)
        .await?;
    Ok(!first.is_empty())
}

pub struct ContractorApi {
    log: ContractorLog,
    read_model: ReadModel,
    clock: Arc<dyn Clock>,
}

const DEFAULT_CONTRACTOR_PAGE: u32 = 100;
const MAX_CONTRACTOR_PAGE: u32 = 500;

impl ContractorApi {
    pub fn new(store: Arc<dyn EventStore>, read_model: ReadModel, clock: Arc<dyn Clock>) -> Self {
        Self {
            log: AggregateLog::new(store, ContractorRules),
            read_model,
            clock,
        }
    }

    async fn run<T: prost::Message>(
        &self,
        request: &Request<T>,
        contractor_id: &str,
        expected_version: Option<u64>,
        request_id: &str,
        command: impl FnOnce(
            &ContractorId,
            chrono::DateTime<chrono::Utc>,
        ) -> Result<ContractorCommand, InvalidInput>,
    ) -> Result<(ContractorId, WriteResult), Status> {
        let contractor_id =
            parse::contractor_id("contractor_id", contractor_id).map_err(ApiError::from)?;
        let request_id = parse::request_id(request_id).map_err(ApiError::from)?;
        let command = command(&contractor_id, self.clock.now()).map_err(ApiError::from)?;
        let origin = command_origin(request, request_id, "grpc")?;
        let (result, _) = self
            .log
            .execute(&contractor_id, expected_version, &origin, command)
            .await?;
        Ok((contractor_id, result))
    }
}

macro_rules! contractor_response {
    ($($response:ident)::+, $written:expr) => {{
        let (contractor_id, result) = $written;
        $($response)::+ {
            contractor_id: contractor_id.to_string(),
            version: result.version,
            position: result.position,
            duplicate: result.duplicate,
        }
    }};
}

#[tonic::async_trait]
impl ContractorService for ContractorApi {
    async fn register_contractor(
        &self,
        request: Request<v1::RegisterContractorRequest>,
    ) -> Result<Response<v1::RegisterContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.contractor_id,
                Some(0),
                &body.request_id,
                |contractor_id, now| {
                    Ok(ContractorCommand::Register {
                        contractor_id: contractor_id.clone(),
                        profile: parse::contractor_profile(body.profile.as_ref())?,
                        at: now,
                    })
                },
            )
            .await
            .map_err(|status| {
                // Registering an id that exists is a conflict of ids, not of versions.
                if status.code() == tonic::Code::Aborted {
                    Status::already_exists("a contractor with this id is already registered")
                } else {
                    status
                }
            })?;
        Ok(Response::new(contractor_response!(
            v1::RegisterContractorResponse,
            written
        )))
    }

    async fn update_contractor(
        &self,
        request: Request<v1::UpdateContractorRequest>,
    ) -> Result<Response<v1::UpdateContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.contractor_id,
                body.expected_version,
                &body.request_id,
                |_, now| {
                    Ok(ContractorCommand::Update {
                        profile: parse::contractor_profile(body.profile.as_ref())?,
                        at: now,
                    })
                },
            )
            .await?;
        Ok(Response::new(contractor_response!(
            v1::UpdateContractorResponse,
            written
        )))
    }

    async fn suspend_contractor(
        &self,
        request: Request<v1::SuspendContractorRequest>,
    ) -> Result<Response<v1::SuspendContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.contractor_id,
                body.expected_version,
                &body.request_id,
                |_, now| {
                    Ok(ContractorCommand::Suspend {
                        reason: ShortText::parse("reason", &body.reason)?,
                        at: now,
                    })
                },
            )
            .await?;
        Ok(Response::new(contractor_response!(
            v1::SuspendContractorResponse,
            written
        )))
    }

    async fn reinstate_contractor(
        &self,
        request: Request<v1::ReinstateContractorRequest>,
    ) -> Result<Response<v1::ReinstateContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.contractor_id,
                body.expected_version,
                &body.request_id,
                |_, now| {
                    Ok(ContractorCommand::Reinstate {
                        reason: OptionalText::parse("reason", &body.reason)?,
                        at: now,
                    })
                },
            )
            .await?;
        Ok(Response::new(contractor_response!(
            v1::ReinstateContractorResponse,
            written
        )))
    }

    async fn record_equality_audit(
        &self,
        request: Request<v1::RecordEqualityAuditRequest>,
    ) -> Result<Response<v1::RecordEqualityAuditResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.contractor_id,
                body.expected_version,
                &body.request_id,
                |_, now| {
                    Ok(ContractorCommand::RecordEqualityAudit {
                        audit: parse::equality_audit(body.audit.as_ref(), england_date(now))?,
                        at: now,
                    })
                },
            )
            .await?;
        Ok(Response::new(contractor_response!(
            v1::RecordEqualityAuditResponse,
            written
        )))
    }

    async fn get_contractor(
        &self,
        request: Request<v1::GetContractorRequest>,
    ) -> Result<Response<v1::GetContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let contractor_id = parse::contractor_id("contractor_id", &request.get_ref().contractor_id)
            .map_err(ApiError::from)?;
        let loaded = self.log.load(&contractor_id).await?;
        let contractor = loaded
            .state
            .ok_or_else(|| ApiError::NotFound("no contractor has this id".to_owned()))?;
        Ok(Response::new(v1::GetContractorResponse {
            contractor: Some(convert::contractor(&contractor)),
        }))
    }

    async fn list_contractors(
        &self,
        request: Request<v1::ListContractorsRequest>,
    ) -> Result<Response<v1::ListContractorsResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.into_inner();
        let status = match v1::ContractorStatus::try_from(body.status) {
            Ok(v1::ContractorStatus::Unspecified) => None,
            Ok(v1::ContractorStatus::Active) => Some(ContractorStatus::Active),
            Ok(v1::ContractorStatus::Suspended) => Some(ContractorStatus::Suspended),
            Err(_) => {
                return Err(
                    ApiError::from(InvalidInput::new("status", "is not a known status")).into(),
                );
            }
        };
        let page_size = match body.page_size {
            0 => DEFAULT_CONTRACTOR_PAGE,
            size if size <= MAX_CONTRACTOR_PAGE => size,
            _ => {
                return Err(ApiError::from(InvalidInput::new(
                    "page_size",
                    format!("may be at most {MAX_CONTRACTOR_PAGE}"),
                ))
                .into());
            }
        };
        let cursor = if body.page_token.is_empty() {
            None
        } else {
            Some(ContractorCursor::decode(&body.page_token).map_err(ApiError::from)?)
        };
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let (rows, next) = self
            .read_model
            .list_contractors(status, page_size, cursor.as_ref())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::ListContractorsResponse {
            contractors: rows.iter().map(contractor_summary).collect(),
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
        }))
    }

    async fn verify_contractor(
        &self,
        request: Request<v1::VerifyContractorRequest>,
    ) -> Result<Response<v1::VerifyContractorResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let query = request.into_inner().query;
        let query = query.trim();
        if query.is_empty() || query.chars().count() > 200 {
            return Err(ApiError::from(InvalidInput::new(
                "query",
                "must be a name or phone number of 1 to 200 characters",
            ))
            .into());
        }
        let matches = self
            .read_model
            .verify_contractor(query)
            .await
            .map_err(ApiError::from)?;
        let advice = match (matches.is_empty(), matches.iter().any(|m| m.is_active())) {
            (true, _) => "Not a registered contractor: the resident should not let the caller in, and should report it.".to_owned(),
            (false, true) => "A registered contractor: the resident can check the caller by ringing the public number given.".to_owned(),
            (false, false) => "Registered but suspended: it should not be working in homes now; the resident should not let the caller in.".to_owned(),
        };
        Ok(Response::new(v1::VerifyContractorResponse {
            registered: !matches.is_empty(),
            matches: matches
                .iter()
                .map(|row| v1::VerifiedContractor {
                    contractor_id: row.contractor_id.clone(),
                    legal_name: row.legal_name.clone(),
                    trading_names: row.trading_names.clone(),
                    logo_url: row.logo_url.clone(),
                    public_contact_name: row.public_contact_name.clone(),
                    public_phone: row.public_phone.clone(),
                    active: row.is_active(),
                })
                .collect(),
            advice,
        }))
    }
}

/// Visit appends in flight at once: enough for the store's group commit to fill its batches.
const CONCURRENT_VISIT_APPENDS: usize = 512;

pub struct VisitApi {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
}

impl VisitApi {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

/// What happened to one visit of a batch.
enum VisitOutcome {
    Recorded(u64),
    Duplicate(u64),
    Rejected(v1::RejectedVisit),
}

#[tonic::async_trait]
impl VisitService for VisitApi {
    async fn record_visits(
        &self,
        request: Request<v1::RecordVisitsRequest>,
    ) -> Result<Response<v1::RecordVisitsResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let count = request.get_ref().visits.len();
        if count == 0 || count > parse::MAX_VISITS_PER_CALL {
            return Err(ApiError::from(InvalidInput::new(
                "visits",
                format!("must hold 1 to {} visits", parse::MAX_VISITS_PER_CALL),
            ))
            .into());
        }
        let today = england_date(self.clock.now());
        let origin = command_origin(&request, None, "grpc")?;
        let mut outcomes = Vec::with_capacity(count);
        let mut parsed = Vec::with_capacity(count);
        for (index, visit) in request.get_ref().visits.iter().enumerate() {
            match parse::visit(&format!("visits[{index}]"), visit, today) {
                Ok(visit) => parsed.push((index, visit)),
                Err(invalid) => outcomes.push(VisitOutcome::Rejected(rejected(
                    index,
                    &visit.visit_id,
                    invalid.field,
                    invalid.reason,
                ))),
            }
        }
        // Each contractor is looked up once per call.
        let mut registered: HashMap<ContractorId, bool> = HashMap::new();
        for (_, visit) in &parsed {
            if !registered.contains_key(&visit.contractor_id) {
                let known =
                    crate::contractors::is_registered(&self.store, &visit.contractor_id).await?;
                registered.insert(visit.contractor_id.clone(), known);
            }
        }
        let appends = parsed.into_iter().map(|(index, visit)| {
            let store = self.store.clone();
            let known = registered
                .get(&visit.contractor_id)
                .copied()
                .unwrap_or(false);
            let origin = origin.clone();
            async move {
                if !known {
                    return Ok(VisitOutcome::Rejected(rejected(
                        index,
                        visit.visit_id.as_str(),
                        format!("visits[{index}].contractor_id"),
                        "is not a registered contractor".to_owned(),
                    )));
                }
                let visit_id = visit.visit_id.clone();
                let event = VisitEvent::VisitRecorded { visit };
                // The event id is the visit id's: a visit sent again is found, not written twice.
                let event_id =
                    Uuid::new_v5(&REQUEST_NAMESPACE, format!("visit/{visit_id}").as_bytes());
                let new_event =
                    new_events(std::slice::from_ref(&event), &origin, |_| Some(event_id));
                match store
                    .append(
                        &StreamId::new("visit", &visit_id),
                        ExpectedVersion::NoStream,
                        new_event,
                    )
                    .await
                {
                    Ok(outcome) if outcome.already_stored => {
                        Ok(VisitOutcome::Duplicate(outcome.position))
                    }
                    Ok(outcome) => Ok(VisitOutcome::Recorded(outcome.position)),
                    Err(
                        StoreError::DuplicateEventId { .. } | StoreError::VersionConflict { .. },
                    ) => Ok(VisitOutcome::Rejected(rejected(
                        index,
                        visit_id.as_str(),
                        format!("visits[{index}].visit_id"),
                        "was already recorded with different details".to_owned(),
                    ))),
                    Err(error) => Err(ApiError::from(error)),
                }
            }
        });
        let mut appended =
            futures::stream::iter(appends).buffer_unordered(CONCURRENT_VISIT_APPENDS);
        while let Some(outcome) = appended.next().await {
            outcomes.push(outcome?);
        }
        let mut response = v1::RecordVisitsResponse::default();
        for outcome in outcomes {
            match outcome {
                VisitOutcome::Recorded(position) => {
                    response.recorded += 1;
                    response.position = response.position.max(position);
                }
                VisitOutcome::Duplicate(position) => {
                    response.duplicates += 1;
                    response.position = response.position.max(position);
                }
                VisitOutcome::Rejected(rejection) => response.rejected.push(rejection),
            }
        }
        response.rejected.sort_by_key(|rejection| rejection.index);
        Ok(Response::new(response))
    }
}

fn rejected(index: usize, visit_id: &str, field: String, reason: String) -> v1::RejectedVisit {
    v1::RejectedVisit {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        visit_id: visit_id.to_owned(),
        field,
        reason,
    }
}

fn contractor_summary(row: &ContractorRow) -> v1::ContractorSummary {
    v1::ContractorSummary {
        contractor_id: row.contractor_id.clone(),
        legal_name: row.legal_name.clone(),
        trading_names: row.trading_names.clone(),
        status: status(row.status) as i32,
        public_contact_name: row.public_contact_name.clone(),
        public_phone: row.public_phone.clone(),
        latest_audit_outcome: row
            .latest_audit
            .as_ref()
            .map_or(v1::AuditOutcome::Unspecified, |audit| {
                convert::audit_outcome(audit.outcome)
            }) as i32,
        latest_audit_date: row
            .latest_audit
            .as_ref()
            .map(|audit| audit.audit_date.to_string())
            .unwrap_or_default(),
    }
}

pub fn status(status: ContractorStatus) -> v1::ContractorStatus {
    match status {
        ContractorStatus::Active => v1::ContractorStatus::Active,
        ContractorStatus::Suspended => v1::ContractorStatus::Suspended,
    }
}
