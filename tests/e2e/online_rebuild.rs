//! `doorstep projections rebuild --online`: the read models are rebuilt into a new generation
//! while servers serve and take writes, every server switches to it, and the result is what an
//! offline rebuild of the same log gives. Real servers on a real SQLite file or PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use doorstep_api::v1;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_projections::{ReadModelDatabase, Snapshot};
use doorstep_server::generations::{
    OnlineRebuild, OnlineRebuildOptions, RebuildProgress, rebuild_online,
};
use doorstep_server::settings::Role;
use doorstep_tests::{
    TestApp, gate_left_open, metric_value, notify_on_test_rounds, requests, spawn_app_with,
};
use tokio::task::JoinHandle;

/// Logs complaints (acknowledging every third) and records visits until told to stop; returns
/// the position of its last write and how many complaints it logged.
fn keep_writing(
    app: &TestApp,
    tag: &'static str,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> JoinHandle<(u64, u64)> {
    let mut client = app.client.clone();
    let mut visits = VisitServiceClient::new(app.channel.clone());
    let written_so_far = written;
    tokio::spawn(async move {
        let (mut last, mut logged) = (0, 0);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) || n < 5 {
            let written = client
                .log_complaint(gate_left_open(
                    &format!("{tag}-during-{n}"),
                    "2026-04-02T10:00:00Z",
                ))
                .await
                .expect("intake goes on during the rebuild")
                .into_inner();
            logged += 1;
            last = written.position;
            written_so_far.fetch_add(1, Ordering::Relaxed);
            if n % 3 == 0 {
                last = client
                    .acknowledge_complaint(requests::officer_one_acknowledges(
                        &written.complaint_id,
                    ))
                    .await
                    .expect("acknowledgements go on during the rebuild")
                    .into_inner()
                    .position;
            }
            last = last.max(
                visits
                    .record_visits(v1::RecordVisitsRequest {
                        visits: vec![v1::Visit {
                            visit_id: format!("{tag}-visit-{n}"),
                            contractor_id: "acme-retrofit".to_owned(),
                            uprn: "100023336956".to_owned(),
                            work_order_reference: format!("WO-{n}"),
                            visit_date: "2026-05-04".to_owned(),
                        }],
                    })
                    .await
                    .expect("visits are recorded during the rebuild")
                    .into_inner()
                    .position,
            );
            n += 1;
        }
        (last, logged)
    })
}

/// Queries the read models until told to stop, each call with `min_position` of a write it saw,
/// and fails on any error; returns how many rounds it made.
fn keep_querying(app: &TestApp, stop: Arc<AtomicBool>, seen: Arc<AtomicU64>) -> JoinHandle<u64> {
    let mut complaints = app.client.clone();
    let mut performance = PerformanceServiceClient::new(app.channel.clone());
    let mut escalations = EscalationServiceClient::new(app.channel.clone());
    tokio::spawn(async move {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) || rounds < 5 {
            let min_position = Some(seen.load(Ordering::Relaxed));
            complaints
                .list_complaints(v1::ListComplaintsRequest {
                    page_size: 50,
                    min_position,
                    ..Default::default()
                })
                .await
                .expect("ListComplaints answers during the rebuild");
            performance
                .get_contractor_performance(v1::GetContractorPerformanceRequest {
                    contractor_id: "acme-retrofit".to_owned(),
                    from_month: "2026-04".to_owned(),
                    to_month: "2027-03".to_owned(),
                    min_position,
                })
                .await
                .expect("GetContractorPerformance answers during the rebuild");
            escalations
                .list_escalations(v1::ListEscalationsRequest {
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .expect("ListEscalations answers during the rebuild");
            rounds += 1;
        }
        rounds
    })
}

/// How many complaints the read models list, after waiting for `position`.
async fn listed(app: &TestApp, position: u64) -> usize {
    app.list_every_complaint(position).await.len()
}

/// Every row of `table` in a SQLite file, each as text, sorted.
async fn sqlite_rows(file: &std::path::Path, table: &str) -> Vec<String> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(file)
                .read_only(true),
        )
        .await
        .expect("the read models' file opens");
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(&pool)
        .await
        .expect("the table's columns");
    assert!(!columns.is_empty(), "{table} exists in {}", file.display());
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
    pool.close().await;
    rows
}

/// A SQLite file, opened to read.
async fn read_only(file: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .read_only(true),
    )
    .await
    .expect("the file opens")
}

/// How many pages a SQLite file's database takes, free pages included.
async fn sqlite_page_count(file: &std::path::Path) -> i64 {
    let pool = read_only(file).await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&pool)
        .await
        .expect("the page count is read");
    pool.close().await;
    pages
}

/// Whether a SQLite file holds `table`.
async fn sqlite_has_table(file: &std::path::Path, table: &str) -> bool {
    let pool = read_only(file).await;
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(table)
            .fetch_optional(&pool)
            .await
            .expect("the schema is read");
    pool.close().await;
    found.is_some()
}

/// Every read model of `generation` of the read models whose generation 0 is at `url`, read
/// through the projections crate. (On PostgreSQL, opening a generation that was never built
/// creates it empty, so callers check that what they compare is not; on SQLite it fails to open.)
async fn snapshot(url: &str, generation: u64) -> Snapshot {
    let database = ReadModelDatabase::open_generation(url, generation)
        .await
        .expect("the generation opens");
    let snapshot = database
        .snapshot()
        .await
        .expect("the generation's read models are read");
    database.close().await;
    snapshot
}

/// The `sqlite://` URL of a read-model file.
fn sqlite_url(file: &std::path::Path) -> String {
    format!("sqlite://{}", file.display())
}

fn notifying(settings: &mut doorstep_server::Settings, _: &std::path::Path) {
    notify_on_test_rounds(settings, "contract_manager");
    settings.server.role = Role::All;
    // Deliveries are queued to it, never tried: the test drives no delivery round.
    settings.notifier.webhooks = vec![doorstep_server::settings::WebhookSettings {
        url: "http://127.0.0.1:9/hooks/doorstep".to_owned(),
        secret: secrecy::SecretString::from("a webhook secret for the outbox".to_owned()),
    }];
}

#[tokio::test]
async fn an_online_rebuild_on_sqlite_switches_without_a_failed_call_and_equals_an_offline_one() {
    let mut app = spawn_app_with(notifying, Arc::new(doorstep_server::clock::SystemClock)).await;
    let mut client = app.client.clone();
    for n in 0..30 {
        let logged = client
            .log_complaint(gate_left_open(
                &format!("before-{n}"),
                "2026-04-02T10:00:00Z",
            ))
            .await
            .expect("logged")
            .into_inner();
        if n % 4 == 0 {
            client
                .acknowledge_complaint(requests::officer_one_acknowledges(&logged.complaint_id))
                .await
                .expect("acknowledged");
        }
    }
    // Their deadlines are long past: escalations are raised and their deliveries queued.
    assert!(app.raise_all_due().await > 0, "escalations were raised");
    let read_models = app.data_dir().join("doorstep.read-models.db");
    let outbox_before = sqlite_rows(&read_models, "escalation_deliveries").await;
    assert!(!outbox_before.is_empty(), "the outbox holds deliveries");
    let pages_before = sqlite_page_count(&read_models).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writer = keep_writing(&app, "sqlite", stop.clone(), written.clone());
    let reader = keep_querying(&app, stop.clone(), seen.clone());
    // Writes are under way before the rebuild starts, and go on through the switch.
    while written.load(Ordering::Relaxed) < 10 {
        tokio::task::yield_now().await;
    }

    let mut progress = Vec::new();
    let outcome = rebuild_online(app.settings(), OnlineRebuildOptions::default(), |step| {
        if let RebuildProgress::Applied { position, .. } = &step {
            seen.fetch_max(*position / 2, Ordering::Relaxed);
        }
        progress.push(step);
    })
    .await
    .expect("the online rebuild succeeds");
    assert!(
        matches!(outcome, OnlineRebuild::Done { generation: 1, from: 0, applied } if applied > 0),
        "{outcome:?}"
    );
    assert!(progress.contains(&RebuildProgress::Finished { dropped: Some(0) }));

    stop.store(true, Ordering::Relaxed);
    let (last, logged) = writer.await.expect("the writer ran");
    assert!(reader.await.expect("the reader ran") >= 5);
    // Writes made during and after the switch are all in the new generation.
    assert_eq!(listed(&app, last).await, 30 + logged as usize);
    // Generation 0's derived tables are gone; its file keeps the shared outbox.
    assert!(!sqlite_has_table(&read_models, "complaint_list").await);
    assert!(sqlite_has_table(&read_models, "escalation_deliveries").await);
    // ... and gives back the space the dropped tables took.
    let pages_after = sqlite_page_count(&read_models).await;
    assert!(
        pages_after < pages_before,
        "generation 0's file shrinks once its read models are dropped: \
         {pages_before} pages before, {pages_after} after"
    );

    // A second online rebuild replaces generation 1, whose file goes.
    let outcome = rebuild_online(app.settings(), OnlineRebuildOptions::default(), |_| {})
        .await
        .expect("the second online rebuild succeeds");
    assert!(
        matches!(outcome, OnlineRebuild::Done { generation: 2, .. }),
        "{outcome:?}"
    );
    let first = app.data_dir().join("doorstep.read-models.g1.db");
    let second = app.data_dir().join("doorstep.read-models.g2.db");
    assert!(!first.exists(), "generation 1's file is deleted");
    assert!(second.exists(), "generation 2's file is there");
    assert_eq!(listed(&app, last).await, 30 + logged as usize);

    // The notifier reads the new generation: the complaints logged during the rebuild escalate,
    // and their deliveries are queued in the outbox every generation shares.
    assert!(
        app.raise_all_due().await > 0,
        "escalations raised on the new generation"
    );
    app.stop().await;
    let online = snapshot(&sqlite_url(&read_models), 2).await;
    assert_eq!(
        online["complaint_list"].len(),
        30 + logged as usize,
        "generation 2 holds every complaint"
    );
    let outbox_after = sqlite_rows(&read_models, "escalation_deliveries").await;
    assert!(
        outbox_after.len() > outbox_before.len(),
        "new deliveries are queued"
    );
    // The rebuild re-inserted the deliveries it met: nothing lost, nothing doubled or reset.
    for row in &outbox_before {
        assert!(outbox_after.contains(row), "delivery kept unchanged: {row}");
    }
    doorstep_server::startup::rebuild_read_models(app.settings(), |_| {}, |_, _| {})
        .await
        .expect("the offline rebuild succeeds");
    let offline = snapshot(&sqlite_url(&read_models), 2).await;
    for ((table, online), (_, offline)) in online.iter().zip(&offline) {
        assert_eq!(online, offline, "{table} equals an offline rebuild");
    }
    assert_eq!(
        sqlite_rows(&read_models, "escalation_deliveries").await,
        outbox_after
    );
}

#[tokio::test]
async fn a_rebuild_stopped_half_way_leaves_the_live_generation_serving_and_resumes() {
    let mut app = spawn_app_with(notifying, Arc::new(doorstep_server::clock::SystemClock)).await;
    let mut client = app.client.clone();
    let mut last = 0;
    for n in 0..1_600 {
        last = client
            .log_complaint(gate_left_open(
                &format!("crash-{n}"),
                "2026-04-02T10:00:00Z",
            ))
            .await
            .expect("logged")
            .into_inner()
            .position;
    }
    let read_models = app.data_dir().join("doorstep.read-models.db");
    app.read_models_reach(last).await;
    let live_before = snapshot(&sqlite_url(&read_models), 0).await;
    assert_eq!(live_before["complaint_list"].len(), 1_600);

    let stopped = rebuild_online(
        app.settings(),
        OnlineRebuildOptions {
            stop_after_batches: Some(2),
            catch_up_batch_size: Some(500),
            ..Default::default()
        },
        |_| {},
    )
    .await
    .expect("the rebuild runs until stopped");
    assert_eq!(stopped, OnlineRebuild::Stopped { generation: 1 });
    // The servers export the stopped build's progress: the position it reported, the head.
    let metrics = app.scrape_metrics().await;
    let generation_1 = [("generation", "1")];
    let reached = metric_value(
        &metrics,
        "doorstep_projection_rebuild_position",
        &generation_1,
    )
    .expect("the rebuild's position is exported");
    let target = metric_value(
        &metrics,
        "doorstep_projection_rebuild_target",
        &generation_1,
    )
    .expect("the rebuild's target is exported");
    assert!(reached > 0.0 && reached < target, "{reached} of {target}");
    let rate = metric_value(
        &metrics,
        "doorstep_projection_rebuild_rate_per_second",
        &generation_1,
    );
    assert!(rate.is_some_and(|rate| rate > 0.0), "{rate:?} events/s");
    // The live generation serves, untouched.
    assert_eq!(listed(&app, last).await, 1_600);
    assert_eq!(snapshot(&sqlite_url(&read_models), 0).await, live_before);

    let mut started = None;
    let outcome = rebuild_online(app.settings(), OnlineRebuildOptions::default(), |step| {
        if let RebuildProgress::Started { .. } = step {
            started = Some(step);
        }
    })
    .await
    .expect("the rebuild resumes");
    let Some(RebuildProgress::Started {
        generation: 1,
        resumed: true,
        position,
    }) = started
    else {
        panic!("the rebuild resumed generation 1: {started:?}");
    };
    assert!(position > 0, "it resumed from where it stopped, not from 0");
    assert!(matches!(outcome, OnlineRebuild::Done { generation: 1, from, .. } if from == position));
    let metrics = app.scrape_metrics().await;
    assert_eq!(
        metric_value(&metrics, "doorstep_projection_rebuild_position", &[]),
        None,
        "no rebuild is in progress"
    );
    assert_eq!(listed(&app, last).await, 1_600);

    app.stop().await;
    let online = snapshot(&sqlite_url(&read_models), 1).await;
    assert_eq!(online["complaint_list"].len(), 1_600);
    doorstep_server::startup::rebuild_read_models(app.settings(), |_| {}, |_, _| {})
        .await
        .expect("the offline rebuild succeeds");
    assert_eq!(online, snapshot(&sqlite_url(&read_models), 1).await);
}

/// Whether `schema` holds `table` in a PostgreSQL database.
async fn postgres_has_table(url: &str, schema: &str, table: &str) -> bool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("the database opens");
    let found: Option<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_optional(&pool)
    .await
    .expect("the catalogue is read");
    pool.close().await;
    found.is_some()
}

#[tokio::test]
async fn an_online_rebuild_on_postgres_switches_both_replicas() {
    use doorstep_tests::spawn_app_on_database;

    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let mut first = spawn_app_on_database(database.url()).await;
    let mut second = spawn_app_on_database(database.url()).await;
    let mut client = first.client.clone();
    for n in 0..30 {
        client
            .log_complaint(gate_left_open(
                &format!("pg-before-{n}"),
                "2026-04-02T10:00:00Z",
            ))
            .await
            .expect("logged");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writers = [
        keep_writing(&first, "first", stop.clone(), written.clone()),
        keep_writing(&second, "second", stop.clone(), written.clone()),
    ];
    let readers = [
        keep_querying(&first, stop.clone(), seen.clone()),
        keep_querying(&second, stop.clone(), seen.clone()),
    ];
    while written.load(Ordering::Relaxed) < 10 {
        tokio::task::yield_now().await;
    }
    let outcome = rebuild_online(first.settings(), OnlineRebuildOptions::default(), |_| {})
        .await
        .expect("the online rebuild succeeds");
    assert!(
        matches!(outcome, OnlineRebuild::Done { generation: 1, from: 0, applied } if applied > 0),
        "{outcome:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let mut last = 0;
    let mut logged = 0;
    for writer in writers {
        let (position, count) = writer.await.expect("the writer ran");
        last = last.max(position);
        logged += count;
    }
    for reader in readers {
        assert!(reader.await.expect("the reader ran") >= 5);
    }
    // Both replicas serve the new generation, with every write.
    for app in [&first, &second] {
        assert_eq!(listed(app, last).await, 30 + logged as usize);
    }
    assert!(!postgres_has_table(database.url(), "public", "complaint_list").await);
    assert!(postgres_has_table(database.url(), "public", "escalation_deliveries").await);
    assert!(!postgres_has_table(database.url(), "read_models_g1", "escalation_deliveries").await);

    first.stop().await;
    second.stop().await;
    let online = snapshot(database.url(), 1).await;
    assert_eq!(
        online["complaint_list"].len(),
        30 + logged as usize,
        "generation 1 holds every complaint"
    );
    doorstep_server::startup::rebuild_read_models(first.settings(), |_| {}, |_, _| {})
        .await
        .expect("the offline rebuild succeeds");
    let offline = snapshot(database.url(), 1).await;
    for ((table, online), (_, offline)) in online.iter().zip(&offline) {
        assert_eq!(online, offline, "{table} equals an offline rebuild");
    }
}
