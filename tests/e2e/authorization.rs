//! Who may call what, through the real server: every RPC of the API against every role, and a
//! contractor confined to its own records.

use std::str::FromStr;

use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::{ApiMethod, v1};
use doorstep_server::auth::client::CallerCredential;
use doorstep_tests::requests;
use doorstep_tests::{AuthenticatedChannel, gate_left_open, spawn_app};
use tonic::Code;

/// Who the issue says may call each method. Written out here rather than read from the server's
/// policy table, so the test checks the server against the specification, not against itself.
const EXPECTED: &[(&str, &[&str])] = &[
    ("doorstep.v1.ComplaintService/LogComplaint", &["intake"]),
    (
        "doorstep.v1.ComplaintService/AcknowledgeComplaint",
        &["officer"],
    ),
    ("doorstep.v1.ComplaintService/ExtendDeadline", &["officer"]),
    ("doorstep.v1.ComplaintService/RecordFindings", &["officer"]),
    ("doorstep.v1.ComplaintService/IssueResponse", &["officer"]),
    ("doorstep.v1.ComplaintService/RequestStageTwo", &["officer"]),
    ("doorstep.v1.ComplaintService/CloseComplaint", &["officer"]),
    ("doorstep.v1.ComplaintService/ReopenComplaint", &["officer"]),
    (
        "doorstep.v1.ComplaintService/WithdrawComplaint",
        &["officer"],
    ),
    ("doorstep.v1.ComplaintService/AddNote", &["officer"]),
    (
        "doorstep.v1.ComplaintService/GetComplaint",
        &["intake", "officer", "manager", "contractor"],
    ),
    (
        "doorstep.v1.ComplaintService/ListComplaints",
        &["intake", "officer", "manager", "contractor"],
    ),
    ("doorstep.v1.ComplaintService/ForgetResident", &["admin"]),
    (
        "doorstep.v1.ContractorService/RegisterContractor",
        &["admin"],
    ),
    ("doorstep.v1.ContractorService/UpdateContractor", &["admin"]),
    (
        "doorstep.v1.ContractorService/SuspendContractor",
        &["admin"],
    ),
    (
        "doorstep.v1.ContractorService/ReinstateContractor",
        &["admin"],
    ),
    (
        "doorstep.v1.ContractorService/RecordEqualityAudit",
        &["admin"],
    ),
    (
        "doorstep.v1.ContractorService/GetContractor",
        &["intake", "officer", "manager", "admin"],
    ),
    (
        "doorstep.v1.ContractorService/ListContractors",
        &["intake", "officer", "manager", "admin"],
    ),
    (
        "doorstep.v1.ContractorService/VerifyContractor",
        &["intake", "officer", "admin"],
    ),
    ("doorstep.v1.VisitService/RecordVisits", &["intake"]),
    (
        "doorstep.v1.EscalationService/WatchEscalations",
        &["officer", "manager"],
    ),
    (
        "doorstep.v1.EscalationService/ListEscalations",
        &["officer", "manager"],
    ),
    (
        "doorstep.v1.EscalationService/AcknowledgeEscalation",
        &["officer", "manager"],
    ),
    ("doorstep.v1.EscalationService/ListDeadLetters", &["admin"]),
    ("doorstep.v1.EscalationService/RetryDeadLetter", &["admin"]),
    ("doorstep.v1.EventService/ReadStream", &["auditor"]),
    ("doorstep.v1.EventService/SubscribeAll", &["auditor"]),
    (
        "doorstep.v1.PerformanceService/GetContractorPerformance",
        &["manager", "contractor"],
    ),
    (
        "doorstep.v1.PerformanceService/ListContractorPerformance",
        &["manager"],
    ),
    (
        "doorstep.v1.PerformanceService/GetComplaintHandlingReport",
        &["manager"],
    ),
    (
        "doorstep.v1.InspectionService/RecordInspection",
        &["officer"],
    ),
    (
        "doorstep.v1.InspectionService/CorrectInspection",
        &["officer"],
    ),
    (
        "doorstep.v1.InspectionService/ResolveInspectionFinding",
        &["officer"],
    ),
    (
        "doorstep.v1.InspectionService/GetInspection",
        &["officer", "manager", "contractor"],
    ),
    (
        "doorstep.v1.InspectionService/ListInspections",
        &["officer", "manager", "contractor"],
    ),
    (
        "doorstep.v1.ContractorService/RecordStandardsSignOff",
        &["admin"],
    ),
    (
        "doorstep.v1.ContractorService/RecordEqualityTraining",
        &["admin"],
    ),
    (
        "doorstep.v1.PerformanceService/CompareLiaisonLeads",
        &["manager"],
    ),
];

const ROLES: [&str; 6] = [
    "intake",
    "officer",
    "manager",
    "contractor",
    "admin",
    "auditor",
];

/// Every method of every service in the API's descriptor set: an RPC added to `proto/` is
/// tested here without anyone listing it, and fails until the expectations name it.
fn every_method() -> Vec<ApiMethod> {
    doorstep_api::methods().expect("the descriptor set decodes")
}

/// Calls `method` with an empty request (every proto3 request decodes from no bytes) and
/// returns the status code it answers with, `Ok` for a successful call.
async fn call(channel: AuthenticatedChannel, method: &ApiMethod) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the connection is ready");
    let path =
        http::uri::PathAndQuery::from_str(&format!("/{}", method.path)).expect("a valid path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = if method.server_streaming {
        grpc.server_streaming(tonic::Request::new(()), path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(tonic::Request::new(()), path, codec)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn every_rpc_answers_every_role_as_the_policy_says() {
    let app = spawn_app().await;
    let methods = every_method();
    assert!(methods.len() >= 26, "the descriptor set lists every RPC");
    let mut wrong = Vec::new();
    for method in &methods {
        let Some((_, allowed)) = EXPECTED.iter().find(|(path, _)| *path == method.path) else {
            wrong.push(format!(
                "{}: no expectation; add it and a policy line",
                method.path
            ));
            continue;
        };
        for role in ROLES {
            let channel = match role {
                "contractor" => app.channel_for_contractor("acme-retrofit"),
                _ => app.channel_as(&[role]),
            };
            let code = call(channel, method).await;
            let denied = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
            if allowed.contains(&role) == denied {
                wrong.push(format!("{} as {role}: {code:?}", method.path));
            }
        }
        let anonymous = CallerCredential::none().attach(app.anonymous_channel.clone());
        let code = call(anonymous, method).await;
        if code != Code::Unauthenticated {
            wrong.push(format!("{} without a credential: {code:?}", method.path));
        }
        let forged = CallerCredential::bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
            .expect("a sendable token")
            .attach(app.anonymous_channel.clone());
        let code = call(forged, method).await;
        if code != Code::Unauthenticated {
            wrong.push(format!("{} with an unsigned token: {code:?}", method.path));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn health_is_open_and_reflection_needs_a_credential() {
    let app = spawn_app().await;
    let health = tonic_health::pb::health_client::HealthClient::new(app.anonymous_channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "doorstep.v1.ComplaintService".to_owned(),
        })
        .await
        .expect("health answers anyone")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let list_services = || {
        tokio_stream::iter([tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        }])
    };
    let anonymous =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            app.anonymous_channel.clone(),
        )
        .server_reflection_info(list_services())
        .await
        .expect_err("reflection needs a credential");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        app.channel_as(&["auditor"]),
    )
    .server_reflection_info(list_services())
    .await
    .expect("any role may use reflection");
}

#[tokio::test]
async fn expired_and_wrongly_signed_tokens_are_unauthenticated() {
    let app = spawn_app().await;
    let mut expired = doorstep_server::auth::jwt::TokenClaims::new(
        "late",
        &["officer"],
        std::time::Duration::ZERO,
    );
    expired.exp -= 3_600;
    let secret = doorstep_server::settings::TEST_JWT_SECRET.as_bytes();
    let expired = doorstep_server::auth::jwt::issue_hs256(secret, &expired).expect("signed");
    let elsewhere = doorstep_server::auth::jwt::issue_hs256(
        b"a secret that is not the server's, but long enough",
        &doorstep_server::auth::jwt::TokenClaims::new(
            "mallory",
            &["admin"],
            std::time::Duration::from_secs(60),
        ),
    )
    .expect("signed");
    for token in [expired, elsewhere, "dsk_00_guess".to_owned()] {
        let credential = if token.starts_with("dsk_") {
            CallerCredential::api_key(&token)
        } else {
            CallerCredential::bearer(&token)
        }
        .expect("sendable");
        let status = ComplaintServiceClient::new(credential.attach(app.anonymous_channel.clone()))
            .list_complaints(v1::ListComplaintsRequest::default())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
}

/// A contractor sees its own complaints without how to reach the resident, cannot tell another
/// contractor's complaint from one that does not exist, and sees only its own figures.
#[tokio::test]
async fn a_contractor_sees_only_its_own_complaints_without_resident_contact_details() {
    let app = spawn_app().await;
    let logged = ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(gate_left_open("scoped-1", "2026-11-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();

    let mut acme = ComplaintServiceClient::new(app.channel_for_contractor("acme-retrofit"));
    let own = acme
        .get_complaint(requests::complaint(&logged.complaint_id))
        .await
        .expect("a contractor reads its own complaint")
        .into_inner()
        .complaint
        .expect("a complaint");
    let resident = own.resident.expect("the resident's reference");
    assert_eq!(resident.reference, "T-1001");
    assert_eq!(
        (
            resident.name.as_str(),
            resident.phone.as_str(),
            resident.email.as_str()
        ),
        ("", "", "")
    );
    assert_eq!(own.property.map(|p| p.address), Some(String::new()));
    assert_eq!(own.reasonable_adjustments, "");
    assert_eq!(
        own.description,
        "The side gate was left open and the dog got out"
    );

    let mut brick = ComplaintServiceClient::new(app.channel_for_contractor("brick-and-co"));
    let someone_elses = brick
        .get_complaint(requests::complaint(&logged.complaint_id))
        .await
        .expect_err("another contractor's complaint is not shown");
    let nobodys = brick
        .get_complaint(requests::complaint(&uuid::Uuid::now_v7().to_string()))
        .await
        .expect_err("no such complaint");
    assert_eq!(someone_elses.code(), Code::NotFound);
    assert_eq!(
        (someone_elses.code(), someone_elses.message()),
        (nobodys.code(), nobodys.message()),
        "another contractor's complaint answers exactly as a missing one"
    );

    // Both contractors ask for the same list, once the complaint is readable.
    let own_complaints = v1::ListComplaintsRequest {
        min_position: Some(logged.position),
        ..Default::default()
    };
    let listed = brick
        .list_complaints(own_complaints.clone())
        .await
        .expect("a contractor lists its own complaints")
        .into_inner();
    assert!(listed.complaints.is_empty(), "{listed:?}");
    let listed = acme
        .list_complaints(own_complaints)
        .await
        .expect("a contractor lists its own complaints")
        .into_inner();
    assert_eq!(listed.complaints.len(), 1);
    let asked_for_another = brick
        .list_complaints(v1::ListComplaintsRequest {
            contractor_id: "acme-retrofit".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a contractor may not list another's complaints");
    assert_eq!(asked_for_another.code(), Code::PermissionDenied);

    let mut figures = PerformanceServiceClient::new(app.channel_for_contractor("brick-and-co"));
    let request = |contractor_id: &str| v1::GetContractorPerformanceRequest {
        contractor_id: contractor_id.to_owned(),
        from_month: "2026-04".to_owned(),
        to_month: "2027-03".to_owned(),
        min_position: None,
    };
    figures
        .get_contractor_performance(request("brick-and-co"))
        .await
        .expect("its own figures");
    let others = figures
        .get_contractor_performance(request("acme-retrofit"))
        .await
        .expect_err("not another contractor's figures");
    assert_eq!(others.code(), Code::PermissionDenied);
}

/// The actor of each event is the authenticated caller; a header naming someone else, as
/// callers used to send before authentication, changes nothing.
#[tokio::test]
async fn the_recorded_actor_is_the_authenticated_caller() {
    let app = spawn_app().await;
    let mut request = tonic::Request::new(gate_left_open("actor-1", "2026-11-02T10:00:00Z"));
    request.metadata_mut().insert(
        "doorstep-actor",
        tonic::metadata::MetadataValue::from_static("someone-else"),
    );
    let channel = doorstep_tests::credential_for("call-centre-bot", &["intake"], None)
        .attach(app.anonymous_channel.clone());
    let logged = ComplaintServiceClient::new(channel)
        .log_complaint(request)
        .await
        .expect("logged")
        .into_inner();
    let stream = EventServiceClient::new(app.channel_as(&["auditor"]))
        .read_stream(v1::ReadStreamRequest {
            stream_id: format!("complaint-{}", logged.complaint_id),
            from_version: 1,
            max_count: 10,
        })
        .await
        .expect("the auditor reads the stream")
        .into_inner();
    let actor = stream.events[0]
        .metadata
        .as_ref()
        .map(|metadata| metadata.actor.clone());
    assert_eq!(actor.as_deref(), Some("jwt:call-centre-bot"));
}

/// A refusal a person can act on: it names the roles that may call the method, the roles the
/// credential has, and how to get a key with the right one.
#[tokio::test]
async fn permission_denied_names_the_roles_that_may_call() {
    let app = spawn_app().await;
    let refused = ComplaintServiceClient::new(app.channel_as(&["admin"]))
        .log_complaint(gate_left_open("roles-1", "2026-04-02T10:00:00Z"))
        .await
        .expect_err("admin may not log complaints");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let message = refused.message();
    assert!(message.contains("it needs the intake role"), "{message}");
    assert!(
        message.contains("this credential has the admin role"),
        "{message}"
    );
    assert!(message.contains("doorstep api-keys create"), "{message}");

    let refused = ComplaintServiceClient::new(app.channel_as(&["auditor"]))
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: "01a21775-9c5e-73bc-847e-b660f68f00f9".to_owned(),
        })
        .await
        .expect_err("an auditor reads the log, not complaints");
    assert!(
        refused
            .message()
            .contains("one of the intake, officer, manager or contractor roles"),
        "{}",
        refused.message()
    );
}

/// A complaint naming a contractor nobody registered says how to register one.
#[tokio::test]
async fn an_unregistered_contractor_is_refused_with_how_to_register_it() {
    let app = spawn_app().await;
    let mut request = gate_left_open("unregistered-1", "2026-04-02T10:00:00Z");
    request.contractor_id = "never-registered".to_owned();
    let refused = ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(request)
        .await
        .expect_err("an unknown contractor is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("RegisterContractor")
            && refused.message().contains("admin role"),
        "{}",
        refused.message()
    );
}
