//! Turns domain state and stored events into protobuf messages.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_api::v1;
use doorstep_domain::ServiceStandard;
use doorstep_domain::complaint::{
    Complaint, Event, Finding, FindingOutcome, Stage, StageProgress, Status,
};
use doorstep_domain::england_date;
use doorstep_projections::ComplaintRow;
use doorstep_store::RecordedEvent;

/// A time as the API gives it: to the microsecond, the precision the read models store, so
/// `GetComplaint` (folded from the log, which keeps nanoseconds) and `ListComplaints` (from the
/// read model) give the same instant for the same step.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    let micros = at.timestamp_subsec_micros();
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(micros * 1_000).unwrap_or(0),
    }
}

/// A date as the API shows it: empty for one not set yet (a proto3 string has no absence).
fn date(value: Option<NaiveDate>) -> String {
    value.map(|date| date.to_string()).unwrap_or_default()
}

pub fn stage(stage: Stage) -> v1::Stage {
    match stage {
        Stage::One => v1::Stage::One,
        Stage::Two => v1::Stage::Two,
    }
}

pub fn status(status: Status) -> v1::ComplaintStatus {
    match status {
        Status::AwaitingAcknowledgement => v1::ComplaintStatus::AwaitingAcknowledgement,
        Status::UnderInvestigation => v1::ComplaintStatus::UnderInvestigation,
        Status::Responded => v1::ComplaintStatus::Responded,
        Status::Closed => v1::ComplaintStatus::Closed,
        Status::Withdrawn => v1::ComplaintStatus::Withdrawn,
    }
}

pub fn standard(standard: ServiceStandard) -> v1::ServiceStandard {
    match standard {
        ServiceStandard::Courtesy => v1::ServiceStandard::Courtesy,
        ServiceStandard::NoSmoking => v1::ServiceStandard::NoSmoking,
        ServiceStandard::Protection => v1::ServiceStandard::Protection,
        ServiceStandard::Tidiness => v1::ServiceStandard::Tidiness,
        ServiceStandard::Parking => v1::ServiceStandard::Parking,
        ServiceStandard::FacilitiesPermission => v1::ServiceStandard::FacilitiesPermission,
        ServiceStandard::GatesSecured => v1::ServiceStandard::GatesSecured,
        ServiceStandard::Identification => v1::ServiceStandard::Identification,
        ServiceStandard::Other => v1::ServiceStandard::Other,
    }
}

fn channel(code: &str) -> v1::Channel {
    match code {
        "PHONE" => v1::Channel::Phone,
        "EMAIL" => v1::Channel::Email,
        "WEB" => v1::Channel::Web,
        "LETTER" => v1::Channel::Letter,
        "IN_PERSON" => v1::Channel::InPerson,
        "INTEGRATION" => v1::Channel::Integration,
        _ => v1::Channel::Unspecified,
    }
}

fn finding(finding: &Finding) -> v1::Finding {
    v1::Finding {
        standard: standard(finding.standard) as i32,
        outcome: match finding.outcome {
            FindingOutcome::Upheld => v1::FindingOutcome::Upheld,
            FindingOutcome::PartlyUpheld => v1::FindingOutcome::PartlyUpheld,
            FindingOutcome::NotUpheld => v1::FindingOutcome::NotUpheld,
        } as i32,
        summary: finding.summary.as_str().to_owned(),
    }
}

/// Whether a deadline was kept, judged on England's calendar dates.
fn deadline_status(
    due: Option<NaiveDate>,
    done_at: Option<DateTime<Utc>>,
    today: NaiveDate,
) -> v1::DeadlineStatus {
    match (due, done_at) {
        (None, _) => v1::DeadlineStatus::Unspecified,
        (Some(due), Some(done)) if england_date(done) <= due => v1::DeadlineStatus::Met,
        (Some(_), Some(_)) => v1::DeadlineStatus::Missed,
        (Some(due), None) if today > due => v1::DeadlineStatus::Overdue,
        (Some(_), None) => v1::DeadlineStatus::Pending,
    }
}

fn stage_progress(progress: &StageProgress, today: NaiveDate, open: bool) -> v1::StageProgress {
    // A closed or withdrawn complaint has nothing pending: an unmet deadline is not "overdue".
    let pending_today = if open { today } else { NaiveDate::MIN };
    v1::StageProgress {
        started_at: Some(timestamp(progress.started_at)),
        acknowledgement_due: progress.acknowledgement_due.to_string(),
        acknowledgement_status: deadline_status(
            Some(progress.acknowledgement_due),
            progress.acknowledged_at,
            pending_today,
        ) as i32,
        acknowledged_at: progress.acknowledged_at.map(timestamp),
        // Empty until the stage is acknowledged, and the decision until it is answered.
        handler: progress
            .handler
            .as_ref()
            .map(|handler| handler.as_str().to_owned())
            .unwrap_or_default(),
        complaint_definition: progress.complaint_definition.as_str().to_owned(),
        outcome_sought: progress.outcome_sought.as_str().to_owned(),
        response_due: date(progress.response_due),
        response_status: deadline_status(
            progress.response_due,
            progress.responded_at,
            pending_today,
        ) as i32,
        extension_working_days: progress.extension_working_days,
        responded_at: progress.responded_at.map(timestamp),
        decision: progress
            .decision
            .as_ref()
            .map(|decision| decision.as_str().to_owned())
            .unwrap_or_default(),
        remedy: progress.remedy.as_str().to_owned(),
    }
}

pub fn complaint(complaint: &Complaint, today: NaiveDate) -> v1::Complaint {
    let open = !complaint.status.is_ended();
    v1::Complaint {
        complaint_id: complaint.id.to_string(),
        status: status(complaint.status) as i32,
        stage: stage(complaint.stage) as i32,
        channel: channel(&complaint.channel) as i32,
        source_system: complaint.source_system.as_str().to_owned(),
        resident: Some(v1::Resident {
            reference: complaint.resident.reference.as_str().to_owned(),
            name: complaint.resident.name.as_str().to_owned(),
            phone: complaint
                .resident
                // Phone and email are optional; a resident who gave none shows empty.
                .phone
                .as_ref()
                .map(|phone| phone.as_str().to_owned())
                .unwrap_or_default(),
            email: complaint
                .resident
                .email
                .as_ref()
                .map(|email| email.as_str().to_owned())
                .unwrap_or_default(),
        }),
        property: Some(v1::Property {
            uprn: complaint.property.uprn.as_str().to_owned(),
            address: complaint.property.address.as_str().to_owned(),
        }),
        contractor_id: complaint.contractor_id.as_str().to_owned(),
        visit_id: complaint
            .visit_id
            .as_ref()
            .map(|visit| visit.as_str().to_owned()),
        standards: complaint
            .standards
            .iter()
            .map(|s| standard(*s) as i32)
            .collect(),
        description: complaint.description.as_str().to_owned(),
        occurred_at: complaint.occurred_at.map(timestamp),
        received_at: Some(timestamp(complaint.received_at)),
        outcome_sought: complaint.outcome_sought.as_str().to_owned(),
        stage_one: Some(stage_progress(&complaint.stage_one, today, open)),
        stage_two: complaint
            .stage_two
            .as_ref()
            .map(|progress| stage_progress(progress, today, open)),
        findings: complaint.findings.values().map(finding).collect(),
        reopen_count: complaint.reopen_count,
        note_count: complaint.note_count,
        version: complaint.version,
        calendar_version: complaint.calendar_version.clone(),
        reasonable_adjustments: complaint.reasonable_adjustments.as_str().to_owned(),
        personal_data_erased: false,
    }
}

/// Blanks what a contractor must not see of a resident: how to reach them and where they live
/// (the UPRN stays, so the contractor can match its own work orders), and the adjustments they
/// asked for, which can reveal health or disability.
pub fn withhold_resident_contact(complaint: &mut v1::Complaint) {
    if let Some(resident) = complaint.resident.as_mut() {
        resident.name.clear();
        resident.phone.clear();
        resident.email.clear();
    }
    if let Some(property) = complaint.property.as_mut() {
        property.address.clear();
    }
    complaint.reasonable_adjustments.clear();
}

pub fn history_entry(recorded: &RecordedEvent, event: &Event) -> v1::HistoryEntry {
    v1::HistoryEntry {
        position: recorded.position,
        version: recorded.version,
        event_id: recorded.event_id.to_string(),
        event_type: recorded.event_type.clone(),
        recorded_at: Some(timestamp(recorded.recorded_at)),
        actor: recorded.metadata.actor.clone(),
        // Empty for a call sent without a request id.
        request_id: recorded.metadata.request_id.clone().unwrap_or_default(),
        summary: event.summary(),
    }
}

pub fn summary(row: &ComplaintRow, today: NaiveDate) -> v1::ComplaintSummary {
    v1::ComplaintSummary {
        complaint_id: row.complaint_id.clone(),
        status: status(row.status) as i32,
        stage: stage(row.stage) as i32,
        contractor_id: row.contractor_id.clone(),
        uprn: row.uprn.clone(),
        resident_reference: row.resident_reference.clone(),
        received_at: Some(timestamp(row.received_at)),
        standards: row.standards.iter().map(|s| standard(*s) as i32).collect(),
        next_deadline: date(row.next_deadline),
        overdue: row.is_overdue(today),
        version: row.version,
    }
}

/// A contractor as `GetContractor` shows it; `equality_audit_overdue` is judged by the caller
/// (it depends on today and a setting).
pub fn contractor(
    contractor: &doorstep_domain::contractor::Contractor,
    equality_audit_overdue: bool,
) -> v1::Contractor {
    let profile = &contractor.profile;
    v1::Contractor {
        contractor_id: contractor.id.to_string(),
        profile: Some(v1::ContractorProfile {
            legal_name: profile.legal_name.as_str().to_owned(),
            trading_names: profile
                .trading_names
                .iter()
                .map(|name| name.as_str().to_owned())
                .collect(),
            logo_url: profile.logo_url.as_str().to_owned(),
            public_contact_name: profile.public_contact_name.as_str().to_owned(),
            public_phone: profile.public_phone.as_str().to_owned(),
            contracts: profile
                .contracts
                .iter()
                .map(|contract| v1::ContractTerms {
                    reference: contract.reference.as_str().to_owned(),
                    standards: contract
                        .standards
                        .iter()
                        .map(|s| standard(*s) as i32)
                        .collect(),
                    liaison_lead: contract
                        .liaison
                        .as_ref()
                        .map_or(v1::LiaisonLead::Unspecified, |liaison| {
                            liaison_lead(Some(liaison.lead))
                        }) as i32,
                    liaison_contact_name: contract
                        .liaison
                        .as_ref()
                        .map(|liaison| liaison.contact_name.as_str().to_owned())
                        .unwrap_or_default(),
                    equality_conditions: contract.equality_conditions.as_ref().map(|c| {
                        v1::EqualityConditions {
                            equality_training: c.training,
                            equality_audits: c.audits,
                            code_of_conduct: c.code_of_conduct,
                            accepted_date: c.accepted_on.to_string(),
                        }
                    }),
                })
                .collect(),
        }),
        status: contractor_status(contractor.status) as i32,
        equality_audits: contractor
            .equality_audits
            .iter()
            .map(|audit| v1::EqualityAudit {
                audit_date: audit.audit_date.to_string(),
                auditor: audit.auditor.as_str().to_owned(),
                workforce_diversity: audit.workforce_diversity.as_str().to_owned(),
                equality_policy_and_procedures: audit
                    .equality_policy_and_procedures
                    .as_str()
                    .to_owned(),
                requirements_not_met: audit.requirements_not_met.as_str().to_owned(),
                staff_experience_and_training: audit
                    .staff_experience_and_training
                    .as_str()
                    .to_owned(),
                outcome: audit_outcome(audit.outcome) as i32,
            })
            .collect(),
        version: contractor.version,
        contract_sign_offs: contractor
            .sign_offs
            .iter()
            .map(|standing| v1::ContractSignOff {
                contract_reference: standing.contract_reference.as_str().to_owned(),
                signed_off: standing.signed_off,
                latest_sign_off: standing.latest.as_ref().map(standards_sign_off),
            })
            .collect(),
        equality_training: contractor
            .equality_training
            .iter()
            .map(|training| v1::EqualityTraining {
                training_date: training.trained_on.to_string(),
                course: training.course.as_str().to_owned(),
                staff_trained: training.staff_trained,
            })
            .collect(),
        equality_audit_overdue,
    }
}

fn standards_sign_off(
    sign_off: &doorstep_domain::contractor::StandardsSignOff,
) -> v1::StandardsSignOff {
    v1::StandardsSignOff {
        contract_reference: sign_off.contract_reference.as_str().to_owned(),
        champions: sign_off
            .champions
            .iter()
            .map(|champion| v1::ResidentChampion {
                reference: champion.reference.as_str().to_owned(),
                published_name: champion
                    .published_name
                    .as_ref()
                    .map(|name| name.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect(),
        signed_off_date: sign_off.signed_off_on.to_string(),
        standards: sign_off
            .standards
            .iter()
            .map(|s| standard(*s) as i32)
            .collect(),
        comments: sign_off.comments.as_str().to_owned(),
    }
}

/// A liaison lead as the API shows it; None (unknown) is UNSPECIFIED.
pub fn liaison_lead(lead: Option<doorstep_domain::contractor::LiaisonLead>) -> v1::LiaisonLead {
    use doorstep_domain::contractor::LiaisonLead;
    match lead {
        None => v1::LiaisonLead::Unspecified,
        Some(LiaisonLead::InHouse) => v1::LiaisonLead::InHouse,
        Some(LiaisonLead::Contractor) => v1::LiaisonLead::Contractor,
    }
}

pub fn audit_outcome(outcome: doorstep_domain::contractor::AuditOutcome) -> v1::AuditOutcome {
    use doorstep_domain::contractor::AuditOutcome;
    match outcome {
        AuditOutcome::Satisfactory => v1::AuditOutcome::Satisfactory,
        AuditOutcome::ImprovementRequired => v1::AuditOutcome::ImprovementRequired,
        AuditOutcome::Unsatisfactory => v1::AuditOutcome::Unsatisfactory,
    }
}

pub fn contractor_status(
    status: doorstep_domain::contractor::ContractorStatus,
) -> v1::ContractorStatus {
    use doorstep_domain::contractor::ContractorStatus;
    match status {
        ContractorStatus::Active => v1::ContractorStatus::Active,
        ContractorStatus::Suspended => v1::ContractorStatus::Suspended,
    }
}
