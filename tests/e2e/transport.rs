//! The transport: TLS and mutual TLS with certificates made here, message, string and list
//! limits, and a per-principal rate limit under which one caller's flood leaves others served.

use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_server::settings::TlsSettings;
use doorstep_server::{Application, Settings};
use doorstep_tests::{credential_for, gate_left_open, spawn_app_configured, violated_field};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority made for one test, and certificates it signs.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("a CA certificate").pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and key (PEM) for `name`, for a server or a client.
    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let certificate = params.signed_by(&key, &self.issuer).expect("a certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

/// Starts a server with TLS from `tls` and returns its port; the server stops with the test.
async fn serve_tls(data_dir: &std::path::Path, tls: TlsSettings) -> u16 {
    doorstep_telemetry::init_for_tests();
    let mut settings = Settings::for_tests(data_dir);
    settings.tls = tls;
    let application = Application::build(settings).await.expect("it builds");
    let port = application.port();
    tokio::spawn(application.run_until_stopped(std::future::pending()));
    port
}

fn write(directory: &std::path::Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, contents).expect("a file is written");
    path
}

/// An authenticated call over `endpoint`; the code it answers with (`Ok` for success).
async fn list_contractors(endpoint: Endpoint) -> Result<Code, tonic::transport::Error> {
    let channel = endpoint.timeout(Duration::from_secs(10)).connect().await?;
    let credential = credential_for("tls-client", &["officer"], None);
    let answer = ContractorServiceClient::new(credential.attach(channel))
        .list_contractors(v1::ListContractorsRequest::default())
        .await;
    Ok(answer.map_or_else(|status| status.code(), |_| Code::Ok))
}

#[tokio::test]
async fn tls_serves_trusting_clients_and_refuses_plaintext() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new("Doorstep test CA");
    let (cert, key) = ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let port = serve_tls(
        directory.path(),
        TlsSettings {
            cert_file: Some(write(directory.path(), "server.crt", &cert)),
            key_file: Some(write(directory.path(), "server.key", &key)),
            ..TlsSettings::default()
        },
    )
    .await;
    let trusting = Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("an endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca.pem))
                .domain_name("localhost"),
        )
        .expect("a TLS client");
    assert_eq!(list_contractors(trusting).await.ok(), Some(Code::Ok));

    // The manager's report command reaches a TLS server given its CA.
    let server = doorstep_server::report::ReportServer {
        address: format!("https://localhost:{port}"),
        credential: credential_for("contract-manager", &["manager"], None),
        ca_certificate: Some(ca.pem.clone().into_bytes()),
    };
    let mut report = Vec::new();
    doorstep_server::report::handling(
        &server,
        2026,
        12_000,
        doorstep_server::report::ReportFormat::Csv,
        &mut report,
    )
    .await
    .expect("the report is produced over TLS");
    assert!(!report.is_empty());

    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("an endpoint");
    let refused = list_contractors(plaintext).await;
    assert!(
        !matches!(refused, Ok(Code::Ok)),
        "a plaintext client is not served: {refused:?}"
    );

    let other_ca = TestCa::new("Someone else's CA");
    let distrusting = Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("an endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&other_ca.pem))
                .domain_name("localhost"),
        )
        .expect("a TLS client");
    assert!(
        !matches!(list_contractors(distrusting).await, Ok(Code::Ok)),
        "a client that does not trust the server's CA does not talk to it"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let server_ca = TestCa::new("Doorstep server CA");
    let client_ca = TestCa::new("Integrations CA");
    let (cert, key) = server_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let port = serve_tls(
        directory.path(),
        TlsSettings {
            cert_file: Some(write(directory.path(), "server.crt", &cert)),
            key_file: Some(write(directory.path(), "server.key", &key)),
            client_ca_file: Some(write(directory.path(), "clients.crt", &client_ca.pem)),
            client_certificate_optional: false,
        },
    )
    .await;
    let endpoint = |identity: Option<(String, String)>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&server_ca.pem))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://localhost:{port}"))
            .expect("an endpoint")
            .tls_config(tls)
            .expect("a TLS client")
    };
    let call_centre = client_ca.issue("call-centre", ExtendedKeyUsagePurpose::ClientAuth);
    assert_eq!(
        list_contractors(endpoint(Some(call_centre))).await.ok(),
        Some(Code::Ok)
    );
    assert!(
        !matches!(list_contractors(endpoint(None)).await, Ok(Code::Ok)),
        "no client certificate, no service"
    );
    let stranger = server_ca.issue("stranger", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        !matches!(
            list_contractors(endpoint(Some(stranger))).await,
            Ok(Code::Ok)
        ),
        "a certificate from another CA is refused"
    );
}

#[tokio::test]
async fn oversized_messages_long_strings_and_long_lists_are_refused() {
    let app = spawn_app_configured(|settings| settings.limits.max_message_bytes = 64 * 1024).await;
    let mut intake = ComplaintServiceClient::new(app.channel_as(&["intake"]));

    let mut huge = gate_left_open("huge", "2026-11-02T10:00:00Z");
    huge.outcome_sought = "x".repeat(100 * 1024);
    let refused = intake.log_complaint(huge).await.expect_err("too large");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    let mut long = gate_left_open("long", "2026-11-02T10:00:00Z");
    long.description = "y".repeat(20_000);
    let refused = intake.log_complaint(long).await.expect_err("too long");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&refused).as_deref(), Some("description"));

    let mut many = gate_left_open("many", "2026-11-02T10:00:00Z");
    many.standards = vec![v1::ServiceStandard::GatesSecured as i32; 50];
    let refused = intake.log_complaint(many).await.expect_err("too many");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&refused).as_deref(), Some("standards"));

    let mut profile = doorstep_tests::contractor_profile("listy");
    profile.contracts[0].standards = vec![1; 1_000];
    let refused = ContractorServiceClient::new(app.channel_as(&["admin"]))
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: "listy".to_owned(),
            profile: Some(profile),
            request_id: "listy".to_owned(),
        })
        .await
        .expect_err("too many standards");
    assert_eq!(
        violated_field(&refused).as_deref(),
        Some("profile.contracts[0].standards")
    );
}

#[tokio::test]
async fn a_flood_from_one_caller_is_limited_without_starving_another() {
    let app = spawn_app_configured(|settings| {
        settings.limits.requests_per_second = 5;
        settings.limits.burst = 10;
    })
    .await;
    let flooder = app.channel_as(&["officer"]);
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let mut client = ContractorServiceClient::new(flooder.clone());
            tokio::spawn(async move {
                client
                    .list_contractors(v1::ListContractorsRequest::default())
                    .await
                    .map_or_else(|status| status.code(), |_| Code::Ok)
            })
        })
        .collect();
    // Another caller, during the flood, is served every time.
    let mut other = ContractorServiceClient::new(app.channel_as(&["manager"]));
    for _ in 0..5 {
        other
            .list_contractors(v1::ListContractorsRequest::default())
            .await
            .expect("the other caller is served");
    }
    let mut served = 0;
    let mut limited = 0;
    for call in futures::future::join_all(flood).await {
        match call.expect("a task") {
            Code::Ok => served += 1,
            Code::ResourceExhausted => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // 200 calls against a burst of 10 and 5 a second: most are refused however slow the machine.
    assert!(limited >= 100, "served {served}, limited {limited}");
    assert!(served >= 10, "the flooder still got its burst: {served}");
    // The limit is per principal, not per connection or role: the flooder's own share refills.
    tokio::time::sleep(Duration::from_millis(400)).await;
    ContractorServiceClient::new(flooder)
        .list_contractors(v1::ListContractorsRequest::default())
        .await
        .expect("the flooder is served again once its share refills");
}

/// Guessing API keys from one address stops being checked after a few misses, so argon2 work
/// is not the guesser's to spend; valid keys from that address keep working.
#[tokio::test]
async fn guessing_api_keys_is_throttled_while_keys_in_use_keep_working() {
    use doorstep_server::auth::api_keys;
    use doorstep_server::auth::client::CallerCredential;
    use secrecy::ExposeSecret;

    let app = spawn_app_configured(|settings| settings.limits.failed_api_keys_per_minute = 5).await;
    let keys_file = app.settings().auth.api_keys_file.clone();
    let role = [doorstep_server::auth::Role::Intake];
    let in_use = api_keys::create(&keys_file, "call-centre", &role, None).expect("a key");
    let unused = api_keys::create(&keys_file, "work-orders", &role, None).expect("a key");
    let call = |key: String| {
        let channel = CallerCredential::api_key(&key)
            .expect("sendable")
            .attach(app.anonymous_channel.clone());
        async move {
            ContractorServiceClient::new(channel)
                .list_contractors(v1::ListContractorsRequest::default())
                .await
                .map_or_else(|status| status.code(), |_| Code::Ok)
        }
    };
    assert_eq!(call(in_use.key.expose_secret().to_owned()).await, Code::Ok);
    for guess in 0..5 {
        let wrong = format!("dsk_{}_wrong-secret-{guess}", unused.id);
        assert_eq!(call(wrong).await, Code::Unauthenticated);
    }
    let wrong = format!("dsk_{}_wrong-secret-again", unused.id);
    assert_eq!(call(wrong).await, Code::ResourceExhausted);
    assert_eq!(
        call(unused.key.expose_secret().to_owned()).await,
        Code::Ok,
        "from this address, a valid key not seen before is recognised without argon2"
    );
    assert_eq!(
        call(in_use.key.expose_secret().to_owned()).await,
        Code::Ok,
        "the integration already using its key is not locked out"
    );
}
