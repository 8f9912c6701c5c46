//! Following the event log over gRPC: one stream, the whole log live, and old event shapes.

use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_api::v1::subscribe_all_response::Message;
use doorstep_tests::requests;
use doorstep_tests::{
    gate_left_open, old_complaint_received, spawn_app, spawn_app_in,
    store_legacy_complaint_received,
};
use tokio_stream::StreamExt;
use tonic::Streaming;

async fn next_message(stream: &mut Streaming<v1::SubscribeAllResponse>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
        .expect("the stream is open")
        .expect("no error")
        .message
        .expect("a message body")
}

async fn next_event(stream: &mut Streaming<v1::SubscribeAllResponse>) -> v1::RecordedEvent {
    match next_message(stream).await {
        Message::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn read_stream_returns_a_complaints_events_in_order() {
    let app = spawn_app().await;
    let mut complaints = app.client.clone();
    let logged = complaints
        .log_complaint(gate_left_open("events-1", "2026-04-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    complaints
        .add_note(v1::AddNoteRequest {
            complaint_id: logged.complaint_id.clone(),
            text: "Spoke to the site manager".to_owned(),
            ..Default::default()
        })
        .await
        .expect("noted");

    let mut events = EventServiceClient::new(app.channel.clone());
    let stream_id = format!("complaint-{}", logged.complaint_id);
    let read = events
        .read_stream(v1::ReadStreamRequest {
            stream_id: stream_id.clone(),
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let types: Vec<&str> = read.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ComplaintReceived", "NoteAdded"]);
    assert_eq!(read.next_version, 3);
    let received = &read.events[0];
    assert_eq!(received.schema_version, 3);
    assert_eq!(
        received.metadata.as_ref().map(|m| m.request_id.as_str()),
        Some("events-1")
    );
    let payload: serde_json::Value = serde_json::from_str(&received.payload_json).expect("JSON");
    assert_eq!(payload["contractor_id"], "acme-retrofit");

    let from_two = events
        .read_stream(v1::ReadStreamRequest {
            stream_id,
            from_version: 2,
            max_count: 1,
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(from_two.events.len(), 1);
    assert_eq!(from_two.events[0].version, 2);
}

#[tokio::test]
async fn subscribe_all_catches_up_then_goes_live_without_gaps_or_duplicates() {
    let app = spawn_app().await;
    let mut complaints = app.client.clone();
    for n in 0..3 {
        complaints
            .log_complaint(gate_left_open(&format!("sub-{n}"), "2026-04-02T10:00:00Z"))
            .await
            .expect("logged");
    }
    let mut events = EventServiceClient::new(app.channel.clone());
    let mut everything = events
        .subscribe_all(v1::SubscribeAllRequest {
            stream_categories: vec!["complaint".to_owned()],
            ..Default::default()
        })
        .await
        .expect("subscribed")
        .into_inner();
    let mut filtered = events
        .subscribe_all(v1::SubscribeAllRequest {
            from_position: 0,
            stream_categories: vec!["complaint".to_owned()],
            event_types: vec!["NoteAdded".to_owned()],
        })
        .await
        .expect("subscribed")
        .into_inner();

    let mut positions = Vec::new();
    for _ in 0..3 {
        positions.push(next_event(&mut everything).await.position);
    }
    match next_message(&mut everything).await {
        Message::CaughtUp(caught_up) => assert_eq!(Some(&caught_up.position), positions.last()),
        other => panic!("expected caught-up, got {other:?}"),
    }
    match next_message(&mut filtered).await {
        Message::CaughtUp(_) => {}
        other => panic!("the filter admits no intake event, got {other:?}"),
    }

    // Live: writes after the catch-up arrive on the open streams.
    let live = complaints
        .log_complaint(gate_left_open("sub-live", "2026-04-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    complaints
        .add_note(v1::AddNoteRequest {
            complaint_id: live.complaint_id.clone(),
            text: "Live note".to_owned(),
            ..Default::default()
        })
        .await
        .expect("noted");
    let received = next_event(&mut everything).await;
    assert_eq!(received.position, live.position);
    positions.push(received.position);
    let note = next_event(&mut everything).await;
    assert_eq!(note.event_type, "NoteAdded");
    positions.push(note.position);
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{positions:?}"
    );

    let only_note = next_event(&mut filtered).await;
    assert_eq!(only_note.event_id, note.event_id);

    // Resuming from a checkpoint delivers exactly what came after it.
    let mut resumed = events
        .subscribe_all(v1::SubscribeAllRequest {
            from_position: positions[2] + 1,
            stream_categories: vec!["complaint".to_owned()],
            ..Default::default()
        })
        .await
        .expect("subscribed")
        .into_inner();
    assert_eq!(next_event(&mut resumed).await.position, positions[3]);
    assert_eq!(next_event(&mut resumed).await.position, positions[4]);
    assert!(matches!(
        next_message(&mut resumed).await,
        Message::CaughtUp(_)
    ));
}

#[tokio::test]
async fn events_written_in_an_old_schema_version_are_read_in_the_current_one() {
    // A complaint logged by a build that wrote ComplaintReceived version 1, without
    // `reasonable_adjustments`.
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let complaint_id = uuid::Uuid::now_v7();
    let version_one = old_complaint_received(complaint_id);
    store_legacy_complaint_received(data_dir.path(), complaint_id, 1, version_one).await;

    let app = spawn_app_in(data_dir).await;
    let mut complaints = app.client.clone();
    let view = complaints
        .get_complaint(requests::complaint(&complaint_id.to_string()))
        .await
        .expect("the old complaint reads")
        .into_inner();
    let complaint = view.complaint.expect("a complaint");
    assert_eq!(complaint.reasonable_adjustments, "");
    assert_eq!(complaint.description, "Dust sheets left behind");
    complaints
        .acknowledge_complaint(requests::officer_one_acknowledges(
            &complaint_id.to_string(),
        ))
        .await
        .expect("the old complaint takes new steps");

    let mut events = EventServiceClient::new(app.channel.clone());
    let read = events
        .read_stream(v1::ReadStreamRequest {
            stream_id: format!("complaint-{complaint_id}"),
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let upcast = &read.events[0];
    assert_eq!(upcast.schema_version, 3, "delivered in the current version");
    let payload: serde_json::Value = serde_json::from_str(&upcast.payload_json).expect("JSON");
    assert_eq!(payload["reasonable_adjustments"], "");
    let listed = complaints
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(read.events[1].position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(
        listed.complaints.len(),
        1,
        "the projection read the old event too"
    );
}
