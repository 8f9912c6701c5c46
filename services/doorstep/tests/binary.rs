//! The real `doorstep` binary, configured only through the environment as an operator would:
//! it migrates, serves on the port it logs, stops cleanly on SIGTERM and keeps what it accepted.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use doorstep_api::v1;

use support::{client, doorstep, register_contractor, serve};

fn complaint() -> v1::LogComplaintRequest {
    v1::LogComplaintRequest {
        idempotency_key: "binary-1".to_owned(),
        channel: v1::Channel::Web as i32,
        source_system: "resident-portal".to_owned(),
        resident: Some(v1::Resident {
            reference: "T-9".to_owned(),
            name: "B Resident".to_owned(),
            ..Default::default()
        }),
        property: Some(v1::Property {
            uprn: "10001".to_owned(),
            address: "9 Example Street".to_owned(),
        }),
        contractor_id: "acme-retrofit".to_owned(),
        standards: vec![v1::ServiceStandard::NoSmoking as i32],
        description: "Operative smoked by the front door".to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn migrates_serves_and_stops_cleanly_on_sigterm() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );

    let migrated = doorstep(&database_url)
        .arg("migrate")
        .stderr(Stdio::null())
        .status()
        .expect("migrate runs");
    assert!(migrated.success());

    let mut running = serve(&database_url);
    register_contractor(running.port, "acme-retrofit").await;
    let logged = client(running.port)
        .await
        .log_complaint(complaint())
        .await
        .expect("logged through the binary")
        .into_inner();

    let terminated = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let mut exit = None;
    for _ in 0..200 {
        if let Some(status) = running.child.try_wait().expect("the child can be polled") {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = exit.expect("the binary stops within 20 s of SIGTERM");
    assert!(exit.success(), "a graceful stop exits 0, got {exit:?}");

    let running = serve(&database_url);
    let view = client(running.port)
        .await
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: logged.complaint_id.clone(),
        })
        .await
        .expect("the complaint is still there after the restart")
        .into_inner();
    assert_eq!(
        view.complaint.map(|c| c.contractor_id),
        Some("acme-retrofit".to_owned())
    );
}

/// `doorstep serve --role notifier`: a replica that runs the scheduler and the deliveries,
/// answers health checks, and serves none of the API.
#[tokio::test]
async fn serves_as_a_notifier_replica_with_role_notifier() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("doorstep.db").display()
    );
    let mut running = support::serve_with(&database_url, &["--role", "notifier"]);
    let channel = support::channel(running.port).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let refused = client(running.port)
        .await
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: "01a21775-9c5e-73bc-847e-b660f68f00f9".to_owned(),
        })
        .await
        .expect_err("no API on a notifier replica");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert!(
        running.stderr_tail().contains("Notifier"),
        "{}",
        running.stderr_tail()
    );
    running.kill_now();
}
