//! Stored-event decoding: whatever a row of the log holds (any event type, any schema version,
//! any JSON), reading it back, upcasting it, describing it, folding it into a complaint and
//! withholding its personal fields for the event log must return an error or a value, never
//! crash.
//!
//! Input: first byte picks the event type, second the schema version, the rest is the payload.

#![no_main]

use doorstep_domain::complaint::{Event, apply, upcast};
use doorstep_domain::contractor::{ContractorEvent, VisitEvent, apply_contractor};
use doorstep_domain::inspection::{InspectionEvent, apply_inspection};
use doorstep_domain::resident::ResidentEvent;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 24] = [
    "ComplaintReceived",
    "ComplaintAcknowledged",
    "DeadlineExtended",
    "FindingsRecorded",
    "ResponseIssued",
    "StageTwoRequested",
    "ComplaintClosed",
    "ComplaintReopened",
    "ComplaintWithdrawn",
    "NoteAdded",
    "ContractorRegistered",
    "ContractorUpdated",
    "ContractorSuspended",
    "ContractorReinstated",
    "EqualityAuditRecorded",
    "VisitRecorded",
    "ResidentForgotten",
    "InspectionRecorded",
    "InspectionCorrected",
    "FindingOpened",
    "FindingWithdrawn",
    "FindingResolved",
    "FindingEscalated",
    "SomethingElse",
];

fuzz_target!(|data: &[u8]| {
    let [type_byte, version_byte, payload @ ..] = data else {
        return;
    };
    let event_type = TYPES[usize::from(*type_byte) % TYPES.len()];
    let schema_version = u32::from(*version_byte % 5);
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    let _ = upcast(event_type, schema_version, payload.clone());
    if let Ok(event) = Event::from_payload(event_type, schema_version, &payload) {
        let _ = event.summary();
        let complaint = apply(None, &event);
        let _ = complaint.map(|complaint| apply(Some(complaint), &event));
        // What was read back writes back to the same event.
        let again = Event::from_payload(
            event.event_type(),
            event.schema_version(),
            &event.to_payload(),
        );
        assert_eq!(again.ok().as_ref(), Some(&event));
    }
    if let Ok(event) = ContractorEvent::from_payload(event_type, schema_version, &payload) {
        let contractor = apply_contractor(None, &event);
        let _ = contractor.map(|contractor| apply_contractor(Some(contractor), &event));
    }
    if let Ok(event) = InspectionEvent::from_payload(event_type, schema_version, &payload) {
        let _ = event.summary();
        let inspection = apply_inspection(None, &event);
        let _ = inspection.map(|inspection| apply_inspection(Some(inspection), &event));
    }
    let _ = VisitEvent::from_payload(event_type, schema_version, &payload);
    let _ = ResidentEvent::from_payload(event_type, schema_version, &payload);
    let mut withheld = payload;
    doorstep_server::privacy::withhold(event_type, &mut withheld);
});
