//! `InspectionService` requests → domain values, naming the field of every failure, and their
//! limits.

use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_domain::InvalidInput;
use doorstep_domain::input::{
    ContractorId, Handler, OptionalText, RequestKey, ShortText, Uprn, VisitId,
};
use doorstep_domain::inspection::{
    InspectionDetails, InspectionId, Observation, ObservationResult,
};

use super::{
    ID_CHARS, Limited, MAX_STANDARDS, PAGE_TOKEN_CHARS, UPRN_CHARS, chars, each_chars, items,
    optional, standard, time,
};

/// The most photo references one inspection holds.
pub const MAX_PHOTO_REFERENCES: usize = 50;

/// `request_id`, which a new inspection must have: its id is derived from it.
pub fn required_request_id(value: &str) -> Result<RequestKey, InvalidInput> {
    if value.trim().is_empty() {
        return Err(InvalidInput::new(
            "request_id",
            "is required: the inspection's id is derived from it, so a retry finds the first result",
        ));
    }
    RequestKey::parse("request_id", value)
}

pub fn inspection_id(value: &str) -> Result<InspectionId, InvalidInput> {
    if value.trim().is_empty() {
        return Err(InvalidInput::new("inspection_id", "is required"));
    }
    InspectionId::parse("inspection_id", value)
}

pub fn finding_id(value: &str) -> Result<uuid::Uuid, InvalidInput> {
    uuid::Uuid::parse_str(value.trim())
        .map_err(|_| InvalidInput::new("finding_id", "must be a finding id (a UUID)"))
}

fn result(field: &str, value: i32) -> Result<ObservationResult, InvalidInput> {
    match v1::ObservationResult::try_from(value) {
        Ok(v1::ObservationResult::Met) => Ok(ObservationResult::Met),
        Ok(v1::ObservationResult::NotMet) => Ok(ObservationResult::NotMet),
        Ok(v1::ObservationResult::NotObserved) => Ok(ObservationResult::NotObserved),
        Ok(v1::ObservationResult::Unspecified) => Err(InvalidInput::new(
            field,
            "is required: met, not met or not observed",
        )),
        Err(_) => Err(InvalidInput::new(
            field,
            "is not a known observation result",
        )),
    }
}

/// An inspection's details: every field checked in order, none in the future.
pub fn details(
    value: Option<&v1::InspectionDetails>,
    now: DateTime<Utc>,
) -> Result<InspectionDetails, InvalidInput> {
    let details = value.ok_or_else(|| InvalidInput::new("details", "is required"))?;
    let contractor_id = ContractorId::parse("details.contractor_id", &details.contractor_id)?;
    let contract_reference =
        ShortText::parse("details.contract_reference", &details.contract_reference)?;
    let uprn = Uprn::parse("details.uprn", &details.uprn)?;
    let visit_id = optional(&details.visit_id, |value| {
        VisitId::parse("details.visit_id", value)
    })?;
    let inspected_at = details
        .inspected_at
        .as_ref()
        .ok_or_else(|| InvalidInput::new("details.inspected_at", "is required"))?;
    let inspected_at = super::effective_at("details.inspected_at", Some(inspected_at), now)?;
    let inspecting_officer =
        Handler::parse("details.inspecting_officer", &details.inspecting_officer)?;
    if details.observations.is_empty() {
        return Err(InvalidInput::new(
            "details.observations",
            "must hold at least one observation",
        ));
    }
    let mut observations: Vec<Observation> = Vec::with_capacity(details.observations.len());
    for (index, observation) in details.observations.iter().enumerate() {
        let field = |name: &str| format!("details.observations[{index}].{name}");
        let standard = standard(&field("standard"), observation.standard)?;
        if observations.iter().any(|seen| seen.standard == standard) {
            return Err(InvalidInput::new(
                field("standard"),
                format!("{standard:?} is observed twice"),
            ));
        }
        observations.push(Observation {
            standard,
            result: result(&field("result"), observation.result)?,
            note: OptionalText::parse(&field("note"), &observation.note)?,
        });
    }
    let photo_references = details
        .photo_references
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            ShortText::parse(&format!("details.photo_references[{index}]"), reference)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InspectionDetails {
        contractor_id,
        contract_reference,
        uprn,
        visit_id,
        inspected_at,
        inspecting_officer,
        observations,
        photo_references,
    })
}

fn details_limits(
    field: &str,
    details: &Option<v1::InspectionDetails>,
) -> Result<(), InvalidInput> {
    let Some(details) = details else {
        return Ok(());
    };
    let name = |inner: &str| format!("{field}.{inner}");
    chars(
        &name("contractor_id"),
        &details.contractor_id,
        ContractorId::MAX_CHARS,
    )?;
    chars(
        &name("contract_reference"),
        &details.contract_reference,
        ShortText::MAX_CHARS,
    )?;
    chars(&name("uprn"), &details.uprn, UPRN_CHARS)?;
    chars(&name("visit_id"), &details.visit_id, VisitId::MAX_CHARS)?;
    time(&name("inspected_at"), &details.inspected_at)?;
    chars(
        &name("inspecting_officer"),
        &details.inspecting_officer,
        Handler::MAX_CHARS,
    )?;
    items(&name("observations"), &details.observations, MAX_STANDARDS)?;
    for (index, observation) in details.observations.iter().enumerate() {
        chars(
            &format!("{field}.observations[{index}].note"),
            &observation.note,
            OptionalText::MAX_CHARS,
        )?;
    }
    each_chars(
        &name("photo_references"),
        &details.photo_references,
        MAX_PHOTO_REFERENCES,
        ShortText::MAX_CHARS,
    )
}

impl Limited for v1::RecordInspectionRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        details_limits("details", &self.details)?;
        chars("request_id", &self.request_id, RequestKey::MAX_CHARS)
    }
}

impl Limited for v1::CorrectInspectionRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        chars("inspection_id", &self.inspection_id, ID_CHARS)?;
        details_limits("details", &self.details)?;
        chars("reason", &self.reason, ShortText::MAX_CHARS)?;
        chars("request_id", &self.request_id, RequestKey::MAX_CHARS)
    }
}

impl Limited for v1::ResolveInspectionFindingRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        chars("inspection_id", &self.inspection_id, ID_CHARS)?;
        chars("finding_id", &self.finding_id, ID_CHARS)?;
        chars("resolution", &self.resolution, ShortText::MAX_CHARS)?;
        chars("resolved_by", &self.resolved_by, Handler::MAX_CHARS)?;
        time("resolved_at", &self.resolved_at)?;
        chars("request_id", &self.request_id, RequestKey::MAX_CHARS)
    }
}

impl Limited for v1::GetInspectionRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        chars("inspection_id", &self.inspection_id, ID_CHARS)
    }
}

impl Limited for v1::ListInspectionsRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        chars(
            "contractor_id",
            &self.contractor_id,
            ContractorId::MAX_CHARS,
        )?;
        chars("page_token", &self.page_token, PAGE_TOKEN_CHARS)
    }
}

/// A `ListInspections` page token: the log position of the last inspection listed.
pub fn page_token(token: &str) -> Result<u64, InvalidInput> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix("i")
        .and_then(|position| position.parse::<u64>().ok())
        .ok_or_else(|| InvalidInput::new("page_token", "is not a page token this service issued"))
}

/// The token that continues a listing after the inspection at `position`.
pub fn next_page_token(position: u64) -> String {
    format!("i{position}")
}
