//! The read models stop at an event they cannot apply, and the server says so where operators
//! look: the `read_models` health name turns NOT_SERVING and `doorstep_projection_stalled` is 1,
//! while the overall status stays SERVING (writes still work); both recover once the runner gets
//! past the event.
//!
//! One test: the gauge is process-wide, so a second server in this process would report beside
//! it (which is also why the gauge is read only before the restart).

use std::time::Duration;

use doorstep_api::v1;
use doorstep_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use doorstep_tests::{TestApp, database_path, gate_left_open, metric_value, spawn_app};
use tokio_stream::StreamExt as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Waits (up to 30 s) until the health of `service` is `status`, following `Health.Watch`.
async fn health_becomes(app: &TestApp, service: &str, status: ServingStatus) {
    let mut updates = HealthClient::new(app.anonymous_channel.clone())
        .watch(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health is watched")
        .into_inner();
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = updates.next().await {
            let update: HealthCheckResponse = update.expect("a health update");
            if update.status == status as i32 {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(reached, Ok(true)),
        "health of {service:?} never became {status:?}"
    );
}

async fn overall_health(app: &TestApp) -> i32 {
    HealthClient::new(app.anonymous_channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

async fn stalled_gauge(app: &TestApp) -> Option<f64> {
    let scraped = app.scrape_metrics().await;
    // The gauge has no labels: its line is the name, a space and the value.
    scraped
        .lines()
        .find_map(|line| line.strip_prefix("doorstep_projection_stalled "))
        .and_then(|value| value.trim().parse().ok())
        .or_else(|| metric_value(&scraped, "doorstep_projection_stalled", &[]))
}

async fn log(app: &TestApp, key: &str) -> v1::LogComplaintResponse {
    app.client
        .clone()
        .log_complaint(gate_left_open(key, "2026-04-02T09:00:00Z"))
        .await
        .expect("logged: writes do not need the read models")
        .into_inner()
}

#[tokio::test]
async fn an_event_the_read_models_cannot_apply_turns_their_health_not_serving_until_past_it() {
    let app = spawn_app().await;
    health_becomes(&app, "read_models", ServingStatus::Serving).await;
    assert_eq!(stalled_gauge(&app).await, Some(0.0));

    // A read-model row the next event of its complaint needs is made unreadable.
    let logged = log(&app, "stuck-1").await;
    let listed = app
        .client
        .clone()
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(logged.position),
            ..Default::default()
        })
        .await
        .expect("listed");
    assert_eq!(listed.into_inner().complaints.len(), 1);
    let read_models = sqlx::SqlitePool::connect(
        &app.settings()
            .database
            .read_model_url()
            .expect("a SQLite read-model URL"),
    )
    .await
    .expect("the read models' file opens");
    let original: String = sqlx::query_scalar(
        "SELECT clock_started_at FROM escalation_clocks WHERE complaint_id = $1",
    )
    .bind(&logged.complaint_id)
    .fetch_one(&read_models)
    .await
    .expect("the complaint has a clock");
    let set_clock = async |value: &str| {
        sqlx::query("UPDATE escalation_clocks SET clock_started_at = $1 WHERE complaint_id = $2")
            .bind(value)
            .bind(&logged.complaint_id)
            .execute(&read_models)
            .await
            .expect("updated");
    };
    set_clock("2026-02-30T09:00:00Z").await;
    app.client
        .clone()
        .add_note(v1::AddNoteRequest {
            complaint_id: logged.complaint_id.clone(),
            request_id: "note-1".to_owned(),
            text: "Called the resident back".to_owned(),
            ..Default::default()
        })
        .await
        .expect("the note is written");
    health_becomes(&app, "read_models", ServingStatus::NotServing).await;
    assert_eq!(stalled_gauge(&app).await, Some(1.0));
    assert_eq!(
        overall_health(&app).await,
        ServingStatus::Serving as i32,
        "readiness follows the databases, not the read models' progress"
    );

    // The operator puts the row right: the runner gets past, and health and gauge follow.
    set_clock(&original).await;
    health_becomes(&app, "read_models", ServingStatus::Serving).await;
    assert_eq!(stalled_gauge(&app).await, Some(0.0));

    // An event of a known type that this build cannot decode, appended while the server is
    // stopped (SQLite has one writer, the server's own).
    let mut app = app;
    app.stop().await;
    let store = doorstep_store::SqliteEventStore::open(doorstep_store::SqliteSettings::new(
        database_path(app.data_dir()),
    ))
    .await
    .expect("the event log opens");
    store
        .append(
            &StreamId::new("complaint", uuid::Uuid::now_v7()),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "ComplaintReceived".to_owned(),
                schema_version: 3,
                payload: serde_json::json!({"not": "a complaint"}),
                metadata: EventMetadata::default(),
            }],
        )
        .await
        .expect("appended");
    store.close().await;
    let app = app.restart().await;
    health_becomes(&app, "read_models", ServingStatus::NotServing).await;
    assert_eq!(
        overall_health(&app).await,
        ServingStatus::Serving as i32,
        "the server starts and serves with its read models stuck"
    );
    log(&app, "stuck-2").await;
}
