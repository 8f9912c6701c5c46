//! `doorstep projections rebuild --online` killed with SIGKILL half-way, as a crash or an operator's
//! `kill -9` would: the running server keeps serving (and writing) on the live generation, the
//! half-built generation stays registered as building, and the next run resumes it from where it
//! got to, switches the server to it and drops the old one.
//!
//! The binaries are the real ones, as an operator runs them. The rebuild reports its progress to
//! the registry after its first catch-up batch (25,000 events); the kill lands as soon as the test
//! sees that, in the middle of the second batch's transaction (15,000 more events, most of a
//! second in a debug build). Afterwards the resumed generation must equal what an offline rebuild
//! makes of the same log: a batch half-applied when the process died, or applied twice after the
//! resume, would show.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use doorstep_api::v1;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use support::{channel, client, doorstep, register_contractor, serve, small_complaint};

/// Visits recorded before the rebuild: more than one of its 25,000-event batches.
const VISITS: usize = 40_000;
/// How long the rebuild may take to report its first progress.
const PATIENCE: Duration = Duration::from_secs(120);

/// A generation's row in the registry: state, position reached, head aimed at.
async fn generation(database: &Path, generation: i64) -> Option<(String, i64, i64)> {
    let pool = sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(database)
            .read_only(true),
    )
    .await
    .expect("the store's file opens");
    let row = sqlx::query_as(
        "SELECT state, position, target FROM read_model_generations WHERE generation = ?",
    )
    .bind(generation)
    .fetch_optional(&pool)
    .await
    .expect("the registry is read");
    pool.close().await;
    row
}

/// Every row of every read model in a generation's SQLite file, as text, table by table. The
/// outbox is delivery state that rebuilds leave alone, and the migrations table records when.
async fn read_models(file: &Path) -> Vec<(String, Vec<String>)> {
    let pool = sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .read_only(true),
    )
    .await
    .expect("the generation's file opens");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT IN ('escalation_deliveries', '_doorstep_projection_migrations') ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .expect("the tables are listed");
    let mut snapshot = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&table)
            .fetch_all(&pool)
            .await
            .expect("the table's columns");
        let row = columns
            .iter()
            .map(|column| format!("quote({column})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {row} FROM {table}")))
                .fetch_all(&pool)
                .await
                .expect("the table's rows");
        rows.sort();
        snapshot.push((table, rows));
    }
    pool.close().await;
    snapshot
}

/// Every complaint the server lists, once its read models have reached `position`.
async fn listed(port: u16, position: u64) -> usize {
    let response = client(port)
        .await
        .list_complaints(v1::ListComplaintsRequest {
            page_size: 100,
            min_position: Some(position),
            ..Default::default()
        })
        .await
        .expect("the server lists complaints");
    response.into_inner().complaints.len()
}

async fn log(port: u16, key: &str) -> u64 {
    client(port)
        .await
        .log_complaint(small_complaint(key, &format!("R-{key}"), "Pat Example"))
        .await
        .expect("the complaint is logged")
        .into_inner()
        .position
}

#[tokio::test]
async fn a_rebuild_killed_half_way_leaves_the_server_serving_and_resumes() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database = directory.path().join("data/doorstep.db");
    let database_url = format!("sqlite://{}", database.display());
    let mut server = serve(&database_url);
    register_contractor(server.port, "acme-retrofit").await;
    for key in ["before-1", "before-2", "before-3"] {
        log(server.port, key).await;
    }
    let mut visits = VisitServiceClient::new(channel(server.port).await);
    for chunk in 0..VISITS / 10_000 {
        let batch = (0..10_000)
            .map(|n| v1::Visit {
                visit_id: format!("V-{chunk}-{n}"),
                contractor_id: "acme-retrofit".to_owned(),
                uprn: "10001".to_owned(),
                work_order_reference: format!("WO-{chunk}-{n}"),
                visit_date: "2026-06-01".to_owned(),
            })
            .collect();
        let recorded = visits
            .record_visits(v1::RecordVisitsRequest { visits: batch })
            .await
            .expect("the visits are recorded")
            .into_inner();
        assert_eq!(recorded.recorded, 10_000, "{:?}", recorded.rejected.first());
    }

    let mut rebuild = doorstep(&database_url)
        .current_dir(directory.path())
        .args(["projections", "rebuild", "--online"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the rebuild starts");
    let started = Instant::now();
    let reached = loop {
        if let Some((state, position, _)) = generation(&database, 1).await {
            assert_eq!(
                state, "building",
                "the rebuild finished before it could be killed"
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
            "the rebuild exited before it reported progress"
        );
        assert!(started.elapsed() < PATIENCE, "no progress in {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    rebuild.kill().expect("SIGKILL is delivered");
    let killed = rebuild.wait().expect("the killed rebuild is reaped");
    assert_eq!(killed.signal(), Some(9), "the rebuild died of SIGKILL");

    // Generation 1 is left building; the server serves generation 0 and takes writes.
    let (state, position, target) = generation(&database, 1).await.expect("generation 1");
    assert_eq!(state, "building");
    assert!(
        position >= reached && position > 0,
        "{position} of {target}"
    );
    let live = generation(&database, 0).await.expect("generation 0");
    assert_eq!(live.0, "live");
    let during = log(server.port, "during").await;
    assert_eq!(listed(server.port, during).await, 4);

    let resumed = doorstep(&database_url)
        .current_dir(directory.path())
        .args(["projections", "rebuild", "--online"])
        .output()
        .expect("the rebuild runs again");
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{said}");
    let from: u64 = said
        .split("resuming read-model generation 1 from position ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("the rebuild resumed generation 1: {said}"));
    assert!(from > 0, "it resumed from where it was killed, not from 0");
    assert!(
        said.contains("every server switched; generation 0 dropped"),
        "{said}"
    );

    assert_eq!(
        generation(&database, 1).await.map(|row| row.0).as_deref(),
        Some("live")
    );
    let after = log(server.port, "after").await;
    assert_eq!(listed(server.port, after).await, 5);
    assert!(server.stop_gracefully().await.success());

    let generation_1 = directory.path().join("data/doorstep.read-models.g1.db");
    let online = read_models(&generation_1).await;
    let visits_table = online.iter().find(|(table, _)| table == "visits");
    assert_eq!(visits_table.map(|(_, rows)| rows.len()), Some(VISITS));
    let offline = doorstep(&database_url)
        .current_dir(directory.path())
        .args(["projections", "rebuild"])
        .output()
        .expect("the offline rebuild runs");
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert!(
        online == read_models(&generation_1).await,
        "the resumed generation equals an offline rebuild of the same log"
    );
}
