//! Two replicas of the server on one PostgreSQL database, driven concurrently: every accepted
//! command is in the log once, concurrent commands on one complaint give one winner and ABORTED
//! for the loser, and both replicas' read models converge.

use std::collections::{HashMap, HashSet};

use doorstep_api::v1;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_tests::requests;
use doorstep_tests::{TestApp, gate_left_open, spawn_app_on_database, webhook};
use tonic::Code;

/// Every event in the log, read through one replica until it reports it has caught up.
async fn whole_log(app: &TestApp) -> Vec<v1::RecordedEvent> {
    doorstep_tests::whole_log(&app.channel).await
}

async fn list_all(app: &TestApp, min_position: u64) -> Vec<(String, i32, u64)> {
    app.list_every_complaint(min_position)
        .await
        .into_iter()
        .map(|c| (c.complaint_id, c.status, c.version))
        .collect()
}

#[tokio::test]
async fn two_replicas_share_one_log_without_lost_updates() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let first = spawn_app_on_database(database.url()).await;
    let second = spawn_app_on_database(database.url()).await;
    let replicas = [first.client.clone(), second.client.clone()];

    // Intake through both replicas at once; every key is also retried on the other replica.
    let mut calls = Vec::new();
    for n in 0..40 {
        for (replica, client) in replicas.iter().enumerate() {
            let mut client = client.clone();
            let request = gate_left_open(&format!("replica-key-{n}"), "2026-04-02T10:00:00Z");
            calls.push(tokio::spawn(async move {
                let response = client.log_complaint(request).await;
                (n, replica, response)
            }));
        }
    }
    let mut by_key: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut fresh = 0;
    for call in futures::future::join_all(calls).await {
        let (n, _, response) = call.expect("task");
        let response = response
            .expect("intake succeeds on either replica")
            .into_inner();
        if !response.duplicate {
            fresh += 1;
        }
        by_key.entry(n).or_default().insert(response.complaint_id);
    }
    assert_eq!(fresh, 40, "each key created exactly one complaint");
    assert!(
        by_key.values().all(|ids| ids.len() == 1),
        "both replicas answered with the same complaint"
    );

    // The same command on the same complaint through both replicas at once, with the version
    // each caller read: one wins, the other is ABORTED, and nothing is lost.
    let complaint_ids: Vec<String> = by_key.values().flatten().cloned().collect();
    let mut races = Vec::new();
    for (index, id) in complaint_ids.iter().enumerate().take(20) {
        for (replica, client) in replicas.iter().enumerate() {
            let mut client = client.clone();
            let request = v1::AddNoteRequest {
                complaint_id: id.clone(),
                expected_version: Some(1),
                text: format!("note from replica {replica}"),
                ..Default::default()
            };
            races.push(tokio::spawn(async move {
                (index, client.add_note(request).await)
            }));
        }
    }
    let mut outcomes: HashMap<usize, Vec<Result<u64, Code>>> = HashMap::new();
    for race in futures::future::join_all(races).await {
        let (index, result) = race.expect("task");
        outcomes.entry(index).or_default().push(
            result
                .map(|r| r.into_inner().version)
                .map_err(|status| status.code()),
        );
    }
    for (index, results) in &outcomes {
        let winners = results.iter().filter(|r| r.is_ok()).count();
        let aborted = results.iter().filter(|r| **r == Err(Code::Aborted)).count();
        assert_eq!((winners, aborted), (1, 1), "complaint {index}: {results:?}");
    }

    // Every accepted command is in the log exactly once.
    let log = whole_log(&first).await;
    let received = log
        .iter()
        .filter(|e| e.event_type == "ComplaintReceived")
        .count();
    let notes = log.iter().filter(|e| e.event_type == "NoteAdded").count();
    assert_eq!((received, notes), (40, 20));
    let ids: HashSet<&str> = log.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), log.len(), "no event twice");
    assert!(
        log.windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    let head = log.last().map(|e| e.position).expect("a non-empty log");
    assert_eq!(
        whole_log(&second).await,
        log,
        "both replicas read the same log"
    );

    // Both read models converge on the same rows.
    let mut first_rows = list_all(&first, head).await;
    let mut second_rows = list_all(&second, head).await;
    first_rows.sort();
    second_rows.sort();
    assert_eq!(first_rows.len(), 40);
    assert_eq!(first_rows, second_rows);
    let noted = first_rows
        .iter()
        .filter(|(_, _, version)| *version == 2)
        .count();
    assert_eq!(noted, 20);

    // Counters are shared by both replicas' runners: each event counts once, not once per replica.
    for app in [&first, &second] {
        let figures = PerformanceServiceClient::new(app.channel.clone())
            .get_contractor_performance(v1::GetContractorPerformanceRequest {
                contractor_id: "acme-retrofit".to_owned(),
                from_month: "2026-04".to_owned(),
                to_month: "2026-04".to_owned(),
                min_position: Some(head),
            })
            .await
            .expect("performance")
            .into_inner();
        assert_eq!((figures.complaints, figures.reported_breaches), (40, 40));
    }
}

#[tokio::test]
async fn the_complaint_lifecycle_runs_on_postgres() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let app = spawn_app_on_database(database.url()).await;
    let mut client = app.client.clone();
    let logged = client
        .log_complaint(gate_left_open("pg-1", "2026-04-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    let retry = client
        .log_complaint(gate_left_open("pg-1", "2026-04-02T10:00:00Z"))
        .await
        .expect("retried")
        .into_inner();
    assert!(retry.duplicate);
    assert_eq!(retry.complaint_id, logged.complaint_id);
    let acknowledged = client
        .acknowledge_complaint(requests::acknowledgement(
            &logged.complaint_id,
            v1::Stage::One,
            "Officer One",
            Some("2026-04-08T09:00:00Z"),
        ))
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(acknowledged.response_due, "2026-04-22");
    let stale = client
        .add_note(v1::AddNoteRequest {
            complaint_id: logged.complaint_id.clone(),
            expected_version: Some(1),
            text: "late".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("stale version");
    assert_eq!(stale.code(), Code::Aborted);
    let listed = client
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(acknowledged.position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.complaints.len(), 1);
    assert_eq!(
        listed.complaints[0].status,
        v1::ComplaintStatus::UnderInvestigation as i32
    );
    let app = app.restart().await;
    let view = app
        .client
        .clone()
        .get_complaint(requests::complaint(&logged.complaint_id))
        .await
        .expect("still there after a restart")
        .into_inner();
    assert_eq!(view.history.len(), 2);
}

/// Two replicas that both run the notifier, on one PostgreSQL database with one clock, race to
/// raise the same escalations: the log holds exactly one `EscalationRaised` per complaint,
/// deadline and level, and the webhook receiver gets each delivery once although three delivery
/// workers share the outbox. A third replica runs as `--role notifier` and serves no API.
#[tokio::test]
async fn replicas_raise_each_escalation_exactly_once() {
    use doorstep_server::settings::Role;
    use doorstep_tests::{TestClock, spawn_app_on_database_with};

    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let address = webhook::free_address();
    let receiver = webhook::Receiver::default();
    let _receiver = webhook::serve_receiver(receiver.clone(), address).await;
    let clock = TestClock::at("2026-04-02T09:00:00Z");
    let notifier = move |settings: &mut doorstep_server::Settings, role: Role| {
        settings.server.role = role;
        settings.notifier.poll_interval_ms = 10;
        settings.notifier.webhooks = vec![doorstep_server::settings::WebhookSettings {
            url: format!("http://{address}/hooks/doorstep"),
            secret: secrecy::SecretString::from(webhook::SECRET.to_owned()),
        }];
    };
    let both = |settings: &mut doorstep_server::Settings| notifier(settings, Role::All);
    let first = spawn_app_on_database_with(database.url(), both, clock.clone()).await;
    let second = spawn_app_on_database_with(database.url(), both, clock.clone()).await;
    let notifier_only = spawn_app_on_database_with(
        database.url(),
        |settings| notifier(settings, Role::Notifier),
        clock.clone(),
    )
    .await;
    let refused = notifier_only
        .client
        .clone()
        .get_complaint(requests::complaint(&uuid::Uuid::nil().to_string()))
        .await
        .expect_err("a notifier replica serves no API");
    assert_eq!(refused.code(), Code::Unimplemented);

    let mut last = 0;
    for n in 0..12 {
        let client = if n % 2 == 0 { &first } else { &second };
        last = client
            .client
            .clone()
            .log_complaint(gate_left_open(
                &format!("escalate-{n}"),
                "2026-04-02T09:00:00Z",
            ))
            .await
            .expect("logged")
            .into_inner()
            .position;
    }
    // Every replica's read model has the schedule before the clock jumps past every level.
    for app in [&first, &second] {
        app.client
            .clone()
            .list_complaints(v1::ListComplaintsRequest {
                min_position: Some(last),
                ..Default::default()
            })
            .await
            .expect("caught up");
    }
    clock.set("2026-05-15T09:00:00Z".parse().expect("a time"));

    // 12 complaints × 5 levels of the acknowledgement ladder.
    let expected = 12 * 5;
    for _ in 0..1_500 {
        let raised = whole_log(&first)
            .await
            .iter()
            .filter(|event| event.event_type == "EscalationRaised")
            .count();
        if raised >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Once the shared read models hold every raise, a round on any replica raises nothing more.
    let head = whole_log(&first)
        .await
        .last()
        .map_or(0, |event| event.position);
    first.read_models_reach(head).await;
    for replica in [&first, &second, &notifier_only] {
        assert_eq!(
            replica.raise_due().await,
            0,
            "every step was raised already"
        );
    }
    let raised: Vec<v1::RecordedEvent> = whole_log(&second)
        .await
        .into_iter()
        .filter(|event| event.event_type == "EscalationRaised")
        .collect();
    let mut per_step: HashMap<(String, String, String), usize> = HashMap::new();
    for event in &raised {
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload_json).expect("JSON payload");
        let key = (
            event.stream_id.clone(),
            payload["deadline"].as_str().unwrap_or_default().to_owned(),
            payload["level"].as_str().unwrap_or_default().to_owned(),
        );
        *per_step.entry(key).or_default() += 1;
        // The event id is the escalation id, derived from the complaint, deadline and level.
        assert_eq!(
            payload["escalation_id"].as_str(),
            Some(event.event_id.as_str())
        );
    }
    assert_eq!(
        raised.len(),
        expected,
        "exactly one per complaint and level"
    );
    assert_eq!(per_step.len(), expected);
    assert!(per_step.values().all(|count| *count == 1));

    // One webhook delivery per escalation, each received once, although three delivery workers
    // share the outbox.
    for _ in 0..1_500 {
        if receiver.accepted.lock().expect("lock").len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Each delivery was recorded as delivered by the round that sent it: no replica owes any.
    for replica in [&first, &second, &notifier_only] {
        assert_eq!(replica.deliver_due().await, 0, "nothing is owed any more");
    }
    let accepted = receiver.accepted.lock().expect("lock").clone();
    let distinct: HashSet<&str> = accepted.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(distinct.len(), expected);
    assert_eq!(accepted.len(), expected, "no delivery was sent twice");
    assert_eq!(*receiver.refused_signatures.lock().expect("lock"), 0);
}

/// A replica on PostgreSQL never makes up the master key: replicas that each made their own would
/// seal residents' data under keys the others cannot open. Without one it refuses to start, and
/// says what to set.
#[tokio::test]
async fn a_replica_without_a_master_key_refuses_to_start_on_postgres() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = doorstep_server::Settings::for_tests(data_dir.path());
    settings.database = doorstep_server::settings::DatabaseSettings::new(database.url());
    settings.privacy.master_key = None;
    let refused = doorstep_server::Application::build(settings)
        .await
        .err()
        .expect("no master key, no server");
    let chain = std::iter::successors(Some(&refused as &dyn std::error::Error), |error| {
        error.source()
    })
    .map(ToString::to_string)
    .collect::<Vec<_>>()
    .join(": ");
    assert!(
        chain.contains("privacy.master_key") && chain.contains("DOORSTEP__PRIVACY__MASTER_KEY"),
        "the refusal says what to set: {chain}"
    );
    assert!(
        !data_dir.path().join("master.key").exists(),
        "no key file was written"
    );
}
