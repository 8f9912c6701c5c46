//! A small programme built through the API, for the tests that check figures by hand: visits in
//! May 2026 and complaints about them, judged.

use doorstep_api::v1;
use doorstep_api::v1::visit_service_client::VisitServiceClient;

use crate::{TestApp, gate_left_open, requests};

/// Records `count` visits for a contractor on Monday 4 May 2026 (`{contractor}-visit-{n}`) and
/// returns the last position.
pub async fn record_visits(app: &TestApp, contractor_id: &str, count: usize) -> u64 {
    let visits = (0..count)
        .map(|n| v1::Visit {
            visit_id: format!("{contractor_id}-visit-{n}"),
            contractor_id: contractor_id.to_owned(),
            uprn: "100023336956".to_owned(),
            work_order_reference: format!("WO-{n}"),
            visit_date: "2026-05-04".to_owned(),
        })
        .collect();
    VisitServiceClient::new(app.channel.clone())
        .record_visits(v1::RecordVisitsRequest { visits })
        .await
        .expect("visits recorded")
        .into_inner()
        .position
}

/// Logs a complaint about one visit, acknowledges it and records `outcome` for its standard;
/// when `respond_on` is given the stage 1 response is issued that day. Returns the last position.
pub async fn judged_complaint(
    app: &TestApp,
    key: &str,
    contractor_id: &str,
    visit: usize,
    outcome: v1::FindingOutcome,
    respond_on: Option<&str>,
) -> u64 {
    let mut client = app.client.clone();
    let mut request = gate_left_open(key, "2026-05-05T10:00:00Z");
    request.contractor_id = contractor_id.to_owned();
    request.visit_id = Some(format!("{contractor_id}-visit-{visit}"));
    let id = client
        .log_complaint(request)
        .await
        .expect("logged")
        .into_inner()
        .complaint_id;
    client
        // Tuesday 5 May 2026 is day 0; acknowledged on day 2.
        .acknowledge_complaint(requests::acknowledgement(
            &id,
            v1::Stage::One,
            "Officer One",
            Some("2026-05-07T09:00:00Z"),
        ))
        .await
        .expect("acknowledged");
    let mut position = client
        .record_findings(requests::gates_finding(&id, outcome, ""))
        .await
        .expect("finding recorded")
        .into_inner()
        .position;
    if let Some(day) = respond_on {
        position = client
            .issue_response(requests::response(
                &id,
                "Decided",
                Some(&format!("{day}T09:00:00Z")),
            ))
            .await
            .expect("responded")
            .into_inner()
            .position;
    }
    position
}
