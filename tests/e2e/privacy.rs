//! Residents' personal data: sealed at rest, opened only for those who may see it, and erased
//! for good when the resident is forgotten, with counts, rates and a rebuild unchanged.

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_server::privacy::master_keys::MasterKeyring;
use doorstep_server::privacy::rotation::{self, RotationError};
use doorstep_server::settings::PrivacySettings;
use doorstep_tests::requests;
use doorstep_tests::{
    TestApp, database_path, gate_left_open, old_complaint_received, spawn_app, spawn_app_in,
    store_legacy_complaint_received, whole_log,
};

const NAME: &str = "Ada Resident";
const PHONE: &str = "07700 900123";
const EMAIL: &str = "ada@example.org";
const ADDRESS: &str = "1 Example Road, Leeds";

/// Every byte Doorstep keeps on disk for this server: the event log, its WAL and the read models.
fn bytes_on_disk(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).expect("the data directory lists") {
        let path = entry.expect("an entry").path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).expect("a readable file"));
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

async fn get(app: &TestApp, complaint_id: &str) -> v1::Complaint {
    ComplaintServiceClient::new(app.channel_as(&["officer"]))
        .get_complaint(requests::complaint(complaint_id))
        .await
        .expect("the complaint reads")
        .into_inner()
        .complaint
        .expect("a complaint")
}

async fn figures(app: &TestApp) -> v1::GetContractorPerformanceResponse {
    PerformanceServiceClient::new(app.channel_as(&["manager"]))
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: "acme-retrofit".to_owned(),
            from_month: "2026-04".to_owned(),
            to_month: "2027-03".to_owned(),
            min_position: None,
        })
        .await
        .expect("figures")
        .into_inner()
}

async fn listed(app: &TestApp, min_position: u64) -> Vec<v1::ComplaintSummary> {
    ComplaintServiceClient::new(app.channel_as(&["officer"]))
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(min_position),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .complaints
}

#[tokio::test]
async fn personal_data_is_sealed_at_rest_and_a_forgotten_resident_reads_as_erased() {
    let app = spawn_app().await;
    let mut officer = ComplaintServiceClient::new(app.channel_as(&["officer"]));
    let logged = ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(gate_left_open("privacy-1", "2026-11-02T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    let id = logged.complaint_id.clone();
    officer
        .acknowledge_complaint(requests::officer_one_acknowledges(&id))
        .await
        .expect("acknowledged");
    let last = officer
        .record_findings(requests::gates_finding(
            &id,
            v1::FindingOutcome::Upheld,
            "The gate was left open",
        ))
        .await
        .expect("findings")
        .into_inner()
        .position;

    // Those who may see the resident's details see them…
    let seen = get(&app, &id).await;
    let resident = seen.resident.clone().expect("a resident");
    assert_eq!(
        (
            resident.name.as_str(),
            resident.phone.as_str(),
            resident.email.as_str()
        ),
        (NAME, PHONE, EMAIL)
    );
    assert_eq!(
        seen.property.clone().map(|p| p.address),
        Some(ADDRESS.to_owned())
    );
    assert!(!seen.personal_data_erased);

    // …but nothing on disk holds them in the clear, and neither does the event log.
    let disk = bytes_on_disk(&app);
    for personal in [NAME, PHONE, EMAIL, ADDRESS] {
        assert!(
            !contains(&disk, personal),
            "{personal} is on disk in the clear"
        );
    }
    let log_text: String = whole_log(&app.channel)
        .await
        .iter()
        .map(|event| event.payload_json.clone())
        .collect();
    for personal in [NAME, PHONE, EMAIL, ADDRESS] {
        assert!(
            !log_text.contains(personal),
            "{personal} is in the event log"
        );
    }

    let list_before = listed(&app, last).await;
    let figures_before = figures(&app).await;

    let mut admin = ComplaintServiceClient::new(app.channel_as(&["admin"]));
    let forget = v1::ForgetResidentRequest {
        resident_reference: "T-1001".to_owned(),
        request_id: "erasure-2026-11-20".to_owned(),
        reason: "Erasure request received 2026-11-20".to_owned(),
    };
    let forgotten = admin
        .forget_resident(forget.clone())
        .await
        .expect("forgotten")
        .into_inner();
    assert!(forgotten.key_destroyed);
    assert!(!forgotten.duplicate);
    let retried = admin
        .forget_resident(forget)
        .await
        .expect("a retry is accepted")
        .into_inner();
    assert!(retried.duplicate);
    assert_eq!(retried.position, forgotten.position);

    let erased = get(&app, &id).await;
    assert!(erased.personal_data_erased);
    let resident = erased.resident.clone().expect("a resident");
    assert_eq!(
        (
            resident.name.as_str(),
            resident.phone.as_str(),
            resident.email.as_str()
        ),
        ("[erased]", "", "")
    );
    assert_eq!(resident.reference, "T-1001");
    assert_eq!(
        erased.property.clone().map(|p| p.address),
        Some("[erased]".to_owned())
    );
    assert_eq!(
        erased.status, seen.status,
        "the complaint itself is untouched"
    );
    assert_eq!(erased.findings, seen.findings);
    assert_eq!(listed(&app, forgotten.position).await, list_before);
    assert_eq!(
        figures(&app).await,
        figures_before,
        "counts and rates are unchanged"
    );

    // The erasure is itself on record, under the admin who asked for it.
    let record = EventServiceClient::new(app.channel_as(&["auditor"]))
        .read_stream(v1::ReadStreamRequest {
            stream_id: "resident-T-1001".to_owned(),
            from_version: 1,
            max_count: 10,
        })
        .await
        .expect("the erasure stream reads")
        .into_inner();
    assert_eq!(record.events.len(), 1);
    assert_eq!(record.events[0].event_type, "ResidentForgotten");
    assert_eq!(
        record.events[0].metadata.as_ref().map(|m| m.actor.as_str()),
        Some("jwt:admin")
    );

    // A rebuild of every read model from the log gives the same answers.
    let mut app = app;
    app.stop().await;
    doorstep_server::startup::rebuild_read_models(app.settings(), |_| {}, |_, _| {})
        .await
        .expect("the read models rebuild");
    let app = app.restart().await;
    assert_eq!(listed(&app, forgotten.position).await, list_before);
    assert_eq!(figures(&app).await, figures_before);
    assert!(get(&app, &id).await.personal_data_erased);

    // A later complaint by the same resident is sealed under a new key and reads normally,
    // while the earlier one stays erased.
    let again = ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(gate_left_open("privacy-2", "2026-11-23T10:00:00Z"))
        .await
        .expect("logged")
        .into_inner();
    assert_eq!(
        get(&app, &again.complaint_id)
            .await
            .resident
            .map(|r| r.name),
        Some(NAME.to_owned())
    );
    assert!(get(&app, &id).await.personal_data_erased);
}

#[tokio::test]
async fn complaints_logged_before_sealing_still_read_and_are_masked_once_forgotten() {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let complaint_id = uuid::Uuid::now_v7();
    // As version 1, with a phone number and the `reasonable_adjustments` version 2 added.
    let mut version_two = old_complaint_received(complaint_id);
    version_two["resident"]["phone"] = "0113 496 0777".into();
    version_two["reasonable_adjustments"] = "Needs an advocate present".into();
    store_legacy_complaint_received(data_dir.path(), complaint_id, 2, version_two).await;

    let app = spawn_app_in(data_dir).await;
    let old = get(&app, &complaint_id.to_string()).await;
    assert_eq!(
        old.resident.map(|r| r.name),
        Some("Old Resident".to_owned())
    );
    assert_eq!(old.reasonable_adjustments, "Needs an advocate present");
    let forgotten = ComplaintServiceClient::new(app.channel_as(&["admin"]))
        .forget_resident(v1::ForgetResidentRequest {
            resident_reference: "T-77".to_owned(),
            ..Default::default()
        })
        .await
        .expect("forgotten")
        .into_inner();
    assert!(!forgotten.key_destroyed, "nothing of theirs was sealed");
    let masked = get(&app, &complaint_id.to_string()).await;
    assert!(masked.personal_data_erased);
    assert_eq!(
        masked.resident.map(|r| (r.name, r.phone)),
        Some(("[erased]".to_owned(), String::new()))
    );
    assert_eq!(masked.description, "Dust sheets left behind");
    assert_eq!(
        masked.reasonable_adjustments, "",
        "health information is masked too"
    );
}

/// Losing the master key must not be papered over: with residents' keys stored, a server whose
/// master key file has gone refuses to start instead of making a new key that opens nothing.
#[tokio::test]
async fn a_missing_master_key_stops_the_server_from_starting() {
    let mut app = spawn_app().await;
    ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(gate_left_open("master-1", "2026-11-02T10:00:00Z"))
        .await
        .expect("logged");
    app.stop().await;
    let master_key = app.settings().privacy.master_key_file.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&master_key)
            .expect("the master key file was created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_file(&master_key).expect("the master key file is removed");
    let refused = doorstep_server::Application::build(app.settings().clone()).await;
    assert!(
        matches!(refused, Err(doorstep_server::StartupError::Vault(_))),
        "the server must not start without its master key"
    );
    assert!(!master_key.exists(), "no new master key was made");
}

/// First complaints arriving together, from many new residents and several times from one, share
/// commits for their new keys; each resident ends with exactly one key, and every complaint opens
/// with its own resident's details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_complaints_get_one_key_per_resident_and_all_open() {
    let app = spawn_app().await;
    let residents: Vec<String> = (0..24)
        .map(|n| format!("R-{n}"))
        .chain((0..16).map(|_| "R-SHARED".to_owned()))
        .collect();
    let mut calls = tokio::task::JoinSet::new();
    for (n, reference) in residents.into_iter().enumerate() {
        let mut client = ComplaintServiceClient::new(app.channel_as(&["intake"]));
        let mut request = gate_left_open(&format!("together-{n}"), "2026-11-02T10:00:00Z");
        let resident = request
            .resident
            .as_mut()
            .expect("the template names a resident");
        resident.name = format!("Resident {reference}");
        resident.reference = reference.clone();
        calls.spawn(async move {
            let logged = client
                .log_complaint(request)
                .await
                .expect("logged")
                .into_inner();
            (logged.complaint_id, format!("Resident {reference}"))
        });
    }
    let logged = calls.join_all().await;
    for (complaint_id, name) in &logged {
        let seen = get(&app, complaint_id).await;
        assert_eq!(
            seen.resident.map(|r| r.name).as_deref(),
            Some(name.as_str()),
            "complaint {complaint_id} opens with its resident's name"
        );
    }
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        database_path(app.data_dir()).display()
    ))
    .await
    .expect("the event store's file opens");
    let keys: Vec<String> = sqlx::query_scalar("SELECT resident_reference FROM resident_keys")
        .fetch_all(&pool)
        .await
        .expect("the keys are readable");
    assert_eq!(keys.len(), 25, "24 residents and the shared one: {keys:?}");
}

/// A complaint by another resident, who stays.
fn by_resident(idempotency_key: &str, reference: &str, name: &str) -> v1::LogComplaintRequest {
    let mut request = gate_left_open(idempotency_key, "2026-11-02T10:00:00Z");
    if let Some(resident) = request.resident.as_mut() {
        resident.reference = reference.to_owned();
        resident.name = name.to_owned();
    }
    request
}

async fn log(app: &TestApp, request: v1::LogComplaintRequest) -> String {
    ComplaintServiceClient::new(app.channel_as(&["intake"]))
        .log_complaint(request)
        .await
        .expect("logged")
        .into_inner()
        .complaint_id
}

async fn forget(app: &TestApp, reference: &str) {
    let forgotten = ComplaintServiceClient::new(app.channel_as(&["admin"]))
        .forget_resident(v1::ForgetResidentRequest {
            resident_reference: reference.to_owned(),
            request_id: format!("erasure-{reference}"),
            reason: "Erasure request".to_owned(),
        })
        .await
        .expect("forgotten")
        .into_inner();
    assert!(forgotten.key_destroyed);
}

/// The resident's wrapped key as a copy of the SQLite database (a backup) holds it.
async fn wrapped_key_in_sqlite(data_dir: &std::path::Path, reference: &str) -> String {
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", database_path(data_dir).display()))
            .await
            .expect("the event store's file opens");
    let wrapped =
        sqlx::query_scalar("SELECT wrapped_key FROM resident_keys WHERE resident_reference = ?1")
            .bind(reference)
            .fetch_one(&pool)
            .await
            .expect("the resident has a key");
    // An open reader would keep the server from truncating its WAL.
    pool.close().await;
    wrapped
}

/// Whether any stretch of 24 characters of `wrapped` is anywhere on disk.
fn any_part_on_disk(app: &TestApp, wrapped: &str) -> bool {
    let disk = bytes_on_disk(app);
    wrapped
        .as_bytes()
        .windows(24)
        .step_by(8)
        .any(|part| disk.windows(part.len()).any(|window| window == part))
}

/// A keyring holding exactly one master key, as an operator's backup of it would.
fn ring_of(generation: u32, key_base64: &str) -> MasterKeyring {
    MasterKeyring::load(&PrivacySettings {
        master_key: None,
        master_keys: Some(format!("{generation}:{}", key_base64.trim()).into()),
        master_key_file: std::path::PathBuf::from("/nonexistent/master.key"),
    })
    .expect("a valid master key")
}

/// On SQLite erasure holds in the live files at once: the forgotten resident's wrapped key is
/// overwritten in the database file and gone from the WAL, while the server runs and after it
/// stops. A copy taken before (a backup) is made unopenable by rotating the master key and
/// destroying the old one; everyone else's data still reads after the rotation.
#[tokio::test]
async fn a_forgotten_residents_key_leaves_the_data_directory_and_rotation_retires_every_copy() {
    let mut app = spawn_app().await;
    let forgotten_id = log(&app, gate_left_open("disk-1", "2026-11-02T10:00:00Z")).await;
    let staying_id = log(&app, by_resident("disk-2", "T-2002", "Bea Stays")).await;
    let backup = wrapped_key_in_sqlite(app.data_dir(), "T-1001").await;
    assert!(
        any_part_on_disk(&app, &backup),
        "the key is on disk before the erasure"
    );
    let old_master = std::fs::read_to_string(&app.settings().privacy.master_key_file)
        .expect("the master key file");
    assert!(
        ring_of(1, &old_master).opens("T-1001", &backup),
        "the copy opens with the master key it was wrapped by"
    );

    forget(&app, "T-1001").await;
    assert!(
        !any_part_on_disk(&app, &backup),
        "no part of the forgotten key is in the data directory of a running server"
    );
    let refused = rotation::rotate_master(app.settings(), true).await;
    assert!(
        matches!(refused, Err(RotationError::Lease(_))),
        "no rotation while a server runs: {refused:?}"
    );
    app.stop().await;
    assert!(!any_part_on_disk(&app, &backup), "nor after a clean stop");

    let rotated = rotation::rotate_master(app.settings(), true)
        .await
        .expect("the master key rotates");
    assert_eq!(rotated.generation, 2);
    assert_eq!(rotated.rewrapped, 1, "the one live key");
    assert_eq!(rotated.retired, vec![1]);
    assert!(rotated.destroyed);
    assert!(!app.settings().privacy.master_key_file.exists());
    // Whatever master key an operator still holds opens no copy of the forgotten key.
    let kept = MasterKeyring::load(&app.settings().privacy).expect("the kept master keys");
    assert_eq!(kept.generations().collect::<Vec<_>>(), vec![2]);
    assert!(!kept.opens("T-1001", &backup));
    let staying = wrapped_key_in_sqlite(app.data_dir(), "T-2002").await;
    assert!(kept.opens("T-2002", &staying));
    assert!(
        !ring_of(1, &old_master).opens("T-2002", &staying),
        "re-wrapped"
    );

    let app = app.restart().await;
    assert_eq!(
        get(&app, &staying_id).await.resident.map(|r| r.name),
        Some("Bea Stays".to_owned())
    );
    assert!(get(&app, &forgotten_id).await.personal_data_erased);
    let new_id = log(&app, by_resident("disk-3", "T-3003", "Cy New")).await;
    assert_eq!(
        get(&app, &new_id).await.resident.map(|r| r.name),
        Some("Cy New".to_owned())
    );
}

/// A server holds its database's lease: it refuses to start while it cannot, and a server whose
/// master keys lack a generation that wraps stored keys refuses to start.
#[tokio::test]
async fn a_server_without_the_generation_that_wraps_stored_keys_refuses_to_start() {
    let mut app = spawn_app().await;
    log(&app, gate_left_open("generation-1", "2026-11-02T10:00:00Z")).await;
    app.stop().await;
    rotation::rotate_master(app.settings(), false)
        .await
        .expect("the master key rotates");
    // Generation 1 was kept; a server given only it lacks generation 2.
    let mut settings = app.settings().clone();
    let first = std::fs::read_to_string(&settings.privacy.master_key_file).expect("kept");
    settings.privacy.master_keys = Some(format!("1:{}", first.trim()).into());
    let refused = doorstep_server::Application::build(settings).await;
    let Err(doorstep_server::StartupError::Vault(error)) = refused else {
        panic!("the server must not start without generation 2");
    };
    assert!(error.to_string().contains("generation 2"), "{error}");
}

const GENERATION_ONE: &str = "ZG9vcnN0ZXAgcm90YXRpb24gZ2VuZXJhdGlvbiBvbmU=";
const GENERATION_TWO: &str = "ZG9vcnN0ZXAgcm90YXRpb24gZ2VuZXJhdGlvbiB0d28=";

/// On PostgreSQL a deleted row lives on until vacuum, and in WAL archives and backups: erasure is
/// complete once the master key that wrapped it is rotated away. Master keys come from settings
/// (a secret store): the operator adds generation 2, rotates with every server stopped, and
/// starts the servers with generation 2 alone. Nothing they still hold opens the forgotten key.
#[tokio::test]
async fn on_postgres_rotating_the_master_key_from_settings_retires_every_copy_of_a_forgotten_key() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let with_keys = |keys: String| {
        move |settings: &mut doorstep_server::Settings| {
            settings.privacy.master_key = None;
            settings.privacy.master_keys = Some(keys.into());
        }
    };
    let clock = std::sync::Arc::new(doorstep_server::clock::SystemClock);
    let mut app = doorstep_tests::spawn_app_on_database_with(
        database.url(),
        with_keys(format!("1:{GENERATION_ONE}")),
        clock.clone(),
    )
    .await;
    let forgotten_id = log(&app, gate_left_open("pg-rotate-1", "2026-11-02T10:00:00Z")).await;
    let staying_id = log(&app, by_resident("pg-rotate-2", "T-2002", "Bea Stays")).await;
    let pool = sqlx::PgPool::connect(database.url())
        .await
        .expect("the database");
    let backup: String =
        sqlx::query_scalar("SELECT wrapped_key FROM resident_keys WHERE resident_reference = $1")
            .bind("T-1001")
            .fetch_one(&pool)
            .await
            .expect("the resident has a key");
    assert!(ring_of(1, GENERATION_ONE).opens("T-1001", &backup));
    forget(&app, "T-1001").await;

    let mut rotating = app.settings().clone();
    with_keys(format!("1:{GENERATION_ONE},2:{GENERATION_TWO}"))(&mut rotating);
    let refused = rotation::rotate_master(&rotating, false).await;
    assert!(
        matches!(refused, Err(RotationError::Rewrap(_))),
        "no rotation while a server runs: {refused:?}"
    );
    app.stop().await;
    let rotated = rotation::rotate_master(&rotating, false)
        .await
        .expect("the master key rotates");
    assert_eq!(
        (
            rotated.generation,
            rotated.rewrapped,
            rotated.retired.clone()
        ),
        (2, 1, vec![1])
    );
    assert!(rotated.retired_files.is_empty(), "keys come from settings");
    let again = rotation::rotate_master(&rotating, false).await;
    assert!(
        matches!(again, Err(RotationError::NoNewGeneration(2))),
        "a rotation needs a new generation: {again:?}"
    );
    let generations: Vec<i64> = sqlx::query_scalar("SELECT master_generation FROM resident_keys")
        .fetch_all(&pool)
        .await
        .expect("the keys");
    assert_eq!(generations, vec![2]);

    // Generation 1 is destroyed: the servers are given generation 2 alone.
    let app = doorstep_tests::spawn_app_on_database_with(
        database.url(),
        with_keys(format!("2:{GENERATION_TWO}")),
        clock,
    )
    .await;
    let kept = MasterKeyring::load(&app.settings().privacy).expect("the kept master keys");
    assert!(!kept.opens("T-1001", &backup));
    assert_eq!(
        get(&app, &staying_id).await.resident.map(|r| r.name),
        Some("Bea Stays".to_owned())
    );
    assert!(get(&app, &forgotten_id).await.personal_data_erased);
    let new_id = log(&app, by_resident("pg-rotate-3", "T-3003", "Cy New")).await;
    assert_eq!(
        get(&app, &new_id).await.resident.map(|r| r.name),
        Some("Cy New".to_owned())
    );
    pool.close().await;
}

/// Reasonable adjustments can be health information (special category data): they are sealed
/// with the contact details, withheld from the event log and the read models, and erased with
/// the rest.
#[tokio::test]
async fn reasonable_adjustments_are_sealed_withheld_and_erased_with_the_personal_data() {
    const ADJUSTMENTS: &str = "Profoundly deaf, needs BSL";
    let app = spawn_app().await;
    let mut request = gate_left_open("adjustments-1", "2026-11-02T10:00:00Z");
    request.reasonable_adjustments = ADJUSTMENTS.to_owned();
    let id = log(&app, request).await;
    assert_eq!(get(&app, &id).await.reasonable_adjustments, ADJUSTMENTS);
    let position = ComplaintServiceClient::new(app.channel_as(&["officer"]))
        .acknowledge_complaint(requests::officer_one_acknowledges(&id))
        .await
        .expect("acknowledged")
        .into_inner()
        .position;
    // The read models have caught up with the complaint, and hold nothing of it either.
    listed(&app, position).await;
    assert!(
        !contains(&bytes_on_disk(&app), ADJUSTMENTS),
        "the adjustments are on disk in the clear"
    );
    let log_text: String = whole_log(&app.channel)
        .await
        .iter()
        .map(|event| event.payload_json.clone())
        .collect();
    assert!(!log_text.contains(ADJUSTMENTS), "they are in the event log");

    forget(&app, "T-1001").await;
    let erased = get(&app, &id).await;
    assert!(erased.personal_data_erased);
    assert_eq!(erased.reasonable_adjustments, "");
}
