//! No resident's name or phone number in the logs of a whole journey, at every level the
//! service logs at. This file is its own test process, so the log capture it installs sees
//! everything the server writes, whether or not `TEST_LOG` is set.

use std::io::Write;
use std::sync::{Arc, Mutex};

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_tests::requests;
use doorstep_tests::{gate_left_open, spawn_app, whole_log};

/// Every log line written, in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

#[tokio::test]
async fn a_whole_journey_logs_no_resident_name_or_phone() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,h2=debug,hyper=debug,tower=debug",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");

    let app = spawn_app().await;
    let mut intake = ComplaintServiceClient::new(app.channel_as(&["intake"]));
    let logged = intake
        .log_complaint(gate_left_open("logs-1", "2026-11-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    // A retry, and a conflicting reuse of the key, which is refused.
    intake
        .log_complaint(gate_left_open("logs-1", "2026-11-02T10:00:00Z"))
        .await
        .expect("retried");
    let mut conflicting = gate_left_open("logs-1", "2026-11-02T10:00:00Z");
    conflicting.description = "Something else".to_owned();
    intake
        .log_complaint(conflicting)
        .await
        .expect_err("the key was used for another complaint");
    // Bad input names the field without echoing personal data.
    let mut bad = gate_left_open("logs-2", "2026-11-02T10:00:00Z");
    if let Some(resident) = bad.resident.as_mut() {
        resident.phone = "Ada Resident's phone".to_owned();
    }
    let _ = intake.log_complaint(bad).await;

    let mut officer = ComplaintServiceClient::new(app.channel_as(&["officer"]));
    let id = logged.complaint_id.clone();
    officer
        .acknowledge_complaint(requests::officer_one_acknowledges(&id))
        .await
        .expect("acknowledged");
    officer
        .record_findings(requests::gates_finding(
            &id,
            v1::FindingOutcome::Upheld,
            "The gate was left open",
        ))
        .await
        .expect("findings");
    officer
        .issue_response(requests::response(
            &id,
            "Upheld; the operative has been retrained",
            None,
        ))
        .await
        .expect("responded");
    officer
        .close_complaint(requests::closure(&id, "", None))
        .await
        .expect("closed");
    let view = officer
        .get_complaint(requests::complaint(&id))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(
        view.complaint.and_then(|c| c.resident).map(|r| r.name),
        Some("Ada Resident".to_owned()),
        "the journey did handle the resident's data"
    );
    officer
        .list_complaints(v1::ListComplaintsRequest::default())
        .await
        .expect("listed");
    EventServiceClient::new(app.channel_as(&["auditor"]))
        .read_stream(v1::ReadStreamRequest {
            stream_id: format!("complaint-{id}"),
            ..Default::default()
        })
        .await
        .expect("read the stream");
    whole_log(&app.channel).await;
    ComplaintServiceClient::new(app.channel_as(&["admin"]))
        .forget_resident(v1::ForgetResidentRequest {
            resident_reference: "T-1001".to_owned(),
            ..Default::default()
        })
        .await
        .expect("forgotten");
    let mut app = app;
    app.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("doorstep is listening") && logs.lines().count() > 20,
        "the capture saw the server's logs:\n{logs}"
    );
    for personal in [
        "Ada Resident",
        "Ada",
        "07700 900123",
        "07700900123",
        "ada@example.org",
    ] {
        assert!(
            !logs.contains(personal),
            "`{personal}` is in the logs:\n{}",
            logs.lines()
                .filter(|line| line.contains(personal))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
