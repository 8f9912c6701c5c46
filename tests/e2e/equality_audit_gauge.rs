//! The gauge of contractors overdue an equality audit, on its own in this test binary: gauges
//! are registered with the process's one meter provider, so a second server in the process would
//! report beside this one.

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_tests::{TestApp, TestClock, metric_value, spawn_app_with, whole_log};

const GAUGE: &str = "doorstep_contractors_equality_audit_overdue";

async fn overdue_gauge(app: &TestApp, position: u64) -> Option<f64> {
    app.read_models_reach(position).await;
    // Each scrape samples the gauges afresh.
    let scraped = app.scrape_metrics().await;
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{GAUGE} ")))
        .and_then(|value| value.trim().parse().ok())
        .or_else(|| metric_value(&scraped, GAUGE, &[]))
}

#[tokio::test]
async fn the_gauge_counts_contractors_overdue_an_equality_audit_by_the_clock() {
    let clock = TestClock::at("2026-06-10T12:00:00Z");
    let app = spawn_app_with(
        |settings, _| settings.equality.audit_max_age_months = 6,
        clock.clone(),
    )
    .await;
    // Neither registered contractor has been audited (once the read models hold both).
    let registered = whole_log(&app.channel_as(&["auditor"]))
        .await
        .last()
        .map_or(0, |event| event.position);
    assert_eq!(overdue_gauge(&app, registered).await, Some(2.0));
    let audited = ContractorServiceClient::new(app.channel.clone())
        .record_equality_audit(v1::RecordEqualityAuditRequest {
            contractor_id: "acme-retrofit".to_owned(),
            audit: Some(v1::EqualityAudit {
                audit_date: "2026-01-15".to_owned(),
                auditor: "Equality and Diversity Team".to_owned(),
                outcome: v1::AuditOutcome::Satisfactory as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("audited")
        .into_inner();
    assert_eq!(overdue_gauge(&app, audited.position).await, Some(1.0));
    // Six months and a day after the audit, it no longer counts.
    clock.set("2026-07-16T12:00:00Z".parse().expect("a time"));
    assert_eq!(overdue_gauge(&app, audited.position).await, Some(2.0));
}
