//! What the real binary says to a person when something is wrong: the cause once, the setting or
//! flag to change, no stack trace whatever `RUST_BACKTRACE` says, and reports that read as
//! English (and as typed JSON).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use doorstep_api::v1;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use support::{channel, client, doorstep, register_contractor, serve, small_complaint};

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The binary in `directory` as its working directory, every file it may create in there.
fn doorstep_in(directory: &Path) -> Command {
    let database_url = format!("sqlite://{}", directory.join("data/doorstep.db").display());
    let mut command = doorstep(&database_url);
    command
        .current_dir(directory)
        .env(
            "DOORSTEP__PRIVACY__MASTER_KEY_FILE",
            directory.join("data/master.key"),
        )
        .env("RUST_BACKTRACE", "1");
    command
}

/// A person's error: one line that starts `error:`, no backtrace, no "Caused by".
fn assert_said_once(stderr: &str) {
    assert!(!stderr.contains("Stack backtrace"), "{stderr}");
    assert!(!stderr.contains("Caused by"), "{stderr}");
    assert!(stderr.trim_start().starts_with("error: "), "{stderr}");
}

/// A second instance whose metrics port (or gRPC port) is taken fails before it creates an
/// admin key, a master key or a database, and names the setting to change.
#[test]
fn a_taken_port_is_refused_before_anything_is_created_naming_its_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the test");
    let port = taken
        .local_addr()
        .expect("the test's port")
        .port()
        .to_string();
    for (variable, setting) in [
        ("DOORSTEP__METRICS__PORT", "metrics.port"),
        ("DOORSTEP__SERVER__PORT", "server.port"),
    ] {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let output = doorstep_in(directory.path())
            .arg("serve")
            .env(variable, &port)
            .stdout(Stdio::null())
            .output()
            .expect("the binary runs");
        let stderr = stderr_of(&output);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(setting), "{setting}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
        let data = directory.path().join("data");
        for created in [
            "admin.api-key",
            "api-keys.json",
            "master.key",
            "doorstep.db",
        ] {
            assert!(
                !data.join(created).exists(),
                "{created} was created although {setting} was taken: {stderr}"
            );
        }
        assert_said_once(stderr.lines().last().unwrap_or_default());
    }
}

/// A missing credential, a bad flag value and an unreachable server: one line each, the cause
/// said once, no stack trace although `RUST_BACKTRACE=1`.
#[test]
fn user_errors_print_the_cause_once_and_no_stack_trace() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let no_key = doorstep_in(directory.path())
        .args([
            "report",
            "contractors",
            "--from",
            "2026-04",
            "--to",
            "2027-03",
        ])
        .env_remove("DOORSTEP_API_KEY")
        .env_remove("DOORSTEP_TOKEN")
        .output()
        .expect("the binary runs");
    assert!(!no_key.status.success());
    let said = stderr_of(&no_key);
    assert_said_once(&said);
    assert!(said.contains("--api-key"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = format!(
        "http://{}",
        unreachable.local_addr().expect("the port's address")
    );
    drop(unreachable);
    let refused = doorstep_in(directory.path())
        .args(["report", "handling", "--year", "2026", "--homes", "100"])
        .args(["--server", &address, "--api-key", "dsk_0123456789abcdef_x"])
        .output()
        .expect("the binary runs");
    let said = stderr_of(&refused);
    assert!(!refused.status.success());
    assert_said_once(&said);
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(
        said.matches("tcp connect error").count(),
        1,
        "each cause once: {said}"
    );

    let bad_setting = doorstep_in(directory.path())
        .arg("migrate")
        .env("DOORSTEP__SERVER__PORTT", "1")
        .output()
        .expect("the binary runs");
    let said = stderr_of(&bad_setting);
    assert!(!bad_setting.status.success());
    assert_said_once(&said);
    assert!(said.contains("portt"), "{said}");
}

/// Reports against a real server: a refusal names the command line's flag, counts agree with
/// their nouns, and `--format json` gives typed values.
#[tokio::test]
async fn reports_name_their_flags_count_in_english_and_give_typed_json() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );
    let running = serve(&database_url);
    register_contractor(running.port, "acme-retrofit").await;
    let mut complaint = small_complaint("report-1", "T-1", "A Resident");
    complaint.received_at = Some("2026-04-02T10:00:00Z".parse().expect("a timestamp"));
    let logged = client(running.port)
        .await
        .log_complaint(complaint)
        .await
        .expect("logged")
        .into_inner();
    // Read our own write: the server answers once its read models hold the complaint, so the
    // report below counts it.
    PerformanceServiceClient::new(channel(running.port).await)
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: "acme-retrofit".to_owned(),
            from_month: "2026-04".to_owned(),
            to_month: "2026-04".to_owned(),
            min_position: Some(logged.position),
        })
        .await
        .expect("the read models reach the complaint");
    let token = support::staff_token();
    let server = format!("http://127.0.0.1:{}", running.port);
    let report = |arguments: &[&str]| {
        doorstep(&database_url)
            .current_dir(directory.path())
            .env("RUST_BACKTRACE", "1")
            .arg("report")
            .args(arguments)
            .args(["--server", &server, "--token", &token])
            .output()
            .expect("the binary runs")
    };

    let bad_month = report(&["contractors", "--from", "2026-4", "--to", "2027-03"]);
    let said = stderr_of(&bad_month);
    assert!(!bad_month.status.success());
    assert_said_once(&said);
    assert!(said.contains("--from"), "{said}");
    assert!(!said.contains("from_month"), "{said}");
    let backwards = report(&["contractors", "--from", "2027-04", "--to", "2027-03"]);
    let said = stderr_of(&backwards);
    assert!(said.contains("--to: must not be before --from"), "{said}");

    let output = report(&[
        "contractor",
        "acme-retrofit",
        "--from",
        "2026-04",
        "--to",
        "2026-04",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(table.contains("0 visits, 1 complaint;"), "{table}");
    assert!(!table.contains("1 complaints"), "{table}");

    let json = report(&[
        "contractor",
        "acme-retrofit",
        "--from",
        "2026-04",
        "--to",
        "2026-04",
        "--format",
        "json",
    ]);
    assert!(json.status.success(), "{}", stderr_of(&json));
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("the report is JSON");
    assert_eq!(value["complaints"], serde_json::json!(1));
    assert_eq!(value["visits"], serde_json::json!(0));
    assert_eq!(value["contractor_id"], serde_json::json!("acme-retrofit"));
    assert!(
        value["median_working_days_to_acknowledge"].is_null(),
        "{value}"
    );
    assert!(
        value["upheld_per_100_visits"].is_null(),
        "no visits, no rate: {value}"
    );
    let standard = &value["standards"][0];
    assert_eq!(
        standard["standard"],
        serde_json::json!("gates_secured"),
        "{value}"
    );
    assert_eq!(standard["reported"], serde_json::json!(1), "{value}");
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(!text.contains('–'), "no display strings: {text}");
    assert!(!text.contains("95% interval"), "{text}");

    let json = report(&[
        "contractors",
        "--from",
        "2026-04",
        "--to",
        "2026-04",
        "--format",
        "json",
    ]);
    assert!(json.status.success(), "{}", stderr_of(&json));
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("the report is JSON");
    let acme = &value["contractors"][0];
    assert_eq!(acme["visits"], serde_json::json!(0), "{value}");
    assert!(
        acme["rank"].is_null(),
        "unranked below --min-visits: {value}"
    );
    assert!(value["programme_visits"].is_u64(), "{value}");
}

/// `doorstep quickstart` makes the tour's keys once: run again it finds them, and only a key
/// that was revoked is made anew.
#[test]
fn quickstart_makes_the_tour_keys_once_and_replaces_only_a_revoked_one() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let run = |arguments: &[&str]| {
        let output = doorstep_in(directory.path())
            .args(arguments)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "{}", stderr_of(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let exports = run(&["quickstart"]);
    assert!(
        exports.contains("export DOORSTEP_INTAKE_KEY=\"$(cat '"),
        "{exports}"
    );
    assert!(!exports.contains("dsk_"), "no secret on stdout: {exports}");
    let tour = directory.path().join("data/tour");
    let read = |role: &str| std::fs::read_to_string(tour.join(format!("{role}.api-key")));
    let before: Vec<String> = ["intake", "officer", "manager"]
        .iter()
        .map(|role| read(role).expect("the key file"))
        .collect();
    assert_eq!(run(&["quickstart"]), exports, "the same lines again");
    let listed = run(&["api-keys", "list"]);
    assert_eq!(
        listed.lines().count(),
        4,
        "first-admin and three tour keys:\n{listed}"
    );

    let officer_id = listed
        .lines()
        .find(|line| line.contains("tour-officer"))
        .and_then(|line| line.split('\t').next())
        .expect("the officer key is listed")
        .to_owned();
    run(&["api-keys", "revoke", &officer_id]);
    run(&["quickstart"]);
    assert_eq!(read("intake").expect("kept"), before[0]);
    assert_ne!(read("officer").expect("made anew"), before[1]);
    assert_eq!(read("manager").expect("kept"), before[2]);
    assert_eq!(run(&["api-keys", "list"]).lines().count(), 4);
}

/// `doorstep projections rebuild` refuses while a server runs on the same database, naming it
/// (host, pid, address, since when); `--force` overrides; once the server has stopped cleanly
/// (it removes itself from the registry) the rebuild runs without being told.
#[tokio::test]
async fn rebuild_refuses_beside_a_running_server_and_names_it() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );
    let mut running = serve(&database_url);
    let rebuild = |arguments: &[&str]| {
        doorstep(&database_url)
            .current_dir(directory.path())
            .env("RUST_BACKTRACE", "1")
            .args(["projections", "rebuild"])
            .args(arguments)
            .output()
            .expect("the binary runs")
    };
    let refused = rebuild(&[]);
    let said = stderr_of(&refused);
    assert!(!refused.status.success(), "{said}");
    assert_said_once(said.lines().last().unwrap_or_default());
    assert!(said.contains("a Doorstep server is running"), "{said}");
    assert!(
        said.contains(&format!("pid {}", running.child.id())),
        "{said}"
    );
    assert!(
        said.contains(&format!("127.0.0.1:{}", running.port)),
        "{said}"
    );
    assert!(
        said.contains(&doorstep_server::registration::host_name()),
        "{said}"
    );
    assert!(said.contains("since 20"), "{said}");
    assert!(said.contains("--force"), "{said}");

    let forced = rebuild(&["--force"]);
    assert!(forced.status.success(), "{}", stderr_of(&forced));

    assert!(running.stop_gracefully().await.success());
    let after = rebuild(&[]);
    assert!(after.status.success(), "{}", stderr_of(&after));
}

/// `doorstep projections rebuild --online` runs beside a running server (the binary, as an
/// operator runs it): it builds the next generation, the server switches to it, and the old
/// generation is dropped; a second run builds the one after.
#[tokio::test]
async fn an_online_rebuild_runs_beside_a_running_server() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("data/doorstep.db").display()
    );
    let mut server = doorstep(&database_url);
    server.current_dir(directory.path()).arg("serve");
    let mut running = support::spawn(server);
    let rebuild = |arguments: &[&str]| {
        doorstep(&database_url)
            .current_dir(directory.path())
            .args(["projections", "rebuild", "--online"])
            .args(arguments)
            .output()
            .expect("the binary runs")
    };
    let first = rebuild(&[]);
    let said = stderr_of(&first);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("building read-model generation 1"), "{said}");
    assert!(
        said.contains("every server switched; generation 0 dropped"),
        "{said}"
    );

    let second = rebuild(&["--restart"]);
    let said = stderr_of(&second);
    assert!(second.status.success(), "{said}");
    assert!(said.contains("building read-model generation 2"), "{said}");
    assert!(said.contains("generation 1 dropped"), "{said}");
    assert!(
        !directory
            .path()
            .join("data/doorstep.read-models.g1.db")
            .exists(),
        "generation 1's file is deleted"
    );
    assert!(running.stop_gracefully().await.success());
}
