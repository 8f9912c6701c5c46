//! A complaint's whole life through the real server: stage 1, stage 2, closure, and the steps
//! the Code refuses on the way.

use doorstep_api::v1;
use doorstep_tests::requests;
use doorstep_tests::{gate_left_open, spawn_app, timestamp, violated_field};
use tonic::Code;

#[tokio::test]
async fn stage_one_to_stage_two_to_close() {
    let mut app = spawn_app().await;
    let client = &mut app.client;

    // Thursday 2 April 2026, the day before Good Friday.
    let logged = client
        .log_complaint(gate_left_open("call-1", "2026-04-02T10:00:00Z"))
        .await
        .expect("the complaint is logged")
        .into_inner();
    assert!(!logged.duplicate);
    assert_eq!(logged.version, 1);
    let id = logged.complaint_id.clone();

    let acknowledged = client
        .acknowledge_complaint(v1::AcknowledgeComplaintRequest {
            complaint_id: id.clone(),
            expected_version: Some(1),
            stage: v1::Stage::One as i32,
            handler: "Officer One".to_owned(),
            complaint_definition: "Gate left open during loft insulation visit".to_owned(),
            effective_at: Some(timestamp("2026-04-08T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("stage 1 is acknowledged")
        .into_inner();
    assert_eq!(acknowledged.version, 2);
    assert_eq!(acknowledged.response_due, "2026-04-22");

    let extended = client
        .extend_deadline(v1::ExtendDeadlineRequest {
            complaint_id: id.clone(),
            reason: "Waiting for the contractor's site report".to_owned(),
            working_days: 5,
            ombudsman_details_given: true,
            effective_at: Some(timestamp("2026-04-20T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("the deadline is extended")
        .into_inner();
    assert_eq!(extended.response_due, "2026-04-29");

    client
        .record_findings(requests::gates_finding(
            &id,
            v1::FindingOutcome::Upheld,
            "Operative confirmed the gate was left open",
        ))
        .await
        .expect("findings are recorded");
    client
        .issue_response(v1::IssueResponseRequest {
            complaint_id: id.clone(),
            decision: "Upheld".to_owned(),
            remedy: "Apology; operatives re-briefed".to_owned(),
            effective_at: Some(timestamp("2026-04-28T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("the stage 1 response is issued");

    let escalated = client
        .request_stage_two(v1::RequestStageTwoRequest {
            complaint_id: id.clone(),
            effective_at: Some(timestamp("2026-04-30T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("stage 2 is requested")
        .into_inner();
    assert_eq!(escalated.acknowledgement_due, "2026-05-08");

    let same_handler = client
        .acknowledge_complaint(requests::acknowledgement(
            &id,
            v1::Stage::Two,
            "officer one",
            Some("2026-05-05T09:00:00Z"),
        ))
        .await
        .expect_err("the stage 1 handler may not handle stage 2");
    assert_eq!(same_handler.code(), Code::FailedPrecondition);
    assert!(same_handler.message().contains("stage 2 handler"));

    client
        .acknowledge_complaint(requests::acknowledgement(
            &id,
            v1::Stage::Two,
            "Head of Service",
            Some("2026-05-05T09:00:00Z"),
        ))
        .await
        .expect("stage 2 is acknowledged by someone else");
    client
        .issue_response(requests::response(
            &id,
            "Stage 1 decision stands",
            Some("2026-06-10T09:00:00Z"),
        ))
        .await
        .expect("the stage 2 response is issued, late");
    let closed = client
        .close_complaint(requests::closure(
            &id,
            "Final response sent",
            Some("2026-06-10T10:00:00Z"),
        ))
        .await
        .expect("the complaint is closed")
        .into_inner();

    let view = client
        .get_complaint(requests::complaint(&id))
        .await
        .expect("the complaint can be read")
        .into_inner();
    let complaint = view.complaint.expect("a complaint");
    assert_eq!(complaint.status, v1::ComplaintStatus::Closed as i32);
    assert_eq!(complaint.stage, v1::Stage::Two as i32);
    assert_eq!(complaint.version, closed.version);
    assert_eq!(
        complaint.standards,
        vec![v1::ServiceStandard::GatesSecured as i32]
    );
    assert_eq!(complaint.findings.len(), 1);
    assert!(complaint.calendar_version.starts_with("england-and-wales/"));
    let stage_one = complaint.stage_one.expect("stage 1 progress");
    assert_eq!(stage_one.acknowledgement_due, "2026-04-13");
    assert_eq!(
        stage_one.acknowledgement_status,
        v1::DeadlineStatus::Met as i32
    );
    assert_eq!(stage_one.response_due, "2026-04-29");
    assert_eq!(stage_one.response_status, v1::DeadlineStatus::Met as i32);
    assert_eq!(stage_one.extension_working_days, 5);
    assert_eq!(stage_one.handler, "Officer One");
    let stage_two = complaint.stage_two.expect("stage 2 progress");
    assert_eq!(stage_two.handler, "Head of Service");
    assert_eq!(stage_two.response_due, "2026-06-03");
    assert_eq!(stage_two.response_status, v1::DeadlineStatus::Missed as i32);

    let types: Vec<&str> = view
        .history
        .iter()
        .map(|entry| entry.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "ComplaintReceived",
            "ComplaintAcknowledged",
            "DeadlineExtended",
            "FindingsRecorded",
            "ResponseIssued",
            "StageTwoRequested",
            "ComplaintAcknowledged",
            "ResponseIssued",
            "ComplaintClosed",
        ]
    );
    let versions: Vec<u64> = view.history.iter().map(|entry| entry.version).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<u64>>());
    assert!(
        view.history
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    assert!(view.history.iter().all(|entry| !entry.summary.is_empty()));

    // Nothing after closure but reopening.
    let note = client
        .add_note(v1::AddNoteRequest {
            complaint_id: id.clone(),
            text: "Resident rang again".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a closed complaint takes no notes");
    assert_eq!(note.code(), Code::FailedPrecondition);
    let reopened = client
        .reopen_complaint(v1::ReopenComplaintRequest {
            complaint_id: id.clone(),
            reason: "Gate left open again on the follow-up visit".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a closed complaint can be reopened")
        .into_inner();
    assert_eq!(reopened.version, 10);
    assert!(!reopened.response_due.is_empty());
    app.stop().await;
}

/// Makes one field of a valid request invalid.
type Spoiler = dyn Fn(&mut v1::LogComplaintRequest);

#[tokio::test]
async fn refused_steps_answer_with_the_right_status() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let id = client
        .log_complaint(gate_left_open("call-2", "2026-04-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner()
        .complaint_id;

    // The Code's order of steps.
    let early_response = client
        .issue_response(requests::response(&id, "Not upheld", None))
        .await
        .expect_err("no response before acknowledgement");
    assert_eq!(early_response.code(), Code::FailedPrecondition);
    assert!(early_response.message().contains("must be acknowledged"));
    let early_escalation = client
        .request_stage_two(v1::RequestStageTwoRequest {
            complaint_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no stage 2 before a stage 1 response");
    assert_eq!(early_escalation.code(), Code::FailedPrecondition);

    // Optimistic concurrency.
    let stale = client
        .add_note(v1::AddNoteRequest {
            complaint_id: id.clone(),
            expected_version: Some(7),
            text: "Called the resident".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("the complaint is at version 1");
    assert_eq!(stale.code(), Code::Aborted);

    // Unknown and malformed ids.
    let missing = client
        .get_complaint(requests::complaint(&uuid::Uuid::now_v7().to_string()))
        .await
        .expect_err("no such complaint");
    assert_eq!(missing.code(), Code::NotFound);
    let missing_write = client
        .add_note(v1::AddNoteRequest {
            complaint_id: uuid::Uuid::now_v7().to_string(),
            text: "Hello".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("no such complaint");
    assert_eq!(missing_write.code(), Code::NotFound);
    let malformed = client
        .get_complaint(requests::complaint("not-a-uuid"))
        .await
        .expect_err("a malformed id");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&malformed).as_deref(), Some("complaint_id"));

    // Bad intake fields are named.
    let cases: Vec<(&str, Box<Spoiler>)> = vec![
        ("idempotency_key", Box::new(|r| r.idempotency_key.clear())),
        ("channel", Box::new(|r| r.channel = 0)),
        ("resident", Box::new(|r| r.resident = None)),
        (
            "resident.phone",
            Box::new(|r| {
                if let Some(resident) = r.resident.as_mut() {
                    resident.phone = "call me maybe".to_owned();
                }
            }),
        ),
        (
            "property.uprn",
            Box::new(|r| {
                if let Some(property) = r.property.as_mut() {
                    property.uprn = "12AB".to_owned();
                }
            }),
        ),
        ("contractor_id", Box::new(|r| r.contractor_id.clear())),
        (
            "contractor_id",
            Box::new(|r| r.contractor_id = "never-registered".to_owned()),
        ),
        ("standards", Box::new(|r| r.standards.clear())),
        ("standards[1]", Box::new(|r| r.standards.push(99))),
        (
            "description",
            Box::new(|r| {
                r.standards = vec![v1::ServiceStandard::Other as i32];
                r.description.clear();
            }),
        ),
        (
            "description",
            Box::new(|r| r.description = "x".repeat(10_001)),
        ),
        (
            "received_at",
            Box::new(|r| r.received_at = Some(timestamp("2099-01-01T00:00:00Z"))),
        ),
        (
            "occurred_at",
            Box::new(|r| r.occurred_at = Some(timestamp("2026-04-03T00:00:00Z"))),
        ),
    ];
    for (case, (field, spoil)) in cases.into_iter().enumerate() {
        let mut request = gate_left_open(&format!("bad-{case}"), "2026-04-02T10:00:00Z");
        spoil(&mut request);
        let status = client
            .log_complaint(request)
            .await
            .expect_err("invalid input is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(
            violated_field(&status).as_deref(),
            Some(field),
            "{status:?}"
        );
    }
    let log = doorstep_tests::whole_log(&app.channel).await;
    let received: Vec<&str> = log
        .iter()
        .filter(|event| event.event_type == "ComplaintReceived")
        .map(|event| event.stream_id.as_str())
        .collect();
    assert_eq!(
        received,
        [format!("complaint-{id}")],
        "nothing invalid reached the log"
    );

    // A request id reused for another call with the same body shape is not a retry of it.
    client
        .withdraw_complaint(v1::WithdrawComplaintRequest {
            complaint_id: id.clone(),
            request_id: "r-1".to_owned(),
            reason: "x".to_owned(),
            ..Default::default()
        })
        .await
        .expect("withdrawn");
    let reused = client
        .reopen_complaint(v1::ReopenComplaintRequest {
            complaint_id: id.clone(),
            request_id: "r-1".to_owned(),
            reason: "x".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("the request id belongs to the withdrawal");
    assert_eq!(reused.code(), Code::AlreadyExists);

    // A visit not recorded yet is accepted: work-order systems may send visits late.
    let mut early = gate_left_open("early-visit", "2026-04-02T09:00:00Z");
    early.visit_id = Some("V-brick-1".to_owned());
    client
        .log_complaint(early)
        .await
        .expect("a visit not recorded yet is accepted");

    // A complaint about a recorded visit must name the contractor that made it, though the
    // server has just seen the visit as not recorded.
    doorstep_api::v1::visit_service_client::VisitServiceClient::new(app.channel.clone())
        .record_visits(v1::RecordVisitsRequest {
            visits: vec![v1::Visit {
                visit_id: "V-brick-1".to_owned(),
                contractor_id: "brick-and-co".to_owned(),
                uprn: "100023336956".to_owned(),
                work_order_reference: "WO-1".to_owned(),
                visit_date: "2026-04-01".to_owned(),
            }],
        })
        .await
        .expect("visit recorded");
    let mut wrong_visit = gate_left_open("wrong-visit", "2026-04-02T10:00:00Z");
    wrong_visit.visit_id = Some("V-brick-1".to_owned());
    let status = client
        .log_complaint(wrong_visit)
        .await
        .expect_err("the visit is brick-and-co's, the complaint names acme-retrofit");
    assert_eq!(violated_field(&status).as_deref(), Some("visit_id"));
    // And again, when the server answers from what it remembers of the visit.
    let mut again = gate_left_open("wrong-visit-again", "2026-04-02T11:00:00Z");
    again.visit_id = Some("V-brick-1".to_owned());
    let status = client
        .log_complaint(again)
        .await
        .expect_err("still brick-and-co's visit");
    assert_eq!(violated_field(&status).as_deref(), Some("visit_id"));
    assert!(
        status.message().contains("is a visit by brick-and-co"),
        "{status:?}"
    );
}

#[tokio::test]
async fn retried_log_complaint_returns_the_first_complaint() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let request = gate_left_open("call-centre-4711", "2026-04-02T10:00:00Z");
    let first = client
        .log_complaint(request.clone())
        .await
        .expect("logged")
        .into_inner();

    // Many concurrent retries of the same call, as a call-centre integration does on time-outs.
    let retries = (0..16).map(|_| {
        let mut client = client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.log_complaint(request).await })
    });
    for retry in futures::future::join_all(retries).await {
        let retry = retry.expect("task").expect("a retry succeeds").into_inner();
        assert_eq!(retry.complaint_id, first.complaint_id);
        assert!(retry.duplicate);
        assert_eq!(retry.position, first.position);
    }

    let mut different = request.clone();
    different.description = "Something else entirely".to_owned();
    let conflict = client
        .log_complaint(different)
        .await
        .expect_err("same key, different content");
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists);

    // A request id makes other writes idempotent too.
    let acknowledge = v1::AcknowledgeComplaintRequest {
        complaint_id: first.complaint_id.clone(),
        request_id: "ack-1".to_owned(),
        stage: v1::Stage::One as i32,
        handler: "Officer One".to_owned(),
        effective_at: Some(timestamp("2026-04-03T09:00:00Z")),
        ..Default::default()
    };
    let once = client
        .acknowledge_complaint(acknowledge.clone())
        .await
        .expect("acknowledged")
        .into_inner();
    let twice = client
        .acknowledge_complaint(acknowledge.clone())
        .await
        .expect("a retry returns the first result")
        .into_inner();
    assert!(twice.duplicate);
    assert_eq!(
        (twice.version, twice.position),
        (once.version, once.position)
    );
    let view = client
        .get_complaint(requests::complaint(&first.complaint_id))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(view.history.len(), 2, "the retry wrote nothing");
    assert_eq!(view.history[1].request_id, "ack-1");
}

#[tokio::test]
async fn complaints_survive_a_restart() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let mut ids = Vec::new();
    for n in 0..5 {
        let logged = client
            .log_complaint(gate_left_open(
                &format!("restart-{n}"),
                "2026-04-02T10:00:00Z",
            ))
            .await
            .expect("logged")
            .into_inner();
        ids.push(logged.complaint_id);
    }
    let app = app.restart().await;
    let mut client = app.client.clone();
    for id in &ids {
        let view = client
            .get_complaint(requests::complaint(id))
            .await
            .expect("still there after a restart")
            .into_inner();
        assert_eq!(view.history.len(), 1);
    }
    let retry = client
        .log_complaint(gate_left_open("restart-0", "2026-04-02T10:00:00Z"))
        .await
        .expect("a retry after the restart")
        .into_inner();
    assert!(retry.duplicate);
    assert_eq!(retry.complaint_id, ids[0]);
    let listed = client
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(5),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.complaints.len(), 5);
}

/// One precision for every timestamp: a complaint's `received_at` read from its stream
/// (`GetComplaint`) and from the list's read model (`ListComplaints`) is the same instant to the
/// nanosecond field, whether the caller dated it with nanoseconds or the server's clock did.
#[tokio::test]
async fn get_and_list_give_received_at_to_the_same_precision() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let mut dated = gate_left_open("precision-1", "2026-04-02T10:00:00Z");
    dated.received_at = Some(timestamp("2026-04-02T10:00:00.123456789Z"));
    let mut undated = gate_left_open("precision-2", "2026-04-02T10:00:00Z");
    undated.received_at = None;
    let mut last_position = 0;
    let mut ids = Vec::new();
    for request in [dated, undated] {
        let logged = client
            .log_complaint(request)
            .await
            .expect("logged")
            .into_inner();
        last_position = logged.position;
        ids.push(logged.complaint_id);
    }
    let listed = client
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(last_position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    for id in &ids {
        let view = client
            .get_complaint(requests::complaint(id))
            .await
            .expect("read")
            .into_inner();
        let got = view
            .complaint
            .and_then(|complaint| complaint.received_at)
            .expect("GetComplaint has received_at");
        let summary = listed
            .complaints
            .iter()
            .find(|summary| &summary.complaint_id == id)
            .expect("the list has the complaint");
        assert_eq!(Some(&got), summary.received_at.as_ref(), "{id}");
        assert_eq!(got.nanos % 1_000, 0, "microseconds: {got:?}");
        let recorded = view
            .history
            .first()
            .and_then(|entry| entry.recorded_at)
            .expect("the history has the intake's time");
        assert_eq!(recorded.nanos % 1_000, 0, "every timestamp: {recorded:?}");
    }
}
