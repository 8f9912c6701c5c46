//! `doorstep.v1.VisitService`: the completed visits behind every breach rate. Each visit is a
//! stream of its own (`visit-<id>`) whose one event's id is derived from the visit id, so a
//! visit sent again is recognised by the store itself.

use std::collections::HashMap;
use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::visit_service_server::VisitService;
use doorstep_commands::{CommandOrigin, IdPolicy, Refusal, start};
use doorstep_domain::InvalidInput;
use doorstep_domain::contractor::{Visit, VisitEvent};
use doorstep_domain::england_date;
use doorstep_domain::input::{ContractorId, VisitId};
use doorstep_domain::stream::StreamName;
use doorstep_store::{EventStore, ExpectedVersion, StreamId};
use futures::StreamExt;
use tonic::Request;

use crate::clock::Clock;
use crate::contractors::is_registered;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::parse;
use crate::request::command_origin;

/// Visit appends in flight at once: enough for the store's group commit to fill its batches.
const CONCURRENT_VISIT_APPENDS: usize = 512;

pub struct VisitApi {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
}

/// What happened to one visit of a batch.
enum VisitOutcome {
    Recorded(u64),
    Duplicate(u64),
    Rejected(v1::RejectedVisit),
}

impl VisitApi {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    async fn record_visits(
        &self,
        request: Request<v1::RecordVisitsRequest>,
    ) -> Result<v1::RecordVisitsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let count = parse::visit_count(request.get_ref().visits.len())?;
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
        let registered = self.registered_contractors(&parsed).await?;
        let appends = parsed.into_iter().map(|(index, visit)| {
            let known = registered
                .get(&visit.contractor_id)
                .copied()
                .unwrap_or(false);
            self.record_one(index, visit, known, &origin)
        });
        let mut appended =
            futures::stream::iter(appends).buffer_unordered(CONCURRENT_VISIT_APPENDS);
        while let Some(outcome) = appended.next().await {
            outcomes.push(outcome?);
        }
        Ok(response(outcomes))
    }

    /// Whether each contractor the visits name is registered, each looked up once per call.
    async fn registered_contractors(
        &self,
        parsed: &[(usize, Visit)],
    ) -> Result<HashMap<ContractorId, bool>, ApiError> {
        let mut registered: HashMap<ContractorId, bool> = HashMap::new();
        for (_, visit) in parsed {
            if !registered.contains_key(&visit.contractor_id) {
                let known = is_registered(&self.store, &visit.contractor_id).await?;
                registered.insert(visit.contractor_id.clone(), known);
            }
        }
        Ok(registered)
    }

    /// Appends one visit, once: a visit sent again with the same details is a duplicate, with
    /// other details a rejection.
    async fn record_one(
        &self,
        index: usize,
        visit: Visit,
        contractor_known: bool,
        origin: &CommandOrigin,
    ) -> Result<VisitOutcome, ApiError> {
        if !contractor_known {
            return Ok(VisitOutcome::Rejected(rejected(
                index,
                visit.visit_id.as_str(),
                format!("visits[{index}].contractor_id"),
                crate::contractors::NOT_REGISTERED.to_owned(),
            )));
        }
        let visit_id = visit.visit_id.clone();
        let event = VisitEvent::VisitRecorded { visit };
        let landed = start(
            &self.store,
            &StreamName::visit(&visit_id),
            ExpectedVersion::NoStream,
            origin,
            IdPolicy::Visit(&visit_id),
            std::slice::from_ref(&event),
        )
        .await?;
        match landed {
            Ok(landed) if landed.written.duplicate => {
                Ok(VisitOutcome::Duplicate(landed.written.position))
            }
            Ok(landed) => Ok(VisitOutcome::Recorded(landed.written.position)),
            Err(Refusal::KeyReused { .. } | Refusal::VersionConflict { .. }) => {
                Ok(VisitOutcome::Rejected(rejected(
                    index,
                    visit_id.as_str(),
                    format!("visits[{index}].visit_id"),
                    "was already recorded with different details".to_owned(),
                )))
            }
            Err(refusal) => Err(refusal.into()),
        }
    }
}

/// The call's answer: counts, the furthest position written, and rejections in request order.
fn response(outcomes: Vec<VisitOutcome>) -> v1::RecordVisitsResponse {
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
    response
}

fn rejected(index: usize, visit_id: &str, field: String, reason: String) -> v1::RejectedVisit {
    v1::RejectedVisit {
        // A call holds at most MAX_VISITS_PER_CALL visits, so the index always fits.
        index: u32::try_from(index).unwrap_or(u32::MAX),
        visit_id: visit_id.to_owned(),
        field,
        reason,
    }
}

/// Visits whose contractor is known, at most this many (a few tens of bytes each).
const KNOWN_VISITS: usize = 65_536;

/// Which contractor made a visit, as its stream says. A visit's stream holds one event, written
/// once and never changed, so a contractor once read stays true: the answer is kept in a bounded
/// cache and later complaints about the visit cost no read. A visit not recorded yet is not
/// cached (it may be recorded at any moment, by any replica): each check reads its stream again.
pub struct VisitContractors {
    store: Arc<dyn EventStore>,
    known: quick_cache::sync::Cache<VisitId, ContractorId>,
}

impl VisitContractors {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            known: quick_cache::sync::Cache::new(KNOWN_VISITS),
        }
    }

    /// A complaint or an inspection about a recorded visit must name the contractor that made
    /// it: otherwise its breaches would count against another contractor's visits. A visit not
    /// recorded yet is accepted (work-order systems may send visits late). `field` names the
    /// visit id in the refusal.
    pub async fn check_belongs(
        &self,
        field: &str,
        visit_id: &VisitId,
        contractor_id: &ContractorId,
    ) -> Result<(), ApiError> {
        let recorded_by = match self.known.get(visit_id) {
            Some(known) => known,
            None => match self.read(visit_id).await? {
                Some(read) => {
                    self.known.insert(visit_id.clone(), read.clone());
                    read
                }
                None => return Ok(()),
            },
        };
        if &recorded_by != contractor_id {
            return Err(InvalidInput::new(
                field,
                format!("is a visit by {recorded_by}, not by {contractor_id}"),
            )
            .into());
        }
        Ok(())
    }

    /// The contractor of the visit's one event, if it is recorded.
    async fn read(&self, visit_id: &VisitId) -> Result<Option<ContractorId>, ApiError> {
        let stream = StreamId::from(StreamName::visit(visit_id).to_string());
        let Some(recorded) = self
            .store
            .read_stream(&stream, 1, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let VisitEvent::VisitRecorded { visit } = VisitEvent::from_payload(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(ApiError::internal)?;
        Ok(Some(visit.contractor_id))
    }
}

answered_by! {
    /// Delegates to [`VisitApi`]'s own method and answers in one step.
    VisitService, VisitApi {
        fn record_visits(v1::RecordVisitsRequest) -> v1::RecordVisitsResponse;
    }
}
