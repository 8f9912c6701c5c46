//! On-site inspections end to end, through the generated client on SQLite and on PostgreSQL:
//! recording with idempotent retries, field-named refusals, corrections as new events, findings
//! resolved once, their escalations raised exactly once on the test's clock and delivered once
//! to a webhook, and contractors confined to their own inspections.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_api::v1::inspection_service_client::InspectionServiceClient;
use doorstep_server::settings::{Role, Settings, WebhookSettings};
use doorstep_tests::requests::{
    inspection, inspection_details, observation, record_inspection, resolve_finding,
};
use doorstep_tests::webhook::{Receiver, SECRET, free_address, serve_receiver};
use doorstep_tests::{
    AuthenticatedChannel, ROUNDS_DRIVEN_BY_THE_TEST_MS, TestApp, TestClock, spawn_app_with,
    violated_field, whole_log, wilson,
};
use secrecy::SecretString;
use tonic::Code;

use v1::ObservationResult::{Met, NotMet, NotObserved};
use v1::ServiceStandard::{Courtesy, GatesSecured, Parking, Protection, Tidiness};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

/// Every role, the notifier's rounds driven by the test, the contract manager and the head of
/// service told by email address, and every escalation sent to a webhook at `address`.
fn notified(settings: &mut Settings, address: SocketAddr) {
    settings.server.role = Role::All;
    settings.notifier.poll_interval_ms = ROUNDS_DRIVEN_BY_THE_TEST_MS;
    settings.notifier.webhooks = vec![WebhookSettings {
        url: format!("http://{address}/hooks/doorstep"),
        secret: SecretString::from(SECRET.to_owned()),
    }];
    settings.escalation.recipients.insert(
        "contract_manager".to_owned(),
        vec!["contracts@landlord.example".to_owned()],
    );
}

fn inspections(channel: &AuthenticatedChannel) -> InspectionServiceClient<AuthenticatedChannel> {
    InspectionServiceClient::new(channel.clone())
}

fn officer(app: &TestApp) -> InspectionServiceClient<AuthenticatedChannel> {
    inspections(&app.channel_as(&["officer"]))
}

/// What an officer saw at acme-retrofit's job on Tuesday 14 April 2026 at 08:00 UTC: the work
/// area left untidy, gates closed, nobody parking.
fn untidy_job() -> v1::InspectionDetails {
    inspection_details(
        "acme-retrofit",
        "2026-04-14T08:00:00Z",
        vec![
            observation(Tidiness, NotMet),
            observation(GatesSecured, Met),
            observation(Parking, NotObserved),
        ],
    )
}

/// Events in the log of one inspection stream.
async fn stream_events(app: &TestApp, inspection_id: &str) -> Vec<v1::RecordedEvent> {
    whole_log(&app.channel)
        .await
        .into_iter()
        .filter(|event| event.stream_id == format!("inspection-{inspection_id}"))
        .collect()
}

/// The whole journey, on whichever backend `app` runs; its clock is at 2026-04-14T09:00:00Z and
/// `receiver` listens on the webhook address it was given.
async fn journey(app: TestApp, clock: Arc<TestClock>, receiver: Receiver) {
    let mut client = officer(&app);

    // Recorded: the untidy work area opens a finding due five working days later (Tuesday 21).
    let recorded = client
        .record_inspection(record_inspection("inspection-a", untidy_job()))
        .await
        .expect("recorded")
        .into_inner();
    assert!(!recorded.duplicate);
    assert_eq!(recorded.findings.len(), 1);
    let untidy = &recorded.findings[0];
    assert_eq!(untidy.standard, Tidiness as i32);
    assert_eq!(untidy.due_date, "2026-04-21");
    assert_eq!(untidy.state, v1::FindingState::Open as i32);

    // The same request again: the first answer, nothing stored.
    let retried = client
        .record_inspection(record_inspection("inspection-a", untidy_job()))
        .await
        .expect("a retry answers")
        .into_inner();
    assert!(retried.duplicate);
    assert_eq!(
        (retried.inspection_id.as_str(), retried.position),
        (recorded.inspection_id.as_str(), recorded.position)
    );
    assert_eq!(
        stream_events(&app, &recorded.inspection_id).await.len(),
        2,
        "one InspectionRecorded and one FindingOpened, however often it is sent"
    );
    // The same key with other content is a different request.
    let mut other = untidy_job();
    other.uprn = "100023336957".to_owned();
    let reused = client
        .record_inspection(record_inspection("inspection-a", other))
        .await
        .expect_err("a reused key");
    assert_eq!(reused.code(), Code::AlreadyExists);

    // Another inspection of acme's work: the floor left unprotected, put right the same day.
    let unprotected = client
        .record_inspection(record_inspection(
            "inspection-b",
            inspection_details(
                "acme-retrofit",
                "2026-04-14T08:30:00Z",
                vec![observation(Protection, NotMet)],
            ),
        ))
        .await
        .expect("recorded")
        .into_inner();
    let resolve = resolve_finding(
        &unprotected.inspection_id,
        &unprotected.findings[0].finding_id,
        "Dust sheets laid; carpet cleaned",
        "resolve-b-1",
    );
    let resolved = client
        .resolve_inspection_finding(resolve.clone())
        .await
        .expect("resolved")
        .into_inner();
    let finding = &resolved
        .inspection
        .as_ref()
        .expect("the inspection")
        .findings[0];
    assert_eq!(finding.state, v1::FindingState::Resolved as i32);
    assert_eq!(finding.resolution, "Dust sheets laid; carpet cleaned");
    assert!(
        client
            .resolve_inspection_finding(resolve)
            .await
            .expect("a retry answers")
            .into_inner()
            .duplicate
    );
    let twice = client
        .resolve_inspection_finding(resolve_finding(
            &unprotected.inspection_id,
            &unprotected.findings[0].finding_id,
            "Again",
            "resolve-b-2",
        ))
        .await
        .expect_err("resolved twice");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert!(twice.message().contains("already resolved"), "{twice:?}");

    // A correction is a new event: courtesy was not met either. It opens a second finding (due
    // five working days from the correction) and keeps the first.
    let mut corrected_details = untidy_job();
    corrected_details
        .observations
        .push(observation(Courtesy, NotMet));
    let corrected = client
        .correct_inspection(v1::CorrectInspectionRequest {
            inspection_id: recorded.inspection_id.clone(),
            details: Some(corrected_details),
            reason: "The officer's notes on courtesy were left out".to_owned(),
            request_id: "correct-a-1".to_owned(),
            expected_version: Some(2),
        })
        .await
        .expect("corrected")
        .into_inner();
    let after = corrected.inspection.expect("the inspection");
    assert_eq!((after.corrections, after.version), (1, 4));
    assert_eq!(after.findings.len(), 2);
    assert_eq!(after.findings[1].standard, Courtesy as i32);
    assert_eq!(after.findings[1].due_date, "2026-04-21");
    let stale = client
        .correct_inspection(v1::CorrectInspectionRequest {
            inspection_id: recorded.inspection_id.clone(),
            details: Some(untidy_job()),
            reason: "stale".to_owned(),
            request_id: "correct-a-2".to_owned(),
            expected_version: Some(2),
        })
        .await
        .expect_err("a stale version");
    assert_eq!(stale.code(), Code::Aborted);
    let types: Vec<String> = stream_events(&app, &recorded.inspection_id)
        .await
        .into_iter()
        .map(|event| event.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "InspectionRecorded",
            "FindingOpened",
            "InspectionCorrected",
            "FindingOpened"
        ]
    );

    // Nothing escalates before the due day has ended (23:00 UTC is midnight in London).
    clock.set(at("2026-04-21T22:59:00Z"));
    assert_eq!(app.raise_all_due().await, 0);
    // Both open findings reach the contract manager once; the resolved one never.
    clock.set(at("2026-04-21T23:00:00Z"));
    assert_eq!(app.raise_all_due().await, 2);
    assert_eq!(app.raise_due().await, 0, "each level once");
    let view = client
        .get_inspection(inspection(&recorded.inspection_id))
        .await
        .expect("read")
        .into_inner()
        .inspection
        .expect("the inspection");
    for finding in &view.findings {
        assert_eq!(finding.escalated_levels, ["contract_manager"]);
    }
    // The untidy area is put right: its ladder stops; courtesy's goes on to the head of service.
    client
        .resolve_inspection_finding(resolve_finding(
            &recorded.inspection_id,
            &view.findings[0].finding_id,
            "Site cleared and swept",
            "resolve-a-1",
        ))
        .await
        .expect("resolved");
    clock.set(at("2026-04-28T23:00:00Z"));
    assert_eq!(app.raise_all_due().await, 1);
    clock.set(at("2026-06-30T12:00:00Z"));
    assert_eq!(app.raise_all_due().await, 0, "the ladder has two levels");
    let view = client
        .get_inspection(inspection(&recorded.inspection_id))
        .await
        .expect("read")
        .into_inner()
        .inspection
        .expect("the inspection");
    assert_eq!(view.findings[0].escalated_levels, ["contract_manager"]);
    assert_eq!(
        view.findings[1].escalated_levels,
        ["contract_manager", "head_of_service"]
    );
    let escalated: Vec<v1::RecordedEvent> = whole_log(&app.channel)
        .await
        .into_iter()
        .filter(|event| event.event_type == "FindingEscalated")
        .collect();
    assert_eq!(escalated.len(), 3);
    assert!(escalated.iter().all(|event| {
        event
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.actor == "doorstep-notifier")
    }));

    // Each escalation reaches the webhook once, however many rounds run.
    let _server = serve_receiver(receiver.clone(), receiver_address(&app)).await;
    for _ in 0..3 {
        app.deliver_due().await;
    }
    let accepted = receiver
        .accepted
        .lock()
        .expect("the receiver's lock")
        .clone();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    assert!(
        accepted
            .iter()
            .all(|received| received.body["type"] == "inspection_finding.escalated")
    );
    let mut ids: Vec<&str> = accepted.iter().map(|r| r.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let to_manager = accepted
        .iter()
        .find(|received| {
            received.body["level"] == "contract_manager" && received.body["standard"] == "COURTESY"
        })
        .expect("courtesy's contract manager escalation");
    assert_eq!(
        to_manager.body["recipients"][0],
        "contracts@landlord.example"
    );
    assert_eq!(
        to_manager.body["inspection_id"],
        recorded.inspection_id.as_str()
    );

    // Lists: in the order of each inspection's last change; open findings only; by pages.
    let listed = client
        .list_inspections(v1::ListInspectionsRequest {
            min_position: Some(escalated[2].position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.inspections.len(), 2);
    let a = listed
        .inspections
        .iter()
        .find(|summary| summary.inspection_id == recorded.inspection_id)
        .expect("inspection a");
    assert_eq!(
        (a.met, a.not_met, a.not_observed, a.open_findings),
        (1, 2, 1, 1)
    );
    let open = client
        .list_inspections(v1::ListInspectionsRequest {
            open_findings_only: true,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(open.inspections.len(), 1);
    let first_page = client
        .list_inspections(v1::ListInspectionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(first_page.inspections.len(), 1);
    let second_page = client
        .list_inspections(v1::ListInspectionsRequest {
            page_size: 1,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(second_page.inspections.len(), 1);
    assert_ne!(
        first_page.inspections[0].inspection_id,
        second_page.inspections[0].inspection_id
    );

    // Contractors see their own inspections and findings, and nobody else's.
    let mut acme = inspections(&app.channel_for_contractor("acme-retrofit"));
    let own = acme
        .get_inspection(inspection(&recorded.inspection_id))
        .await
        .expect("acme reads its own")
        .into_inner()
        .inspection
        .expect("the inspection");
    assert_eq!(own.findings.len(), 2);
    assert_eq!(
        acme.list_inspections(v1::ListInspectionsRequest::default())
            .await
            .expect("acme lists its own")
            .into_inner()
            .inspections
            .len(),
        2
    );
    let mut brick = inspections(&app.channel_for_contractor("brick-and-co"));
    let hidden = brick
        .get_inspection(inspection(&recorded.inspection_id))
        .await
        .expect_err("another contractor's");
    assert_eq!(hidden.code(), Code::NotFound);
    assert!(
        brick
            .list_inspections(v1::ListInspectionsRequest::default())
            .await
            .expect("brick lists its own")
            .into_inner()
            .inspections
            .is_empty()
    );
    let named = brick
        .list_inspections(v1::ListInspectionsRequest {
            contractor_id: "acme-retrofit".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("naming another contractor");
    assert_eq!(named.code(), Code::PermissionDenied);
    let not_an_officer = acme
        .record_inspection(record_inspection("by-acme", untidy_job()))
        .await
        .expect_err("a contractor cannot record inspections");
    assert_eq!(not_an_officer.code(), Code::PermissionDenied);
}

/// The webhook address the server was configured with.
fn receiver_address(app: &TestApp) -> SocketAddr {
    let url = &app.settings().notifier.webhooks[0].url;
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("an address");
    authority.parse().expect("a socket address")
}

#[tokio::test]
async fn inspections_findings_and_their_escalations_on_sqlite() {
    let address = free_address();
    let clock = TestClock::at("2026-04-14T09:00:00Z");
    let app = spawn_app_with(|settings, _| notified(settings, address), clock.clone()).await;
    journey(app, clock, Receiver::default()).await;
}

#[tokio::test]
async fn inspections_findings_and_their_escalations_on_postgres() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let address = free_address();
    let clock = TestClock::at("2026-04-14T09:00:00Z");
    let app = doorstep_tests::spawn_app_on_database_with(
        database.url(),
        |settings| notified(settings, address),
        clock.clone(),
    )
    .await;
    journey(app, clock, Receiver::default()).await;
}

/// What one case does to a valid request.
type Breaks = Box<dyn Fn(&mut v1::RecordInspectionRequest)>;

/// A request one field away from valid is refused naming that field.
#[tokio::test]
async fn bad_inspections_are_refused_naming_the_field() {
    let clock = TestClock::at("2026-04-14T09:00:00Z");
    let app = spawn_app_with(|_, _| {}, clock).await;
    let mut client = officer(&app);
    let cases: Vec<(&str, Breaks)> = vec![
        (
            "details.contractor_id",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.contractor_id = "nobody-ltd".to_owned();
                }
            }),
        ),
        (
            "details.contract_reference",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.contract_reference = "NO-SUCH-CONTRACT".to_owned();
                }
            }),
        ),
        (
            "details.observations[1].standard",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.observations[1].standard = 99;
                }
            }),
        ),
        (
            "details.observations[1].standard",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.observations[1].standard = Tidiness as i32;
                }
            }),
        ),
        (
            "details.observations[0].result",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.observations[0].result = v1::ObservationResult::Unspecified as i32;
                }
            }),
        ),
        (
            "details.observations",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.observations.clear();
                }
            }),
        ),
        (
            "details.inspected_at",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.inspected_at = Some(doorstep_tests::timestamp("2026-04-15T09:00:00Z"));
                }
            }),
        ),
        (
            "details.uprn",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.uprn = "flat 3".to_owned();
                }
            }),
        ),
        (
            "details.inspecting_officer",
            Box::new(|request| {
                if let Some(details) = request.details.as_mut() {
                    details.inspecting_officer = " ".to_owned();
                }
            }),
        ),
        ("request_id", Box::new(|request| request.request_id.clear())),
        ("details", Box::new(|request| request.details = None)),
    ];
    for (field, break_it) in cases {
        let mut request = record_inspection("bad-1", untidy_job());
        break_it(&mut request);
        let refused = client
            .record_inspection(request)
            .await
            .expect_err("refused");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert_eq!(
            violated_field(&refused).as_deref(),
            Some(field),
            "{refused:?}"
        );
    }
    // A visit recorded for another contractor is not acme's to be inspected under.
    doorstep_api::v1::visit_service_client::VisitServiceClient::new(app.channel.clone())
        .record_visits(v1::RecordVisitsRequest {
            visits: vec![v1::Visit {
                visit_id: "V-BRICK-1".to_owned(),
                contractor_id: "brick-and-co".to_owned(),
                uprn: "100023336956".to_owned(),
                work_order_reference: "WO-1".to_owned(),
                visit_date: "2026-04-13".to_owned(),
            }],
        })
        .await
        .expect("recorded");
    let mut details = untidy_job();
    details.visit_id = "V-BRICK-1".to_owned();
    let refused = client
        .record_inspection(record_inspection("bad-visit", details))
        .await
        .expect_err("another contractor's visit");
    assert_eq!(
        violated_field(&refused).as_deref(),
        Some("details.visit_id")
    );

    let recorded = client
        .record_inspection(record_inspection("good-1", untidy_job()))
        .await
        .expect("recorded")
        .into_inner();
    let finding_id = recorded.findings[0].finding_id.clone();
    for (field, request) in [
        (
            "inspection_id",
            resolve_finding("not-a-uuid", &finding_id, "done", "r-1"),
        ),
        (
            "finding_id",
            resolve_finding(
                &recorded.inspection_id,
                &uuid::Uuid::nil().to_string(),
                "done",
                "r-2",
            ),
        ),
        (
            "resolution",
            resolve_finding(&recorded.inspection_id, &finding_id, "", "r-3"),
        ),
        (
            "resolved_at",
            v1::ResolveInspectionFindingRequest {
                // Before the inspection that opened it.
                resolved_at: Some(doorstep_tests::timestamp("2026-04-13T09:00:00Z")),
                ..resolve_finding(&recorded.inspection_id, &finding_id, "done", "r-4")
            },
        ),
    ] {
        let refused = client
            .resolve_inspection_finding(request)
            .await
            .expect_err("refused");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert_eq!(violated_field(&refused).as_deref(), Some(field));
    }
    let missing = client
        .get_inspection(inspection(&uuid::Uuid::nil().to_string()))
        .await
        .expect_err("no such inspection");
    assert_eq!(missing.code(), Code::NotFound);
    let unreason = client
        .correct_inspection(v1::CorrectInspectionRequest {
            inspection_id: recorded.inspection_id.clone(),
            details: Some(untidy_job()),
            reason: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("a correction needs its reason");
    assert_eq!(violated_field(&unreason).as_deref(), Some("reason"));
    let token = client
        .list_inspections(v1::ListInspectionsRequest {
            page_token: "not-ours".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a foreign page token");
    assert_eq!(violated_field(&token).as_deref(), Some("page_token"));
}

/// A correction that makes a not-met standard met withdraws its finding, which then neither
/// escalates nor can be resolved.
#[tokio::test]
async fn a_corrected_observation_withdraws_its_finding() {
    let address = free_address();
    let clock = TestClock::at("2026-04-14T09:00:00Z");
    let app = spawn_app_with(|settings, _| notified(settings, address), clock.clone()).await;
    let mut client = officer(&app);
    let recorded = client
        .record_inspection(record_inspection("withdraw-1", untidy_job()))
        .await
        .expect("recorded")
        .into_inner();
    let mut tidy = untidy_job();
    tidy.observations[0].result = Met as i32;
    let corrected = client
        .correct_inspection(v1::CorrectInspectionRequest {
            inspection_id: recorded.inspection_id.clone(),
            details: Some(tidy),
            reason: "Tidiness was recorded against the wrong job".to_owned(),
            request_id: "withdraw-correct".to_owned(),
            expected_version: None,
        })
        .await
        .expect("corrected")
        .into_inner();
    let findings = corrected.inspection.expect("the inspection").findings;
    assert_eq!(findings[0].state, v1::FindingState::Withdrawn as i32);
    clock.set(at("2026-06-30T12:00:00Z"));
    assert_eq!(
        app.raise_all_due().await,
        0,
        "a withdrawn finding escalates nothing"
    );
    let refused = client
        .resolve_inspection_finding(resolve_finding(
            &recorded.inspection_id,
            &findings[0].finding_id,
            "done",
            "withdraw-resolve",
        ))
        .await
        .expect_err("nothing to resolve");
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} is not {expected}"
    );
}

/// Six standards, all met.
fn all_met() -> Vec<v1::Observation> {
    [
        Courtesy,
        v1::ServiceStandard::NoSmoking,
        Protection,
        Tidiness,
        Parking,
        GatesSecured,
    ]
    .into_iter()
    .map(|standard| observation(standard, Met))
    .collect()
}

/// What we saw beside what residents told us: acme-retrofit has no complaints but most of what
/// the officers checked was not met; brick-and-co's work was nearly all met. The figures are
/// recounted here from the inspections sent, and the disagreement decided by its definition.
async fn what_we_saw(app: TestApp) {
    let mut client = officer(&app);
    let visits = |contractor: &str| {
        (1..=20)
            .map(|n| v1::Visit {
                visit_id: format!("V-{contractor}-{n}"),
                contractor_id: contractor.to_owned(),
                uprn: format!("1000233369{n:02}"),
                work_order_reference: format!("WO-{n}"),
                visit_date: "2026-04-13".to_owned(),
            })
            .collect::<Vec<_>>()
    };
    let mut visit_client =
        doorstep_api::v1::visit_service_client::VisitServiceClient::new(app.channel.clone());
    for contractor in ["acme-retrofit", "brick-and-co"] {
        visit_client
            .record_visits(v1::RecordVisitsRequest {
                visits: visits(contractor),
            })
            .await
            .expect("visits recorded");
    }
    let acme_inspections = [
        vec![
            observation(Courtesy, NotMet),
            observation(Tidiness, NotMet),
            observation(Protection, NotMet),
            observation(Parking, Met),
        ],
        vec![
            observation(GatesSecured, NotMet),
            observation(v1::ServiceStandard::Identification, NotMet),
            observation(v1::ServiceStandard::NoSmoking, Met),
            observation(Parking, NotObserved),
        ],
    ];
    for (index, observations) in acme_inspections.iter().enumerate() {
        client
            .record_inspection(record_inspection(
                &format!("acme-{index}"),
                inspection_details(
                    "acme-retrofit",
                    "2026-04-14T08:00:00Z",
                    observations.clone(),
                ),
            ))
            .await
            .expect("recorded");
    }
    let mut brick_ids = Vec::new();
    for index in 0..3 {
        let recorded = client
            .record_inspection(record_inspection(
                &format!("brick-{index}"),
                inspection_details("brick-and-co", "2026-04-15T08:00:00Z", all_met()),
            ))
            .await
            .expect("recorded")
            .into_inner();
        brick_ids.push(recorded.inspection_id);
    }
    // A correction replaces what the figures count: one of brick's standards was not met after
    // all.
    let mut corrected = all_met();
    corrected[3].result = NotMet as i32;
    let correction = client
        .correct_inspection(v1::CorrectInspectionRequest {
            inspection_id: brick_ids[2].clone(),
            details: Some(inspection_details(
                "brick-and-co",
                "2026-04-15T08:00:00Z",
                corrected,
            )),
            reason: "Tidiness was marked met by mistake".to_owned(),
            request_id: "brick-correct".to_owned(),
            expected_version: None,
        })
        .await
        .expect("corrected")
        .into_inner();

    // The hand count: every observation sent, the corrected inspection's latest version only.
    let mut sent: Vec<(&str, Vec<(i32, i32)>)> = acme_inspections
        .iter()
        .map(|observations| {
            (
                "acme-retrofit",
                observations
                    .iter()
                    .map(|o| (o.standard, o.result))
                    .collect(),
            )
        })
        .collect();
    for index in 0..3 {
        let mut observations: Vec<(i32, i32)> =
            all_met().iter().map(|o| (o.standard, o.result)).collect();
        if index == 2 {
            observations[3].1 = NotMet as i32;
        }
        sent.push(("brick-and-co", observations));
    }
    let count = |contractor: &str| {
        let mut observed = 0_u64;
        let mut not_met = 0_u64;
        let mut inspections = 0_u64;
        for (who, observations) in &sent {
            if *who != contractor {
                continue;
            }
            inspections += 1;
            for (_, result) in observations {
                if *result == Met as i32 {
                    observed += 1;
                } else if *result == NotMet as i32 {
                    observed += 1;
                    not_met += 1;
                }
            }
        }
        (inspections, observed, not_met)
    };
    let (programme_met, programme_observed) = ["acme-retrofit", "brick-and-co"]
        .into_iter()
        .map(count)
        .fold((0, 0), |(met, observed), (_, o, n)| {
            (met + o - n, observed + o)
        });
    let programme_share = programme_met as f64 / programme_observed as f64;

    let mut performance =
        doorstep_api::v1::performance_service_client::PerformanceServiceClient::new(
            app.channel_as(&["manager"]),
        );
    let listed = performance
        .list_contractor_performance(v1::ListContractorPerformanceRequest {
            from_month: "2026-04".to_owned(),
            to_month: "2026-04".to_owned(),
            min_visits: 1,
            min_position: Some(correction.position),
        })
        .await
        .expect("listed")
        .into_inner();
    for contractor in ["acme-retrofit", "brick-and-co"] {
        let figures = performance
            .get_contractor_performance(v1::GetContractorPerformanceRequest {
                contractor_id: contractor.to_owned(),
                from_month: "2026-04".to_owned(),
                to_month: "2026-04".to_owned(),
                min_position: Some(correction.position),
            })
            .await
            .expect("figures")
            .into_inner();
        let saw = figures.inspections.expect("what we saw");
        let (inspections, observed, not_met) = count(contractor);
        assert_eq!(
            (saw.inspections, saw.observations, saw.not_met),
            (inspections, observed, not_met),
            "{contractor}"
        );
        let share = saw.share_met.expect("share met");
        let (value, lower, upper) = wilson(observed - not_met, observed);
        close(share.value, value, "share met");
        close(share.lower, lower, "its lower bound");
        close(share.upper, upper, "its upper bound");
        let coverage = saw.coverage_per_100_visits.expect("coverage");
        close(
            coverage.value,
            inspections as f64 * 100.0 / 20.0,
            "coverage",
        );
        assert_eq!(saw.coverage_target_per_100_visits, 12.0);
        assert_eq!(
            saw.coverage_below_target,
            inspections as f64 * 100.0 / 20.0 < 12.0
        );
        close(
            saw.programme_share_met.expect("programme").value,
            programme_share,
            "programme share met",
        );
        // No complaints at all: what residents told us is within the funnel for both.
        let standing = listed
            .contractors
            .iter()
            .find(|standing| standing.contractor_id == contractor)
            .expect("listed");
        assert_eq!(standing.funnel_status, v1::FunnelStatus::Within as i32);
        let expected = if upper < programme_share {
            v1::EvidenceAgreement::FewComplaintsPoorInspections
        } else {
            v1::EvidenceAgreement::Consistent
        };
        assert_eq!(saw.agreement, expected as i32, "{contractor}");
        assert_eq!(
            saw.sources_disagree,
            expected == v1::EvidenceAgreement::FewComplaintsPoorInspections
        );
        assert_eq!(standing.inspections.as_ref(), Some(&saw), "{contractor}");
        // Per standard, from the same hand count: every standard seen met or not met is listed,
        // so the loop below cannot pass over an empty or short list.
        for (who, observations) in &sent {
            for (seen, result) in observations {
                if *who == contractor && (*result == Met as i32 || *result == NotMet as i32) {
                    assert!(
                        saw.standards.iter().any(|listed| listed.standard == *seen),
                        "{contractor}: standard {seen} was observed but is not listed"
                    );
                }
            }
        }
        for standard in &saw.standards {
            let mut expected = (0_u64, 0_u64);
            for (who, observations) in &sent {
                for (seen, result) in observations {
                    if *who == contractor && *seen == standard.standard {
                        if *result == Met as i32 {
                            expected.0 += 1;
                        } else if *result == NotMet as i32 {
                            expected.0 += 1;
                            expected.1 += 1;
                        }
                    }
                }
            }
            assert_eq!((standard.observations, standard.not_met), expected);
        }
    }
    let acme = listed
        .contractors
        .iter()
        .find(|standing| standing.contractor_id == "acme-retrofit")
        .and_then(|standing| standing.inspections.clone())
        .expect("acme's");
    assert!(
        acme.sources_disagree,
        "few complaints but many not met: {acme:?}"
    );
    assert!(acme.coverage_below_target);
}

fn coverage_target_of_twelve(settings: &mut Settings) {
    settings.inspections.coverage_target_per_100_visits = 12.0;
}

#[tokio::test]
async fn what_we_saw_beside_what_residents_told_us_on_sqlite() {
    let clock = TestClock::at("2026-04-20T12:00:00Z");
    let app = spawn_app_with(|settings, _| coverage_target_of_twelve(settings), clock).await;
    what_we_saw(app).await;
}

#[tokio::test]
async fn what_we_saw_beside_what_residents_told_us_on_postgres() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let clock = TestClock::at("2026-04-20T12:00:00Z");
    let app = doorstep_tests::spawn_app_on_database_with(
        database.url(),
        coverage_target_of_twelve,
        clock,
    )
    .await;
    what_we_saw(app).await;
}
