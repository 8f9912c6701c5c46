//! `doorstep.v1.EscalationService`: escalations raised by the notifier, their acknowledgement,
//! and deliveries that were dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::escalation_service_server::EscalationService;
use doorstep_domain::complaint::{Command, Event};
use doorstep_domain::escalation::Deadline;
use doorstep_domain::input::ComplaintId;
use doorstep_projections::{Delivery, DeliveryChannel, EscalationRow, ReadModel};
use doorstep_store::{EventStore, RecordedEvent};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use doorstep_domain::stream::{Category, id_in};

use crate::clock::Clock;
use crate::complaint_log::ComplaintLog;
use crate::convert;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::events::{EventMessage, follow_log};
use crate::parse;
use crate::request::{command_origin, wait_for_read_model};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;
/// How long an acknowledgement waits for the read model to show it before answering.
const READ_BACK_WAIT: Duration = Duration::from_secs(10);

pub struct EscalationApi {
    log: ComplaintLog,
    read_model: ReadModel,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
}

impl EscalationApi {
    pub fn new(
        log: ComplaintLog,
        read_model: ReadModel,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let store = log.store().clone();
        Self {
            log,
            read_model,
            store,
            clock,
            shutdown,
        }
    }
}

fn deadline(deadline: Deadline) -> v1::Deadline {
    match deadline {
        Deadline::StageOneAcknowledgement => v1::Deadline::StageOneAcknowledgement,
        Deadline::StageOneResponse => v1::Deadline::StageOneResponse,
        Deadline::StageTwoAcknowledgement => v1::Deadline::StageTwoAcknowledgement,
        Deadline::StageTwoResponse => v1::Deadline::StageTwoResponse,
    }
}

fn escalation(row: &EscalationRow) -> v1::Escalation {
    v1::Escalation {
        escalation_id: row.escalation_id.to_string(),
        complaint_id: row.complaint_id.clone(),
        contractor_id: row.contractor_id.clone(),
        deadline: deadline(row.deadline) as i32,
        level: row.level.to_string(),
        deadline_date: row.deadline_date.to_string(),
        clock_started_at: Some(convert::timestamp(row.clock_started_at)),
        due_at: Some(convert::timestamp(row.due_at)),
        raised_at: Some(convert::timestamp(row.raised_at)),
        recipients: row.recipients.clone(),
        // Empty while the escalation is not acknowledged.
        acknowledged_by: row.acknowledged_by.clone().unwrap_or_default(),
        acknowledged_at: row.acknowledged_at.map(convert::timestamp),
        position: row.position,
    }
}

fn dead_letter(delivery: &Delivery) -> v1::DeadLetter {
    v1::DeadLetter {
        delivery_id: delivery.delivery_id.to_string(),
        escalation_id: delivery.escalation_id.to_string(),
        channel: match delivery.channel {
            DeliveryChannel::Webhook => v1::DeliveryChannel::Webhook,
            DeliveryChannel::Email => v1::DeliveryChannel::Email,
        } as i32,
        target: delivery.target.clone(),
        attempts: delivery.attempts,
        // Empty when no attempt has failed.
        last_error: delivery.last_error.clone().unwrap_or_default(),
        created_at: Some(convert::timestamp(delivery.created_at)),
    }
}

/// The watch message for one stored event: escalations raised and acknowledged, nothing else.
fn watch_message(recorded: &RecordedEvent) -> Option<Result<v1::WatchEscalationsResponse, Status>> {
    use v1::watch_escalations_response::Message;
    if recorded.stream_id.category() != "complaint"
        || !matches!(
            recorded.event_type.as_str(),
            "EscalationRaised" | "EscalationAcknowledged"
        )
    {
        return None;
    }
    // A corrupt stream name is an error for the watcher, never an escalation with no complaint.
    let complaint_id = match id_in(recorded.stream_id.as_str(), Category::Complaint) {
        Ok(id) => id.to_owned(),
        Err(error) => return Some(Err(ApiError::internal(error).into())),
    };
    let event = match Event::from_payload(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    ) {
        Ok(event) => event,
        Err(error) => return Some(Err(ApiError::internal(error).into())),
    };
    let message = match event {
        Event::EscalationRaised {
            ref contractor_id, ..
        } => Message::Raised(escalation(&EscalationRow::raised(
            &complaint_id,
            contractor_id.as_str(),
            &event,
            recorded.position,
        )?)),
        Event::EscalationAcknowledged {
            escalation_id,
            acknowledged_by,
            note,
            acknowledged_at,
        } => Message::Acknowledged(v1::EscalationAcknowledgement {
            escalation_id: escalation_id.to_string(),
            complaint_id,
            acknowledged_by: acknowledged_by.as_str().to_owned(),
            note: note.as_str().to_owned(),
            acknowledged_at: Some(convert::timestamp(acknowledged_at)),
            position: recorded.position,
        }),
        _ => return None,
    };
    Some(Ok(v1::WatchEscalationsResponse {
        message: Some(message),
    }))
}

impl EscalationApi {
    async fn watch_escalations(
        &self,
        request: Request<v1::WatchEscalationsRequest>,
    ) -> Result<<Self as EscalationService>::WatchEscalationsStream, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let message: EventMessage<v1::WatchEscalationsResponse> = Box::new(watch_message);
        Ok(follow_log(
            self.store.clone(),
            body.from_position,
            self.shutdown.clone(),
            message,
            |position| v1::WatchEscalationsResponse {
                message: Some(v1::watch_escalations_response::Message::CaughtUp(
                    v1::EscalationsCaughtUp { position },
                )),
            },
        ))
    }

    async fn list_escalations(
        &self,
        request: Request<v1::ListEscalationsRequest>,
    ) -> Result<v1::ListEscalationsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let page_size = parse::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let (filter, after) = parse::escalation_filter(&body)?;
        let rows = self
            .read_model
            .list_escalations(&filter, page_size, after)
            .await?;
        let next_page_token = if rows.len() == page_size as usize {
            // A full page has a last row; an empty token is the API's "no more".
            rows.last()
                .map(|row| row.position.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListEscalationsResponse {
            escalations: rows.iter().map(escalation).collect(),
            next_page_token,
        })
    }

    async fn acknowledge_escalation(
        &self,
        request: Request<v1::AcknowledgeEscalationRequest>,
    ) -> Result<v1::AcknowledgeEscalationResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.get_ref();
        let (escalation_id, by, note, request_id) = parse::acknowledge_escalation(body)?;
        let row = match self.read_model.escalation(escalation_id).await? {
            Some(row) => row,
            None => {
                // It may have been raised a moment ago: give the read model the time to apply
                // everything committed so far before saying it does not exist.
                let head = self.store.head_position().await?;
                self.read_model.wait_for(head, READ_BACK_WAIT).await;
                self.read_model
                    .escalation(escalation_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("no escalation has this id".to_owned()))?
            }
        };
        let complaint_id =
            ComplaintId::parse("complaint_id", &row.complaint_id).map_err(ApiError::internal)?;
        let origin = command_origin(&request, request_id, "grpc")?;
        let command = Command::AcknowledgeEscalation {
            escalation_id,
            by,
            note,
            at: self.clock.now(),
        };
        let result = self
            .log
            .execute(&complaint_id, None, &origin, command)
            .await??
            .written;
        // Answer with the escalation as lists will show it.
        let acknowledged = if self
            .read_model
            .wait_for(result.position, READ_BACK_WAIT)
            .await
        {
            self.read_model
                .escalation(escalation_id)
                .await?
                .unwrap_or(row)
        } else {
            row
        };
        Ok(v1::AcknowledgeEscalationResponse {
            escalation: Some(escalation(&acknowledged)),
            version: result.version,
            duplicate: result.duplicate,
            position: result.position,
        })
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<v1::ListDeadLettersResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let page_size = parse::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = parse::dead_letter_token(&body.page_token)?;
        let dead = self.read_model.dead_letters(page_size, after).await?;
        let next_page_token = match dead.last() {
            Some(last) if dead.len() == page_size as usize => format!(
                "{}/{}",
                last.created_at.timestamp_millis(),
                last.delivery_id
            ),
            _ => String::new(),
        };
        Ok(v1::ListDeadLettersResponse {
            dead_letters: dead.iter().map(dead_letter).collect(),
            next_page_token,
        })
    }

    async fn retry_dead_letter(
        &self,
        request: Request<v1::RetryDeadLetterRequest>,
    ) -> Result<v1::RetryDeadLetterResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let delivery_id = parse::uuid("delivery_id", &body.delivery_id)?;
        let state = self
            .read_model
            .delivery_state(delivery_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no delivery has this id".to_owned()))?;
        // Real time, like every delivery time: it is about the receiver, not the Code's clock.
        let retried = state == "DEAD"
            && self
                .read_model
                .retry_dead_letter(delivery_id, chrono::Utc::now())
                .await?;
        if !retried {
            return Err(ApiError::NotAllowed(format!(
                "the delivery is {}, not dead-lettered",
                state.to_lowercase()
            )));
        }
        Ok(v1::RetryDeadLetterResponse {})
    }
}

answered_by! {
    /// Delegates every call to [`EscalationApi`]'s own methods and answers in one step.
    EscalationService, EscalationApi {
        type WatchEscalationsStream = ReceiverStream<Result<v1::WatchEscalationsResponse, Status>>;
        fn watch_escalations(v1::WatchEscalationsRequest) -> Self::WatchEscalationsStream;
        fn list_escalations(v1::ListEscalationsRequest) -> v1::ListEscalationsResponse;
        fn acknowledge_escalation(v1::AcknowledgeEscalationRequest) -> v1::AcknowledgeEscalationResponse;
        fn list_dead_letters(v1::ListDeadLettersRequest) -> v1::ListDeadLettersResponse;
        fn retry_dead_letter(v1::RetryDeadLetterRequest) -> v1::RetryDeadLetterResponse;
    }
}
