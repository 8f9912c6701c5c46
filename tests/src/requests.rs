//! Requests for the complaint steps tests take again and again, so a test spells out only what
//! it is about. Each leaves every other field at its default; `at` is the step's effective time
//! (RFC 3339), or `None` for the server's clock.

use doorstep_api::v1;

use crate::timestamp;

/// Reading one complaint.
pub fn complaint(complaint_id: &str) -> v1::GetComplaintRequest {
    v1::GetComplaintRequest {
        complaint_id: complaint_id.to_owned(),
    }
}

/// `handler` acknowledges the complaint at `stage`.
pub fn acknowledgement(
    complaint_id: &str,
    stage: v1::Stage,
    handler: &str,
    at: Option<&str>,
) -> v1::AcknowledgeComplaintRequest {
    v1::AcknowledgeComplaintRequest {
        complaint_id: complaint_id.to_owned(),
        stage: stage as i32,
        handler: handler.to_owned(),
        effective_at: at.map(timestamp),
        ..Default::default()
    }
}

/// "Officer One" acknowledges the complaint at stage 1, now.
pub fn officer_one_acknowledges(complaint_id: &str) -> v1::AcknowledgeComplaintRequest {
    acknowledgement(complaint_id, v1::Stage::One, "Officer One", None)
}

/// One finding, on the gates standard.
pub fn gates_finding(
    complaint_id: &str,
    outcome: v1::FindingOutcome,
    summary: &str,
) -> v1::RecordFindingsRequest {
    v1::RecordFindingsRequest {
        complaint_id: complaint_id.to_owned(),
        findings: vec![v1::Finding {
            standard: v1::ServiceStandard::GatesSecured as i32,
            outcome: outcome as i32,
            summary: summary.to_owned(),
        }],
        ..Default::default()
    }
}

/// The response to the complaint, with `decision` and no remedy.
pub fn response(complaint_id: &str, decision: &str, at: Option<&str>) -> v1::IssueResponseRequest {
    v1::IssueResponseRequest {
        complaint_id: complaint_id.to_owned(),
        decision: decision.to_owned(),
        effective_at: at.map(timestamp),
        ..Default::default()
    }
}

/// Closing the complaint with `reason` (which may be empty).
pub fn closure(complaint_id: &str, reason: &str, at: Option<&str>) -> v1::CloseComplaintRequest {
    v1::CloseComplaintRequest {
        complaint_id: complaint_id.to_owned(),
        reason: reason.to_owned(),
        effective_at: at.map(timestamp),
        ..Default::default()
    }
}

/// One observation of `standard` with `result` and a short note.
pub fn observation(
    standard: v1::ServiceStandard,
    result: v1::ObservationResult,
) -> v1::Observation {
    v1::Observation {
        standard: standard as i32,
        result: result as i32,
        note: format!("{standard:?}: {result:?}"),
    }
}

/// An inspection of `contractor_id`'s work under its test contract (`RETRO-2026-01`) at UPRN
/// 100023336956, inspected at `at` (RFC 3339) by "Officer One", seeing `observations`.
pub fn inspection_details(
    contractor_id: &str,
    at: &str,
    observations: Vec<v1::Observation>,
) -> v1::InspectionDetails {
    v1::InspectionDetails {
        contractor_id: contractor_id.to_owned(),
        contract_reference: "RETRO-2026-01".to_owned(),
        uprn: "100023336956".to_owned(),
        visit_id: String::new(),
        inspected_at: Some(timestamp(at)),
        inspecting_officer: "Officer One".to_owned(),
        observations,
        photo_references: vec!["photo:IMG_0042".to_owned()],
    }
}

/// Records `details` under `request_id`.
pub fn record_inspection(
    request_id: &str,
    details: v1::InspectionDetails,
) -> v1::RecordInspectionRequest {
    v1::RecordInspectionRequest {
        details: Some(details),
        request_id: request_id.to_owned(),
    }
}

/// "Site Team" resolves the finding, now, saying `resolution`.
pub fn resolve_finding(
    inspection_id: &str,
    finding_id: &str,
    resolution: &str,
    request_id: &str,
) -> v1::ResolveInspectionFindingRequest {
    v1::ResolveInspectionFindingRequest {
        inspection_id: inspection_id.to_owned(),
        finding_id: finding_id.to_owned(),
        resolution: resolution.to_owned(),
        resolved_by: "Site Team".to_owned(),
        resolved_at: None,
        request_id: request_id.to_owned(),
    }
}

/// Reading one inspection.
pub fn inspection(inspection_id: &str) -> v1::GetInspectionRequest {
    v1::GetInspectionRequest {
        inspection_id: inspection_id.to_owned(),
    }
}
