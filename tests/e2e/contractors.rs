//! The contractor registry and visits through the real server.

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_tests::{contractor_profile, spawn_app, violated_field};
use tonic::Code;

fn visit(visit_id: &str, contractor_id: &str, date: &str) -> v1::Visit {
    v1::Visit {
        visit_id: visit_id.to_owned(),
        contractor_id: contractor_id.to_owned(),
        uprn: "100023336956".to_owned(),
        work_order_reference: format!("WO-{visit_id}"),
        visit_date: date.to_owned(),
    }
}

#[tokio::test]
async fn a_contractor_is_registered_suspended_reinstated_and_audited() {
    let app = spawn_app().await;
    let mut contractors = ContractorServiceClient::new(app.channel.clone());
    let register = v1::RegisterContractorRequest {
        contractor_id: "warmfront".to_owned(),
        profile: Some(contractor_profile("warmfront")),
        request_id: "reg-warmfront".to_owned(),
    };
    let registered = contractors
        .register_contractor(register.clone())
        .await
        .expect("registered")
        .into_inner();
    assert_eq!(registered.version, 1);
    let retried = contractors
        .register_contractor(register.clone())
        .await
        .expect("a retry returns the first result")
        .into_inner();
    assert!(retried.duplicate);
    let again = contractors
        .register_contractor(v1::RegisterContractorRequest {
            request_id: String::new(),
            ..register.clone()
        })
        .await
        .expect_err("the id is taken");
    assert_eq!(again.code(), Code::AlreadyExists);

    let mut bad_profile = contractor_profile("x");
    bad_profile.public_phone = "ring us".to_owned();
    let invalid = contractors
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: "bad-phone".to_owned(),
            profile: Some(bad_profile),
            request_id: String::new(),
        })
        .await
        .expect_err("an invalid phone number");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        violated_field(&invalid).as_deref(),
        Some("profile.public_phone")
    );

    contractors
        .suspend_contractor(v1::SuspendContractorRequest {
            contractor_id: "warmfront".to_owned(),
            expected_version: Some(1),
            reason: "Repeated smoking complaints".to_owned(),
            ..Default::default()
        })
        .await
        .expect("suspended");
    let twice = contractors
        .suspend_contractor(v1::SuspendContractorRequest {
            contractor_id: "warmfront".to_owned(),
            reason: "Again".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("already suspended");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    contractors
        .reinstate_contractor(v1::ReinstateContractorRequest {
            contractor_id: "warmfront".to_owned(),
            reason: "Retrained".to_owned(),
            ..Default::default()
        })
        .await
        .expect("reinstated");
    contractors
        .record_equality_audit(v1::RecordEqualityAuditRequest {
            contractor_id: "warmfront".to_owned(),
            audit: Some(v1::EqualityAudit {
                audit_date: "2026-06-01".to_owned(),
                auditor: "Equality and Diversity Team".to_owned(),
                workforce_diversity: "Workforce profile collected".to_owned(),
                equality_policy_and_procedures: "Policy in place, reviewed 2025".to_owned(),
                requirements_not_met: "No translation service for residents".to_owned(),
                staff_experience_and_training: "All operatives trained in 2026".to_owned(),
                outcome: v1::AuditOutcome::ImprovementRequired as i32,
            }),
            ..Default::default()
        })
        .await
        .expect("audited");
    let future_audit = contractors
        .record_equality_audit(v1::RecordEqualityAuditRequest {
            contractor_id: "warmfront".to_owned(),
            audit: Some(v1::EqualityAudit {
                audit_date: "2099-01-01".to_owned(),
                auditor: "Team".to_owned(),
                outcome: v1::AuditOutcome::Satisfactory as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("an audit in the future");
    assert_eq!(
        violated_field(&future_audit).as_deref(),
        Some("audit.audit_date")
    );

    let contractor = contractors
        .get_contractor(v1::GetContractorRequest {
            contractor_id: "warmfront".to_owned(),
        })
        .await
        .expect("read")
        .into_inner()
        .contractor
        .expect("a contractor");
    assert_eq!(contractor.status, v1::ContractorStatus::Active as i32);
    assert_eq!(contractor.version, 4);
    assert_eq!(contractor.equality_audits.len(), 1);
    assert_eq!(
        contractor.profile.map(|p| p.public_contact_name),
        Some("Sam Site".to_owned())
    );
    let missing = contractors
        .get_contractor(v1::GetContractorRequest {
            contractor_id: "nobody".to_owned(),
        })
        .await
        .expect_err("not registered");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn visits_are_recorded_once_each_and_bad_ones_are_named() {
    let app = spawn_app().await;
    let mut visits = VisitServiceClient::new(app.channel.clone());
    let batch: Vec<v1::Visit> = (0..500)
        .map(|n| visit(&format!("V-{n}"), "acme-retrofit", "2026-05-01"))
        .collect();
    let first = visits
        .record_visits(v1::RecordVisitsRequest {
            visits: batch.clone(),
        })
        .await
        .expect("recorded")
        .into_inner();
    assert_eq!((first.recorded, first.duplicates), (500, 0));
    assert!(first.rejected.is_empty());

    // A work-order system resends, with some new and some broken visits.
    let mut resend = batch[..100].to_vec();
    resend.push(visit("V-new", "brick-and-co", "2026-05-02"));
    resend.push(visit("V-unknown", "nobody-ltd", "2026-05-02"));
    resend.push(visit("V-future", "acme-retrofit", "2099-05-02"));
    resend.push(visit("V-1", "acme-retrofit", "2026-05-09"));
    let second = visits
        .record_visits(v1::RecordVisitsRequest { visits: resend })
        .await
        .expect("the batch is answered")
        .into_inner();
    assert_eq!((second.recorded, second.duplicates), (1, 100));
    let rejected: Vec<(u32, &str)> = second
        .rejected
        .iter()
        .map(|r| (r.index, r.field.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (101, "visits[101].contractor_id"),
            (102, "visits[102].visit_date"),
            (103, "visits[103].visit_id"),
        ]
    );
    assert!(second.position > first.position);

    let empty = visits
        .record_visits(v1::RecordVisitsRequest::default())
        .await
        .expect_err("an empty batch");
    assert_eq!(violated_field(&empty).as_deref(), Some("visits"));
}
