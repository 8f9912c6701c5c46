//! Request validation: any bytes a caller can send, decoded as the requests the server parses,
//! must be either accepted or refused with a field named, never crash: both the limits every
//! request is held to first (`parse::within_limits`) and the parsing after them.
//!
//! The first byte picks the request type; the rest is its protobuf encoding.

#![no_main]

use doorstep_api::v1;
use doorstep_domain::input::ComplaintId;
use doorstep_server::parse;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn refused_names_a_field<T>(result: Result<T, doorstep_domain::InvalidInput>) {
    if let Err(invalid) = result {
        assert!(!invalid.field.is_empty(), "a refusal names its field");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let today = now.date_naive();
    match selector % 7 {
        0 => {
            if let Ok(request) = v1::LogComplaintRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::log_complaint(
                    &request,
                    ComplaintId::from_uuid(Default::default()),
                    now,
                ));
            }
        }
        1 => {
            if let Ok(request) = v1::RecordFindingsRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::findings(&request.findings));
                refused_names_a_field(parse::complaint_id(&request.complaint_id));
                refused_names_a_field(parse::request_id(&request.request_id));
            }
        }
        2 => {
            if let Ok(request) = v1::RegisterContractorRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::contractor_id(
                    "contractor_id",
                    &request.contractor_id,
                ));
                refused_names_a_field(parse::contractor_profile(request.profile.as_ref(), today));
            }
        }
        3 => {
            if let Ok(request) = v1::RecordEqualityAuditRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::equality_audit(request.audit.as_ref(), today));
            }
        }
        4 => {
            if let Ok(request) = v1::RecordVisitsRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                for (index, visit) in request.visits.iter().enumerate() {
                    refused_names_a_field(parse::visit(&format!("visits[{index}]"), visit, today));
                }
            }
        }
        5 => {
            if let Ok(request) = v1::RecordInspectionRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::inspections::details(request.details.as_ref(), now));
                refused_names_a_field(parse::inspections::required_request_id(&request.request_id));
            }
        }
        _ => {
            if let Ok(request) = v1::AcknowledgeComplaintRequest::decode(bytes) {
                refused_names_a_field(parse::within_limits(&request));
                refused_names_a_field(parse::stage("stage", request.stage));
                refused_names_a_field(parse::effective_at(
                    "effective_at",
                    request.effective_at.as_ref(),
                    now,
                ));
                refused_names_a_field(parse::timestamp(
                    "effective_at",
                    request.effective_at.as_ref(),
                ));
            }
        }
    }
});
