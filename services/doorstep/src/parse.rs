//! Turns protobuf requests into parsed domain values, naming the field of every failure.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_api::v1;
use doorstep_domain::complaint::{
    Command, FindingInput, FindingOutcome, LogComplaint, PropertyInput, ResidentInput, Stage,
    Status,
};
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, ContractorCommand, ContractorProfile, ContractorStatus,
    EqualityAudit, EqualityConditions, EqualityTraining, LiaisonLead, ResidentChampion,
    ResidentLiaison, StandardsSignOff, Visit,
};
use doorstep_domain::escalation::EscalationLevel;
use doorstep_domain::input::{
    Address, ComplaintId, ContractorId, EmailAddress, Handler, LongText, OptionalText, PersonName,
    PhoneNumber, RequestKey, ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use doorstep_domain::{InvalidInput, ServiceStandard};
use doorstep_projections::{ComplaintFilter, EscalationFilter, Month};
use uuid::Uuid;

pub mod inspections;

/// How far ahead of our clock a caller's timestamp may be before it counts as "in the future".
const CLOCK_SKEW_ALLOWANCE: chrono::Duration = chrono::Duration::minutes(2);
/// The most standards one complaint can allege (there are nine).
const MAX_STANDARDS: usize = 9;
/// The most findings one call can record.
const MAX_FINDINGS: usize = 9;

/// The first second protobuf's `Timestamp` can hold: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// The last second protobuf's `Timestamp` can hold: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A `google.protobuf.Timestamp` within the range protobuf defines (0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z). A time outside it could be stored, but not shown again to a
/// client that follows protobuf's rules (JSON clients cannot render it).
pub fn timestamp(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, InvalidInput> {
    let Some(value) = value else {
        return Ok(None);
    };
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos <= 999_999_999)
        .ok_or_else(|| InvalidInput::new(field, "nanos must be between 0 and 999,999,999"))?;
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds) {
        return Err(InvalidInput::new(
            field,
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z",
        ));
    }
    DateTime::from_timestamp(value.seconds, nanos)
        .map(Some)
        .ok_or_else(|| InvalidInput::new(field, "is out of range"))
}

/// A time a step happened: now when absent, and never in the future. A time ahead of our clock
/// by no more than the skew allowance is taken as now, so nothing is recorded as happening in
/// the future and a later step dated by our clock never comes before it.
pub fn effective_at(
    field: &str,
    value: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidInput> {
    let at = timestamp(field, value)?.unwrap_or(now);
    if at > now + CLOCK_SKEW_ALLOWANCE {
        return Err(InvalidInput::new(field, "must not be in the future"));
    }
    Ok(at.min(now))
}

pub fn complaint_id(value: &str) -> Result<ComplaintId, InvalidInput> {
    ComplaintId::parse("complaint_id", value)
}

/// An optional `request_id`: empty means the caller sent none.
pub fn request_id(value: &str) -> Result<Option<RequestKey>, InvalidInput> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    RequestKey::parse("request_id", value).map(Some)
}

pub fn stage(field: &str, value: i32) -> Result<Stage, InvalidInput> {
    match v1::Stage::try_from(value) {
        Ok(v1::Stage::One) => Ok(Stage::One),
        Ok(v1::Stage::Two) => Ok(Stage::Two),
        Ok(v1::Stage::Unspecified) => Err(InvalidInput::new(field, "is required")),
        Err(_) => Err(InvalidInput::new(field, "is not a known stage")),
    }
}

pub fn optional_stage(field: &str, value: i32) -> Result<Option<Stage>, InvalidInput> {
    if value == v1::Stage::Unspecified as i32 {
        return Ok(None);
    }
    stage(field, value).map(Some)
}

pub fn optional_status(field: &str, value: i32) -> Result<Option<Status>, InvalidInput> {
    match v1::ComplaintStatus::try_from(value) {
        Ok(v1::ComplaintStatus::Unspecified) => Ok(None),
        Ok(v1::ComplaintStatus::AwaitingAcknowledgement) => {
            Ok(Some(Status::AwaitingAcknowledgement))
        }
        Ok(v1::ComplaintStatus::UnderInvestigation) => Ok(Some(Status::UnderInvestigation)),
        Ok(v1::ComplaintStatus::Responded) => Ok(Some(Status::Responded)),
        Ok(v1::ComplaintStatus::Closed) => Ok(Some(Status::Closed)),
        Ok(v1::ComplaintStatus::Withdrawn) => Ok(Some(Status::Withdrawn)),
        Err(_) => Err(InvalidInput::new(field, "is not a known status")),
    }
}

pub fn standard(field: &str, value: i32) -> Result<ServiceStandard, InvalidInput> {
    use v1::ServiceStandard as Proto;
    match Proto::try_from(value) {
        Ok(Proto::Courtesy) => Ok(ServiceStandard::Courtesy),
        Ok(Proto::NoSmoking) => Ok(ServiceStandard::NoSmoking),
        Ok(Proto::Protection) => Ok(ServiceStandard::Protection),
        Ok(Proto::Tidiness) => Ok(ServiceStandard::Tidiness),
        Ok(Proto::Parking) => Ok(ServiceStandard::Parking),
        Ok(Proto::FacilitiesPermission) => Ok(ServiceStandard::FacilitiesPermission),
        Ok(Proto::GatesSecured) => Ok(ServiceStandard::GatesSecured),
        Ok(Proto::Identification) => Ok(ServiceStandard::Identification),
        Ok(Proto::Other) => Ok(ServiceStandard::Other),
        Ok(Proto::Unspecified) => Err(InvalidInput::new(field, "must name a standard")),
        Err(_) => Err(InvalidInput::new(field, "is not a known service standard")),
    }
}

fn channel(value: i32) -> Result<String, InvalidInput> {
    use v1::Channel as Proto;
    let code = match Proto::try_from(value) {
        Ok(Proto::Phone) => "PHONE",
        Ok(Proto::Email) => "EMAIL",
        Ok(Proto::Web) => "WEB",
        Ok(Proto::Letter) => "LETTER",
        Ok(Proto::InPerson) => "IN_PERSON",
        Ok(Proto::Integration) => "INTEGRATION",
        Ok(Proto::Unspecified) => return Err(InvalidInput::new("channel", "is required")),
        Err(_) => return Err(InvalidInput::new("channel", "is not a known channel")),
    };
    Ok(code.to_owned())
}

fn optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, InvalidInput>,
) -> Result<Option<T>, InvalidInput> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// The standards a complaint alleges: one to nine, none twice.
fn standards(values: &[i32]) -> Result<Vec<ServiceStandard>, InvalidInput> {
    if values.is_empty() {
        return Err(InvalidInput::new(
            "standards",
            "must name at least one standard",
        ));
    }
    if values.len() > MAX_STANDARDS {
        return Err(InvalidInput::new(
            "standards",
            format!("may name at most {MAX_STANDARDS} standards"),
        ));
    }
    let mut standards = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let standard = standard(&format!("standards[{index}]"), *value)?;
        if standards.contains(&standard) {
            return Err(InvalidInput::new(
                format!("standards[{index}]"),
                format!("{standard} is named twice"),
            ));
        }
        standards.push(standard);
    }
    Ok(standards)
}

/// Parses a `LogComplaint` request into the domain command for a new complaint id.
pub fn log_complaint(
    request: &v1::LogComplaintRequest,
    complaint_id: ComplaintId,
    now: DateTime<Utc>,
) -> Result<LogComplaint, InvalidInput> {
    let resident = request
        .resident
        .as_ref()
        .ok_or_else(|| InvalidInput::new("resident", "is required"))?;
    let property = request
        .property
        .as_ref()
        .ok_or_else(|| InvalidInput::new("property", "is required"))?;
    let standards = standards(&request.standards)?;
    let description = LongText::parse("description", &request.description)?;
    if standards.contains(&ServiceStandard::Other) && description.as_str().is_empty() {
        return Err(InvalidInput::new(
            "description",
            "is required when the complaint alleges OTHER",
        ));
    }
    let received_at = effective_at("received_at", request.received_at.as_ref(), now)?;
    let occurred_at = timestamp("occurred_at", request.occurred_at.as_ref())?;
    if occurred_at.is_some_and(|occurred| occurred > received_at) {
        return Err(InvalidInput::new(
            "occurred_at",
            "must not be after the complaint was received",
        ));
    }
    Ok(LogComplaint {
        complaint_id,
        channel: channel(request.channel)?,
        source_system: SourceSystem::parse("source_system", &request.source_system)?,
        resident: ResidentInput {
            reference: ResidentReference::parse("resident.reference", &resident.reference)?,
            name: PersonName::parse("resident.name", &resident.name)?,
            phone: optional(&resident.phone, |v| PhoneNumber::parse("resident.phone", v))?,
            email: optional(&resident.email, |v| {
                EmailAddress::parse("resident.email", v)
            })?,
        },
        property: PropertyInput {
            uprn: Uprn::parse("property.uprn", &property.uprn)?,
            address: Address::parse("property.address", &property.address)?,
        },
        contractor_id: ContractorId::parse("contractor_id", &request.contractor_id)?,
        visit_id: request
            .visit_id
            .as_deref()
            .map(|visit| VisitId::parse("visit_id", visit))
            .transpose()?,
        standards,
        description,
        occurred_at,
        received_at,
        outcome_sought: OptionalText::parse("outcome_sought", &request.outcome_sought)?,
        reasonable_adjustments: OptionalText::parse(
            "reasonable_adjustments",
            &request.reasonable_adjustments,
        )?,
    })
}

pub fn findings(values: &[v1::Finding]) -> Result<Vec<FindingInput>, InvalidInput> {
    if values.is_empty() {
        return Err(InvalidInput::new(
            "findings",
            "must hold at least one finding",
        ));
    }
    if values.len() > MAX_FINDINGS {
        return Err(InvalidInput::new(
            "findings",
            format!("may hold at most {MAX_FINDINGS} findings"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(index, finding)| {
            let outcome = match v1::FindingOutcome::try_from(finding.outcome) {
                Ok(v1::FindingOutcome::Upheld) => FindingOutcome::Upheld,
                Ok(v1::FindingOutcome::PartlyUpheld) => FindingOutcome::PartlyUpheld,
                Ok(v1::FindingOutcome::NotUpheld) => FindingOutcome::NotUpheld,
                _ => {
                    return Err(InvalidInput::new(
                        format!("findings[{index}].outcome"),
                        "must be UPHELD, PARTLY_UPHELD or NOT_UPHELD",
                    ));
                }
            };
            Ok(FindingInput {
                standard: standard(&format!("findings[{index}].standard"), finding.standard)?,
                outcome,
                summary: OptionalText::parse(
                    &format!("findings[{index}].summary"),
                    &finding.summary,
                )?,
            })
        })
        .collect()
}

/// The most trading names, contracts and standards per contract one profile may hold.
const MAX_PROFILE_ITEMS: usize = 50;
/// More than the catalogue holds, so a contract may list each standard once or twice, not a
/// million times.
const MAX_CONTRACT_STANDARDS: usize = 32;

pub fn contractor_id(field: &str, value: &str) -> Result<ContractorId, InvalidInput> {
    ContractorId::parse(field, value)
}

/// A calendar date `YYYY-MM-DD`.
pub fn date(field: &str, value: &str) -> Result<NaiveDate, InvalidInput> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| InvalidInput::new(field, "must be a date, YYYY-MM-DD"))
}

/// A contract's liaison lead and contact: both or neither.
fn resident_liaison(
    field: &str,
    contract: &v1::ContractTerms,
) -> Result<Option<ResidentLiaison>, InvalidInput> {
    let contact_field = format!("{field}.liaison_contact_name");
    let contact_name = PersonName::parse(&contact_field, &contract.liaison_contact_name)?;
    let lead = match v1::LiaisonLead::try_from(contract.liaison_lead) {
        Ok(v1::LiaisonLead::Unspecified) => None,
        Ok(v1::LiaisonLead::InHouse) => Some(LiaisonLead::InHouse),
        Ok(v1::LiaisonLead::Contractor) => Some(LiaisonLead::Contractor),
        Err(_) => {
            return Err(InvalidInput::new(
                format!("{field}.liaison_lead"),
                "must be IN_HOUSE or CONTRACTOR",
            ));
        }
    };
    match (lead, contact_name.as_str().is_empty()) {
        (None, true) => Ok(None),
        (None, false) => Err(InvalidInput::new(
            format!("{field}.liaison_lead"),
            "is required with a liaison contact: IN_HOUSE or CONTRACTOR",
        )),
        (Some(_), true) => Err(InvalidInput::new(
            contact_field,
            "is required with a liaison lead: residents are given a named liaison contact",
        )),
        (Some(lead), false) => Ok(Some(ResidentLiaison { lead, contact_name })),
    }
}

/// The equality conditions a contractor accepted; None when the message is absent.
fn equality_conditions(
    field: &str,
    value: Option<&v1::EqualityConditions>,
    today: NaiveDate,
) -> Result<Option<EqualityConditions>, InvalidInput> {
    let Some(conditions) = value else {
        return Ok(None);
    };
    if !(conditions.equality_training || conditions.equality_audits || conditions.code_of_conduct) {
        return Err(InvalidInput::new(
            field,
            "must accept at least one of equality_training, equality_audits and code_of_conduct",
        ));
    }
    let accepted_on = past_date(
        &format!("{field}.accepted_date"),
        &conditions.accepted_date,
        today,
    )?;
    Ok(Some(EqualityConditions {
        training: conditions.equality_training,
        audits: conditions.equality_audits,
        code_of_conduct: conditions.code_of_conduct,
        accepted_on,
    }))
}

/// A date `YYYY-MM-DD` that is not after `today`.
fn past_date(field: &str, value: &str, today: NaiveDate) -> Result<NaiveDate, InvalidInput> {
    let parsed = date(field, value)?;
    if parsed > today {
        return Err(InvalidInput::new(field, "must not be in the future"));
    }
    Ok(parsed)
}

/// The most champions one sign-off may name.
const MAX_CHAMPIONS: usize = 50;

pub fn standards_sign_off(
    value: Option<&v1::StandardsSignOff>,
    today: NaiveDate,
) -> Result<StandardsSignOff, InvalidInput> {
    let sign_off = value.ok_or_else(|| InvalidInput::new("sign_off", "is required"))?;
    let contract_reference =
        ShortText::parse("sign_off.contract_reference", &sign_off.contract_reference)?;
    if sign_off.champions.is_empty() {
        return Err(InvalidInput::new(
            "sign_off.champions",
            "must name at least one resident champion",
        ));
    }
    let champions = sign_off
        .champions
        .iter()
        .enumerate()
        .map(|(index, champion)| {
            let field = format!("sign_off.champions[{index}]");
            let published_name =
                PersonName::parse(&format!("{field}.published_name"), &champion.published_name)?;
            Ok(ResidentChampion {
                reference: ResidentReference::parse(
                    &format!("{field}.reference"),
                    &champion.reference,
                )?,
                published_name: (!published_name.as_str().is_empty()).then_some(published_name),
            })
        })
        .collect::<Result<Vec<_>, InvalidInput>>()?;
    let signed_off_on = past_date("sign_off.signed_off_date", &sign_off.signed_off_date, today)?;
    if sign_off.standards.is_empty() {
        return Err(InvalidInput::new(
            "sign_off.standards",
            "must list the standards signed off",
        ));
    }
    let mut standards = Vec::new();
    for (position, value) in sign_off.standards.iter().enumerate() {
        let standard = standard(&format!("sign_off.standards[{position}]"), *value)?;
        if !standards.contains(&standard) {
            standards.push(standard);
        }
    }
    Ok(StandardsSignOff {
        contract_reference,
        champions,
        signed_off_on,
        standards,
        comments: OptionalText::parse("sign_off.comments", &sign_off.comments)?,
    })
}

pub fn equality_training(
    value: Option<&v1::EqualityTraining>,
    today: NaiveDate,
) -> Result<EqualityTraining, InvalidInput> {
    let training = value.ok_or_else(|| InvalidInput::new("training", "is required"))?;
    let trained_on = past_date("training.training_date", &training.training_date, today)?;
    let course = ShortText::parse("training.course", &training.course)?;
    if training.staff_trained == 0 {
        return Err(InvalidInput::new(
            "training.staff_trained",
            "must be at least 1",
        ));
    }
    Ok(EqualityTraining {
        trained_on,
        course,
        staff_trained: training.staff_trained,
    })
}

pub fn contractor_profile(
    value: Option<&v1::ContractorProfile>,
    today: NaiveDate,
) -> Result<ContractorProfile, InvalidInput> {
    let profile = value.ok_or_else(|| InvalidInput::new("profile", "is required"))?;
    if profile.trading_names.len() > MAX_PROFILE_ITEMS {
        return Err(InvalidInput::new(
            "profile.trading_names",
            format!("may hold at most {MAX_PROFILE_ITEMS} names"),
        ));
    }
    if profile.contracts.len() > MAX_PROFILE_ITEMS {
        return Err(InvalidInput::new(
            "profile.contracts",
            format!("may hold at most {MAX_PROFILE_ITEMS} contracts"),
        ));
    }
    let public_contact_name =
        PersonName::parse("profile.public_contact_name", &profile.public_contact_name)?;
    if public_contact_name.as_str().is_empty() {
        return Err(InvalidInput::new(
            "profile.public_contact_name",
            "is required: residents are given a named contact",
        ));
    }
    let logo_url = OptionalText::parse("profile.logo_url", &profile.logo_url)?;
    if !logo_url.is_empty() && !logo_url.as_str().starts_with("https://") {
        return Err(InvalidInput::new(
            "profile.logo_url",
            "must be an https:// address",
        ));
    }
    Ok(ContractorProfile {
        legal_name: ShortText::parse("profile.legal_name", &profile.legal_name)?,
        trading_names: profile
            .trading_names
            .iter()
            .enumerate()
            .map(|(index, name)| ShortText::parse(&format!("profile.trading_names[{index}]"), name))
            .collect::<Result<_, _>>()?,
        logo_url,
        public_contact_name,
        public_phone: PhoneNumber::parse("profile.public_phone", &profile.public_phone)?,
        contracts: profile
            .contracts
            .iter()
            .enumerate()
            .map(|(index, contract)| {
                let field = format!("profile.contracts[{index}]");
                if contract.standards.is_empty()
                    || contract.standards.len() > MAX_CONTRACT_STANDARDS
                {
                    return Err(InvalidInput::new(
                        format!("{field}.standards"),
                        format!("must name 1 to {MAX_CONTRACT_STANDARDS} standards"),
                    ));
                }
                let mut standards = Vec::new();
                for (position, value) in contract.standards.iter().enumerate() {
                    let standard = standard(&format!("{field}.standards[{position}]"), *value)?;
                    if !standards.contains(&standard) {
                        standards.push(standard);
                    }
                }
                Ok(ContractTerms {
                    reference: ShortText::parse(
                        &format!("{field}.reference"),
                        &contract.reference,
                    )?,
                    standards,
                    liaison: resident_liaison(&field, contract)?,
                    equality_conditions: equality_conditions(
                        &format!("{field}.equality_conditions"),
                        contract.equality_conditions.as_ref(),
                        today,
                    )?,
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

pub fn equality_audit(
    value: Option<&v1::EqualityAudit>,
    today: NaiveDate,
) -> Result<EqualityAudit, InvalidInput> {
    let audit = value.ok_or_else(|| InvalidInput::new("audit", "is required"))?;
    let audit_date = date("audit.audit_date", &audit.audit_date)?;
    if audit_date > today {
        return Err(InvalidInput::new(
            "audit.audit_date",
            "must not be in the future",
        ));
    }
    let outcome = match v1::AuditOutcome::try_from(audit.outcome) {
        Ok(v1::AuditOutcome::Satisfactory) => AuditOutcome::Satisfactory,
        Ok(v1::AuditOutcome::ImprovementRequired) => AuditOutcome::ImprovementRequired,
        Ok(v1::AuditOutcome::Unsatisfactory) => AuditOutcome::Unsatisfactory,
        _ => {
            return Err(InvalidInput::new(
                "audit.outcome",
                "must be SATISFACTORY, IMPROVEMENT_REQUIRED or UNSATISFACTORY",
            ));
        }
    };
    Ok(EqualityAudit {
        audit_date,
        auditor: ShortText::parse("audit.auditor", &audit.auditor)?,
        workforce_diversity: LongText::parse(
            "audit.workforce_diversity",
            &audit.workforce_diversity,
        )?,
        equality_policy_and_procedures: LongText::parse(
            "audit.equality_policy_and_procedures",
            &audit.equality_policy_and_procedures,
        )?,
        requirements_not_met: LongText::parse(
            "audit.requirements_not_met",
            &audit.requirements_not_met,
        )?,
        staff_experience_and_training: LongText::parse(
            "audit.staff_experience_and_training",
            &audit.staff_experience_and_training,
        )?,
        outcome,
    })
}

/// A completed visit from a work-order system; `field` prefixes every field name.
pub fn visit(field: &str, value: &v1::Visit, today: NaiveDate) -> Result<Visit, InvalidInput> {
    let visit_date = date(&format!("{field}.visit_date"), &value.visit_date)?;
    if visit_date > today {
        return Err(InvalidInput::new(
            format!("{field}.visit_date"),
            "must not be in the future: record visits once completed",
        ));
    }
    Ok(Visit {
        visit_id: VisitId::parse(&format!("{field}.visit_id"), &value.visit_id)?,
        contractor_id: contractor_id(&format!("{field}.contractor_id"), &value.contractor_id)?,
        uprn: Uprn::parse(&format!("{field}.uprn"), &value.uprn)?,
        work_order_reference: ShortText::parse(
            &format!("{field}.work_order_reference"),
            &value.work_order_reference,
        )?,
        visit_date,
    })
}

/// The longest identifier Doorstep issues or accepts where no newtype says otherwise (complaint,
/// escalation and delivery ids are UUIDs of 36 characters).
const ID_CHARS: usize = 64;
/// Longer than any token the list calls issue.
const PAGE_TOKEN_CHARS: usize = 128;
/// `YYYY-MM-DD` or `YYYY-MM`, with room for surrounding spaces.
const DATE_CHARS: usize = 32;
const PHONE_CHARS: usize = 32;
const EMAIL_CHARS: usize = 254;
const UPRN_CHARS: usize = 12;
/// A stream id, `category-id`.
pub const STREAM_ID_CHARS: usize = 200;
/// A `VerifyContractor` query: a name or a phone number.
pub const QUERY_CHARS: usize = 200;
/// A stream category or event type in a subscription's filter.
pub const FILTER_VALUE_CHARS: usize = 128;
/// The most values in each of a subscription's filters.
pub const MAX_FILTER_VALUES: usize = 32;
/// The most visits one `RecordVisits` call may carry.
pub const MAX_VISITS_PER_CALL: usize = 10_000;

/// Every string and repeated field of a request has a limit, and every timestamp protobuf's
/// range; a request is held to them before anything else is parsed or read, so an over-long
/// value costs no lookup and the error names the field that broke a limit whatever else is
/// wrong. Each handler calls [`within_limits`] first; a test enumerates the API's descriptors
/// and sends every string, list and timestamp of every request past its limit.
pub trait Limited {
    fn check_limits(&self) -> Result<(), InvalidInput>;
}

/// Holds a request to its limits: see [`Limited`].
pub fn within_limits(request: &impl Limited) -> Result<(), InvalidInput> {
    request.check_limits()
}

/// At most `max` characters once trimmed, as the text newtypes count them.
fn chars(field: &str, value: &str, max: usize) -> Result<(), InvalidInput> {
    // A character is at least one byte, so most values need no count.
    if value.len() <= max {
        return Ok(());
    }
    let length = value.trim().chars().count();
    if length > max {
        return Err(InvalidInput::new(
            field,
            format!("is {length} characters long; at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn items<T>(field: &str, values: &[T], max: usize) -> Result<(), InvalidInput> {
    if values.len() > max {
        return Err(InvalidInput::new(
            field,
            format!("holds {} items; at most {max} are allowed", values.len()),
        ));
    }
    Ok(())
}

fn each_chars(
    field: &str,
    values: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), InvalidInput> {
    items(field, values, max_items)?;
    values
        .iter()
        .enumerate()
        .try_for_each(|(index, value)| chars(&format!("{field}[{index}]"), value, max_chars))
}

fn time(field: &str, value: &Option<prost_types::Timestamp>) -> Result<(), InvalidInput> {
    timestamp(field, value.as_ref()).map(|_| ())
}

fn finding_limits(field: &str, findings: &[v1::Finding]) -> Result<(), InvalidInput> {
    items(field, findings, MAX_FINDINGS)?;
    findings
        .iter()
        .enumerate()
        .try_for_each(|(index, finding)| {
            chars(
                &format!("{field}[{index}].summary"),
                &finding.summary,
                OptionalText::MAX_CHARS,
            )
        })
}

fn profile_limits(
    field: &str,
    profile: &Option<v1::ContractorProfile>,
) -> Result<(), InvalidInput> {
    let Some(profile) = profile else {
        return Ok(());
    };
    chars(
        &format!("{field}.legal_name"),
        &profile.legal_name,
        ShortText::MAX_CHARS,
    )?;
    each_chars(
        &format!("{field}.trading_names"),
        &profile.trading_names,
        MAX_PROFILE_ITEMS,
        ShortText::MAX_CHARS,
    )?;
    chars(
        &format!("{field}.logo_url"),
        &profile.logo_url,
        OptionalText::MAX_CHARS,
    )?;
    chars(
        &format!("{field}.public_contact_name"),
        &profile.public_contact_name,
        PersonName::MAX_CHARS,
    )?;
    chars(
        &format!("{field}.public_phone"),
        &profile.public_phone,
        PHONE_CHARS,
    )?;
    items(
        &format!("{field}.contracts"),
        &profile.contracts,
        MAX_PROFILE_ITEMS,
    )?;
    profile
        .contracts
        .iter()
        .enumerate()
        .try_for_each(|(index, contract)| {
            let field = format!("{field}.contracts[{index}]");
            chars(
                &format!("{field}.reference"),
                &contract.reference,
                ShortText::MAX_CHARS,
            )?;
            items(
                &format!("{field}.standards"),
                &contract.standards,
                MAX_CONTRACT_STANDARDS,
            )?;
            chars(
                &format!("{field}.liaison_contact_name"),
                &contract.liaison_contact_name,
                PersonName::MAX_CHARS,
            )?;
            if let Some(conditions) = &contract.equality_conditions {
                chars(
                    &format!("{field}.equality_conditions.accepted_date"),
                    &conditions.accepted_date,
                    DATE_CHARS,
                )?;
            }
            Ok(())
        })
}

fn sign_off_limits(
    field: &str,
    sign_off: &Option<v1::StandardsSignOff>,
) -> Result<(), InvalidInput> {
    let Some(sign_off) = sign_off else {
        return Ok(());
    };
    chars(
        &format!("{field}.contract_reference"),
        &sign_off.contract_reference,
        ShortText::MAX_CHARS,
    )?;
    items(
        &format!("{field}.champions"),
        &sign_off.champions,
        MAX_CHAMPIONS,
    )?;
    sign_off
        .champions
        .iter()
        .enumerate()
        .try_for_each(|(index, champion)| {
            let field = format!("{field}.champions[{index}]");
            chars(
                &format!("{field}.reference"),
                &champion.reference,
                ResidentReference::MAX_CHARS,
            )?;
            chars(
                &format!("{field}.published_name"),
                &champion.published_name,
                PersonName::MAX_CHARS,
            )
        })?;
    chars(
        &format!("{field}.signed_off_date"),
        &sign_off.signed_off_date,
        DATE_CHARS,
    )?;
    items(
        &format!("{field}.standards"),
        &sign_off.standards,
        MAX_CONTRACT_STANDARDS,
    )?;
    chars(
        &format!("{field}.comments"),
        &sign_off.comments,
        OptionalText::MAX_CHARS,
    )
}

fn training_limits(
    field: &str,
    training: &Option<v1::EqualityTraining>,
) -> Result<(), InvalidInput> {
    let Some(training) = training else {
        return Ok(());
    };
    chars(
        &format!("{field}.training_date"),
        &training.training_date,
        DATE_CHARS,
    )?;
    chars(
        &format!("{field}.course"),
        &training.course,
        ShortText::MAX_CHARS,
    )
}

fn audit_limits(field: &str, audit: &Option<v1::EqualityAudit>) -> Result<(), InvalidInput> {
    let Some(audit) = audit else {
        return Ok(());
    };
    chars(
        &format!("{field}.audit_date"),
        &audit.audit_date,
        DATE_CHARS,
    )?;
    chars(
        &format!("{field}.auditor"),
        &audit.auditor,
        ShortText::MAX_CHARS,
    )?;
    for (name, value) in [
        ("workforce_diversity", &audit.workforce_diversity),
        (
            "equality_policy_and_procedures",
            &audit.equality_policy_and_procedures,
        ),
        ("requirements_not_met", &audit.requirements_not_met),
        (
            "staff_experience_and_training",
            &audit.staff_experience_and_training,
        ),
    ] {
        chars(&format!("{field}.{name}"), value, LongText::MAX_CHARS)?;
    }
    Ok(())
}

fn visit_limits(field: &str, visits: &[v1::Visit]) -> Result<(), InvalidInput> {
    items(field, visits, MAX_VISITS_PER_CALL)?;
    visits.iter().enumerate().try_for_each(|(index, visit)| {
        let field = |name: &str| format!("{field}[{index}].{name}");
        chars(&field("visit_id"), &visit.visit_id, VisitId::MAX_CHARS)?;
        chars(
            &field("contractor_id"),
            &visit.contractor_id,
            ContractorId::MAX_CHARS,
        )?;
        chars(&field("uprn"), &visit.uprn, UPRN_CHARS)?;
        chars(
            &field("work_order_reference"),
            &visit.work_order_reference,
            ShortText::MAX_CHARS,
        )?;
        chars(&field("visit_date"), &visit.visit_date, DATE_CHARS)
    })
}

impl Limited for v1::LogComplaintRequest {
    fn check_limits(&self) -> Result<(), InvalidInput> {
        chars(
            "idempotency_key",
            &self.idempotency_key,
            RequestKey::MAX_CHARS,
        )?;
        chars(
            "source_system",
            &self.source_system,
            SourceSystem::MAX_CHARS,
        )?;
        if let Some(resident) = &self.resident {
            chars(
                "resident.reference",
                &resident.reference,
                ResidentReference::MAX_CHARS,
            )?;
            chars("resident.name", &resident.name, PersonName::MAX_CHARS)?;
            chars("resident.phone", &resident.phone, PHONE_CHARS)?;
            chars("resident.email", &resident.email, EMAIL_CHARS)?;
        }
        if let Some(property) = &self.property {
            chars("property.uprn", &property.uprn, UPRN_CHARS)?;
            chars("property.address", &property.address, Address::MAX_CHARS)?;
        }
        chars(
            "contractor_id",
            &self.contractor_id,
            ContractorId::MAX_CHARS,
        )?;
        if let Some(visit_id) = &self.visit_id {
            chars("visit_id", visit_id, VisitId::MAX_CHARS)?;
        }
        items("standards", &self.standards, MAX_STANDARDS)?;
        chars("description", &self.description, LongText::MAX_CHARS)?;
        time("occurred_at", &self.occurred_at)?;
        time("received_at", &self.received_at)?;
        chars(
            "outcome_sought",
            &self.outcome_sought,
            OptionalText::MAX_CHARS,
        )?;
        chars(
            "reasonable_adjustments",
            &self.reasonable_adjustments,
            OptionalText::MAX_CHARS,
        )
    }
}

/// `Limited` for requests whose every limit is on one of their own fields: each line names a
/// check, the field (also the name an error gives) and the check's limits, in the order checked.
/// Requests with the same fields and limits share one list, their names joined by `|`.
macro_rules! limits {
    ($($($request:path)|+ { $($fields:tt)* })+) => {$(
        limits!(@each [$($request)|+] { $($fields)* });
    )+};
    (@each [$($request:path)|+] $fields:tt) => {$(limits!(@one $request $fields);)+};
    (@one $request:path { $($check:ident $field:ident $(($($limit:expr),+))?),* $(,)? }) => {
        impl Limited for $request {
            fn check_limits(&self) -> Result<(), InvalidInput> {
                $($check(stringify!($field), &self.$field $($(, $limit)+)?)?;)*
                Ok(())
            }
        }
    };
}

limits! {
    v1::AcknowledgeComplaintRequest {
        chars complaint_id(ID_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars handler(Handler::MAX_CHARS),
        chars complaint_definition(OptionalText::MAX_CHARS),
        chars outcome_sought(OptionalText::MAX_CHARS),
        time effective_at,
    }
    v1::ExtendDeadlineRequest
    | v1::RequestStageTwoRequest
    | v1::CloseComplaintRequest
    | v1::ReopenComplaintRequest
    | v1::WithdrawComplaintRequest {
        chars complaint_id(ID_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars reason(ShortText::MAX_CHARS),
        time effective_at,
    }
    v1::RecordFindingsRequest {
        chars complaint_id(ID_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        finding_limits findings,
    }
    v1::IssueResponseRequest {
        chars complaint_id(ID_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars decision(ShortText::MAX_CHARS),
        chars remedy(OptionalText::MAX_CHARS),
        time effective_at,
    }
    v1::AddNoteRequest {
        chars complaint_id(ID_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars text(LongText::MAX_CHARS),
    }
    v1::GetComplaintRequest {
        chars complaint_id(ID_CHARS),
    }
    v1::ListComplaintsRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars uprn(UPRN_CHARS),
        chars resident_reference(ResidentReference::MAX_CHARS),
        time received_from,
        time received_to,
        chars page_token(PAGE_TOKEN_CHARS),
    }
    v1::ForgetResidentRequest {
        chars resident_reference(ResidentReference::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars reason(OptionalText::MAX_CHARS),
    }
    v1::RegisterContractorRequest | v1::UpdateContractorRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        profile_limits profile,
    }
    v1::SuspendContractorRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars reason(ShortText::MAX_CHARS),
    }
    v1::ReinstateContractorRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        chars reason(OptionalText::MAX_CHARS),
    }
    v1::RecordEqualityAuditRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        audit_limits audit,
    }
    v1::GetContractorRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
    }
    v1::RecordStandardsSignOffRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        sign_off_limits sign_off,
    }
    v1::RecordEqualityTrainingRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
        training_limits training,
    }
    v1::ListContractorsRequest | v1::ListDeadLettersRequest {
        chars page_token(PAGE_TOKEN_CHARS),
    }
    v1::VerifyContractorRequest {
        chars query(QUERY_CHARS),
    }
    v1::RecordVisitsRequest {
        visit_limits visits,
    }
    v1::WatchEscalationsRequest | v1::GetComplaintHandlingReportRequest {}
    v1::ListEscalationsRequest {
        chars level(ID_CHARS),
        chars contractor_id(ContractorId::MAX_CHARS),
        chars page_token(PAGE_TOKEN_CHARS),
    }
    v1::AcknowledgeEscalationRequest {
        chars escalation_id(ID_CHARS),
        chars acknowledged_by(Handler::MAX_CHARS),
        chars note(OptionalText::MAX_CHARS),
        chars request_id(RequestKey::MAX_CHARS),
    }
    v1::RetryDeadLetterRequest {
        chars delivery_id(ID_CHARS),
    }
    v1::ReadStreamRequest {
        chars stream_id(STREAM_ID_CHARS),
    }
    v1::SubscribeAllRequest {
        each_chars stream_categories(MAX_FILTER_VALUES, FILTER_VALUE_CHARS),
        each_chars event_types(MAX_FILTER_VALUES, FILTER_VALUE_CHARS),
    }
    v1::GetContractorPerformanceRequest {
        chars contractor_id(ContractorId::MAX_CHARS),
        chars from_month(DATE_CHARS),
        chars to_month(DATE_CHARS),
    }
    v1::ListContractorPerformanceRequest | v1::CompareLiaisonLeadsRequest {
        chars from_month(DATE_CHARS),
        chars to_month(DATE_CHARS),
    }
}

/// A write to one existing aggregate: its id, the caller's request id and the command, parsed in
/// that order so the first bad field is the one named.
#[derive(Debug, Clone)]
pub struct Write<Id, C> {
    pub id: Id,
    pub request_id: Option<RequestKey>,
    pub command: C,
}

fn complaint_command(
    complaint_id: &str,
    request_id: &str,
    command: impl FnOnce() -> Result<Command, InvalidInput>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    Ok(Write {
        id: self::complaint_id(complaint_id)?,
        request_id: self::request_id(request_id)?,
        command: command()?,
    })
}

pub fn acknowledge(
    body: &v1::AcknowledgeComplaintRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        Ok(Command::Acknowledge {
            stage: stage("stage", body.stage)?,
            handler: Handler::parse("handler", &body.handler)?,
            complaint_definition: OptionalText::parse(
                "complaint_definition",
                &body.complaint_definition,
            )?,
            outcome_sought: OptionalText::parse("outcome_sought", &body.outcome_sought)?,
            at: effective_at("effective_at", body.effective_at.as_ref(), now)?,
        })
    })
}

pub fn extend_deadline(
    body: &v1::ExtendDeadlineRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        if body.working_days == 0 {
            return Err(InvalidInput::new("working_days", "must be at least 1"));
        }
        Ok(Command::ExtendDeadline {
            reason: ShortText::parse("reason", &body.reason)?,
            working_days: body.working_days,
            ombudsman_details_given: body.ombudsman_details_given,
            at: effective_at("effective_at", body.effective_at.as_ref(), now)?,
        })
    })
}

pub fn record_findings(
    body: &v1::RecordFindingsRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        Ok(Command::RecordFindings {
            findings: findings(&body.findings)?,
            at: now,
        })
    })
}

pub fn issue_response(
    body: &v1::IssueResponseRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        Ok(Command::IssueResponse {
            decision: ShortText::parse("decision", &body.decision)?,
            remedy: OptionalText::parse("remedy", &body.remedy)?,
            at: effective_at("effective_at", body.effective_at.as_ref(), now)?,
        })
    })
}

/// A command whose only fields are an optional reason and when it took effect.
macro_rules! reason_command {
    ($(#[$doc:meta])* $name:ident, $request:ty, $variant:ident) => {
        $(#[$doc])*
        pub fn $name(
            body: &$request,
            now: DateTime<Utc>,
        ) -> Result<Write<ComplaintId, Command>, InvalidInput> {
            complaint_command(&body.complaint_id, &body.request_id, || {
                Ok(Command::$variant {
                    reason: OptionalText::parse("reason", &body.reason)?,
                    at: effective_at("effective_at", body.effective_at.as_ref(), now)?,
                })
            })
        }
    };
}

reason_command!(
    request_stage_two,
    v1::RequestStageTwoRequest,
    RequestStageTwo
);
reason_command!(close, v1::CloseComplaintRequest, Close);
reason_command!(withdraw, v1::WithdrawComplaintRequest, Withdraw);

pub fn reopen(
    body: &v1::ReopenComplaintRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        Ok(Command::Reopen {
            reason: ShortText::parse("reason", &body.reason)?,
            at: effective_at("effective_at", body.effective_at.as_ref(), now)?,
        })
    })
}

pub fn add_note(
    body: &v1::AddNoteRequest,
    now: DateTime<Utc>,
) -> Result<Write<ComplaintId, Command>, InvalidInput> {
    complaint_command(&body.complaint_id, &body.request_id, || {
        let text = LongText::parse("text", &body.text)?;
        if text.as_str().is_empty() {
            return Err(InvalidInput::new("text", "is required"));
        }
        Ok(Command::AddNote { text, at: now })
    })
}

/// `ForgetResident`: whose data, the caller's request id and the reason.
pub fn forget_resident(
    body: &v1::ForgetResidentRequest,
) -> Result<(ResidentReference, Option<RequestKey>, OptionalText), InvalidInput> {
    Ok((
        ResidentReference::parse("resident_reference", &body.resident_reference)?,
        request_id(&body.request_id)?,
        OptionalText::parse("reason", &body.reason)?,
    ))
}

/// A page size: 0 (unset) is `default`, more than `max` is refused.
pub fn page_size(value: u32, default: u32, max: u32) -> Result<u32, InvalidInput> {
    match value {
        0 => Ok(default),
        size if size <= max => Ok(size),
        _ => Err(InvalidInput::new(
            "page_size",
            format!("may be at most {max}"),
        )),
    }
}

/// `ListComplaints`' filter; `overdue_only` counts from `today`.
pub fn complaint_filter(
    body: &v1::ListComplaintsRequest,
    today: NaiveDate,
) -> Result<ComplaintFilter, InvalidInput> {
    let non_empty = |value: &str| (!value.trim().is_empty()).then(|| value.trim().to_owned());
    Ok(ComplaintFilter {
        contractor_id: non_empty(&body.contractor_id),
        status: optional_status("status", body.status)?,
        stage: optional_stage("stage", body.stage)?,
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
        received_from: timestamp("received_from", body.received_from.as_ref())?,
        received_to: timestamp("received_to", body.received_to.as_ref())?,
    })
}

/// A write to a contractor: its id, the caller's request id, then the command `command` makes
/// from the id and now.
pub fn contractor_command(
    contractor_id: &str,
    request_id: &str,
    command: impl FnOnce(&ContractorId) -> Result<ContractorCommand, InvalidInput>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    let id = self::contractor_id("contractor_id", contractor_id)?;
    let request_id = self::request_id(request_id)?;
    let command = command(&id)?;
    Ok(Write {
        id,
        request_id,
        command,
    })
}

pub fn register_contractor(
    body: &v1::RegisterContractorRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |contractor_id| {
        Ok(ContractorCommand::Register {
            contractor_id: contractor_id.clone(),
            profile: contractor_profile(body.profile.as_ref(), doorstep_domain::england_date(now))?,
            at: now,
        })
    })
}

pub fn update_contractor(
    body: &v1::UpdateContractorRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::Update {
            profile: contractor_profile(body.profile.as_ref(), doorstep_domain::england_date(now))?,
            at: now,
        })
    })
}

pub fn suspend_contractor(
    body: &v1::SuspendContractorRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::Suspend {
            reason: ShortText::parse("reason", &body.reason)?,
            at: now,
        })
    })
}

pub fn reinstate_contractor(
    body: &v1::ReinstateContractorRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::Reinstate {
            reason: OptionalText::parse("reason", &body.reason)?,
            at: now,
        })
    })
}

pub fn record_equality_audit(
    body: &v1::RecordEqualityAuditRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::RecordEqualityAudit {
            audit: equality_audit(body.audit.as_ref(), doorstep_domain::england_date(now))?,
            at: now,
        })
    })
}

pub fn record_standards_sign_off(
    body: &v1::RecordStandardsSignOffRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::RecordStandardsSignOff {
            sign_off: standards_sign_off(
                body.sign_off.as_ref(),
                doorstep_domain::england_date(now),
            )?,
            at: now,
        })
    })
}

pub fn record_equality_training(
    body: &v1::RecordEqualityTrainingRequest,
    now: DateTime<Utc>,
) -> Result<Write<ContractorId, ContractorCommand>, InvalidInput> {
    contractor_command(&body.contractor_id, &body.request_id, |_| {
        Ok(ContractorCommand::RecordEqualityTraining {
            training: equality_training(
                body.training.as_ref(),
                doorstep_domain::england_date(now),
            )?,
            at: now,
        })
    })
}

/// `ListContractors`' status filter: unspecified is every status.
pub fn contractor_status(value: i32) -> Result<Option<ContractorStatus>, InvalidInput> {
    match v1::ContractorStatus::try_from(value) {
        Ok(v1::ContractorStatus::Unspecified) => Ok(None),
        Ok(v1::ContractorStatus::Active) => Ok(Some(ContractorStatus::Active)),
        Ok(v1::ContractorStatus::Suspended) => Ok(Some(ContractorStatus::Suspended)),
        Err(_) => Err(InvalidInput::new("status", "is not a known status")),
    }
}

/// `VerifyContractor`'s query: a name or phone number, trimmed.
pub fn verify_query(query: &str) -> Result<&str, InvalidInput> {
    let query = query.trim();
    if query.is_empty() || query.chars().count() > 200 {
        return Err(InvalidInput::new(
            "query",
            "must be a name or phone number of 1 to 200 characters",
        ));
    }
    Ok(query)
}

/// How many visits one `RecordVisits` call holds: 1 to [`MAX_VISITS_PER_CALL`].
pub fn visit_count(count: usize) -> Result<usize, InvalidInput> {
    if count == 0 || count > MAX_VISITS_PER_CALL {
        return Err(InvalidInput::new(
            "visits",
            format!("must hold 1 to {MAX_VISITS_PER_CALL} visits"),
        ));
    }
    Ok(count)
}

/// `LogComplaint`'s `idempotency_key`: required.
pub fn idempotency_key(value: &str) -> Result<RequestKey, InvalidInput> {
    RequestKey::parse("idempotency_key", value)
}

/// A UUID the service issued (an escalation's or a delivery's id).
pub fn uuid(field: &str, value: &str) -> Result<Uuid, InvalidInput> {
    Uuid::parse_str(value.trim()).map_err(|_| InvalidInput::new(field, "must be a UUID"))
}

fn foreign_token() -> InvalidInput {
    InvalidInput::new("page_token", "is not a token this service issued")
}

/// `ListEscalations`' filter and the position its page token continues after (0: the start).
pub fn escalation_filter(
    body: &v1::ListEscalationsRequest,
) -> Result<(EscalationFilter, u64), InvalidInput> {
    let level = match body.level.trim() {
        "" => None,
        level => Some(EscalationLevel::parse("level", level)?.to_string()),
    };
    let contractor_id = match body.contractor_id.trim() {
        "" => None,
        id => Some(contractor_id("contractor_id", id)?.as_str().to_owned()),
    };
    let after = match body.page_token.trim() {
        "" => 0,
        token => token.parse::<u64>().map_err(|_| foreign_token())?,
    };
    let filter = EscalationFilter {
        open_only: body.open_only,
        level,
        contractor_id,
    };
    Ok((filter, after))
}

/// `AcknowledgeEscalation`: which escalation, by whom, their note and the caller's request id.
pub fn acknowledge_escalation(
    body: &v1::AcknowledgeEscalationRequest,
) -> Result<(Uuid, Handler, OptionalText, Option<RequestKey>), InvalidInput> {
    Ok((
        uuid("escalation_id", &body.escalation_id)?,
        Handler::parse("acknowledged_by", &body.acknowledged_by)?,
        OptionalText::parse("note", &body.note)?,
        request_id(&body.request_id)?,
    ))
}

/// `ListDeadLetters`' page token: `<created_at millis>/<delivery id>` of the last one seen.
pub fn dead_letter_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, InvalidInput> {
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    let (millis, id) = token.split_once('/').ok_or_else(foreign_token)?;
    let at = millis
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(foreign_token)?;
    Ok(Some((
        at,
        Uuid::parse_str(id).map_err(|_| foreign_token())?,
    )))
}

/// The most months one performance report may cover.
const MAX_REPORT_MONTHS: u32 = 120;

/// A report's months, `from_month` to `to_month` (YYYY-MM), in order and not too many.
pub fn month_range(from: &str, to: &str) -> Result<(Month, Month), InvalidInput> {
    let from =
        Month::parse(from).map_err(|_| InvalidInput::new("from_month", "must be YYYY-MM"))?;
    let to = Month::parse(to).map_err(|_| InvalidInput::new("to_month", "must be YYYY-MM"))?;
    if to < from {
        return Err(InvalidInput::new(
            "to_month",
            "must not be before from_month",
        ));
    }
    let span = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32 + 1;
    if span > MAX_REPORT_MONTHS as i32 {
        return Err(InvalidInput::new(
            "to_month",
            format!("a report may cover at most {MAX_REPORT_MONTHS} months"),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn timestamps_are_held_to_protobufs_range() {
        let first = timestamp("received_at", Some(&at(MIN_TIMESTAMP_SECONDS, 0)));
        assert_eq!(
            first.ok().flatten().map(|t| t.to_rfc3339()),
            Some("0001-01-01T00:00:00+00:00".to_owned())
        );
        let last = timestamp("received_at", Some(&at(MAX_TIMESTAMP_SECONDS, 999_999_999)));
        assert!(last.is_ok());
        for (seconds, nanos) in [
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
            (-70_000_000_000, 0),
            (0, 1_000_000_000),
            (0, -1),
        ] {
            let refused = timestamp("received_at", Some(&at(seconds, nanos))).err();
            assert_eq!(
                refused.map(|error| error.field),
                Some("received_at".to_owned()),
                "{seconds}s {nanos}ns"
            );
        }
    }

    #[test]
    fn a_time_just_ahead_of_our_clock_is_taken_as_now() {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let ahead = at(now.timestamp() + 60, 0);
        assert_eq!(effective_at("effective_at", Some(&ahead), now), Ok(now));
        let future = at(now.timestamp() + 3_600, 0);
        assert!(effective_at("effective_at", Some(&future), now).is_err());
    }
}
