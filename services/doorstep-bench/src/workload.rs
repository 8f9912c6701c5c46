//! What the benchmark sends: one valid complaint, sent again and again under fresh idempotency
//! keys, and the stored event it becomes, which the baseline appends straight to the store.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_server::auth::client::AuthenticatedChannel as Channel;
use doorstep_store::{EventMetadata, NewEvent};
use uuid::Uuid;

/// The contractor every benchmark complaint is about.
pub const CONTRACTOR_ID: &str = "acme-retrofit";

/// The visit every benchmark complaint names, recorded before the intake as a contractor's
/// work-order system records its visits.
pub const VISIT_ID: &str = "V-2026-0001";

/// [`VISIT_ID`]'s date: fixed, so that recording it again on another day, against a `--target`
/// server that has it, is the same visit (a duplicate) rather than a clash.
const VISIT_DATE: &str = "2026-06-01";

/// Registers [`CONTRACTOR_ID`] (the server refuses complaints about unknown contractors) and
/// records [`VISIT_ID`] as its visit, so each complaint's visit check finds the contractor that
/// made it.
pub async fn register_contractor(channel: Channel) -> anyhow::Result<()> {
    ContractorServiceClient::new(channel.clone())
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: CONTRACTOR_ID.to_owned(),
            profile: Some(v1::ContractorProfile {
                legal_name: "Acme Retrofit Ltd".to_owned(),
                trading_names: vec!["Acme Warm Homes".to_owned()],
                logo_url: "https://example.org/logos/acme-retrofit.png".to_owned(),
                public_contact_name: "Sam Site".to_owned(),
                public_phone: "0113 496 0000".to_owned(),
                contracts: vec![v1::ContractTerms {
                    reference: "RETRO-2026-01".to_owned(),
                    standards: vec![v1::ServiceStandard::GatesSecured as i32],
                    ..v1::ContractTerms::default()
                }],
            }),
            request_id: format!("register-{CONTRACTOR_ID}"),
        })
        .await
        .with_context(|| format!("registering the contractor {CONTRACTOR_ID}"))?;
    let recorded = VisitServiceClient::new(channel)
        .record_visits(v1::RecordVisitsRequest {
            visits: vec![v1::Visit {
                visit_id: VISIT_ID.to_owned(),
                contractor_id: CONTRACTOR_ID.to_owned(),
                uprn: "100023336956".to_owned(),
                work_order_reference: "WO-2026-0001".to_owned(),
                visit_date: VISIT_DATE.to_owned(),
            }],
        })
        .await
        .with_context(|| format!("recording the visit {VISIT_ID}"))?
        .into_inner();
    if let Some(rejected) = recorded.rejected.first() {
        bail!(
            "the server refused the visit {VISIT_ID}: {} {}",
            rejected.field,
            rejected.reason
        );
    }
    Ok(())
}

/// The complaint every intake call logs; only the idempotency key changes from call to call.
#[derive(Debug, Clone)]
pub struct ComplaintTemplate {
    request: v1::LogComplaintRequest,
}

impl ComplaintTemplate {
    /// A gate left open, received a minute before `now` (the server refuses times in the future).
    pub fn gate_left_open(now: DateTime<Utc>) -> Self {
        let received_at = prost_types::Timestamp {
            seconds: now.timestamp() - 60,
            nanos: 0,
        };
        let request = v1::LogComplaintRequest {
            idempotency_key: String::new(),
            channel: v1::Channel::Phone as i32,
            source_system: "call-centre".to_owned(),
            resident: Some(v1::Resident {
                reference: "T-1001".to_owned(),
                name: "Ada Resident".to_owned(),
                phone: "07700 900123".to_owned(),
                email: "ada@example.org".to_owned(),
            }),
            property: Some(v1::Property {
                uprn: "100023336956".to_owned(),
                address: "1 Example Road, Leeds".to_owned(),
            }),
            contractor_id: CONTRACTOR_ID.to_owned(),
            visit_id: Some(VISIT_ID.to_owned()),
            standards: vec![v1::ServiceStandard::GatesSecured as i32],
            description: "The side gate was left open during loft insulation work and the dog \
                          got out onto the main road; the resident had asked twice that it be \
                          kept shut."
                .to_owned(),
            occurred_at: Some(received_at),
            received_at: Some(received_at),
            outcome_sought: "An apology and the gate kept shut on every visit".to_owned(),
            reasonable_adjustments: "Large print letters".to_owned(),
        };
        Self { request }
    }

    /// The template with its own idempotency key and its own resident: a call centre's
    /// complaints come from many households, and each new resident gets a key of their own.
    pub fn request(&self, idempotency_key: String) -> v1::LogComplaintRequest {
        let mut request = self.request.clone();
        if let Some(resident) = request.resident.as_mut() {
            resident.reference = format!("R-{idempotency_key}");
        }
        request.idempotency_key = idempotency_key;
        request
    }
}

/// A stored intake event, copied from the server's own log so that the baseline appends the
/// same bytes the server does.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    /// The payload and metadata as stored JSON, in bytes.
    pub stored_bytes: usize,
}

impl EventTemplate {
    /// Reads the first event of `stream_id` back through the server's `EventService`.
    pub async fn read_from_server(channel: Channel, stream_id: String) -> anyhow::Result<Self> {
        let mut events = EventServiceClient::new(channel);
        let response = events
            .read_stream(v1::ReadStreamRequest {
                stream_id: stream_id.clone(),
                from_version: 1,
                max_count: 1,
            })
            .await
            .with_context(|| format!("reading {stream_id} back from the server"))?
            .into_inner();
        let Some(recorded) = response.events.into_iter().next() else {
            bail!("the server returned no event for {stream_id}");
        };
        let payload: serde_json::Value = serde_json::from_str(&recorded.payload_json)
            .context("the intake event's payload is not JSON")?;
        let delivered = recorded.metadata.unwrap_or_default();
        // The service does not deliver the command fingerprint; a SHA-256 in hex has this length.
        let metadata = EventMetadata {
            actor: delivered.actor,
            causation_id: None,
            correlation_id: Some(Uuid::now_v7()),
            request_id: Some(delivered.request_id),
            source_channel: delivered.source_channel,
            command_fingerprint: Some("0".repeat(64)),
            ..EventMetadata::default()
        };
        let metadata_bytes = serde_json::to_vec(&metadata)
            .context("encoding the event metadata")?
            .len();
        Ok(Self {
            event_type: recorded.event_type,
            schema_version: recorded.schema_version,
            stored_bytes: recorded.payload_json.len() + metadata_bytes,
            payload,
            metadata,
        })
    }

    /// A new event with this content and a fresh id.
    pub fn new_event(&self) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
        }
    }
}
