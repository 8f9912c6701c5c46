//! The escalation ladder end to end: a real server whose clock the test moves through simulated
//! days (Easter 2026 included), raising each level exactly when it falls due; escalations in
//! GetComplaint's history, in ListEscalations, in WatchEscalations and in the contractor's
//! figures; acknowledging them; and once in real time, with the machine's clock running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use std::sync::Arc;

use doorstep_server::clock::{Clock, SystemClock};
use doorstep_server::settings::Settings;
use doorstep_tests::requests;
use doorstep_tests::{
    TestApp, TestClock, gate_left_open, notify_on_test_rounds, spawn_app_with, violated_field,
};
use tonic::Code;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

fn with_notifier(settings: &mut Settings) {
    // The test runs each scheduler round itself and asserts on what it raised.
    notify_on_test_rounds(settings, "contract_manager");
}

async fn escalations(app: &TestApp, request: v1::ListEscalationsRequest) -> Vec<v1::Escalation> {
    EscalationServiceClient::new(app.channel.clone())
        .list_escalations(request)
        .await
        .expect("listed")
        .into_inner()
        .escalations
}

async fn all_escalations(app: &TestApp) -> Vec<v1::Escalation> {
    escalations(app, v1::ListEscalationsRequest::default()).await
}

/// Waits until `count` escalations are listed, for at most thirty seconds.
async fn wait_for_count(app: &TestApp, count: usize) -> Vec<v1::Escalation> {
    for _ in 0..1_500 {
        let listed = all_escalations(app).await;
        if listed.len() >= count {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{count} escalations were never listed");
}

/// A server with the notifier on, its clock at 09:00 UTC on Thursday 2 April 2026, and a
/// complaint about a gate left open logged then under `key`.
async fn logged_at_the_start_of_april(
    key: &str,
) -> (Arc<TestClock>, TestApp, v1::LogComplaintResponse) {
    let clock = TestClock::at("2026-04-02T09:00:00Z");
    let app = spawn_app_with(|settings, _| with_notifier(settings), clock.clone()).await;
    let logged = app
        .client
        .clone()
        .log_complaint(gate_left_open(key, "2026-04-02T09:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    (clock, app, logged)
}

#[tokio::test]
async fn the_ladder_climbs_in_simulated_days_across_easter() {
    // Received on Thursday 2 April 2026, before Easter: acknowledgement due Monday 13 April.
    let (clock, app, logged) = logged_at_the_start_of_april("ladder-1").await;
    let mut client = app.client.clone();

    // Each level is raised at its due time and not a minute before (UK midnight is 23:00 UTC in
    // summer time). Good Friday and Easter Monday are not working days. The warning comes at
    // 08:00 UK time (07:00 UTC) on Friday 10 April, the last working day before the deadline.
    let ladder = [
        ("warning", "2026-04-10T07:00:00Z"),
        ("breach", "2026-04-13T23:00:00Z"),
        ("liaison_officer", "2026-04-15T23:00:00Z"),
        ("contract_manager", "2026-04-20T23:00:00Z"),
        ("head_of_service", "2026-04-27T23:00:00Z"),
    ];
    let mut applied = logged.position;
    for (raised_so_far, (level, due)) in ladder.iter().enumerate() {
        // The schedule holds the last raise's next step before each round.
        app.read_models_reach(applied).await;
        clock.set(at(due) - chrono::Duration::minutes(1));
        assert_eq!(
            app.raise_due().await,
            0,
            "{level} is not raised before {due}"
        );
        assert_eq!(all_escalations(&app).await.len(), raised_so_far);
        clock.set(at(due));
        assert_eq!(app.raise_due().await, 1, "{level} is raised at {due}");
        let listed = wait_for_count(&app, raised_so_far + 1).await;
        let raised = &listed[raised_so_far];
        assert_eq!(raised.level, *level);
        assert_eq!(
            raised.deadline,
            v1::Deadline::StageOneAcknowledgement as i32
        );
        assert_eq!(raised.deadline_date, "2026-04-13");
        assert_eq!(raised.complaint_id, logged.complaint_id);
        assert_eq!(raised.contractor_id, "acme-retrofit");
        assert_eq!(
            raised.due_at.as_ref().map(|t| t.seconds),
            Some(at(due).timestamp())
        );
        applied = raised.position;
    }
    // Weeks later nothing more is raised: each level once.
    app.read_models_reach(applied).await;
    clock.set(at("2026-06-30T12:00:00Z"));
    assert_eq!(app.raise_due().await, 0, "the ladder has no sixth step");
    let listed = all_escalations(&app).await;
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed[1].recipients,
        vec!["complaints-team@landlord.example".to_owned()]
    );
    assert_eq!(
        listed[3].recipients,
        vec!["complaints@acme.example".to_owned()]
    );

    // The complaint's history shows them, in the words a person reads.
    let history = client
        .get_complaint(requests::complaint(&logged.complaint_id))
        .await
        .expect("read")
        .into_inner()
        .history;
    let raised: Vec<&str> = history
        .iter()
        .filter(|entry| entry.event_type == "EscalationRaised")
        .map(|entry| entry.summary.as_str())
        .collect();
    assert_eq!(raised.len(), 5);
    assert_eq!(
        raised[1],
        "Escalation `breach` raised for the stage 1 acknowledgement due 2026-04-13; 1 person told"
    );
    assert!(
        history
            .iter()
            .filter(|entry| entry.event_type == "EscalationRaised")
            .all(|entry| entry.actor == "doorstep-notifier")
    );

    // Filters: by level, by contractor, open only.
    let breach_only = escalations(
        &app,
        v1::ListEscalationsRequest {
            level: "breach".to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(breach_only.len(), 1);
    let other_contractor = escalations(
        &app,
        v1::ListEscalationsRequest {
            contractor_id: "brick-and-co".to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert!(other_contractor.is_empty());

    // Acknowledging an escalation takes it out of the open list, once.
    let mut escalation_client = EscalationServiceClient::new(app.channel.clone());
    let acknowledge_breach = v1::AcknowledgeEscalationRequest {
        escalation_id: breach_only[0].escalation_id.clone(),
        acknowledged_by: "Head of Service".to_owned(),
        note: "Calling the resident today".to_owned(),
        request_id: "ack-breach-1".to_owned(),
    };
    let acknowledged = escalation_client
        .acknowledge_escalation(acknowledge_breach.clone())
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(
        acknowledged
            .escalation
            .as_ref()
            .map(|e| e.acknowledged_by.as_str()),
        Some("Head of Service")
    );
    let retried = escalation_client
        .acknowledge_escalation(acknowledge_breach)
        .await
        .expect("a retry answers the first result")
        .into_inner();
    assert!(retried.duplicate);
    let twice = escalation_client
        .acknowledge_escalation(v1::AcknowledgeEscalationRequest {
            escalation_id: breach_only[0].escalation_id.clone(),
            acknowledged_by: "Someone Else".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("already acknowledged");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let unknown = escalation_client
        .acknowledge_escalation(v1::AcknowledgeEscalationRequest {
            escalation_id: uuid::Uuid::nil().to_string(),
            acknowledged_by: "Someone".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("unknown escalation");
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = escalation_client
        .acknowledge_escalation(v1::AcknowledgeEscalationRequest {
            escalation_id: "not-a-uuid".to_owned(),
            acknowledged_by: "Someone".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("malformed id");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&malformed).as_deref(), Some("escalation_id"));
    let nobody = escalation_client
        .acknowledge_escalation(v1::AcknowledgeEscalationRequest {
            escalation_id: breach_only[0].escalation_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("nobody named");
    assert_eq!(violated_field(&nobody).as_deref(), Some("acknowledged_by"));
    let open = escalations(
        &app,
        v1::ListEscalationsRequest {
            open_only: true,
            min_position: Some(acknowledged.position),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(open.len(), 4);
    let bad_level = escalation_client
        .list_escalations(v1::ListEscalationsRequest {
            level: "Head Of Service!".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("bad level");
    assert_eq!(violated_field(&bad_level).as_deref(), Some("level"));

    // WatchEscalations replays them from the start, then says it has caught up.
    let mut watch = escalation_client
        .watch_escalations(v1::WatchEscalationsRequest { from_position: 0 })
        .await
        .expect("watching")
        .into_inner();
    let mut seen = (0, 0);
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch answers")
            .expect("no error")
            .and_then(|response| response.message)
            .expect("open until caught up");
        match message {
            v1::watch_escalations_response::Message::Raised(_) => seen.0 += 1,
            v1::watch_escalations_response::Message::Acknowledged(_) => seen.1 += 1,
            v1::watch_escalations_response::Message::CaughtUp(_) => break,
        }
    }
    assert_eq!(seen, (5, 1));

    // The contractor's figures count escalations apart from stage 2 requests.
    let figures = PerformanceServiceClient::new(app.channel.clone())
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: "acme-retrofit".to_owned(),
            from_month: "2026-04".to_owned(),
            to_month: "2026-04".to_owned(),
            min_position: None,
        })
        .await
        .expect("figures")
        .into_inner();
    assert_eq!(figures.notifier_escalations_raised, 5);
    assert_eq!(figures.notifier_escalations_past_deadline, 4);
    assert_eq!(figures.escalations_to_stage_two, 0);
}

#[tokio::test]
async fn acknowledging_stops_the_clock_and_reopening_starts_it_again() {
    let (clock, app, logged) = logged_at_the_start_of_april("ladder-2").await;
    let mut client = app.client.clone();
    // Acknowledged on time on Friday 10 April: the acknowledgement ladder never fires, and the
    // response is due ten working days later, Friday 24 April.
    clock.set(at("2026-04-10T10:00:00Z"));
    let acknowledged = client
        .acknowledge_complaint(requests::acknowledgement(
            &logged.complaint_id,
            v1::Stage::One,
            "Ann Officer",
            None,
        ))
        .await
        .expect("acknowledged")
        .into_inner();
    app.read_models_reach(acknowledged.position).await;
    clock.set(at("2026-04-23T06:59:00Z"));
    assert_eq!(app.raise_due().await, 0, "no response warning yet");
    assert!(all_escalations(&app).await.is_empty());
    // The response warning falls due at 08:00 UK time on Thursday 23 April, the last working
    // day before the deadline.
    clock.set(at("2026-04-23T07:00:00Z"));
    assert_eq!(app.raise_due().await, 1, "the response warning is due");
    let listed = wait_for_count(&app, 1).await;
    assert_eq!(listed[0].deadline, v1::Deadline::StageOneResponse as i32);
    assert_eq!(listed[0].level, "warning");

    // Withdrawn: the clock stops; nothing more however long we wait.
    let withdrawn = client
        .withdraw_complaint(v1::WithdrawComplaintRequest {
            complaint_id: logged.complaint_id.clone(),
            reason: "Resident moved away".to_owned(),
            ..Default::default()
        })
        .await
        .expect("withdrawn")
        .into_inner();
    app.read_models_reach(withdrawn.position).await;
    clock.set(at("2026-06-01T10:00:00Z"));
    assert_eq!(
        app.raise_due().await,
        0,
        "a withdrawn complaint's clock has stopped"
    );
    assert_eq!(all_escalations(&app).await.len(), 1);

    // A watcher from here on sees nothing until the new escalations are raised, live.
    let mut watch = EscalationServiceClient::new(app.channel.clone())
        .watch_escalations(v1::WatchEscalationsRequest {
            from_position: listed[0].position + 1,
        })
        .await
        .expect("watching")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watch answers")
        .expect("no error")
        .and_then(|response| response.message);
    assert!(
        matches!(
            first,
            Some(v1::watch_escalations_response::Message::CaughtUp(_))
        ),
        "nothing was raised after the warning: {first:?}"
    );

    // Reopened: the response clock restarts, and its ladder, warning included, fires again with
    // new escalation ids, one step a round.
    let reopened = client
        .reopen_complaint(v1::ReopenComplaintRequest {
            complaint_id: logged.complaint_id.clone(),
            reason: "Resident came back".to_owned(),
            ..Default::default()
        })
        .await
        .expect("reopened")
        .into_inner();
    clock.set(at("2026-07-01T10:00:00Z"));
    let mut applied = reopened.position;
    for step in 2..=6 {
        app.read_models_reach(applied).await;
        assert_eq!(
            app.raise_due().await,
            1,
            "one step of the new ladder a round"
        );
        applied = wait_for_count(&app, step).await[step - 1].position;
    }
    app.read_models_reach(applied).await;
    assert_eq!(app.raise_due().await, 0, "the new ladder has five steps");
    let listed = all_escalations(&app).await;
    assert_eq!(listed.len(), 6);
    assert_ne!(listed[0].escalation_id, listed[1].escalation_id);
    let mut live = Vec::new();
    while live.len() < 5 {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch streams live")
            .expect("no error")
            .and_then(|response| response.message);
        if let Some(v1::watch_escalations_response::Message::Raised(raised)) = message {
            live.push(raised.escalation_id);
        }
    }
    let listed_ids: Vec<String> = listed[1..]
        .iter()
        .map(|e| e.escalation_id.clone())
        .collect();
    assert_eq!(
        live, listed_ids,
        "the watcher saw the new ladder live, in order"
    );
    assert_eq!(listed[1].level, "warning");
    assert!(
        listed[1..]
            .iter()
            .all(|e| e.clock_started_at.as_ref().map(|t| t.seconds)
                == Some(at("2026-06-01T10:00:00Z").timestamp()))
    );
}

#[tokio::test]
async fn in_real_time_a_breach_is_raised_when_the_deadline_day_ends() {
    // The machine's clock, shifted: first to a day before the acknowledgement deadline of a
    // complaint received on Thursday 2 April 2026 (Monday 13 April) ends, then, once the server
    // is up, to three seconds before it ends. Time then runs on by itself; a round run before
    // then raises nothing, and the server's own rounds raise the breach once it has passed.
    let breach_due = at("2026-04-13T23:00:00Z");
    let clock = Arc::new(OffsetClock::default());
    clock.reach_in(breach_due - chrono::Duration::days(1), Duration::ZERO);
    let app = spawn_app_with(
        |settings, _| {
            with_notifier(settings);
            settings.notifier.poll_interval_ms = 100;
        },
        clock.clone(),
    )
    .await;
    app.client
        .clone()
        .log_complaint(gate_left_open("real-time-1", "2026-04-02T09:00:00Z"))
        .await
        .expect("logged");
    // The warning is already due: raised at once.
    let listed = wait_for_count(&app, 1).await;
    assert_eq!(listed[0].level, "warning");

    app.read_models_reach(listed[0].position).await;
    clock.reach_in(breach_due, Duration::from_secs(3));
    assert_eq!(app.raise_due().await, 0, "no breach before the day ends");
    assert!(
        clock.now() < breach_due,
        "the round ran before the deadline (this machine stalled for seconds)"
    );
    assert_eq!(all_escalations(&app).await.len(), 1);
    let listed = wait_for_count(&app, 2).await;
    assert_eq!(listed[1].level, "breach");
    let raised_at = listed[1]
        .raised_at
        .as_ref()
        .map(|t| t.seconds)
        .unwrap_or_default();
    assert!(raised_at >= breach_due.timestamp());
    assert!(
        raised_at - breach_due.timestamp() <= 5,
        "raised within a few scheduler rounds of the deadline"
    );
}

/// The machine's clock, moved by an offset the test sets: real time passes, from a chosen moment.
#[derive(Default)]
struct OffsetClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    /// From now on, the clock reaches `moment` after `after` of real time.
    fn reach_in(&self, moment: DateTime<Utc>, after: Duration) {
        let after = chrono::Duration::from_std(after).expect("a short duration");
        let offset = moment - after - Utc::now();
        self.offset_ms.store(
            offset.num_milliseconds(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + chrono::Duration::milliseconds(offset)
    }
}
