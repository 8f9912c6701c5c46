//! Turns protobuf requests into parsed domain values, naming the field of every failure.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_api::v1;
use doorstep_domain::complaint::{
    FindingInput, FindingOutcome, LogComplaint, PropertyInput, ResidentInput, Stage, Status,
};
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, ContractorProfile, EqualityAudit, Visit,
};
use doorstep_domain::input::{
    Address, ComplaintId, ContractorId, EmailAddress, LongText, OptionalText, PersonName,
    PhoneNumber, RequestKey, ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use doorstep_domain::{InvalidInput, ServiceStandard};

/// How far ahead of our clock a caller's timestamp may be before it counts as "in the future".
const CLOCK_SKEW_ALLOWANCE: chrono::Duration = chrono::Duration::minutes(2);
/// The most standards one complaint can allege (there are nine).
const MAX_STANDARDS: usize = 9;
/// The most findings one call can record.
const MAX_FINDINGS: usize = 9;

pub fn timestamp(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, InvalidInput> {
    let Some(value) = value else {
        return Ok(None);
    };
    let nanos = u32::try_from(value.nanos)
        .map_err(|_| InvalidInput::new(field, "nanos must be between 0 and 999,999,999"))?;
    DateTime::from_timestamp(value.seconds, nanos)
        .map(Some)
        .ok_or_else(|| InvalidInput::new(field, "is out of range"))
}

/// A time a step happened: now when absent, and never in the future.
pub fn effective_at(
    field: &str,
    value: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidInput> {
    let at = timestamp(field, value)?.unwrap_or(now);
    if at > now + CLOCK_SKEW_ALLOWANCE {
        return Err(InvalidInput::new(field, "must not be in the future"));
    }
    Ok(at)
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
    if request.standards.is_empty() {
        return Err(InvalidInput::new(
            "standards",
            "must name at least one standard",
        ));
    }
    if request.standards.len() > MAX_STANDARDS {
        return Err(InvalidInput::new(
            "standards",
            format!("may name at most {MAX_STANDARDS} standards"),
        ));
    }
    let mut standards = Vec::with_capacity(request.standards.len());
    for (index, value) in request.standards.iter().enumerate() {
        let standard = standard(&format!("standards[{index}]"), *value)?;
        if standards.contains(&standard) {
            return Err(InvalidInput::new(
                format!("standards[{index}]"),
                format!("{standard} is named twice"),
            ));
        }
        standards.push(standard);
    }
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

pub fn contractor_profile(
    value: Option<&v1::ContractorProfile>,
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
