//! The real `doorstep` binary, configured only through the environment as an operator would:
//! it migrates, serves on the port it logs, stops cleanly on SIGTERM and keeps what it accepted.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use doorstep_api::v1;
use doorstep_store::{ResidentKeyStore, SqliteEventStore, SqliteSettings};

use support::{client, doorstep, register_contractor, serve, small_complaint};

fn complaint() -> v1::LogComplaintRequest {
    small_complaint("binary-1", "T-9", "B Resident")
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

/// Safe by default: the first start creates an admin key readable by its owner alone and says
/// where; nothing answers without a credential; `doorstep api-keys create` adds a key the running
/// server accepts at once; and what a key does is recorded under the key's name.
#[tokio::test]
async fn the_first_start_creates_an_admin_key_and_nothing_answers_without_a_credential() {
    use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
    use doorstep_api::v1::event_service_client::EventServiceClient;
    use doorstep_server::auth::client::CallerCredential;

    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );
    let running = serve(&database_url);
    let admin_key_file = directory.path().join("data/admin.api-key");
    assert!(
        running
            .stderr_tail()
            .contains(&admin_key_file.display().to_string()),
        "the log says where the admin key is:\n{}",
        running.stderr_tail()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&admin_key_file)
            .expect("the admin key file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let admin_key = std::fs::read_to_string(&admin_key_file).expect("the admin key is readable");
    assert!(
        !running.stderr_tail().contains(admin_key.trim()),
        "the key itself is never logged"
    );

    let connection =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", running.port))
            .expect("a valid endpoint")
            .connect()
            .await
            .expect("the binary accepts connections");
    let anonymous = ContractorServiceClient::new(connection.clone())
        .list_contractors(v1::ListContractorsRequest::default())
        .await
        .expect_err("no credential, no answer");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let admin = CallerCredential::api_key(&admin_key).expect("a sendable key");
    ContractorServiceClient::new(admin.attach(connection.clone()))
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: "acme-retrofit".to_owned(),
            profile: Some(v1::ContractorProfile {
                legal_name: "Acme Retrofit Ltd".to_owned(),
                public_contact_name: "Sam Site".to_owned(),
                public_phone: "0113 496 0000".to_owned(),
                ..Default::default()
            }),
            request_id: "register-acme".to_owned(),
        })
        .await
        .expect("the admin key registers a contractor");

    let created = doorstep(&database_url)
        .args([
            "api-keys",
            "create",
            "--role",
            "auditor",
            "--name",
            "audit-team",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("api-keys create runs");
    assert!(created.status.success());
    let auditor_key = String::from_utf8(created.stdout).expect("the key is printed as text");
    let auditor = CallerCredential::api_key(auditor_key.trim()).expect("a sendable key");
    let stream = EventServiceClient::new(auditor.attach(connection))
        .read_stream(v1::ReadStreamRequest {
            stream_id: "contractor-acme-retrofit".to_owned(),
            from_version: 1,
            max_count: 10,
        })
        .await
        .expect("the new auditor key reads the log without a restart")
        .into_inner();
    let actor = stream
        .events
        .first()
        .and_then(|event| event.metadata.as_ref())
        .map(|metadata| metadata.actor.clone());
    assert_eq!(actor.as_deref(), Some("api-key:first-admin"));
}

/// Every file in `directory`, read whole.
fn files_in(directory: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    std::fs::read_dir(directory)
        .expect("the data directory lists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable file");
            (path, bytes)
        })
        .collect()
}

/// The files of `directory` holding any stretch of 24 characters of `wrapped`.
fn files_holding(directory: &std::path::Path, wrapped: &str) -> Vec<std::path::PathBuf> {
    files_in(directory)
        .into_iter()
        .filter(|(_, bytes)| {
            wrapped
                .as_bytes()
                .windows(24)
                .step_by(8)
                .any(|part| bytes.windows(part.len()).any(|window| window == part))
        })
        .map(|(path, _)| path)
        .collect()
}

/// As an operator would run it: the binary keeps its data directory to its owner, a forgotten
/// resident's wrapped key is in no file of it (running, and after SIGTERM), and `doorstep keys
/// rotate-master --destroy-old` refuses while the server runs, then retires the master key that
/// wrapped it, with the other residents still readable.
#[tokio::test]
async fn erasure_leaves_no_key_on_disk_and_rotate_master_retires_the_old_master_key() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let data = directory.path().join("data");
    let database_url = format!("sqlite://{}", data.join("doorstep.db").display());
    let master_key_file = data.join("master.key");
    let with_key_file = |mut command: Command| {
        command.env("DOORSTEP__PRIVACY__MASTER_KEY_FILE", &master_key_file);
        command
    };
    let serve_here = || {
        let mut command = with_key_file(doorstep(&database_url));
        command.arg("serve");
        support::spawn(command)
    };
    let mut running = serve_here();
    register_contractor(running.port, "acme-retrofit").await;
    let forgotten = client(running.port)
        .await
        .log_complaint(complaint())
        .await
        .expect("logged")
        .into_inner();
    let staying = small_complaint("binary-2", "T-10", "C Resident");
    let staying = client(running.port)
        .await
        .log_complaint(staying)
        .await
        .expect("logged")
        .into_inner();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| {
            std::fs::metadata(path)
                .expect("the path exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            mode(&data),
            0o700,
            "the data directory is its owner's alone"
        );
        for (path, _) in files_in(&data) {
            assert_eq!(
                mode(&path),
                0o600,
                "{} is its owner's alone",
                path.display()
            );
        }
    }

    // A backup taken now holds the key.
    let store = SqliteEventStore::open(SqliteSettings::new(data.join("doorstep.db")))
        .await
        .expect("the database opens");
    let backup = store
        .wrapped_key("T-9")
        .await
        .expect("the key store reads")
        .expect("the resident has a key")
        .wrapped;
    store.close().await;
    assert!(!files_holding(&data, &backup).is_empty());

    let erased = client(running.port)
        .await
        .forget_resident(v1::ForgetResidentRequest {
            resident_reference: "T-9".to_owned(),
            request_id: "erasure-t9".to_owned(),
            reason: String::new(),
        })
        .await
        .expect("forgotten")
        .into_inner();
    assert!(erased.key_destroyed);
    assert_eq!(
        files_holding(&data, &backup),
        Vec::<std::path::PathBuf>::new(),
        "no file of a running server holds the forgotten key"
    );

    let rotate = || {
        let mut command = with_key_file(doorstep(&database_url));
        command.args(["keys", "rotate-master", "--destroy-old"]);
        command.output().expect("rotate-master runs")
    };
    let refused = rotate();
    assert!(!refused.status.success(), "no rotation beside a server");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("server is running"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let exit = running.stop_gracefully().await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        files_holding(&data, &backup),
        Vec::<std::path::PathBuf>::new(),
        "nor any file after a clean stop"
    );

    let rotated = rotate();
    let said = String::from_utf8_lossy(&rotated.stderr);
    assert!(rotated.status.success(), "{said}");
    assert!(said.contains("generation 2"), "{said}");
    // One resident is left (the other was forgotten): one key, said in the singular.
    assert!(said.contains("re-wrapped 1 resident key:"), "{said}");
    assert!(said.contains("destroyed the retired master key"), "{said}");
    assert!(!master_key_file.exists(), "generation 1 is destroyed");
    let running = serve_here();
    let view = client(running.port)
        .await
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: staying.complaint_id,
        })
        .await
        .expect("a live resident's complaint reads after the rotation")
        .into_inner();
    assert_eq!(
        view.complaint.and_then(|c| c.resident).map(|r| r.name),
        Some("C Resident".to_owned())
    );
    let view = client(running.port)
        .await
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: forgotten.complaint_id,
        })
        .await
        .expect("the forgotten resident's complaint reads")
        .into_inner();
    assert!(view.complaint.is_some_and(|c| c.personal_data_erased));
}

/// A key in use keeps working through a guessing flood from its own address after the binary
/// restarts, when the new process has never seen the key: it is recognised by its fingerprint,
/// while the guesses past the limit are refused unchecked.
#[tokio::test]
async fn a_key_in_use_keeps_working_through_a_guessing_flood_after_a_restart() {
    use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
    use doorstep_server::auth::client::CallerCredential;

    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );
    let mut running = serve(&database_url);
    let created = doorstep(&database_url)
        .args([
            "api-keys",
            "create",
            "--role",
            "intake",
            "--name",
            "call-centre",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("api-keys create runs");
    assert!(created.status.success());
    let key = String::from_utf8(created.stdout).expect("the key is printed as text");
    let key = key.trim().to_owned();
    let key_id = key
        .strip_prefix("dsk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id.to_owned())
        .expect("a dsk_<id>_<secret> key");
    let call = async |port: u16, key: &str| {
        let connection =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .expect("a valid endpoint")
                .connect()
                .await
                .expect("the binary accepts connections");
        let channel = CallerCredential::api_key(key)
            .expect("sendable")
            .attach(connection);
        ContractorServiceClient::new(channel)
            .list_contractors(v1::ListContractorsRequest::default())
            .await
            .map_or_else(|status| status.code(), |_| tonic::Code::Ok)
    };
    assert_eq!(call(running.port, &key).await, tonic::Code::Ok);
    assert!(running.stop_gracefully().await.success());

    let running = serve(&database_url);
    // The default limit is 20 bad keys a minute from one address.
    let mut throttled = 0;
    for guess in 0..25 {
        let code = call(running.port, &format!("dsk_{key_id}_guess-{guess}")).await;
        assert!(
            matches!(
                code,
                tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted
            ),
            "{code:?}"
        );
        throttled += usize::from(code == tonic::Code::ResourceExhausted);
    }
    assert!(throttled >= 5, "guessing is throttled: {throttled}");
    assert_eq!(
        call(running.port, &key).await,
        tonic::Code::Ok,
        "the key in use still works from the flooded address"
    );
}
