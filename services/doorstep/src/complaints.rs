//! `doorstep.v1.ComplaintService`: parses each request, runs it through the complaint log or
//! the read model, and answers.

use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_server::ComplaintService;
use doorstep_commands::{Written as WriteResult, record};
use doorstep_domain::InvalidInput;
use doorstep_domain::complaint::{Command, Complaint};
use doorstep_domain::england_date;
use doorstep_domain::input::{ComplaintId, ContractorId};
use doorstep_domain::resident::ResidentEvent;
use doorstep_domain::stream::StreamName;
use doorstep_projections::{PageCursor, ReadModel};
use prost::Message;
use tonic::Request;

use crate::clock::Clock;
use crate::complaint_log::{ComplaintLog, log_new};
use crate::contractors::is_registered;
use crate::convert;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::parse::{self, Write};
use crate::privacy::{self, ResidentVault};
use crate::request::{command_origin, wait_for_read_model};
use crate::visits::VisitContractors;

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;

pub struct ComplaintApi {
    log: ComplaintLog,
    read_model: ReadModel,
    clock: Arc<dyn Clock>,
    vault: Arc<ResidentVault>,
    visits: Arc<VisitContractors>,
    /// Contractors known to be registered. Registration is never undone, so a contractor once
    /// seen here needs no further read of its stream.
    registered_contractors: std::sync::RwLock<std::collections::HashSet<ContractorId>>,
}

impl ComplaintApi {
    pub fn new(
        log: ComplaintLog,
        read_model: ReadModel,
        clock: Arc<dyn Clock>,
        vault: Arc<ResidentVault>,
        visits: Arc<VisitContractors>,
    ) -> Self {
        Self {
            log,
            read_model,
            clock,
            vault,
            visits,
            registered_contractors: Default::default(),
        }
    }

    async fn contractor_is_registered(
        &self,
        contractor_id: &ContractorId,
    ) -> Result<bool, ApiError> {
        let known = self
            .registered_contractors
            .read()
            .is_ok_and(|known| known.contains(contractor_id));
        if known {
            return Ok(true);
        }
        let registered = is_registered(self.log.store(), contractor_id).await?;
        if registered && let Ok(mut known) = self.registered_contractors.write() {
            known.insert(contractor_id.clone());
        }
        Ok(registered)
    }

    /// Runs a parsed command on an existing complaint.
    async fn run<T: Message>(
        &self,
        request: &Request<T>,
        expected_version: Option<u64>,
        write: Result<Write<ComplaintId, Command>, InvalidInput>,
    ) -> Result<Written, ApiError> {
        let write = write?;
        let origin = command_origin(request, write.request_id, "grpc")?;
        let executed = self
            .log
            .execute(&write.id, expected_version, &origin, write.command)
            .await??;
        Ok(Written {
            complaint_id: write.id,
            result: executed.written,
            complaint: executed.state,
        })
    }
}

/// A command's outcome: where it landed and the complaint after it.
struct Written {
    complaint_id: ComplaintId,
    result: WriteResult,
    complaint: Complaint,
}

/// The current stage's response deadline, as the API shows dates: empty while the stage has
/// none yet.
fn response_due(complaint: &Complaint) -> String {
    complaint
        .current_stage()
        .response_due
        .map(|due| due.to_string())
        .unwrap_or_default()
}

macro_rules! write_response {
    ($($response:ident)::+, $written:expr $(, $field:ident : $value:expr)*) => {
        $($response)::+ {
            complaint_id: $written.complaint_id.to_string(),
            version: $written.result.version,
            position: $written.result.position,
            duplicate: $written.result.duplicate,
            $($field: $value,)*
        }
    };
}

/// Each call of the service, answered through [`answer`]: the trait's methods below only
/// delegate here, where every error is an [`ApiError`].
impl ComplaintApi {
    async fn log_complaint(
        &self,
        request: Request<v1::LogComplaintRequest>,
    ) -> Result<v1::LogComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let key = parse::idempotency_key(&request.get_ref().idempotency_key)?;
        // Parse once, before touching the store, so bad input never costs a write; each attempt
        // only gives the parsed complaint its new id.
        let parsed = parse::log_complaint(
            request.get_ref(),
            ComplaintId::from_uuid(uuid::Uuid::nil()),
            self.clock.now(),
        )?;
        if !self.contractor_is_registered(&parsed.contractor_id).await? {
            return Err(
                InvalidInput::new("contractor_id", crate::contractors::NOT_REGISTERED).into(),
            );
        }
        if let Some(visit_id) = &parsed.visit_id {
            self.visits
                .check_belongs("visit_id", visit_id, &parsed.contractor_id)
                .await?;
        }
        let origin = command_origin(&request, Some(key), &parsed.channel)?;
        let (complaint_id, result) = log_new(
            &self.log,
            &self.vault,
            &origin,
            &parsed.source_system,
            |complaint_id| {
                let mut log = parsed.clone();
                log.complaint_id = complaint_id;
                Command::Log(Box::new(log))
            },
        )
        .await??;
        Ok(v1::LogComplaintResponse {
            complaint_id: complaint_id.to_string(),
            version: result.version,
            position: result.position,
            duplicate: result.duplicate,
        })
    }

    async fn acknowledge_complaint(
        &self,
        request: Request<v1::AcknowledgeComplaintRequest>,
    ) -> Result<v1::AcknowledgeComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::acknowledge(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        let response_due = response_due(&written.complaint);
        Ok(write_response!(
            v1::AcknowledgeComplaintResponse,
            written,
            response_due: response_due
        ))
    }

    async fn extend_deadline(
        &self,
        request: Request<v1::ExtendDeadlineRequest>,
    ) -> Result<v1::ExtendDeadlineResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::extend_deadline(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        let response_due = response_due(&written.complaint);
        Ok(write_response!(
            v1::ExtendDeadlineResponse,
            written,
            response_due: response_due
        ))
    }

    async fn record_findings(
        &self,
        request: Request<v1::RecordFindingsRequest>,
    ) -> Result<v1::RecordFindingsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::record_findings(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        Ok(write_response!(v1::RecordFindingsResponse, written))
    }

    async fn issue_response(
        &self,
        request: Request<v1::IssueResponseRequest>,
    ) -> Result<v1::IssueResponseResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::issue_response(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        Ok(write_response!(v1::IssueResponseResponse, written))
    }

    async fn request_stage_two(
        &self,
        request: Request<v1::RequestStageTwoRequest>,
    ) -> Result<v1::RequestStageTwoResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::request_stage_two(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        // Empty only if the complaint has no stage two, which this command just started.
        let acknowledgement_due = written
            .complaint
            .stage_two
            .as_ref()
            .map(|stage| stage.acknowledgement_due.to_string())
            .unwrap_or_default();
        Ok(write_response!(
            v1::RequestStageTwoResponse,
            written,
            acknowledgement_due: acknowledgement_due
        ))
    }

    async fn close_complaint(
        &self,
        request: Request<v1::CloseComplaintRequest>,
    ) -> Result<v1::CloseComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::close(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        Ok(write_response!(v1::CloseComplaintResponse, written))
    }

    async fn reopen_complaint(
        &self,
        request: Request<v1::ReopenComplaintRequest>,
    ) -> Result<v1::ReopenComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::reopen(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        let response_due = response_due(&written.complaint);
        Ok(write_response!(
            v1::ReopenComplaintResponse,
            written,
            response_due: response_due
        ))
    }

    async fn withdraw_complaint(
        &self,
        request: Request<v1::WithdrawComplaintRequest>,
    ) -> Result<v1::WithdrawComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::withdraw(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        Ok(write_response!(v1::WithdrawComplaintResponse, written))
    }

    async fn add_note(
        &self,
        request: Request<v1::AddNoteRequest>,
    ) -> Result<v1::AddNoteResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let write = parse::add_note(body, self.clock.now());
        let written = self.run(&request, body.expected_version, write).await?;
        Ok(write_response!(v1::AddNoteResponse, written))
    }

    async fn get_complaint(
        &self,
        request: Request<v1::GetComplaintRequest>,
    ) -> Result<v1::GetComplaintResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let principal = crate::auth::principal(&request)?;
        let complaint_id = parse::complaint_id(&request.get_ref().complaint_id)?;
        let loaded = self.log.load(&complaint_id).await?;
        // Another contractor's complaint answers exactly as a complaint that does not exist, so
        // a contractor cannot even learn which ids are in use.
        let Some(complaint) = loaded
            .state
            .as_ref()
            .filter(|complaint| principal.may_see_contractor(&complaint.contractor_id))
        else {
            return Err(ApiError::NotFound("no complaint has this id".to_owned()));
        };
        let today = england_date(self.clock.now());
        let mut view = convert::complaint(complaint, today);
        if principal.contractor_scope().is_some() {
            convert::withhold_resident_contact(&mut view);
        } else if let Some((intake, _)) = loaded
            .events
            .iter()
            .find(|(recorded, _)| recorded.event_type == "ComplaintReceived")
        {
            let personal = self
                .vault
                .open(&intake.payload)
                .await
                .map_err(ApiError::internal)?;
            privacy::show(&mut view, personal);
        }
        Ok(v1::GetComplaintResponse {
            complaint: Some(view),
            history: loaded
                .events
                .iter()
                .map(|(recorded, event)| convert::history_entry(recorded, event))
                .collect(),
        })
    }

    async fn forget_resident(
        &self,
        request: Request<v1::ForgetResidentRequest>,
    ) -> Result<v1::ForgetResidentResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let (reference, request_id, reason) = parse::forget_resident(request.get_ref())?;
        let origin = command_origin(&request, request_id, "grpc")?;
        // The key goes first: erasure must not wait on the record of it. A retry destroys
        // nothing more and finds the first record.
        let key_destroyed = self
            .vault
            .forget(reference.as_str())
            .await
            .map_err(ApiError::internal)?;
        let event = ResidentEvent::ResidentForgotten {
            resident_reference: reference.clone(),
            reason,
            forgotten_at: self.clock.now(),
        };
        let stream = StreamName::resident(&reference);
        let result = record(self.log.store(), &stream, &event, &origin).await??;
        tracing::info!(
            position = result.position,
            key_destroyed,
            "a resident's personal data was erased"
        );
        Ok(v1::ForgetResidentResponse {
            position: result.position,
            key_destroyed,
            duplicate: result.duplicate,
        })
    }

    async fn list_complaints(
        &self,
        request: Request<v1::ListComplaintsRequest>,
    ) -> Result<v1::ListComplaintsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let today = england_date(self.clock.now());
        let filter = scoped_filter(&request, today)?;
        let page_size = parse::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let cursor = if body.page_token.is_empty() {
            None
        } else {
            Some(PageCursor::decode(&body.page_token)?)
        };
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let read_model_position = self.read_model.position();
        let (rows, next) = self
            .read_model
            .list_complaints(&filter, page_size, cursor.as_ref())
            .await?;
        Ok(v1::ListComplaintsResponse {
            complaints: rows
                .iter()
                .map(|row| convert::summary(row, today))
                .collect(),
            // The last page has no token: empty is the API's "no more".
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
            read_model_position,
        })
    }
}

/// `ListComplaints`' filter, with a contractor confined to its own complaints.
fn scoped_filter(
    request: &Request<v1::ListComplaintsRequest>,
    today: chrono::NaiveDate,
) -> Result<doorstep_projections::ComplaintFilter, ApiError> {
    let principal = crate::auth::principal(request)?;
    let mut filter = parse::complaint_filter(request.get_ref(), today)?;
    if let Some(own) = principal.contractor_scope() {
        match &filter.contractor_id {
            Some(asked) if asked != own.as_str() => {
                return Err(ApiError::PermissionDenied(
                    "a contractor may list only its own complaints".to_owned(),
                ));
            }
            _ => filter.contractor_id = Some(own.as_str().to_owned()),
        }
    }
    Ok(filter)
}

impl ComplaintApi {
    /// `ListComplaints` in working order for the console: pending deadlines first, earliest
    /// first, then the rest newest first; `page` counts from 0. Same filter, same confinement
    /// and same policy line as `ListComplaints`. Returns the page and whether more follow.
    pub(crate) async fn list_complaints_by_deadline(
        &self,
        request: Request<v1::ListComplaintsRequest>,
        page: u32,
    ) -> Result<tonic::Response<(Vec<v1::ComplaintSummary>, bool)>, tonic::Status> {
        crate::error::answer(self.complaints_by_deadline(request, page).await)
    }

    async fn complaints_by_deadline(
        &self,
        request: Request<v1::ListComplaintsRequest>,
        page: u32,
    ) -> Result<(Vec<v1::ComplaintSummary>, bool), ApiError> {
        parse::within_limits(request.get_ref())?;
        let today = england_date(self.clock.now());
        let filter = scoped_filter(&request, today)?;
        let body = request.get_ref();
        let page_size = parse::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let (rows, more) = self
            .read_model
            .list_complaints_by_deadline(&filter, page_size, u64::from(page) * u64::from(page_size))
            .await?;
        Ok((
            rows.iter()
                .map(|row| convert::summary(row, today))
                .collect(),
            more,
        ))
    }
}

answered_by! {
    /// Delegates every call to [`ComplaintApi`]'s own methods and answers in one step.
    ComplaintService, ComplaintApi {
        fn log_complaint(v1::LogComplaintRequest) -> v1::LogComplaintResponse;
        fn acknowledge_complaint(v1::AcknowledgeComplaintRequest) -> v1::AcknowledgeComplaintResponse;
        fn extend_deadline(v1::ExtendDeadlineRequest) -> v1::ExtendDeadlineResponse;
        fn record_findings(v1::RecordFindingsRequest) -> v1::RecordFindingsResponse;
        fn issue_response(v1::IssueResponseRequest) -> v1::IssueResponseResponse;
        fn request_stage_two(v1::RequestStageTwoRequest) -> v1::RequestStageTwoResponse;
        fn close_complaint(v1::CloseComplaintRequest) -> v1::CloseComplaintResponse;
        fn reopen_complaint(v1::ReopenComplaintRequest) -> v1::ReopenComplaintResponse;
        fn withdraw_complaint(v1::WithdrawComplaintRequest) -> v1::WithdrawComplaintResponse;
        fn add_note(v1::AddNoteRequest) -> v1::AddNoteResponse;
        fn get_complaint(v1::GetComplaintRequest) -> v1::GetComplaintResponse;
        fn forget_resident(v1::ForgetResidentRequest) -> v1::ForgetResidentResponse;
        fn list_complaints(v1::ListComplaintsRequest) -> v1::ListComplaintsResponse;
    }
}
