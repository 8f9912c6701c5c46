//! Clients that no one here wrote: a Python client generated from `proto/` by grpcio-tools and a
//! Node client that @grpc/proto-loader builds from `proto/` at run time. Each drives one complaint
//! through the real server (register a contractor, record a visit, log, acknowledge, read back,
//! performance report) and prints what it saw as JSON; the test checks that against the server's
//! own answers through the Rust client, and checks that a refused call fails the script. The
//! README's Python snippet is run as written, too.
//!
//! Without Python's grpcio-tools or the Node packages (`npm ci` in `tests/clients/node`) these tests
//! say so loudly and skip, unless `DOORSTEP_REQUIRE_CLIENTS=1` (set by `.ci/run`, which installs
//! both) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use doorstep_api::v1;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_tests::requests;
use doorstep_tests::{TestApp, spawn_app, token};
use serde_json::{Value, json};
use tokio::process::Command;

/// What each journey step needs: register the contractor (admin), record the visit and log the
/// complaint (intake), acknowledge it (officer), read the contractor's figures (manager).
const JOURNEY_ROLES: [&str; 4] = ["admin", "intake", "officer", "manager"];

/// The contractor the scripts register and complain about; its figures hold only their writes.
const JOURNEY_CONTRACTOR: &str = "journey-retrofit";

/// Long enough for a cold Python or Node start and every call's own 10 s deadline.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_owned()
}

/// Whether a foreign client's dependencies are installed. Without them the test says so loudly and
/// is skipped, as the PostgreSQL and e-mail tests are, unless `DOORSTEP_REQUIRE_CLIENTS=1`.
fn installed(client: &str, found: bool, install: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var("DOORSTEP_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "DOORSTEP_REQUIRE_CLIENTS=1 but the {client} client's dependencies are missing ({install})"
    );
    eprintln!("\n*** SKIPPED: the {client} client test needs its dependencies ({install}) ***\n");
    false
}

fn command_succeeds(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs a client script against `app` with a token for `subject` holding `roles`.
async fn run_script(mut script: Command, app: &TestApp, subject: &str, roles: &[&str]) -> Output {
    script
        .env("DOORSTEP_ADDRESS", format!("127.0.0.1:{}", app.port))
        .env("DOORSTEP_TOKEN", token(subject, roles, None))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(SCRIPT_TIMEOUT, script.output())
        .await
        .expect("the script finishes in time")
        .expect("the script starts")
}

/// What a successful journey printed, or a failure showing everything the script said.
fn journey_output(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the journey failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("the journey printed no JSON ({error}):\n{stdout}"))
}

/// A call the credential does not allow must end the script with an error naming the status, not
/// be swallowed: the scripts are only evidence if they fail when the server refuses them.
fn assert_refused(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a journey refused by the server exited successfully"
    );
    assert!(
        stderr.contains("PERMISSION_DENIED"),
        "the script did not report the refusal: {stderr}"
    );
}

fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> String {
    let timestamp = timestamp.expect("a timestamp");
    DateTime::from_timestamp(timestamp.seconds, 0)
        .expect("a representable time")
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Checks what a script saw against the server's answers to the Rust client, and against what the
/// Code and the report must say about one complaint acknowledged two working days after receipt.
async fn check_journey(app: &TestApp, seen: &Value, subject: &str) {
    let complaint_id = seen["complaint_id"]
        .as_str()
        .expect("the journey printed the complaint id");
    let answer = app
        .client
        .clone()
        .get_complaint(requests::complaint(complaint_id))
        .await
        .expect("the Rust client finds the complaint the script logged")
        .into_inner();
    let complaint = answer.complaint.expect("a complaint");
    let stage_one = complaint.stage_one.as_ref().expect("stage 1 progress");
    assert_eq!(complaint.status(), v1::ComplaintStatus::UnderInvestigation);
    // Thursday 7 May 2026 plus ten working days.
    assert_eq!(stage_one.response_due, "2026-05-21");
    let actors: Vec<&str> = answer.history.iter().map(|e| e.actor.as_str()).collect();
    let expected_actor = format!("jwt:{subject}");
    assert_eq!(
        actors,
        [expected_actor.as_str(); 2],
        "the script's token wrote every event"
    );

    assert_eq!(seen["logged"], json!({ "version": 1, "duplicate": false }));
    assert_eq!(
        seen["acknowledged"],
        json!({ "version": 2, "response_due": stage_one.response_due })
    );
    let standards: Vec<&str> = complaint
        .standards()
        .map(|standard| standard.as_str_name())
        .collect();
    let history: Vec<&str> = answer
        .history
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        seen["complaint"],
        json!({
            "complaint_id": complaint.complaint_id,
            "status": complaint.status().as_str_name(),
            "stage": complaint.stage().as_str_name(),
            "contractor_id": JOURNEY_CONTRACTOR,
            "visit_id": complaint.visit_id,
            "resident_name": complaint.resident.as_ref().map(|r| r.name.as_str()),
            "uprn": complaint.property.as_ref().map(|p| p.uprn.as_str()),
            "standards": standards,
            "received_at": rfc3339(complaint.received_at.as_ref()),
            "acknowledged_at": rfc3339(stage_one.acknowledged_at.as_ref()),
            "handler": stage_one.handler,
            "response_due": stage_one.response_due,
            "version": complaint.version,
            "history": history,
        })
    );
    assert_eq!(seen["complaint"]["resident_name"], "Ada Resident");
    assert_eq!(seen["complaint"]["received_at"], "2026-05-05T10:00:00Z");
    assert_eq!(
        history,
        ["ComplaintReceived", "ComplaintAcknowledged"],
        "logged, then acknowledged"
    );

    let figures = PerformanceServiceClient::new(app.channel.clone())
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: JOURNEY_CONTRACTOR.to_owned(),
            from_month: "2026-05".to_owned(),
            to_month: "2026-05".to_owned(),
            min_position: answer.history.last().map(|entry| entry.position),
        })
        .await
        .expect("the Rust client reads the contractor's figures")
        .into_inner();
    let seen_figures = with_fractional_numbers(
        seen["performance"].clone(),
        &[
            "reported_per_100_visits",
            "median_working_days_to_acknowledge",
        ],
    );
    assert_eq!(
        seen_figures,
        json!({
            "contractor_id": figures.contractor_id,
            "legal_name": figures.legal_name,
            "visits": figures.visits,
            "complaints": figures.complaints,
            "reported_breaches": figures.reported_breaches,
            "upheld_breaches": figures.upheld_breaches,
            "reported_per_100_visits": figures.reported_per_100_visits.map(|rate| rate.value),
            "median_working_days_to_acknowledge": figures.median_working_days_to_acknowledge,
        })
    );
    // One visit, one complaint alleging one standard, no finding yet; received on Tuesday 5 May
    // and acknowledged on Thursday: two working days.
    assert_eq!(
        seen_figures,
        json!({
            "contractor_id": JOURNEY_CONTRACTOR,
            "legal_name": "Journey Retrofit Ltd",
            "visits": 1,
            "complaints": 1,
            "reported_breaches": 1,
            "upheld_breaches": 0,
            "reported_per_100_visits": 100.0,
            "median_working_days_to_acknowledge": 2.0,
        })
    );
}

/// `value` with the numbers under `keys` as floating point: JavaScript prints the double 100.0 as
/// `100`, which JSON reads back as an integer, and serde_json tells the two apart.
fn with_fractional_numbers(mut value: Value, keys: &[&str]) -> Value {
    for key in keys {
        if let Some(number) = value[*key].as_f64() {
            value[*key] = json!(number);
        }
    }
    value
}

fn python_journey(generated: &Path) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(repository_root().join("tests/clients/python/journey.py"))
        .env("PYTHONPATH", generated);
    command
}

/// A directory with the Python client generated in it, or `None` (after saying so, or failing
/// under `DOORSTEP_REQUIRE_CLIENTS=1`) when grpcio-tools is not installed.
async fn python_client() -> Option<tempfile::TempDir> {
    let found = command_succeeds("python3", &["-c", "import grpc, grpc_tools"]);
    let install = "python3 -m pip install -r tests/clients/python/requirements.txt";
    if !installed("Python", found, install) {
        return None;
    }
    let generated = tempfile::tempdir().expect("a directory for the generated client");
    generate_python_client(generated.path()).await;
    Some(generated)
}

/// Generates the Python client from `proto/` as a user would, with grpcio-tools' bundled protoc.
async fn generate_python_client(into: &Path) {
    let root = repository_root();
    let proto = root.join("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(proto.join("doorstep/v1"))
        .expect("proto/doorstep/v1 is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "proto")
        })
        .collect();
    files.sort();
    let output = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto.display()))
        .arg(format!("--python_out={}", into.display()))
        .arg(format!("--grpc_python_out={}", into.display()))
        .args(&files)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "grpcio-tools could not generate the client: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_python_client_generated_by_grpcio_tools_logs_acknowledges_reads_and_reports() {
    let Some(generated) = python_client().await else {
        return;
    };
    let app = spawn_app().await;

    let subject = "python-client";
    let output = run_script(
        python_journey(generated.path()),
        &app,
        subject,
        &JOURNEY_ROLES,
    )
    .await;
    check_journey(&app, &journey_output(&output), subject).await;

    let refused = run_script(
        python_journey(generated.path()),
        &app,
        "auditor",
        &["auditor"],
    )
    .await;
    assert_refused(&refused);
}

/// The Python snippet in the README's "Calling from other languages", as written there.
fn readme_python_snippet() -> String {
    let readme = std::fs::read_to_string(repository_root().join("README.md")).expect("README.md");
    let (_, section) = readme
        .split_once("## Calling from other languages")
        .expect("the README has a section on calling from other languages");
    let (_, from_snippet) = section
        .split_once("```python\n")
        .expect("that section shows Python");
    let (snippet, _) = from_snippet
        .split_once("\n```")
        .expect("the Python snippet ends");
    snippet.to_owned()
}

#[tokio::test]
async fn the_readme_python_snippet_logs_a_complaint() {
    let Some(generated) = python_client().await else {
        return;
    };
    let app = spawn_app().await;

    let mut snippet = Command::new("python3");
    snippet
        .args(["-c", &readme_python_snippet()])
        .env("PYTHONPATH", generated.path())
        // A default server has no JWT secret: the snippet sends an API key, as `x-api-key`.
        .env(
            "DOORSTEP_INTAKE_KEY",
            app.create_api_key("readme", &["intake"], None),
        );
    let output = run_script(snippet, &app, "readme", &["intake"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's snippet failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let complaint = app
        .client
        .clone()
        .get_complaint(requests::complaint(
            stdout.split_whitespace().next().unwrap_or_default(),
        ))
        .await
        .expect("the snippet printed the id of a complaint it logged")
        .into_inner()
        .complaint
        .expect("a complaint");
    assert_eq!(complaint.contractor_id, "acme-retrofit");
    assert_eq!(
        complaint.status(),
        v1::ComplaintStatus::AwaitingAcknowledgement
    );
    assert_eq!(
        complaint.resident.map(|resident| resident.name).as_deref(),
        Some("Ada Resident")
    );
}

fn node_journey() -> Command {
    let mut command = Command::new("node");
    command
        .arg(repository_root().join("tests/clients/node/journey.js"))
        .env("DOORSTEP_PROTO_DIR", repository_root().join("proto"));
    command
}

#[tokio::test]
async fn a_node_client_built_by_proto_loader_logs_acknowledges_reads_and_reports() {
    let modules = repository_root().join("tests/clients/node/node_modules/@grpc");
    let found = command_succeeds("node", &["--version"])
        && modules.join("grpc-js").is_dir()
        && modules.join("proto-loader").is_dir();
    if !installed("Node", found, "node, and npm ci in tests/clients/node") {
        return;
    }
    let app = spawn_app().await;

    let subject = "node-client";
    let output = run_script(node_journey(), &app, subject, &JOURNEY_ROLES).await;
    check_journey(&app, &journey_output(&output), subject).await;

    let refused = run_script(node_journey(), &app, "auditor", &["auditor"]).await;
    assert_refused(&refused);
}
