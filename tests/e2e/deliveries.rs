//! Deliveries end to end against a real receiver started by the test: an HTTP server on
//! 127.0.0.1 that checks every webhook's HMAC-SHA256 signature the way the README tells
//! receivers to. Email deliveries, read back from a real SMTP server, are in
//! `escalation_emails.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_server::settings::{Role, Settings, WebhookSettings};
use doorstep_tests::webhook::{Receiver, SECRET, free_address, serve_receiver};
use doorstep_tests::{
    ROUNDS_DRIVEN_BY_THE_TEST_MS, TestApp, TestClock, gate_left_open, metric_value, spawn_app_with,
    violated_field,
};
use secrecy::SecretString;
use tonic::Code;

fn webhook_to(settings: &mut Settings, address: SocketAddr, max_attempts: u32) {
    settings.server.role = Role::All;
    settings.notifier.poll_interval_ms = 20;
    settings.notifier.max_attempts = max_attempts;
    settings.notifier.initial_backoff_ms = 50;
    settings.notifier.max_backoff_ms = 200;
    settings.notifier.timeout_ms = 2_000;
    settings.notifier.webhooks = vec![WebhookSettings {
        url: format!("http://{address}/hooks/doorstep"),
        secret: SecretString::from(SECRET.to_owned()),
    }];
}

/// Logs a complaint received on 2 April 2026 with the clock at 14 April: its warning and its
/// breach are due at once.
async fn overdue_complaint(app: &TestApp, key: &str) -> String {
    app.client
        .clone()
        .log_complaint(gate_left_open(key, "2026-04-02T09:00:00Z"))
        .await
        .expect("logged")
        .into_inner()
        .complaint_id
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1_500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn dead_letters(app: &TestApp) -> Vec<v1::DeadLetter> {
    EscalationServiceClient::new(app.channel.clone())
        .list_dead_letters(v1::ListDeadLettersRequest::default())
        .await
        .expect("listed")
        .into_inner()
        .dead_letters
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_dead_letters_that_can_be_retried() {
    let address = free_address();
    let receiver = Receiver::default();
    *receiver.failing.lock().expect("lock") = true;
    let _server = serve_receiver(receiver.clone(), address).await;
    let clock = TestClock::at("2026-04-14T08:00:00Z");
    let app = spawn_app_with(|settings, _| webhook_to(settings, address, 3), clock).await;
    let complaint_id = overdue_complaint(&app, "dead-1").await;

    // Warning and breach: two deliveries, each tried three times, then dead-lettered.
    wait_until("both deliveries are dead-lettered", async || {
        dead_letters(&app).await.len() == 2
    })
    .await;
    let dead = dead_letters(&app).await;
    assert!(dead.iter().all(|letter| letter.attempts == 3));
    assert!(
        dead.iter()
            .all(|letter| letter.last_error == "the receiver answered HTTP 503")
    );
    assert!(
        dead.iter()
            .all(|letter| letter.channel == v1::DeliveryChannel::Webhook as i32)
    );
    assert!(receiver.accepted.lock().expect("lock").is_empty());
    assert_eq!(*receiver.refused_signatures.lock().expect("lock"), 0);

    // The receiver recovers; retrying through the API delivers with the same delivery ids.
    *receiver.failing.lock().expect("lock") = false;
    let mut client = EscalationServiceClient::new(app.channel.clone());
    for letter in &dead {
        client
            .retry_dead_letter(v1::RetryDeadLetterRequest {
                delivery_id: letter.delivery_id.clone(),
            })
            .await
            .expect("retried");
    }
    wait_until("both are delivered", async || {
        receiver.accepted.lock().expect("lock").len() == 2
    })
    .await;
    assert!(dead_letters(&app).await.is_empty());

    // Operators see the same story in the metrics (at least: other tests of this binary share
    // the process's counters).
    let scraped = app.scrape_metrics().await;
    let deliveries = |outcome| {
        metric_value(
            &scraped,
            "doorstep_notifier_deliveries_total",
            &[("channel", "WEBHOOK"), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert!(
        deliveries("failed") >= 4.0,
        "two failures each before the last:\n{scraped}"
    );
    assert!(deliveries("dead_lettered") >= 2.0, "{scraped}");
    assert!(deliveries("delivered") >= 2.0, "{scraped}");
    let raised = metric_value(&scraped, "doorstep_escalations_raised_total", &[]).unwrap_or(0.0);
    assert!(
        raised >= 2.0,
        "the warning and the breach were raised:\n{scraped}"
    );

    let accepted = receiver.accepted.lock().expect("lock").clone();
    let mut delivered: Vec<&str> = accepted.iter().map(|r| r.delivery_id.as_str()).collect();
    let mut expected: Vec<&str> = dead.iter().map(|l| l.delivery_id.as_str()).collect();
    delivered.sort_unstable();
    expected.sort_unstable();
    assert_eq!(delivered, expected);
    for received in &accepted {
        assert_eq!(received.body["type"], "escalation.raised");
        assert_eq!(received.body["complaint_id"], complaint_id.as_str());
        assert_eq!(received.body["contractor_id"], "acme-retrofit");
        assert_eq!(received.body["deadline"], "STAGE_ONE_ACKNOWLEDGEMENT");
        assert_eq!(received.body["deadline_date"], "2026-04-13");
        assert_eq!(received.body["delivery_id"], received.delivery_id.as_str());
    }

    // A delivered one is no longer a dead letter; unknown and malformed ids say so.
    let again = client
        .retry_dead_letter(v1::RetryDeadLetterRequest {
            delivery_id: dead[0].delivery_id.clone(),
        })
        .await
        .expect_err("not dead any more");
    assert_eq!(again.code(), Code::FailedPrecondition);
    let unknown = client
        .retry_dead_letter(v1::RetryDeadLetterRequest {
            delivery_id: uuid::Uuid::nil().to_string(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = client
        .retry_dead_letter(v1::RetryDeadLetterRequest {
            delivery_id: "nope".to_owned(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(violated_field(&malformed).as_deref(), Some("delivery_id"));
}

/// Rounds the test drives: with the receiver down, every delivery round fails.
fn webhook_with_rounds_driven_by_the_test(settings: &mut Settings, address: SocketAddr) {
    webhook_to(settings, address, 1_000);
    settings.notifier.poll_interval_ms = ROUNDS_DRIVEN_BY_THE_TEST_MS;
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_everything_when_it_comes_back_even_across_a_restart() {
    // Nothing listens on the receiver's address yet.
    let address = free_address();
    let clock = TestClock::at("2026-04-14T08:00:00Z");
    let app = spawn_app_with(
        |settings, _| webhook_with_rounds_driven_by_the_test(settings, address),
        clock,
    )
    .await;
    overdue_complaint(&app, "down-1").await;
    // The warning and the breach are raised, and their deliveries fail; the server stops with
    // them still owed.
    assert_eq!(app.raise_all_due().await, 2);
    assert_eq!(app.deliver_due().await, 2, "both were tried, and failed");
    let app = app.restart().await;
    overdue_complaint(&app, "down-2").await;
    assert_eq!(app.raise_all_due().await, 2);

    let receiver = Receiver::default();
    let _server = serve_receiver(receiver.clone(), address).await;
    // Two complaints, warning and breach each: four deliveries, each accepted once (a receiver
    // may see one twice only as a retry with the same delivery id; here none was accepted before).
    // The first two come back once their back-off (at most 200 ms) has passed.
    wait_until("all four are delivered", async || {
        app.deliver_due().await;
        receiver.accepted.lock().expect("lock").len() >= 4
    })
    .await;
    // Every round has recorded what it sent: nothing is owed, and another round sends nothing.
    assert_eq!(app.deliver_due().await, 0, "nothing is owed any more");
    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 4, "nothing is sent twice: {accepted:?}");
    let mut ids: Vec<&str> = accepted.iter().map(|r| r.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert!(dead_letters(&app).await.is_empty());
}
