//! What operators and integrators rely on besides the lifecycle: health, reflection, the
//! complaint list, and a graceful shutdown.

use doorstep_api::v1;
use doorstep_tests::requests;
use doorstep_tests::{gate_left_open, spawn_app, timestamp, violated_field};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "doorstep.v1.ComplaintService";

#[tokio::test]
async fn health_and_reflection_are_served() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("a listing");
    let Some(MessageResponse::ListServicesResponse(listing)) = response.message_response else {
        panic!("expected a service listing, got {response:?}");
    };
    let names: Vec<String> = listing.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE.to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn list_complaints_filters_pages_and_reads_its_own_writes() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let mut last_position = 0;
    for n in 0..7 {
        let mut request = gate_left_open(
            &format!("list-{n}"),
            &format!("2026-04-0{}T10:00:00Z", n + 1),
        );
        if n % 2 == 1 {
            request.contractor_id = "brick-and-co".to_owned();
            if let Some(property) = request.property.as_mut() {
                property.uprn = "200000000001".to_owned();
            }
        }
        last_position = client
            .log_complaint(request)
            .await
            .expect("logged")
            .into_inner()
            .position;
    }
    let first = client
        .list_complaints(v1::ListComplaintsRequest {
            page_size: 3,
            min_position: Some(last_position),
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    assert!(first.read_model_position >= last_position);
    assert_eq!(first.complaints.len(), 3);
    assert!(!first.next_page_token.is_empty());
    let mut all = first.complaints.clone();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = client
            .list_complaints(v1::ListComplaintsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("next page")
            .into_inner();
        all.extend(page.complaints);
        token = page.next_page_token;
    }
    assert_eq!(all.len(), 7);
    let received: Vec<i64> = all
        .iter()
        .map(|c| c.received_at.as_ref().map_or(0, |t| t.seconds))
        .collect();
    assert!(
        received.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );

    let brick = client
        .list_complaints(v1::ListComplaintsRequest {
            contractor_id: "brick-and-co".to_owned(),
            ..Default::default()
        })
        .await
        .expect("by contractor")
        .into_inner();
    assert_eq!(brick.complaints.len(), 3);
    let by_uprn = client
        .list_complaints(v1::ListComplaintsRequest {
            uprn: "200000000001".to_owned(),
            ..Default::default()
        })
        .await
        .expect("by UPRN")
        .into_inner();
    assert_eq!(by_uprn.complaints.len(), 3);
    let in_range = client
        .list_complaints(v1::ListComplaintsRequest {
            received_from: Some(timestamp("2026-04-02T00:00:00Z")),
            received_to: Some(timestamp("2026-04-04T00:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("by date")
        .into_inner();
    assert_eq!(in_range.complaints.len(), 2);

    // Every one of them is months past its acknowledgement deadline.
    let overdue = client
        .list_complaints(v1::ListComplaintsRequest {
            overdue_only: true,
            status: v1::ComplaintStatus::AwaitingAcknowledgement as i32,
            stage: v1::Stage::One as i32,
            ..Default::default()
        })
        .await
        .expect("overdue")
        .into_inner();
    assert_eq!(overdue.complaints.len(), 7);
    assert!(
        overdue
            .complaints
            .iter()
            .all(|c| c.overdue && !c.next_deadline.is_empty())
    );

    // Acknowledging one takes it off the overdue list once the read model catches up.
    let target = overdue.complaints[0].complaint_id.clone();
    let acknowledged = client
        .acknowledge_complaint(requests::officer_one_acknowledges(&target))
        .await
        .expect("acknowledged")
        .into_inner();
    let after = client
        .list_complaints(v1::ListComplaintsRequest {
            overdue_only: true,
            min_position: Some(acknowledged.position),
            ..Default::default()
        })
        .await
        .expect("overdue again")
        .into_inner();
    assert_eq!(after.complaints.len(), 6);
    assert!(after.complaints.iter().all(|c| c.complaint_id != target));

    let bad_token = client
        .list_complaints(v1::ListComplaintsRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown token");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&bad_token).as_deref(), Some("page_token"));
    let too_big = client
        .list_complaints(v1::ListComplaintsRequest {
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .expect_err("too large a page");
    assert_eq!(violated_field(&too_big).as_deref(), Some("page_size"));
}

#[tokio::test]
async fn shutdown_reports_not_serving_before_it_stops() {
    let mut app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.next().await.expect("a status").expect("ok");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let id = app
        .client
        .log_complaint(gate_left_open("before-stop", "2026-04-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner()
        .complaint_id;

    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    let mut saw_not_serving = false;
    while let Some(Ok(update)) = watch.next().await {
        if update.status == ServingStatus::NotServing as i32 {
            saw_not_serving = true;
            break;
        }
    }
    assert!(saw_not_serving, "health turned NOT_SERVING during shutdown");
    let app = stopping.await.expect("the server stopped");

    let app = app.restart().await;
    let mut client = app.client.clone();
    client
        .get_complaint(v1::GetComplaintRequest { complaint_id: id })
        .await
        .expect("the acknowledged write survived the shutdown");
}

#[tokio::test]
async fn read_models_rebuilt_from_the_log_are_the_same() {
    let mut app = spawn_app().await;
    let mut client = app.client.clone();
    let mut last = 0;
    for n in 0..20 {
        let logged = client
            .log_complaint(gate_left_open(
                &format!("rebuild-{n}"),
                "2026-04-02T10:00:00Z",
            ))
            .await
            .expect("logged")
            .into_inner();
        last = logged.position;
        if n % 3 == 0 {
            last = client
                .acknowledge_complaint(requests::officer_one_acknowledges(&logged.complaint_id))
                .await
                .expect("acknowledged")
                .into_inner()
                .position;
        }
    }
    let list = |mut client: doorstep_api::v1::complaint_service_client::ComplaintServiceClient<
        doorstep_tests::AuthenticatedChannel,
    >| async move {
        client
            .list_complaints(v1::ListComplaintsRequest {
                page_size: 500,
                min_position: Some(last),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .complaints
    };
    let before = list(client.clone()).await;
    assert_eq!(before.len(), 20);
    app.stop().await;

    let mut length = None;
    let mut reported = 0;
    let applied = doorstep_server::startup::rebuild_read_models(
        app.settings(),
        |events| length = Some(events),
        |events, _| reported += events,
    )
    .await
    .expect("the read models rebuild");
    // 2 contractors registered, 20 complaints received, 7 acknowledged.
    assert_eq!(applied, 29);
    assert_eq!(length, Some(29));
    assert_eq!(reported, 29);

    let app = app.restart().await;
    assert_eq!(list(app.client.clone()).await, before);
}
