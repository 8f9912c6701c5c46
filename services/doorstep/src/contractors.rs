//! `doorstep.v1.ContractorService`: the contractor registry.

use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_server::ContractorService;
use doorstep_commands::{Aggregate, CommandLog, Refusal, Written};
use doorstep_domain::DomainError;
use doorstep_domain::InvalidInput;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::contractor::{
    Contractor, ContractorCommand, ContractorEvent, apply_contractor, equality_audit_overdue,
    handle_contractor, oldest_audit_in_time,
};
use doorstep_domain::input::ContractorId;
use doorstep_domain::stream::{Category, StreamName};
use doorstep_projections::{ContractorCursor, ContractorRow, ReadModel};
use doorstep_store::{EventStore, StreamId};
use tonic::Request;

use crate::clock::Clock;
use crate::convert;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::parse::{self, Write};
use crate::request::{command_origin, wait_for_read_model};
use crate::settings::EqualitySettings;

/// Why a complaint or a visit naming an unknown contractor is refused, and how to put it right.
pub const NOT_REGISTERED: &str = "is not a registered contractor: an administrator (the admin \
     role) registers it first with doorstep.v1.ContractorService/RegisterContractor";

/// The contractor registry's rules.
pub struct ContractorRules;

impl Aggregate for ContractorRules {
    type State = Contractor;
    type Command = ContractorCommand;
    type Event = ContractorEvent;
    const CATEGORY: Category = Category::Contractor;
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

pub type ContractorLog = CommandLog<ContractorRules>;

/// Whether `contractor_id` is in the registry, read from its stream so it is never stale.
pub async fn is_registered(
    store: &Arc<dyn EventStore>,
    contractor_id: &ContractorId,
) -> Result<bool, ApiError> {
    let stream = StreamId::from(StreamName::contractor(contractor_id).to_string());
    let first = store.read_stream(&stream, 1, 1).await?;
    Ok(!first.is_empty())
}

/// How recent a contractor's latest equality audit must be (`[equality] audit_max_age_months`),
/// judged on the server's clock.
#[derive(Clone)]
pub struct AuditWindow {
    pub clock: Arc<dyn Clock>,
    pub max_age_months: u32,
}

impl AuditWindow {
    fn today(&self) -> chrono::NaiveDate {
        doorstep_domain::england_date(self.clock.now())
    }

    /// The oldest audit date that is still recent enough today.
    pub fn oldest_in_time(&self) -> chrono::NaiveDate {
        oldest_audit_in_time(self.today(), self.max_age_months)
    }

    /// Whether a contractor whose latest audit is dated `latest` is overdue one today.
    pub fn overdue(&self, latest: Option<chrono::NaiveDate>) -> bool {
        equality_audit_overdue(latest, self.today(), self.max_age_months)
    }
}

pub struct ContractorApi {
    log: ContractorLog,
    read_model: ReadModel,
    clock: Arc<dyn Clock>,
    audit_window: AuditWindow,
}

const DEFAULT_CONTRACTOR_PAGE: u32 = 100;
const MAX_CONTRACTOR_PAGE: u32 = 500;

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

impl ContractorApi {
    pub fn new(store: Arc<dyn EventStore>, read_model: ReadModel, clock: Arc<dyn Clock>) -> Self {
        Self {
            log: CommandLog::new(store, ContractorRules),
            read_model,
            audit_window: AuditWindow {
                clock: clock.clone(),
                max_age_months: EqualitySettings::default().audit_max_age_months,
            },
            clock,
        }
    }

    /// Flags contractors with no equality audit within `max_age_months`.
    pub fn with_audit_window(mut self, max_age_months: u32) -> Self {
        self.audit_window.max_age_months = max_age_months;
        self
    }

    /// Runs a parsed command on a contractor: a storage failure or bad input is the outer
    /// error, the rules' refusal the inner one.
    async fn run<T: prost::Message>(
        &self,
        request: &Request<T>,
        expected_version: Option<u64>,
        write: Result<Write<ContractorId, ContractorCommand>, InvalidInput>,
    ) -> Result<Result<(ContractorId, Written), Refusal>, ApiError> {
        let write = write?;
        let origin = command_origin(request, write.request_id, "grpc")?;
        let executed = self
            .log
            .execute(&write.id, expected_version, &origin, write.command)
            .await?;
        Ok(executed.map(|executed| (write.id, executed.written)))
    }

    async fn register_contractor(
        &self,
        request: Request<v1::RegisterContractorRequest>,
    ) -> Result<v1::RegisterContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let write = parse::register_contractor(request.get_ref(), self.clock.now());
        let written = match self.run(&request, Some(0), write).await? {
            Ok(written) => written,
            // Registering an id that exists is a conflict of ids, not of versions.
            Err(Refusal::VersionConflict { .. } | Refusal::Contention) => {
                return Err(ApiError::AlreadyExists(
                    "a contractor with this id is already registered".to_owned(),
                ));
            }
            Err(refusal) => return Err(refusal.into()),
        };
        Ok(contractor_response!(
            v1::RegisterContractorResponse,
            written
        ))
    }

    async fn update_contractor(
        &self,
        request: Request<v1::UpdateContractorRequest>,
    ) -> Result<v1::UpdateContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::update_contractor(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(v1::UpdateContractorResponse, written))
    }

    async fn suspend_contractor(
        &self,
        request: Request<v1::SuspendContractorRequest>,
    ) -> Result<v1::SuspendContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::suspend_contractor(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(v1::SuspendContractorResponse, written))
    }

    async fn reinstate_contractor(
        &self,
        request: Request<v1::ReinstateContractorRequest>,
    ) -> Result<v1::ReinstateContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::reinstate_contractor(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(
            v1::ReinstateContractorResponse,
            written
        ))
    }

    async fn record_equality_audit(
        &self,
        request: Request<v1::RecordEqualityAuditRequest>,
    ) -> Result<v1::RecordEqualityAuditResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::record_equality_audit(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(
            v1::RecordEqualityAuditResponse,
            written
        ))
    }

    async fn record_standards_sign_off(
        &self,
        request: Request<v1::RecordStandardsSignOffRequest>,
    ) -> Result<v1::RecordStandardsSignOffResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::record_standards_sign_off(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(
            v1::RecordStandardsSignOffResponse,
            written
        ))
    }

    async fn record_equality_training(
        &self,
        request: Request<v1::RecordEqualityTrainingRequest>,
    ) -> Result<v1::RecordEqualityTrainingResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::record_equality_training(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await??;
        Ok(contractor_response!(
            v1::RecordEqualityTrainingResponse,
            written
        ))
    }

    async fn get_contractor(
        &self,
        request: Request<v1::GetContractorRequest>,
    ) -> Result<v1::GetContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let contractor_id =
            parse::contractor_id("contractor_id", &request.get_ref().contractor_id)?;
        let loaded = self.log.load(&contractor_id).await?;
        let contractor = loaded
            .state
            .ok_or_else(|| ApiError::NotFound("no contractor has this id".to_owned()))?;
        let overdue = self.audit_window.overdue(
            contractor
                .latest_equality_audit()
                .map(|audit| audit.audit_date),
        );
        Ok(v1::GetContractorResponse {
            contractor: Some(convert::contractor(&contractor, overdue)),
        })
    }

    async fn list_contractors(
        &self,
        request: Request<v1::ListContractorsRequest>,
    ) -> Result<v1::ListContractorsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let status = parse::contractor_status(body.status)?;
        let page_size =
            parse::page_size(body.page_size, DEFAULT_CONTRACTOR_PAGE, MAX_CONTRACTOR_PAGE)?;
        let cursor = if body.page_token.is_empty() {
            None
        } else {
            Some(ContractorCursor::decode(&body.page_token)?)
        };
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let (rows, next) = self
            .read_model
            .list_contractors(status, page_size, cursor.as_ref())
            .await?;
        Ok(v1::ListContractorsResponse {
            contractors: rows
                .iter()
                .map(|row| contractor_summary(row, &self.audit_window))
                .collect(),
            // The last page has no token: empty is the API's "no more".
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
        })
    }

    async fn verify_contractor(
        &self,
        request: Request<v1::VerifyContractorRequest>,
    ) -> Result<v1::VerifyContractorResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let query = parse::verify_query(&request.get_ref().query)?;
        let matches = self.read_model.verify_contractor(query).await?;
        let advice = match (matches.is_empty(), matches.iter().any(|m| m.is_active())) {
            (true, _) => "Not a registered contractor: the resident should not let the caller in, and should report it.".to_owned(),
            (false, true) => "A registered contractor: the resident can check the caller by ringing the public number given.".to_owned(),
            (false, false) => "Registered but suspended: it should not be working in homes now; the resident should not let the caller in.".to_owned(),
        };
        Ok(v1::VerifyContractorResponse {
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
        })
    }
}

answered_by! {
    /// Delegates every call to [`ContractorApi`]'s own methods and answers in one step.
    ContractorService, ContractorApi {
        fn register_contractor(v1::RegisterContractorRequest) -> v1::RegisterContractorResponse;
        fn update_contractor(v1::UpdateContractorRequest) -> v1::UpdateContractorResponse;
        fn suspend_contractor(v1::SuspendContractorRequest) -> v1::SuspendContractorResponse;
        fn reinstate_contractor(v1::ReinstateContractorRequest) -> v1::ReinstateContractorResponse;
        fn record_equality_audit(v1::RecordEqualityAuditRequest) -> v1::RecordEqualityAuditResponse;
        fn get_contractor(v1::GetContractorRequest) -> v1::GetContractorResponse;
        fn list_contractors(v1::ListContractorsRequest) -> v1::ListContractorsResponse;
        fn verify_contractor(v1::VerifyContractorRequest) -> v1::VerifyContractorResponse;
        fn record_standards_sign_off(v1::RecordStandardsSignOffRequest) -> v1::RecordStandardsSignOffResponse;
        fn record_equality_training(v1::RecordEqualityTrainingRequest) -> v1::RecordEqualityTrainingResponse;
    }
}

fn contractor_summary(row: &ContractorRow, audit_window: &AuditWindow) -> v1::ContractorSummary {
    v1::ContractorSummary {
        contractor_id: row.contractor_id.clone(),
        legal_name: row.legal_name.clone(),
        trading_names: row.trading_names.clone(),
        status: convert::contractor_status(row.status) as i32,
        public_contact_name: row.public_contact_name.clone(),
        public_phone: row.public_phone.clone(),
        latest_audit_outcome: row
            .latest_audit
            .as_ref()
            .map_or(v1::AuditOutcome::Unspecified, |audit| {
                convert::audit_outcome(audit.outcome)
            }) as i32,
        // No audit yet: the API shows no date.
        latest_audit_date: row
            .latest_audit
            .as_ref()
            .map(|audit| audit.audit_date.to_string())
            .unwrap_or_default(),
        equality_audit_overdue: audit_window
            .overdue(row.latest_audit.as_ref().map(|audit| audit.audit_date)),
        contracts_not_signed_off: row.contracts_not_signed_off(),
    }
}
