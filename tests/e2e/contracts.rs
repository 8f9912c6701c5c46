//! What a contract says beyond its standards, through the real server on SQLite and PostgreSQL:
//! who leads resident liaison (and complaint handling grouped by it, counted here by hand), the
//! resident champions' sign-off of its standards, and the equality conditions, training and
//! audits behind it.

use std::collections::BTreeMap;
use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_server::settings::Settings;
use doorstep_tests::{
    TestApp, TestClock, contractor_profile, gate_left_open, notify_on_test_rounds, requests,
    spawn_app_on_database_with, spawn_app_with, timestamp, violated_field, whole_log, wilson,
};
use tonic::Code;

/// A test's server on one backend; the PostgreSQL database lives as long as the server.
struct Served {
    app: TestApp,
    _database: Option<doorstep_test_postgres::TestDatabase>,
}

async fn on_sqlite(configure: impl FnOnce(&mut Settings), clock: Arc<TestClock>) -> Served {
    Served {
        app: spawn_app_with(|settings, _| configure(settings), clock).await,
        _database: None,
    }
}

async fn on_postgres(
    configure: impl FnOnce(&mut Settings),
    clock: Arc<TestClock>,
) -> Option<Served> {
    let database = doorstep_test_postgres::fresh_database().await?;
    let app = spawn_app_on_database_with(database.url(), configure, clock).await;
    Some(Served {
        app,
        _database: Some(database),
    })
}

fn contractors(
    app: &TestApp,
) -> ContractorServiceClient<doorstep_server::auth::client::AuthenticatedChannel> {
    ContractorServiceClient::new(app.channel.clone())
}

/// A contract with a liaison lead and contact, and every equality condition accepted.
fn contract(reference: &str, lead: v1::LiaisonLead, standards: Vec<i32>) -> v1::ContractTerms {
    v1::ContractTerms {
        reference: reference.to_owned(),
        standards,
        liaison_lead: lead as i32,
        liaison_contact_name: if lead == v1::LiaisonLead::Unspecified {
            String::new()
        } else {
            "Robin Liaison".to_owned()
        },
        equality_conditions: Some(v1::EqualityConditions {
            equality_training: true,
            equality_audits: true,
            code_of_conduct: true,
            accepted_date: "2026-03-01".to_owned(),
        }),
    }
}

/// Replaces a contractor's contracts, keeping the rest of its test profile.
async fn set_contracts(
    app: &TestApp,
    contractor_id: &str,
    contracts: Vec<v1::ContractTerms>,
) -> Result<v1::UpdateContractorResponse, tonic::Status> {
    contractors(app)
        .update_contractor(v1::UpdateContractorRequest {
            contractor_id: contractor_id.to_owned(),
            profile: Some(v1::ContractorProfile {
                contracts,
                ..contractor_profile(contractor_id)
            }),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get(app: &TestApp, contractor_id: &str) -> v1::Contractor {
    contractors(app)
        .get_contractor(v1::GetContractorRequest {
            contractor_id: contractor_id.to_owned(),
        })
        .await
        .expect("the contractor is read")
        .into_inner()
        .contractor
        .expect("a contractor")
}

/// ListContractors' summary of one contractor once the read model has `position`.
async fn listed(app: &TestApp, contractor_id: &str, position: u64) -> v1::ContractorSummary {
    contractors(app)
        .list_contractors(v1::ListContractorsRequest {
            min_position: Some(position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .contractors
        .into_iter()
        .find(|summary| summary.contractor_id == contractor_id)
        .expect("the contractor is listed")
}

fn all_standards() -> Vec<i32> {
    (1..=9).collect()
}

fn sign_off(standards: Vec<i32>) -> v1::StandardsSignOff {
    v1::StandardsSignOff {
        contract_reference: "RETRO-2026-01".to_owned(),
        champions: vec![
            v1::ResidentChampion {
                reference: "RC-0042".to_owned(),
                published_name: "Winnie Champion".to_owned(),
            },
            v1::ResidentChampion {
                reference: "RC-0043".to_owned(),
                published_name: String::new(),
            },
        ],
        signed_off_date: "2026-03-20".to_owned(),
        standards,
        comments: "Parking standard reworded after the residents' meeting".to_owned(),
    }
}

async fn record_sign_off(
    app: &TestApp,
    request_id: &str,
    sign_off: v1::StandardsSignOff,
) -> Result<v1::RecordStandardsSignOffResponse, tonic::Status> {
    contractors(app)
        .record_standards_sign_off(v1::RecordStandardsSignOffRequest {
            contractor_id: "acme-retrofit".to_owned(),
            request_id: request_id.to_owned(),
            sign_off: Some(sign_off),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

fn refused_on(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        violated_field(&status).as_deref(),
        Some(field),
        "{status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Contract terms, sign-off and training.

async fn contract_terms_sign_off_and_training(app: &TestApp) {
    // Liaison lead and contact go together; equality conditions need one accepted and a date.
    let mut no_contact = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    no_contact.liaison_contact_name = String::new();
    refused_on(
        set_contracts(app, "acme-retrofit", vec![no_contact]).await,
        "profile.contracts[0].liaison_contact_name",
    );
    let mut no_lead = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    no_lead.liaison_lead = v1::LiaisonLead::Unspecified as i32;
    refused_on(
        set_contracts(app, "acme-retrofit", vec![no_lead]).await,
        "profile.contracts[0].liaison_lead",
    );
    let mut unknown_lead = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    unknown_lead.liaison_lead = 9;
    refused_on(
        set_contracts(app, "acme-retrofit", vec![unknown_lead]).await,
        "profile.contracts[0].liaison_lead",
    );
    let mut nothing_accepted = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    nothing_accepted.equality_conditions = Some(v1::EqualityConditions {
        accepted_date: "2026-03-01".to_owned(),
        ..Default::default()
    });
    refused_on(
        set_contracts(app, "acme-retrofit", vec![nothing_accepted]).await,
        "profile.contracts[0].equality_conditions",
    );
    let mut accepted_later = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    if let Some(conditions) = accepted_later.equality_conditions.as_mut() {
        conditions.accepted_date = "2099-01-01".to_owned();
    }
    refused_on(
        set_contracts(app, "acme-retrofit", vec![accepted_later]).await,
        "profile.contracts[0].equality_conditions.accepted_date",
    );

    let terms = contract("RETRO-2026-01", v1::LiaisonLead::InHouse, all_standards());
    let updated = set_contracts(app, "acme-retrofit", vec![terms.clone()])
        .await
        .expect("contract terms recorded");
    let acme = get(app, "acme-retrofit").await;
    let profile = acme.profile.clone().expect("a profile");
    assert_eq!(profile.contracts, vec![terms]);
    assert_eq!(
        acme.contract_sign_offs,
        vec![v1::ContractSignOff {
            contract_reference: "RETRO-2026-01".to_owned(),
            signed_off: false,
            latest_sign_off: None,
        }],
        "a contract starts not signed off"
    );
    assert_eq!(
        listed(app, "acme-retrofit", updated.position)
            .await
            .contracts_not_signed_off,
        ["RETRO-2026-01"]
    );

    // The sign-off names its champions, the contract and exactly its standards.
    refused_on(
        record_sign_off(
            app,
            "",
            v1::StandardsSignOff {
                champions: Vec::new(),
                ..sign_off(all_standards())
            },
        )
        .await,
        "sign_off.champions",
    );
    let mut unlisted = sign_off(all_standards());
    unlisted.champions[0].reference = "RC 42".to_owned();
    refused_on(
        record_sign_off(app, "", unlisted).await,
        "sign_off.champions[0].reference",
    );
    refused_on(
        record_sign_off(
            app,
            "",
            v1::StandardsSignOff {
                signed_off_date: "2099-01-01".to_owned(),
                ..sign_off(all_standards())
            },
        )
        .await,
        "sign_off.signed_off_date",
    );
    refused_on(
        record_sign_off(app, "", sign_off(vec![1, 2, 3])).await,
        "sign_off.standards",
    );
    refused_on(
        record_sign_off(
            app,
            "",
            v1::StandardsSignOff {
                contract_reference: "RETRO-1999-01".to_owned(),
                ..sign_off(all_standards())
            },
        )
        .await,
        "sign_off.contract_reference",
    );
    let reversed: Vec<i32> = all_standards().into_iter().rev().collect();
    let signed = record_sign_off(app, "sign-off-1", sign_off(reversed.clone()))
        .await
        .expect("signed off");
    let retried = record_sign_off(app, "sign-off-1", sign_off(reversed.clone()))
        .await
        .expect("a retry returns the first result");
    assert!(retried.duplicate);
    assert_eq!(
        (retried.version, retried.position),
        (signed.version, signed.position)
    );
    let reused = record_sign_off(
        app,
        "sign-off-1",
        v1::StandardsSignOff {
            comments: "Something else".to_owned(),
            ..sign_off(reversed.clone())
        },
    )
    .await
    .expect_err("another sign-off under the same request id");
    assert_eq!(reused.code(), Code::AlreadyExists);

    let acme = get(app, "acme-retrofit").await;
    assert!(acme.contract_sign_offs[0].signed_off);
    let latest = acme.contract_sign_offs[0]
        .latest_sign_off
        .clone()
        .expect("the sign-off is shown");
    assert_eq!(latest.champions[0].published_name, "Winnie Champion");
    assert_eq!(
        latest.champions[1],
        v1::ResidentChampion {
            reference: "RC-0043".to_owned(),
            published_name: String::new(),
        },
        "a champion who did not agree to publish a name is only a reference"
    );
    assert!(
        listed(app, "acme-retrofit", signed.position)
            .await
            .contracts_not_signed_off
            .is_empty()
    );

    // The same standards in another order leave it signed off; a standard dropped does not.
    let shuffled = set_contracts(
        app,
        "acme-retrofit",
        vec![contract(
            "RETRO-2026-01",
            v1::LiaisonLead::InHouse,
            reversed,
        )],
    )
    .await
    .expect("updated");
    assert!(get(app, "acme-retrofit").await.contract_sign_offs[0].signed_off);
    assert!(
        listed(app, "acme-retrofit", shuffled.position)
            .await
            .contracts_not_signed_off
            .is_empty()
    );
    let fewer: Vec<i32> = (1..=8).collect();
    let changed = set_contracts(
        app,
        "acme-retrofit",
        vec![contract(
            "RETRO-2026-01",
            v1::LiaisonLead::InHouse,
            fewer.clone(),
        )],
    )
    .await
    .expect("a standard dropped");
    let acme = get(app, "acme-retrofit").await;
    assert!(!acme.contract_sign_offs[0].signed_off, "not signed off");
    assert_eq!(
        acme.contract_sign_offs[0]
            .latest_sign_off
            .as_ref()
            .map(|s| s.standards.len()),
        Some(9),
        "the stale sign-off still says what was signed"
    );
    assert_eq!(
        listed(app, "acme-retrofit", changed.position)
            .await
            .contracts_not_signed_off,
        ["RETRO-2026-01"]
    );
    let again = record_sign_off(app, "sign-off-2", sign_off(fewer))
        .await
        .expect("signed off again");
    assert!(get(app, "acme-retrofit").await.contract_sign_offs[0].signed_off);
    assert!(
        listed(app, "acme-retrofit", again.position)
            .await
            .contracts_not_signed_off
            .is_empty()
    );
    // A standard added is a change too.
    let added = set_contracts(
        app,
        "acme-retrofit",
        vec![contract(
            "RETRO-2026-01",
            v1::LiaisonLead::InHouse,
            all_standards(),
        )],
    )
    .await
    .expect("a standard added");
    assert!(!get(app, "acme-retrofit").await.contract_sign_offs[0].signed_off);
    assert_eq!(
        listed(app, "acme-retrofit", added.position)
            .await
            .contracts_not_signed_off,
        ["RETRO-2026-01"]
    );
    let again = record_sign_off(app, "sign-off-3", sign_off(all_standards()))
        .await
        .expect("signed off once more");
    assert!(
        listed(app, "acme-retrofit", again.position)
            .await
            .contracts_not_signed_off
            .is_empty()
    );

    // Training records.
    let training = |staff_trained: u32, course: &str| v1::RecordEqualityTrainingRequest {
        contractor_id: "acme-retrofit".to_owned(),
        request_id: format!("training-{staff_trained}-{}", course.len()),
        training: Some(v1::EqualityTraining {
            training_date: "2026-04-14".to_owned(),
            course: course.to_owned(),
            staff_trained,
        }),
        ..Default::default()
    };
    let mut client = contractors(app);
    refused_on(
        client
            .record_equality_training(training(0, "Equality and diversity"))
            .await,
        "training.staff_trained",
    );
    refused_on(
        client.record_equality_training(training(12, "")).await,
        "training.course",
    );
    let first = client
        .record_equality_training(training(12, "Equality and diversity"))
        .await
        .expect("training recorded")
        .into_inner();
    let retried = client
        .record_equality_training(training(12, "Equality and diversity"))
        .await
        .expect("retried")
        .into_inner();
    assert!(retried.duplicate);
    assert_eq!(retried.version, first.version);
    assert_eq!(
        get(app, "acme-retrofit").await.equality_training,
        vec![v1::EqualityTraining {
            training_date: "2026-04-14".to_owned(),
            course: "Equality and diversity".to_owned(),
            staff_trained: 12,
        }]
    );
    let missing = client
        .record_equality_training(v1::RecordEqualityTrainingRequest {
            contractor_id: "nobody".to_owned(),
            ..training(3, "Code of conduct")
        })
        .await
        .expect_err("no such contractor");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn contract_terms_sign_off_and_training_on_sqlite() {
    let served = on_sqlite(|_| {}, TestClock::at("2026-06-10T12:00:00Z")).await;
    contract_terms_sign_off_and_training(&served.app).await;
}

#[tokio::test]
async fn contract_terms_sign_off_and_training_on_postgres() {
    let Some(served) = on_postgres(|_| {}, TestClock::at("2026-06-10T12:00:00Z")).await else {
        return;
    };
    contract_terms_sign_off_and_training(&served.app).await;
}

// ---------------------------------------------------------------------------------------------
// The equality audit flag.

async fn audit(app: &TestApp, contractor_id: &str, date: &str) -> u64 {
    contractors(app)
        .record_equality_audit(v1::RecordEqualityAuditRequest {
            contractor_id: contractor_id.to_owned(),
            audit: Some(v1::EqualityAudit {
                audit_date: date.to_owned(),
                auditor: "Equality and Diversity Team".to_owned(),
                outcome: v1::AuditOutcome::Satisfactory as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("audited")
        .into_inner()
        .position
}

async fn overdue(app: &TestApp, contractor_id: &str, position: u64) -> (bool, bool) {
    (
        listed(app, contractor_id, position)
            .await
            .equality_audit_overdue,
        get(app, contractor_id).await.equality_audit_overdue,
    )
}

/// With a six-month window: never audited is overdue; an audit dated within six months of today
/// is not; as the clock moves past six months from it, the contractor is overdue again.
async fn the_audit_flag_follows_the_clock(app: &TestApp, clock: &TestClock) {
    let position = audit(app, "acme-retrofit", "2026-01-15").await;
    assert_eq!(overdue(app, "brick-and-co", position).await, (true, true));
    assert_eq!(
        overdue(app, "acme-retrofit", position).await,
        (false, false)
    );
    // 15 July: 15 January is six months back, still in time; the 16th is not.
    clock.set("2026-07-15T12:00:00Z".parse().expect("a time"));
    assert_eq!(
        overdue(app, "acme-retrofit", position).await,
        (false, false)
    );
    clock.set("2026-07-16T12:00:00Z".parse().expect("a time"));
    assert_eq!(overdue(app, "acme-retrofit", position).await, (true, true));
    let position = audit(app, "acme-retrofit", "2026-07-01").await;
    assert_eq!(
        overdue(app, "acme-retrofit", position).await,
        (false, false)
    );
}

fn six_months(settings: &mut Settings) {
    settings.equality.audit_max_age_months = 6;
}

#[tokio::test]
async fn the_audit_flag_follows_the_clock_on_sqlite() {
    let clock = TestClock::at("2026-06-10T12:00:00Z");
    let served = on_sqlite(six_months, clock.clone()).await;
    the_audit_flag_follows_the_clock(&served.app, &clock).await;
}

#[tokio::test]
async fn the_audit_flag_follows_the_clock_on_postgres() {
    let clock = TestClock::at("2026-06-10T12:00:00Z");
    let Some(served) = on_postgres(six_months, clock.clone()).await else {
        return;
    };
    the_audit_flag_follows_the_clock(&served.app, &clock).await;
}

// ---------------------------------------------------------------------------------------------
// Complaint handling by liaison lead, against a hand count.

/// Logs a complaint about `contractor_id` received at `received_at` and returns its id.
async fn log(app: &TestApp, key: &str, contractor_id: &str, received_at: &str) -> String {
    let mut request = gate_left_open(key, received_at);
    request.contractor_id = contractor_id.to_owned();
    request.visit_id = None;
    app.client
        .clone()
        .log_complaint(request)
        .await
        .expect("logged")
        .into_inner()
        .complaint_id
}

async fn acknowledge(app: &TestApp, complaint_id: &str, on: &str) {
    app.client
        .clone()
        .acknowledge_complaint(requests::acknowledgement(
            complaint_id,
            v1::Stage::One,
            "Officer One",
            Some(&format!("{on}T09:00:00Z")),
        ))
        .await
        .expect("acknowledged");
}

async fn respond(app: &TestApp, complaint_id: &str, on: &str) {
    let mut client = app.client.clone();
    client
        .record_findings(requests::gates_finding(
            complaint_id,
            v1::FindingOutcome::Upheld,
            "The gate was left open",
        ))
        .await
        .expect("finding recorded");
    client
        .issue_response(requests::response(
            complaint_id,
            "Upheld",
            Some(&format!("{on}T10:00:00Z")),
        ))
        .await
        .expect("responded");
}

fn assert_proportion(actual: Option<&v1::Proportion>, count: u64, total: u64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: a proportion"));
    assert_eq!((actual.count, actual.total), (count, total), "{what}");
    if total == 0 {
        assert!(!actual.defined, "{what}: nothing to divide");
        return;
    }
    let (value, lower, upper) = wilson(count, total);
    assert!(actual.defined, "{what}");
    for (got, expected) in [
        (actual.value, value),
        (actual.lower, lower),
        (actual.upper, upper),
    ] {
        assert!((got - expected).abs() < 1e-9, "{what}: {actual:?}");
    }
}

/// What the test expects of one lead.
struct Expected {
    contractors: u32,
    complaints: u64,
    answered: u64,
    answered_in_time: u64,
    median_to_acknowledge: Option<f64>,
    median_to_respond: Option<f64>,
    escalated: u64,
}

/// June 2026 has no bank holiday: Monday 1 June is day 0 of every complaint received that day.
///
/// - acme-retrofit, in-house lead: c1 acknowledged day 2 (3 June), answered day 5 (8 June), in
///   time; c2 acknowledged day 3 (4 June, response due 18 June), answered day 15 (22 June), late,
///   then taken to stage 2.
/// - brick-and-co, contractor lead: c3 acknowledged day 1, answered day 4; c4 never acknowledged.
/// - cladco, two contracts with different leads: c5 is unknown.
/// - acme-retrofit then moves to a contractor lead: c1 and c2 stay in-house; c6 (received
///   Wednesday 3 June, acknowledged on the 5th: 2 working days) counts for the contractor lead.
async fn liaison_leads_compare_as_counted_by_hand(app: &TestApp) {
    for (contractor_id, lead) in [
        ("acme-retrofit", v1::LiaisonLead::InHouse),
        ("brick-and-co", v1::LiaisonLead::Contractor),
    ] {
        set_contracts(
            app,
            contractor_id,
            vec![contract("RETRO-2026-01", lead, all_standards())],
        )
        .await
        .expect("lead recorded");
    }
    contractors(app)
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: "cladco".to_owned(),
            profile: Some(v1::ContractorProfile {
                contracts: vec![
                    contract("CLAD-1", v1::LiaisonLead::InHouse, all_standards()),
                    contract("CLAD-2", v1::LiaisonLead::Contractor, all_standards()),
                ],
                ..contractor_profile("cladco")
            }),
            request_id: "register-cladco".to_owned(),
        })
        .await
        .expect("registered");

    let c1 = log(app, "c1", "acme-retrofit", "2026-06-01T09:00:00Z").await;
    acknowledge(app, &c1, "2026-06-03").await;
    respond(app, &c1, "2026-06-08").await;
    let c2 = log(app, "c2", "acme-retrofit", "2026-06-01T10:00:00Z").await;
    acknowledge(app, &c2, "2026-06-04").await;
    respond(app, &c2, "2026-06-22").await;
    app.client
        .clone()
        .request_stage_two(v1::RequestStageTwoRequest {
            complaint_id: c2.clone(),
            effective_at: Some(timestamp("2026-06-23T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("taken to stage 2");
    let c3 = log(app, "c3", "brick-and-co", "2026-06-01T11:00:00Z").await;
    acknowledge(app, &c3, "2026-06-02").await;
    respond(app, &c3, "2026-06-05").await;
    let c4 = log(app, "c4", "brick-and-co", "2026-06-01T12:00:00Z").await;
    let c5 = log(app, "c5", "cladco", "2026-06-02T09:00:00Z").await;
    set_contracts(
        app,
        "acme-retrofit",
        vec![contract(
            "RETRO-2026-01",
            v1::LiaisonLead::Contractor,
            all_standards(),
        )],
    )
    .await
    .expect("lead changed");
    let c6 = log(app, "c6", "acme-retrofit", "2026-06-03T09:00:00Z").await;
    acknowledge(app, &c6, "2026-06-05").await;

    // The notifier raises what is due by the test's clock (24 June) on the open clocks.
    let head = whole_log(&app.channel)
        .await
        .last()
        .map_or(0, |event| event.position);
    app.read_models_reach(head).await;
    assert!(app.raise_all_due().await > 0, "escalations were due");
    let head = whole_log(&app.channel)
        .await
        .last()
        .map_or(0, |event| event.position);

    // Escalations by lead, from the escalation list and the leads this test gave.
    let lead_of: BTreeMap<&str, v1::LiaisonLead> = [
        (&c1, v1::LiaisonLead::InHouse),
        (&c2, v1::LiaisonLead::InHouse),
        (&c3, v1::LiaisonLead::Contractor),
        (&c4, v1::LiaisonLead::Contractor),
        (&c5, v1::LiaisonLead::Unspecified),
        (&c6, v1::LiaisonLead::Contractor),
    ]
    .into_iter()
    .map(|(id, lead)| (id.as_str(), lead))
    .collect();
    let escalations = EscalationServiceClient::new(app.channel.clone())
        .list_escalations(v1::ListEscalationsRequest {
            page_size: 500,
            min_position: Some(head),
            ..Default::default()
        })
        .await
        .expect("escalations listed")
        .into_inner()
        .escalations;
    let mut escalated_by_lead: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
    for escalation in &escalations {
        let lead = lead_of[escalation.complaint_id.as_str()];
        let due_at = escalation.due_at.as_ref().expect("a due time");
        // Every time here is in British Summer Time, UTC+1: the step fell due after its deadline
        // when it was due on a later date in England.
        let due = chrono::DateTime::from_timestamp(due_at.seconds, 0).expect("a time")
            + chrono::Duration::hours(1);
        let past_deadline = due.date_naive().to_string() > escalation.deadline_date;
        let counts = escalated_by_lead.entry(lead as i32).or_default();
        counts.0 += 1;
        counts.1 += u64::from(past_deadline);
    }
    assert!(
        escalated_by_lead.contains_key(&(v1::LiaisonLead::Contractor as i32))
            && escalated_by_lead.contains_key(&(v1::LiaisonLead::Unspecified as i32)),
        "c4, c5 and c6 waited past their deadlines: {escalations:?}"
    );

    let compared = PerformanceServiceClient::new(app.channel.clone())
        .compare_liaison_leads(v1::CompareLiaisonLeadsRequest {
            from_month: "2026-06".to_owned(),
            to_month: "2026-06".to_owned(),
            min_position: Some(head),
        })
        .await
        .expect("compared")
        .into_inner();
    let leads: Vec<i32> = compared.leads.iter().map(|l| l.liaison_lead).collect();
    assert_eq!(
        leads,
        [
            v1::LiaisonLead::InHouse as i32,
            v1::LiaisonLead::Contractor as i32,
            v1::LiaisonLead::Unspecified as i32
        ]
    );
    let expected = [
        Expected {
            contractors: 1,
            complaints: 2,
            answered: 2,
            answered_in_time: 1,
            median_to_acknowledge: Some(2.5),
            median_to_respond: Some(10.0),
            escalated: 1,
        },
        Expected {
            contractors: 2,
            complaints: 3,
            answered: 1,
            answered_in_time: 1,
            median_to_acknowledge: Some(1.5),
            median_to_respond: Some(4.0),
            escalated: 0,
        },
        Expected {
            contractors: 1,
            complaints: 1,
            answered: 0,
            answered_in_time: 0,
            median_to_acknowledge: None,
            median_to_respond: None,
            escalated: 0,
        },
    ];
    for (actual, expected) in compared.leads.iter().zip(expected) {
        let what = format!("lead {}", actual.liaison_lead);
        assert_eq!(actual.contractors, expected.contractors, "{what}");
        assert_eq!(actual.complaints, expected.complaints, "{what}");
        assert_proportion(
            actual.answered_within_code.as_ref(),
            expected.answered_in_time,
            expected.answered,
            &what,
        );
        assert_eq!(
            actual.median_working_days_to_acknowledge, expected.median_to_acknowledge,
            "{what}"
        );
        assert_eq!(
            actual.median_working_days_to_respond, expected.median_to_respond,
            "{what}"
        );
        assert_proportion(
            actual.escalated_to_stage_two.as_ref(),
            expected.escalated,
            expected.complaints,
            &what,
        );
        let (raised, past_deadline) = escalated_by_lead
            .get(&actual.liaison_lead)
            .copied()
            .unwrap_or_default();
        assert_eq!(
            (
                actual.notifier_escalations_raised,
                actual.notifier_escalations_past_deadline
            ),
            (raised, past_deadline),
            "{what}"
        );
        let per_100 = actual
            .notifier_escalations_past_deadline_per_100_complaints
            .expect("a rate");
        assert!(per_100.defined, "{what}");
        assert!(
            (per_100.value - past_deadline as f64 * 100.0 / expected.complaints as f64).abs()
                < 1e-9,
            "{what}: {per_100:?}"
        );
        assert!(per_100.lower <= per_100.value && per_100.value <= per_100.upper);
    }

    // `doorstep report liaison` shows the same figures, as a manager's CSV.
    let manager_key = doorstep_server::auth::api_keys::create(
        &app.settings().auth.api_keys_file,
        "contract-manager",
        &[doorstep_server::auth::Role::Manager],
        None,
    )
    .expect("an API key is created");
    let server = doorstep_server::report::ReportServer {
        address: format!("http://127.0.0.1:{}", app.port),
        credential: doorstep_server::auth::client::CallerCredential::api_key(
            secrecy::ExposeSecret::expose_secret(&manager_key.key),
        )
        .expect("a sendable key"),
        ca_certificate: None,
    };
    let mut output = Vec::new();
    doorstep_server::report::liaison(
        &server,
        "2026-06",
        "2026-06",
        doorstep_server::report::ReportFormat::Csv,
        &mut output,
    )
    .await
    .expect("the report is produced");
    let csv = String::from_utf8_lossy(&output);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "liaison lead,contractors,complaints,answered within Code,median days to acknowledge,\
         median days to respond,escalated to stage 2,deadline escalations,past deadline,\
         past deadline per 100 complaints,95% interval"
    );
    assert!(
        lines[1].starts_with("in-house,1,2,50.0% (9.5–90.5%) of 2,")
            && lines[1].contains(",2.5,10.0,"),
        "{csv}"
    );
    assert!(lines[2].starts_with("contractor,2,3,"), "{csv}");
    assert!(lines[3].starts_with("unknown,1,1,–,–,–,"), "{csv}");

    // Months with no complaints list every lead with nothing counted.
    let empty = PerformanceServiceClient::new(app.channel.clone())
        .compare_liaison_leads(v1::CompareLiaisonLeadsRequest {
            from_month: "2025-01".to_owned(),
            to_month: "2025-12".to_owned(),
            min_position: None,
        })
        .await
        .expect("compared")
        .into_inner();
    assert_eq!(empty.leads.len(), 3);
    assert!(empty.leads.iter().all(|lead| lead.complaints == 0));
    let bad_month = PerformanceServiceClient::new(app.channel.clone())
        .compare_liaison_leads(v1::CompareLiaisonLeadsRequest {
            from_month: "June".to_owned(),
            to_month: "2026-06".to_owned(),
            min_position: None,
        })
        .await
        .expect_err("not a month");
    assert_eq!(bad_month.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&bad_month).as_deref(), Some("from_month"));
}

fn notifier_on_test_rounds(settings: &mut Settings) {
    notify_on_test_rounds(settings, "breach");
}

#[tokio::test]
async fn liaison_leads_compare_as_counted_by_hand_on_sqlite() {
    let served = on_sqlite(
        notifier_on_test_rounds,
        TestClock::at("2026-06-24T12:00:00Z"),
    )
    .await;
    liaison_leads_compare_as_counted_by_hand(&served.app).await;
}

#[tokio::test]
async fn liaison_leads_compare_as_counted_by_hand_on_postgres() {
    let Some(served) = on_postgres(
        notifier_on_test_rounds,
        TestClock::at("2026-06-24T12:00:00Z"),
    )
    .await
    else {
        return;
    };
    liaison_leads_compare_as_counted_by_hand(&served.app).await;
}
