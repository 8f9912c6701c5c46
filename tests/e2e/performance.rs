//! Contractor performance and the regulator's measures through the real server, on a programme
//! small enough to check by hand, and the `doorstep report` command against it.

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_tests::programme::{judged_complaint as complaint, record_visits as visits};
use doorstep_tests::{register_contractor, spawn_app};

#[tokio::test]
async fn contractors_are_compared_per_visit_with_honest_uncertainty() {
    let app = spawn_app().await;
    register_contractor(&app.channel, "tiny-co").await;
    visits(&app, "acme-retrofit", 1_000).await;
    visits(&app, "brick-and-co", 200).await;
    visits(&app, "tiny-co", 1).await;
    // acme: 5 upheld of 6 complaints; brick: 12 upheld; tiny: 1 upheld in its only visit.
    for n in 0..5 {
        complaint(
            &app,
            &format!("acme-{n}"),
            "acme-retrofit",
            n,
            v1::FindingOutcome::Upheld,
            Some("2026-05-12"),
        )
        .await;
    }
    complaint(
        &app,
        "acme-5",
        "acme-retrofit",
        5,
        v1::FindingOutcome::NotUpheld,
        Some("2026-06-30"),
    )
    .await;
    for n in 0..12 {
        complaint(
            &app,
            &format!("brick-{n}"),
            "brick-and-co",
            n,
            v1::FindingOutcome::PartlyUpheld,
            None,
        )
        .await;
    }
    let last = complaint(
        &app,
        "tiny-0",
        "tiny-co",
        0,
        v1::FindingOutcome::Upheld,
        None,
    )
    .await;

    let mut performance = PerformanceServiceClient::new(app.channel.clone());
    let acme = performance
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: "acme-retrofit".to_owned(),
            from_month: "2026-04".to_owned(),
            to_month: "2027-03".to_owned(),
            min_position: Some(last),
        })
        .await
        .expect("performance")
        .into_inner();
    assert_eq!((acme.visits, acme.complaints), (1_000, 6));
    assert_eq!((acme.reported_breaches, acme.upheld_breaches), (6, 5));
    let rate = acme.upheld_per_100_visits.expect("a rate");
    assert!((rate.value - 0.5).abs() < 1e-9);
    // Garwood 95% for 5 events: 1.6235 to 11.668, per 1,000 visits → per 100.
    assert!(
        (rate.lower - 0.16235).abs() < 1e-4 && (rate.upper - 1.1668).abs() < 1e-3,
        "{rate:?}"
    );
    let gates = acme
        .standards
        .iter()
        .find(|s| s.standard == v1::ServiceStandard::GatesSecured as i32)
        .expect("the alleged standard");
    assert_eq!(
        (
            gates.reported,
            gates.upheld,
            gates.not_upheld,
            gates.pending
        ),
        (6, 5, 1, 0)
    );
    let breached_visits = acme.visits_with_upheld_breach.expect("a proportion");
    assert_eq!((breached_visits.count, breached_visits.total), (5, 1_000));
    // Five answered by their deadline (12 May), one late (30 June).
    let in_time = acme.answered_within_code.expect("a proportion");
    assert_eq!((in_time.count, in_time.total), (5, 6));
    assert_eq!(acme.median_working_days_to_acknowledge, Some(2.0));
    assert_eq!(acme.median_working_days_to_respond, Some(5.0));
    assert!(acme.equality_audit.is_some_and(|audit| !audit.audited));

    let programme = performance
        .list_contractor_performance(v1::ListContractorPerformanceRequest {
            from_month: "2026-04".to_owned(),
            to_month: "2027-03".to_owned(),
            min_visits: 100,
            min_position: Some(last),
        })
        .await
        .expect("programme")
        .into_inner();
    assert_eq!(programme.programme_visits, 1_201);
    assert_eq!(programme.programme_upheld_breaches, 18);
    let order: Vec<(&str, u32)> = programme
        .contractors
        .iter()
        .map(|c| (c.contractor_id.as_str(), c.rank))
        .collect();
    // The one-visit contractor is not the worst in the programme: it is not ranked at all.
    assert_eq!(
        order,
        [("acme-retrofit", 1), ("brick-and-co", 2), ("tiny-co", 0)]
    );
    let status = |id: &str| {
        programme
            .contractors
            .iter()
            .find(|c| c.contractor_id == id)
            .map(|c| c.funnel_status)
    };
    // brick: 12 in 200 visits against 1.5 expected is far above the funnel.
    assert_eq!(
        status("brick-and-co"),
        Some(v1::FunnelStatus::AlarmHigh as i32)
    );
    // acme: 5 in 1,000 against 15 expected is unusually low.
    assert_eq!(
        status("acme-retrofit"),
        Some(v1::FunnelStatus::AlertLow as i32)
    );
    // tiny: 1 in 1 visit against 0.015 expected: surprising, but only an alert.
    assert_eq!(status("tiny-co"), Some(v1::FunnelStatus::AlertHigh as i32));

    let handling = performance
        .get_complaint_handling_report(v1::GetComplaintHandlingReportRequest {
            reporting_year: 2026,
            homes: 12_000,
            min_position: Some(last),
        })
        .await
        .expect("report")
        .into_inner();
    let stage_one = handling.stage_one.expect("stage 1");
    assert_eq!(
        (
            stage_one.received,
            stage_one.responded,
            stage_one.responded_within_code
        ),
        (19, 6, 5)
    );
    assert!((stage_one.per_1000_homes - 19.0 / 12.0).abs() < 1e-9);
    assert!(
        stage_one
            .percent_within_code
            .is_some_and(|p| (p - 500.0 / 6.0).abs() < 1e-9)
    );
    assert_eq!(handling.from_date, "2026-04-01");
    assert_eq!(handling.to_date, "2027-03-31");
    let other_year = performance
        .get_complaint_handling_report(v1::GetComplaintHandlingReportRequest {
            reporting_year: 2025,
            homes: 12_000,
            min_position: None,
        })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(other_year.stage_one.map(|s| s.received), Some(0));

    // The manager's report command's code, against the real server, with a manager's API key
    // created as `doorstep api-keys create` does.
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
    doorstep_server::report::contractors(
        &server,
        "2026-04",
        "2027-03",
        100,
        doorstep_server::report::ReportFormat::Csv,
        &mut output,
    )
    .await
    .expect("the report is produced");
    let csv = String::from_utf8_lossy(&output);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "rank,contractor,name,visits,upheld breaches,per 100 visits,95% interval,funnel"
    );
    assert!(
        lines[1].starts_with("1,acme-retrofit,acme-retrofit Ltd,1000,5,0.50,"),
        "{csv}"
    );
    assert!(lines[3].starts_with("–,tiny-co,"), "{csv}");
}

#[tokio::test]
async fn the_call_centre_can_verify_a_caller() {
    let app = spawn_app().await;
    let mut contractors = ContractorServiceClient::new(app.channel.clone());
    let suspended = contractors
        .suspend_contractor(v1::SuspendContractorRequest {
            contractor_id: "brick-and-co".to_owned(),
            reason: "Under investigation".to_owned(),
            ..Default::default()
        })
        .await
        .expect("suspended")
        .into_inner();
    let listed = contractors
        .list_contractors(v1::ListContractorsRequest {
            min_position: Some(suspended.position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    let ids: Vec<&str> = listed
        .contractors
        .iter()
        .map(|c| c.contractor_id.as_str())
        .collect();
    assert_eq!(ids, ["acme-retrofit", "brick-and-co"]);
    let active_only = contractors
        .list_contractors(v1::ListContractorsRequest {
            status: v1::ContractorStatus::Active as i32,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(active_only.contractors.len(), 1);

    for query in [
        "ACME-RETROFIT  warm homes",
        "0113 496 0000",
        "acme-retrofit ltd",
    ] {
        let answer = contractors
            .verify_contractor(v1::VerifyContractorRequest {
                query: query.to_owned(),
            })
            .await
            .expect("verified")
            .into_inner();
        assert!(answer.registered, "{query}");
        assert!(
            answer
                .matches
                .iter()
                .any(|m| m.contractor_id == "acme-retrofit" && m.active),
            "{query}"
        );
    }
    let by_trading_name = contractors
        .verify_contractor(v1::VerifyContractorRequest {
            query: "brick-and-co Warm Homes".to_owned(),
        })
        .await
        .expect("verified")
        .into_inner();
    assert!(by_trading_name.registered);
    assert!(by_trading_name.matches.iter().all(|m| !m.active));
    assert!(by_trading_name.advice.contains("suspended"));
    let stranger = contractors
        .verify_contractor(v1::VerifyContractorRequest {
            query: "Totally Legit Insulation".to_owned(),
        })
        .await
        .expect("answered")
        .into_inner();
    assert!(!stranger.registered);
    assert!(stranger.advice.starts_with("Not a registered contractor"));
}
