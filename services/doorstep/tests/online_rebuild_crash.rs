//! `doorstep projections rebuild --online` killed with SIGKILL half-way, as a crash or an operator's
//! `kill -9` would: the running servers keep serving (and writing) on the live generation, the
//! half-built generation stays registered as building, and the next run resumes it from where it
//! got to, switches every server to it and drops the old one. On SQLite with one server, and on
//! PostgreSQL with two replicas.
//!
//! The binaries are the real ones, as an operator runs them. The log holds 60,000 visits with
//! 100 complaints among them, at positions inside the rebuild's second catch-up batch (its batches
//! are 25,000 events). The rebuild reports its progress to the registry after its first batch; the
//! kill lands as soon as the test sees that, in the middle of the second batch (about a second's
//! work in a debug build), and the test checks that the resumed run starts from the end of the
//! first, so the second was rolled back. Afterwards the resumed generation must equal what an
//! offline rebuild makes of the same log: the complaints' counters would show a batch applied
//! twice, and every table one lost.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use doorstep_api::v1;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_projections::{ReadModelDatabase, Snapshot};
use doorstep_test_postgres::TestDatabase;
use support::{
    RunningBinary, channel, client, doorstep, list_every_complaint, register_contractor,
    small_complaint,
};

/// Visits recorded before the rebuild, in calls of 10,000: the complaints come after the fourth
/// call, at positions about 40,000, inside the rebuild's second batch (25,001 to 50,000).
const VISITS: usize = 60_000;
const VISITS_PER_CALL: usize = 10_000;
const COMPLAINTS_AMONG_VISITS: usize = 100;
/// How long the rebuild may take to report its first progress.
const PATIENCE: Duration = Duration::from_secs(120);

/// Where the servers keep everything, and how the test reads it behind their back.
enum Database {
    Sqlite {
        directory: tempfile::TempDir,
    },
    Postgres {
        database: TestDatabase,
        directory: tempfile::TempDir,
    },
}

impl Database {
    fn url(&self) -> String {
        match self {
            Self::Sqlite { directory } => format!("sqlite://{}", store_file(directory).display()),
            Self::Postgres { database, .. } => database.url().to_owned(),
        }
    }

    fn directory(&self) -> &std::path::Path {
        match self {
            Self::Sqlite { directory } | Self::Postgres { directory, .. } => directory.path(),
        }
    }

    /// The binary on this database, in the test's directory.
    fn doorstep(&self, arguments: &[&str]) -> std::process::Command {
        let mut command = doorstep(&self.url());
        command.current_dir(self.directory()).args(arguments);
        command
    }

    /// Runs the binary to the end, without blocking the test's runtime.
    async fn run(&self, arguments: &[&str]) -> Output {
        tokio::process::Command::from(self.doorstep(arguments))
            .output()
            .await
            .expect("the binary runs")
    }

    /// A connection to the store's database, to read the generations' registry.
    async fn registry(&self) -> Registry {
        match self {
            Self::Sqlite { directory } => {
                Registry::Sqlite(sqlite_read_only(store_file(directory)).await)
            }
            Self::Postgres { database, .. } => Registry::Postgres(postgres(database).await),
        }
    }

    /// Every read model of `generation`, read through the projections crate.
    async fn read_models(&self, generation: u64) -> Snapshot {
        let url = match self {
            Self::Sqlite { directory } => format!(
                "sqlite://{}",
                directory
                    .path()
                    .join("data/doorstep.read-models.db")
                    .display()
            ),
            Self::Postgres { database, .. } => database.url().to_owned(),
        };
        let database = ReadModelDatabase::open_generation(&url, generation)
            .await
            .expect("the generation opens");
        let snapshot = database
            .snapshot()
            .await
            .expect("the generation's read models are read");
        database.close().await;
        snapshot
    }
}

/// The generations' registry, read behind the servers' back.
enum Registry {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Registry {
    /// A generation's row: state, position reached, head aimed at.
    async fn generation(&self, generation: i64) -> Option<(String, i64, i64)> {
        let sql = "SELECT state, position, target FROM read_model_generations \
                   WHERE generation = $1";
        let row = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(sql)
                    .bind(generation)
                    .fetch_optional(pool)
                    .await
            }
            Self::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(generation)
                    .fetch_optional(pool)
                    .await
            }
        };
        row.expect("the registry is read")
    }
}

/// The SQLite store's file in the test's directory.
fn store_file(directory: &tempfile::TempDir) -> PathBuf {
    directory.path().join("data/doorstep.db")
}

async fn sqlite_read_only(file: PathBuf) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .read_only(true),
    )
    .await
    .expect("the SQLite file opens")
}

async fn postgres(database: &TestDatabase) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database.url())
        .await
        .expect("the database opens")
}

/// How many complaints the server lists, every page, once its read models have reached
/// `position`.
async fn listed(port: u16, position: u64) -> usize {
    list_every_complaint(&channel(port).await, position)
        .await
        .len()
}

async fn log_complaint(port: u16, key: &str) -> u64 {
    client(port)
        .await
        .log_complaint(small_complaint(key, &format!("R-{key}"), "Pat Example"))
        .await
        .expect("the complaint is logged")
        .into_inner()
        .position
}

/// Records `VISITS` visits in calls of `VISITS_PER_CALL`, with `COMPLAINTS_AMONG_VISITS`
/// complaints logged after the fourth call.
async fn record_visits_and_complaints(port: u16) {
    let mut visits = VisitServiceClient::new(channel(port).await);
    for call in 0..VISITS / VISITS_PER_CALL {
        if call == 4 {
            for n in 0..COMPLAINTS_AMONG_VISITS {
                log_complaint(port, &format!("among-visits-{n}")).await;
            }
        }
        let batch = (0..VISITS_PER_CALL)
            .map(|n| v1::Visit {
                visit_id: format!("V-{call}-{n}"),
                contractor_id: "acme-retrofit".to_owned(),
                uprn: "10001".to_owned(),
                work_order_reference: format!("WO-{call}-{n}"),
                visit_date: "2026-06-01".to_owned(),
            })
            .collect();
        let recorded = visits
            .record_visits(v1::RecordVisitsRequest { visits: batch })
            .await
            .expect("the visits are recorded")
            .into_inner();
        assert_eq!(
            recorded.recorded as usize,
            VISITS_PER_CALL,
            "{:?}",
            recorded.rejected.first()
        );
    }
}

#[tokio::test]
async fn a_rebuild_killed_half_way_on_sqlite_leaves_the_server_serving_and_resumes() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    killed_half_way_then_resumed(Database::Sqlite { directory }, 1).await;
}

#[tokio::test]
async fn a_rebuild_killed_half_way_on_postgres_leaves_both_replicas_serving_and_resumes() {
    // Skipped, loudly, when no PostgreSQL can be found or started (see doorstep-test-postgres).
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let directory = tempfile::tempdir().expect("a temporary directory");
    killed_half_way_then_resumed(
        Database::Postgres {
            database,
            directory,
        },
        2,
    )
    .await;
}

async fn killed_half_way_then_resumed(database: Database, replicas: usize) {
    let mut servers: Vec<RunningBinary> = (0..replicas)
        .map(|_| support::spawn(database.doorstep(&["serve"])))
        .collect();
    let ports: Vec<u16> = servers.iter().map(|server| server.port).collect();
    register_contractor(ports[0], "acme-retrofit").await;
    for key in ["before-1", "before-2", "before-3"] {
        log_complaint(ports[0], key).await;
    }
    record_visits_and_complaints(ports[0]).await;
    let mut complaints = 3 + COMPLAINTS_AMONG_VISITS;

    let stderr = database.directory().join("killed-rebuild.stderr");
    let mut rebuild =
        tokio::process::Command::from(database.doorstep(&["projections", "rebuild", "--online"]))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("a file for the rebuild's stderr"))
            .kill_on_drop(true)
            .spawn()
            .expect("the rebuild starts");
    let said_before_kill = || std::fs::read_to_string(&stderr).unwrap_or_default();
    // Writes go on while it builds.
    for (replica, port) in ports.iter().enumerate() {
        log_complaint(*port, &format!("while-building-{replica}")).await;
        complaints += 1;
    }
    let registry = database.registry().await;
    let started = Instant::now();
    let reached = loop {
        if let Some((state, position, _)) = registry.generation(1).await {
            assert_eq!(
                state,
                "building",
                "the rebuild finished before it could be killed: {}",
                said_before_kill()
            );
            if position > 0 {
                break position;
            }
        }
        assert!(
            rebuild
                .try_wait()
                .expect("the rebuild can be polled")
                .is_none(),
            "the rebuild exited before it reported progress: {}",
            said_before_kill()
        );
        assert!(started.elapsed() < PATIENCE, "no progress in {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    rebuild.start_kill().expect("SIGKILL is delivered");
    let killed = rebuild.wait().await.expect("the killed rebuild is reaped");
    assert_eq!(killed.signal(), Some(9), "the rebuild died of SIGKILL");

    // Generation 1 is left building; every server serves generation 0 and takes writes.
    let (state, position, target) = registry.generation(1).await.expect("generation 1");
    assert_eq!(state, "building");
    assert!(
        position >= reached && position > 0,
        "{position} of {target}"
    );
    let live = registry.generation(0).await.expect("generation 0");
    assert_eq!(live.0, "live");
    for (replica, port) in ports.iter().enumerate() {
        let during = log_complaint(*port, &format!("after-the-kill-{replica}")).await;
        complaints += 1;
        assert_eq!(listed(*port, during).await, complaints);
    }

    let resumed = database.run(&["projections", "rebuild", "--online"]).await;
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{said}");
    let from: i64 = said
        .split("resuming read-model generation 1 from position ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("the rebuild resumed generation 1: {said}"));
    assert_eq!(
        from, reached,
        "it resumed from the end of the first batch: the second, cut off by the kill, was rolled \
         back (had it committed, the kill came too late to test anything)"
    );
    assert!(
        said.contains("every server switched; generation 0 dropped"),
        "{said}"
    );

    assert_eq!(
        registry.generation(1).await.map(|row| row.0).as_deref(),
        Some("live")
    );
    for (replica, port) in ports.iter().enumerate() {
        let after = log_complaint(*port, &format!("after-the-switch-{replica}")).await;
        complaints += 1;
        assert_eq!(listed(*port, after).await, complaints);
    }
    for server in &mut servers {
        assert!(server.stop_gracefully().await.success());
    }

    let online = database.read_models(1).await;
    assert_eq!(online["visits"].len(), VISITS);
    assert_eq!(online["complaint_list"].len(), complaints);
    let offline = database.run(&["projections", "rebuild"]).await;
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let rebuilt = database.read_models(1).await;
    for ((table, online), (_, rebuilt)) in online.iter().zip(&rebuilt) {
        let first_difference = online.iter().zip(rebuilt).find(|(a, b)| a != b);
        assert!(
            online.len() == rebuilt.len() && first_difference.is_none(),
            "{table}: the resumed generation equals an offline rebuild of the same log; {} rows \
             against {}, first difference (resumed, offline): {first_difference:?}",
            online.len(),
            rebuilt.len()
        );
    }
}
