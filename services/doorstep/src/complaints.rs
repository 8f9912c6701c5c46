//! `doorstep.v1.ComplaintService`: parses each request, runs it through the complaint log or
//! the read model, and answers.

use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_server::ComplaintService;
use doorstep_domain::InvalidInput;
use doorstep_domain::complaint::{Command, Complaint};
use doorstep_domain::england_date;
use doorstep_domain::input::{
    ComplaintId, ContractorId, Handler, LongText, OptionalText, RequestKey, ResidentReference,
    ShortText, Uprn,
};
use doorstep_domain::resident::ResidentEvent;
use doorstep_projections::{ComplaintFilter, PageCursor, ReadModel};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::aggregate_log::WriteResult;
use crate::clock::Clock;
use crate::complaint_log::{ComplaintLog, log_new};
use crate::contractors::is_registered;
use crate::convert;
use crate::error::ApiError;
use crate::parse;
use crate::privacy::{self, ResidentVault};
use crate::request::{command_origin, wait_for_read_model};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;

pub struct ComplaintApi {
    log: ComplaintLog,
    read_model: ReadModel,
    clock: Arc<dyn Clock>,
    vault: Arc<ResidentVault>,
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
    ) -> Self {
        Self {
            log,
            read_model,
            clock,
            vault,
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

    /// Runs a command on an existing complaint with the fields every mutating call shares.
    async fn run<T: Message>(
        &self,
        request: &Request<T>,
        complaint_id: &str,
        expected_version: Option<u64>,
        request_id: &str,
        command: impl FnOnce(chrono::DateTime<chrono::Utc>) -> Result<Command, InvalidInput>,
    ) -> Result<Written, Status> {
        let complaint_id = parse::complaint_id(complaint_id).map_err(ApiError::from)?;
        let request_id = parse::request_id(request_id).map_err(ApiError::from)?;
        let command = command(self.clock.now()).map_err(ApiError::from)?;
        let origin = command_origin(request, request_id, "grpc")?;
        let (result, complaint) = self
            .log
            .execute(&complaint_id, expected_version, &origin, command)
            .await?;
        Ok(Written {
            complaint_id,
            result,
            complaint,
        })
    }
}

/// A command's outcome: where it landed and the complaint after it.
struct Written {
    complaint_id: ComplaintId,
    result: WriteResult,
    complaint: Complaint,
}

/// The current stage's response deadline, as the API shows dates.
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

#[tonic::async_trait]
impl ComplaintService for ComplaintApi {
    async fn log_complaint(
        &self,
        request: Request<v1::LogComplaintRequest>,
    ) -> Result<Response<v1::LogComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let key = RequestKey::parse("idempotency_key", &request.get_ref().idempotency_key)
            .map_err(ApiError::from)?;
        // Parse once, before touching the store, so bad input never costs a write; each attempt
        // only gives the parsed complaint its new id.
        let parsed = parse::log_complaint(
            request.get_ref(),
            ComplaintId::from_uuid(uuid::Uuid::nil()),
            self.clock.now(),
        )
        .map_err(ApiError::from)?;
        if !self.contractor_is_registered(&parsed.contractor_id).await? {
            return Err(ApiError::from(InvalidInput::new(
                "contractor_id",
                "is not a registered contractor",
            ))
            .into());
        }
        if let Some(visit_id) = &parsed.visit_id {
            check_visit_belongs(self.log.store(), visit_id, &parsed.contractor_id).await?;
        }
        let origin = command_origin(&request, Some(key), &parsed.channel)?;
        let source_system = parsed.source_system.as_str().to_owned();
        let (complaint_id, result) = log_new(
            &self.log,
            &self.vault,
            &origin,
            &source_system,
            |complaint_id| {
                let mut log = parsed.clone();
                log.complaint_id = complaint_id;
                Command::Log(Box::new(log))
            },
        )
        .await?;
        Ok(Response::new(v1::LogComplaintResponse {
            complaint_id: complaint_id.to_string(),
            version: result.version,
            position: result.position,
            duplicate: result.duplicate,
        }))
    }

    async fn acknowledge_complaint(
        &self,
        request: Request<v1::AcknowledgeComplaintRequest>,
    ) -> Result<Response<v1::AcknowledgeComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::Acknowledge {
                        stage: parse::stage("stage", body.stage)?,
                        handler: Handler::parse("handler", &body.handler)?,
                        complaint_definition: OptionalText::parse(
                            "complaint_definition",
                            &body.complaint_definition,
                        )?,
                        outcome_sought: OptionalText::parse(
                            "outcome_sought",
                            &body.outcome_sought,
                        )?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        let response_due = response_due(&written.complaint);
        Ok(Response::new(write_response!(
            v1::AcknowledgeComplaintResponse,
            written,
            response_due: response_due
        )))
    }

    async fn extend_deadline(
        &self,
        request: Request<v1::ExtendDeadlineRequest>,
    ) -> Result<Response<v1::ExtendDeadlineResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    if body.working_days == 0 {
                        return Err(InvalidInput::new("working_days", "must be at least 1"));
                    }
                    Ok(Command::ExtendDeadline {
                        reason: ShortText::parse("reason", &body.reason)?,
                        working_days: body.working_days,
                        ombudsman_details_given: body.ombudsman_details_given,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        let response_due = response_due(&written.complaint);
        Ok(Response::new(write_response!(
            v1::ExtendDeadlineResponse,
            written,
            response_due: response_due
        )))
    }

    async fn record_findings(
        &self,
        request: Request<v1::RecordFindingsRequest>,
    ) -> Result<Response<v1::RecordFindingsResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::RecordFindings {
                        findings: parse::findings(&body.findings)?,
                        at: now,
                    })
                },
            )
            .await?;
        Ok(Response::new(write_response!(
            v1::RecordFindingsResponse,
            written
        )))
    }

    async fn issue_response(
        &self,
        request: Request<v1::IssueResponseRequest>,
    ) -> Result<Response<v1::IssueResponseResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::IssueResponse {
                        decision: ShortText::parse("decision", &body.decision)?,
                        remedy: OptionalText::parse("remedy", &body.remedy)?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        Ok(Response::new(write_response!(
            v1::IssueResponseResponse,
            written
        )))
    }

    async fn request_stage_two(
        &self,
        request: Request<v1::RequestStageTwoRequest>,
    ) -> Result<Response<v1::RequestStageTwoResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::RequestStageTwo {
                        reason: OptionalText::parse("reason", &body.reason)?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        let acknowledgement_due = written
            .complaint
            .stage_two
            .as_ref()
            .map(|stage| stage.acknowledgement_due.to_string())
            .unwrap_or_default();
        Ok(Response::new(write_response!(
            v1::RequestStageTwoResponse,
            written,
            acknowledgement_due: acknowledgement_due
        )))
    }

    async fn close_complaint(
        &self,
        request: Request<v1::CloseComplaintRequest>,
    ) -> Result<Response<v1::CloseComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::Close {
                        reason: OptionalText::parse("reason", &body.reason)?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        Ok(Response::new(write_response!(
            v1::CloseComplaintResponse,
            written
        )))
    }

    async fn reopen_complaint(
        &self,
        request: Request<v1::ReopenComplaintRequest>,
    ) -> Result<Response<v1::ReopenComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::Reopen {
                        reason: ShortText::parse("reason", &body.reason)?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        let response_due = response_due(&written.complaint);
        Ok(Response::new(write_response!(
            v1::ReopenComplaintResponse,
            written,
            response_due: response_due
        )))
    }

    async fn withdraw_complaint(
        &self,
        request: Request<v1::WithdrawComplaintRequest>,
    ) -> Result<Response<v1::WithdrawComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    Ok(Command::Withdraw {
                        reason: OptionalText::parse("reason", &body.reason)?,
                        at: parse::effective_at("effective_at", body.effective_at.as_ref(), now)?,
                    })
                },
            )
            .await?;
        Ok(Response::new(write_response!(
            v1::WithdrawComplaintResponse,
            written
        )))
    }

    async fn add_note(
        &self,
        request: Request<v1::AddNoteRequest>,
    ) -> Result<Response<v1::AddNoteResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let written = self
            .run(
                &request,
                &body.complaint_id,
                body.expected_version,
                &body.request_id,
                |now| {
                    let text = LongText::parse("text", &body.text)?;
                    if text.as_str().is_empty() {
                        return Err(InvalidInput::new("text", "is required"));
                    }
                    Ok(Command::AddNote { text, at: now })
                },
            )
            .await?;
        Ok(Response::new(write_response!(v1::AddNoteResponse, written)))
    }

    async fn get_complaint(
        &self,
        request: Request<v1::GetComplaintRequest>,
    ) -> Result<Response<v1::GetComplaintResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let principal = crate::auth::principal(&request)?;
        let complaint_id =
            parse::complaint_id(&request.get_ref().complaint_id).map_err(ApiError::from)?;
        let loaded = self.log.load(&complaint_id).await?;
        // Another contractor's complaint answers exactly as a complaint that does not exist, so
        // a contractor cannot even learn which ids are in use.
        let Some(complaint) = loaded
            .state
            .as_ref()
            .filter(|complaint| principal.may_see_contractor(&complaint.contractor_id))
        else {
            return Err(ApiError::NotFound("no complaint has this id".to_owned()).into());
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
        Ok(Response::new(v1::GetComplaintResponse {
            complaint: Some(view),
            history: loaded
                .events
                .iter()
                .map(|(recorded, event)| convert::history_entry(recorded, event))
                .collect(),
        }))
    }

    async fn forget_resident(
        &self,
        request: Request<v1::ForgetResidentRequest>,
    ) -> Result<Response<v1::ForgetResidentResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let body = request.get_ref();
        let reference = ResidentReference::parse("resident_reference", &body.resident_reference)
            .map_err(ApiError::from)?;
        let request_id = parse::request_id(&body.request_id).map_err(ApiError::from)?;
        let reason = OptionalText::parse("reason", &body.reason).map_err(ApiError::from)?;
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
        let result = crate::aggregate_log::append_once(
            self.log.store(),
            &doorstep_store::StreamId::new("resident", reference.as_str()),
            &event,
            &origin,
        )
        .await?;
        tracing::info!(
            position = result.position,
            key_destroyed,
            "a resident's personal data was erased"
        );
        Ok(Response::new(v1::ForgetResidentResponse {
            position: result.position,
            key_destroyed,
            duplicate: result.duplicate,
        }))
    }

    async fn list_complaints(
        &self,
        request: Request<v1::ListComplaintsRequest>,
    ) -> Result<Response<v1::ListComplaintsResponse>, Status> {
        parse::within_limits(request.get_ref()).map_err(ApiError::from)?;
        let principal = crate::auth::principal(&request)?;
        let body = request.get_ref();
        let today = england_date(self.clock.now());
        let mut filter = list_filter(body, today).map_err(ApiError::from)?;
        if let Some(own) = principal.contractor_scope() {
            match &filter.contractor_id {
                Some(asked) if asked != own.as_str() => {
                    return Err(ApiError::PermissionDenied(
                        "a contractor may list only its own complaints".to_owned(),
                    )
                    .into());
                }
                _ => filter.contractor_id = Some(own.as_str().to_owned()),
            }
        }
        let page_size = match body.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size <= MAX_PAGE_SIZE => size,
            _ => {
                return Err(ApiError::from(InvalidInput::new(
                    "page_size",
                    format!("may be at most {MAX_PAGE_SIZE}"),
                ))
                .into());
            }
        };
        let cursor = if body.page_token.is_empty() {
            None
        } else {
            Some(PageCursor::decode(&body.page_token).map_err(ApiError::from)?)
        };
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let read_model_position = self.read_model.position();
        let (rows, next) = self
            .read_model
            .list_complaints(&filter, page_size, cursor.as_ref())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::ListComplaintsResponse {
            complaints: rows
                .iter()
                .map(|row| convert::summary(row, today))
                .collect(),
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
            read_model_position,
        }))
    }
}

/// A complaint about a recorded visit must name the contractor that made it: otherwise its
/// breaches would count against another contractor's visits. A visit not recorded yet is
/// accepted (work-order systems may send visits late).
async fn check_visit_belongs(
    store: &std::sync::Arc<dyn doorstep_store::EventStore>,
    visit_id: &doorstep_domain::input::VisitId,
    contractor_id: &doorstep_domain::input::ContractorId,
) -> Result<(), ApiError> {
    let stream = doorstep_store::StreamId::new("visit", visit_id);
    let Some(recorded) = store.read_stream(&stream, 1, 1).await?.into_iter().next() else {
        return Ok(());
    };
    let doorstep_domain::contractor::VisitEvent::VisitRecorded { visit } =
        doorstep_domain::contractor::VisitEvent::from_payload(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(ApiError::internal)?;
    if &visit.contractor_id != contractor_id {
        return Err(InvalidInput::new(
            "visit_id",
            format!(
                "is a visit by {}, not by {contractor_id}",
                visit.contractor_id
            ),
        )
        .into());
    }
    Ok(())
}

fn list_filter(
    body: &v1::ListComplaintsRequest,
    today: chrono::NaiveDate,
) -> Result<ComplaintFilter, InvalidInput> {
    let non_empty = |value: &str| (!value.trim().is_empty()).then(|| value.trim().to_owned());
    Ok(ComplaintFilter {
        contractor_id: non_empty(&body.contractor_id),
        status: parse::optional_status("status", body.status)?,
        stage: parse::optional_stage("stage", body.stage)?,
        overdue_on: body.overdue_only.then_some(today),
        uprn: non_empty(&body.uprn)
            .map(|uprn| Uprn::parse("uprn", &uprn).map(|u| u.as_str().to_owned()))
            .transpose()?,
        resident_reference: non_empty(&body.resident_reference)
            .map(|reference| {
                ResidentReference::parse("resident_reference", &reference)
                    .map(|r| r.as_str().to_owned())
            })
            .transpose()?,
        received_from: parse::timestamp("received_from", body.received_from.as_ref())?,
        received_to: parse::timestamp("received_to", body.received_to.as_ref())?,
    })
}
