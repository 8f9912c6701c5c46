//! A schedule or outbox row the notifier cannot read is set aside with its reason, counted and
//! logged at error once, and every other complaint still escalates and every other delivery is
//! still delivered; a later round neither reads it again nor logs it again. Before, one such row
//! failed every scheduler round for good: a complaint received before year 1 left a clock start
//! the schedule wrote but could not read back (it now reads every time it writes).
//!
//! Each test runs on SQLite and on PostgreSQL, with the bad rows planted directly in the
//! read-model database and the rounds run explicitly.

#[path = "../../projections/tests/support/mod.rs"]
#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::{
    Deadline, EscalationLevel, EscalationPolicy, LadderStep, default_ladder,
};
use doorstep_notifier::{
    DeliveryWorker, EscalationRaiser, RaiseOutcome, RetryPolicy, Scheduler, WebhookSender,
};
use doorstep_projections::{DueEscalation, EscalationPlanner, ReadModelDatabase};
use secrecy::SecretString;
use support::{ComplaintWriter, TestBackend, valid};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The metric is process-wide: the tests that read it take turns.
static METRIC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

fn planner() -> EscalationPlanner {
    let steps: Vec<LadderStep> = default_ladder()
        .into_iter()
        .map(|(name, offset)| LadderStep {
            level: valid(EscalationLevel::parse("level", &name)),
            offset_working_days: offset,
        })
        .collect();
    let policy = valid(EscalationPolicy::new(
        Deadline::ALL
            .into_iter()
            .map(|d| (d, steps.clone()))
            .collect(),
        BTreeMap::new(),
        BTreeMap::new(),
    ));
    EscalationPlanner {
        policy,
        calendar: WorkingDayCalendar::england_and_wales(),
        webhook_urls: Vec::new(),
        email: false,
    }
}

/// Raises nothing; records what it was asked to raise.
#[derive(Default)]
struct RecordingRaiser(Mutex<Vec<DueEscalation>>);

#[async_trait::async_trait]
impl EscalationRaiser for RecordingRaiser {
    async fn raise(
        &self,
        due: &DueEscalation,
        _now: DateTime<Utc>,
    ) -> Result<RaiseOutcome, Box<dyn std::error::Error + Send + Sync>> {
        if let Ok(mut asked) = self.0.lock() {
            asked.push(due.clone());
        }
        Ok(RaiseOutcome::Raised)
    }
}

impl RecordingRaiser {
    fn take(&self) -> Vec<String> {
        let mut asked: Vec<String> = self
            .0
            .lock()
            .map(|mut asked| asked.drain(..).map(|due| due.complaint_id).collect())
            .unwrap_or_default();
        asked.sort();
        asked
    }
}

/// What the code under test logs at error, on this thread.
#[derive(Clone, Default)]
struct ErrorLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for ErrorLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ErrorLog {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let log = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .with_writer(move || log.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines_with(&self, text: &str) -> usize {
        let log = self.0.lock().map(|log| log.clone()).unwrap_or_default();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

/// The count of rows set aside in `table`, as a Prometheus scrape shows it.
fn set_aside_metric(table: &str) -> f64 {
    let scraped = valid(doorstep_telemetry::prometheus_text());
    scraped
        .lines()
        .filter(|line| line.starts_with("doorstep_notifier_rows_set_aside"))
        .filter(|line| line.contains(&format!("table=\"{table}\"")))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

async fn execute(database: &ReadModelDatabase, sql: &str, binds: &[&str]) {
    let query = binds.iter().fold(
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())),
        |query, bind| query.bind(bind.to_string()),
    );
    valid(query.execute(database.pool()).await);
}

async fn an_unreadable_schedule_row_is_set_aside_and_every_other_complaint_escalates(
    backend: TestBackend,
) {
    let _turn = METRIC.lock().await;
    doorstep_telemetry::ensure_metrics();
    let (runner, read_model, database) = backend.projections().await;
    let runner = runner.with_escalations(planner());
    let mut logged = Vec::new();
    for _ in 0..3 {
        let complaint = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
        logged.push(complaint.id.to_string());
    }
    logged.sort();
    valid(runner.catch_up().await);

    // Rows due before every good one: a date that does not exist, a due time no clock can
    // represent, and a complaint id no complaint can have; and the row a complaint received
    // before year 1 left behind, which is readable.
    let copy_of_a_good_row = |id: &str, complaint_id: &str, started: &str, due_at: i64| {
        format!(
            "INSERT INTO escalation_schedule (escalation_id, complaint_id, contractor_id, \
             deadline, level, deadline_date, clock_started_at, due_at) \
             SELECT '{id}', '{complaint_id}', contractor_id, deadline, level, deadline_date, \
             '{started}', {due_at} FROM escalation_schedule \
             ORDER BY escalation_id LIMIT 1"
        )
    };
    let impossible_date = uuid::Uuid::now_v7().to_string();
    let out_of_range = uuid::Uuid::now_v7().to_string();
    let not_a_complaint = uuid::Uuid::now_v7().to_string();
    let a_complaint = uuid::Uuid::now_v7().to_string();
    let before_year_one = uuid::Uuid::now_v7().to_string();
    let received_before_year_one = uuid::Uuid::now_v7().to_string();
    logged.push(received_before_year_one.clone());
    logged.sort();
    for sql in [
        copy_of_a_good_row(
            &before_year_one,
            &received_before_year_one,
            "-0001-12-30T09:00:00.000000000Z",
            2,
        ),
        copy_of_a_good_row(&impossible_date, &a_complaint, "2026-02-30T09:00:00Z", 0),
        copy_of_a_good_row(
            &out_of_range,
            &a_complaint,
            "2026-04-02T09:00:00Z",
            i64::MIN,
        ),
        copy_of_a_good_row(
            &not_a_complaint,
            "not-a-complaint",
            "2026-04-02T09:00:00Z",
            1,
        ),
    ] {
        execute(&database, &sql, &[]).await;
    }

    let raiser = Arc::new(RecordingRaiser::default());
    let scheduler = Scheduler::new(
        read_model.clone(),
        raiser.clone(),
        Arc::new(|| at("2026-12-31T00:00:00Z")),
        Duration::from_secs(3600),
    );
    assert!(
        read_model
            .due_escalations(at("2026-12-31T00:00:00Z"), 100)
            .await
            .is_err(),
        "read whole, the schedule fails on the bad rows, as every scheduler round used to"
    );
    let metric_before = set_aside_metric("escalation_schedule");
    let errors = ErrorLog::default();
    let _capture = errors.capture();

    let raised = valid(scheduler.raise_due().await);
    assert_eq!(raised, 4, "every readable row is raised");
    assert_eq!(raiser.take(), logged);
    let set_aside = valid(read_model.set_aside_escalations().await);
    let reasons: BTreeMap<&str, &str> = set_aside
        .iter()
        .map(|(key, reason, _)| (key.as_str(), reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{set_aside:?}");
    assert_eq!(
        reasons.get(not_a_complaint.as_str()).copied(),
        Some("invalid complaint id not-a-complaint")
    );
    assert!(
        reasons
            .get(impossible_date.as_str())
            .is_some_and(|reason| reason.contains("invalid time 2026-02-30")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .get(out_of_range.as_str())
            .is_some_and(|reason| reason.contains("time out of range")),
        "{reasons:?}"
    );
    assert_eq!(errors.lines_with("cannot be read"), 3);
    assert_eq!(set_aside_metric("escalation_schedule") - metric_before, 3.0);

    // The next round reads neither bad row again: nothing more is set aside, logged or counted,
    // and the good rows (still scheduled: this raiser appends nothing) are offered again.
    let raised = valid(scheduler.raise_due().await);
    assert_eq!(raised, 4);
    assert_eq!(raiser.take(), logged);
    assert_eq!(valid(read_model.set_aside_escalations().await), set_aside);
    assert_eq!(errors.lines_with("cannot be read"), 3);
    assert_eq!(set_aside_metric("escalation_schedule") - metric_before, 3.0);
    backend.close().await;
}

/// Answers every HTTP request with 204 and counts them.
async fn webhook_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = valid(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let url = format!("http://{}/hook", valid(listener.local_addr()));
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0_u8; 4096];
                // Read the head and the body its Content-Length announces.
                loop {
                    let Ok(read) = connection.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .filter_map(|line| line.split_once(':'))
                            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = connection
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, received)
}

async fn an_unreadable_outbox_row_is_set_aside_and_every_other_delivery_is_delivered(
    backend: TestBackend,
) {
    let _turn = METRIC.lock().await;
    doorstep_telemetry::ensure_metrics();
    let (_runner, read_model, database) = backend.projections().await;
    let (url, received) = webhook_receiver().await;
    let plant = |delivery_id: &str, channel: &str, body: &str, next_attempt_at: i64| {
        let sql = format!(
            "INSERT INTO escalation_deliveries (delivery_id, escalation_id, channel, target, \
             body, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, {next_attempt_at}, 0)"
        );
        let escalation_id = uuid::Uuid::now_v7().to_string();
        let binds = [
            delivery_id.to_owned(),
            escalation_id,
            channel.to_owned(),
            url.clone(),
            body.to_owned(),
        ];
        let database = database.clone();
        async move {
            let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
            execute(&database, &sql, &binds).await;
        }
    };
    let good: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let corrupt_body = uuid::Uuid::now_v7().to_string();
    let unknown_channel = uuid::Uuid::now_v7().to_string();
    // The bad rows are due first.
    plant(&corrupt_body, "WEBHOOK", "{\"type\": \"escalation.rai", 1).await;
    plant(&unknown_channel, "CARRIER_PIGEON", "{}", 2).await;
    for id in &good {
        plant(id, "WEBHOOK", "{\"type\": \"escalation.raised\"}", 10).await;
    }

    let webhook = valid(WebhookSender::new(
        [(url.clone(), SecretString::from("receiver-secret"))],
        Duration::from_secs(5),
    ));
    let worker = DeliveryWorker::new(
        read_model.clone(),
        webhook,
        None,
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        },
        Duration::from_secs(3600),
    );
    let metric_before = set_aside_metric("escalation_deliveries");
    let errors = ErrorLog::default();
    let _capture = errors.capture();

    assert_eq!(
        valid(worker.deliver_due().await),
        5,
        "three claimed, two set aside"
    );
    for id in &good {
        let state = valid(read_model.delivery_state(valid(id.parse())).await);
        assert_eq!(state.as_deref(), Some("DELIVERED"), "{id}");
    }
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 3);
    let stored = |id: String| {
        let database = database.clone();
        async move {
            let row: (String, Option<String>) = valid(
                sqlx::query_as(
                    "SELECT state, last_error FROM escalation_deliveries WHERE delivery_id = $1",
                )
                .bind(id)
                .fetch_one(database.pool())
                .await,
            );
            row
        }
    };
    let (state, reason) = stored(corrupt_body.clone()).await;
    assert_eq!(state, "SET_ASIDE");
    assert_eq!(reason.as_deref(), Some("body is not JSON"));
    let (state, reason) = stored(unknown_channel.clone()).await;
    assert_eq!(state, "SET_ASIDE");
    assert_eq!(reason.as_deref(), Some("unknown channel"));
    assert_eq!(errors.lines_with("cannot be read"), 2);
    assert_eq!(
        set_aside_metric("escalation_deliveries") - metric_before,
        2.0
    );

    // The next round has nothing to take up: the set-aside rows are not read again.
    assert_eq!(valid(worker.deliver_due().await), 0);
    assert_eq!(stored(corrupt_body).await.0, "SET_ASIDE");
    assert_eq!(stored(unknown_channel).await.0, "SET_ASIDE");
    assert_eq!(errors.lines_with("cannot be read"), 2);
    assert_eq!(
        set_aside_metric("escalation_deliveries") - metric_before,
        2.0
    );
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 3);
    backend.close().await;
}

on_every_backend!(
    an_unreadable_schedule_row_is_set_aside_and_every_other_complaint_escalates,
    an_unreadable_outbox_row_is_set_aside_and_every_other_delivery_is_delivered,
);
