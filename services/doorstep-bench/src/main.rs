//! `doorstep-bench`: how many complaints per second the real server takes in through
//! `LogComplaint`, at what latency, against the store's own one-commit-per-event rate on the
//! same disk.
//!
//! ```sh
//! cargo run --release -p doorstep-bench -- --clients 64 --seconds 20
//! cargo run --release -p doorstep-bench -- --backend postgres
//! cargo run --release -p doorstep-bench -- --database postgres://postgres@127.0.0.1/postgres
//! ```

mod backend;
mod baseline;
mod intake;
mod latency;
mod machine;
mod report;
mod workload;

// The server runs in this process, so it gets the same allocator as the `doorstep` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use crate::backend::{Backend, Storage};
use crate::intake::{Phase, PhaseTally, RunningServer};
use crate::machine::Machine;
use crate::report::{PhaseSummary, Summary, Targets};
use crate::workload::{ComplaintTemplate, EventTemplate};

/// Measures LogComplaint intake against the real server, and the same store on its own: one
/// appender (the baseline: one commit per event) and many. Exits non-zero only when a call or an
/// append failed; missed targets are reported, not fatal.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// The event store backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Sqlite)]
    backend: BackendChoice,
    /// A PostgreSQL server to create fresh databases on (implies `--backend postgres`), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres. Without it, `--backend postgres` uses
    /// DOORSTEP_TEST_DATABASE_URL or starts a throw-away cluster from the installed binaries.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Concurrent clients, each calling LogComplaint back to back.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// HTTP/2 connections the clients are spread over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    connections: u32,
    /// How long the intake is measured.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// How long the clients run before the measurement starts (not counted).
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// How long the one-append-at-a-time baseline runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    baseline_seconds: u64,
    /// How long the store alone is driven by many appenders (0 skips it).
    #[arg(long, default_value_t = 10)]
    store_seconds: u64,
    /// Appenders for the store-alone phase; defaults to --clients.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    store_appenders: Option<u32>,
    /// Where the fresh SQLite directories go. Must be on the disk being measured, not tmpfs.
    /// Defaults to `doorstep-bench/` in the Cargo target directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Leave the databases behind instead of deleting them.
    #[arg(long)]
    keep_data: bool,
    /// Print a JSON summary instead of the table.
    #[arg(long)]
    json: bool,
    /// Intake must reach this many times the baseline's events per second.
    #[arg(long, default_value_t = 5.0)]
    target_ratio: f64,
    /// The intake's p99 latency must stay below this.
    #[arg(long, default_value_t = 25.0)]
    target_p99_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let options = Options::parse();
    // Server warnings and errors reach stderr; RUST_LOG shows more.
    doorstep_telemetry::init(doorstep_telemetry::LogFormat::Text, "warn");

    let backend = match (&options.database, options.backend) {
        (Some(url), _) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("--database takes a postgres:// URL");
            }
            Backend::Postgres {
                admin_url: Some(url.clone()),
            }
        }
        (None, BackendChoice::Postgres) => Backend::Postgres { admin_url: None },
        (None, BackendChoice::Sqlite) => Backend::Sqlite {
            root: options.data_dir.clone().unwrap_or_else(default_data_root),
        },
    };
    let summary = run(&options, &backend).await?;

    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).context("encoding the summary")?
        );
    } else {
        print!("{}", summary.table());
    }
    Ok(if summary.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `target/doorstep-bench` when run by Cargo (the binary sits in `target/<profile>/`), else the
/// system's temporary directory.
fn default_data_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("doorstep-bench")))
        .unwrap_or_else(|| std::env::temp_dir().join("doorstep-bench"))
}

async fn run(options: &Options, backend: &Backend) -> anyhow::Result<Summary> {
    let clients = usize::try_from(options.clients).context("too many clients")?;
    let connections = usize::try_from(options.connections).context("too many connections")?;
    let store_appenders = match options.store_appenders {
        Some(appenders) => usize::try_from(appenders).context("too many appenders")?,
        None => clients,
    };
    let local_root = match backend {
        Backend::Sqlite { root } => {
            std::fs::create_dir_all(root)
                .with_context(|| format!("creating {}", root.display()))?;
            Some(root.as_path())
        }
        Backend::Postgres { .. } => None,
    };
    let machine = Machine::describe(local_root);
    eprintln!(
        "{} backend, data in {} ({})",
        backend.name(),
        backend.location(),
        machine
            .data_filesystem
            .as_deref()
            .unwrap_or("filesystem not local")
    );

    let intake_storage = backend.fresh_storage("intake").await?;
    let database_settings = intake_storage.describe().await;
    if let Some(settings) = &database_settings {
        eprintln!("database: {settings}");
    }
    let (intake_tally, event_template) =
        measure_intake(options, &intake_storage, clients, connections).await?;
    intake_storage.finish(options.keep_data).await?;
    let event_template = Arc::new(event_template);

    eprintln!(
        "baseline: one appender straight on the store for {} s",
        options.baseline_seconds
    );
    let (baseline_tally, baseline_commits) = measure_store(
        backend,
        "baseline",
        &event_template,
        1,
        Duration::from_secs(options.baseline_seconds),
        options.keep_data,
    )
    .await?;

    let store_concurrent = if options.store_seconds > 0 {
        eprintln!(
            "store alone: {store_appenders} appenders for {} s",
            options.store_seconds
        );
        let (tally, commits) = measure_store(
            backend,
            "concurrent",
            &event_template,
            store_appenders,
            Duration::from_secs(options.store_seconds),
            options.keep_data,
        )
        .await?;
        Some(PhaseSummary::from_tally(&tally, Some(commits)))
    } else {
        None
    };

    let intake = PhaseSummary::from_tally(&intake_tally, None);
    let baseline = PhaseSummary::from_tally(&baseline_tally, Some(baseline_commits));
    let intake_over_baseline = if baseline.per_second > 0.0 {
        intake.per_second / baseline.per_second
    } else {
        f64::NAN
    };
    let mut summary = Summary {
        backend: backend.name().to_owned(),
        storage: backend.location(),
        database_settings,
        machine,
        clients,
        connections,
        warmup_seconds: options.warmup_seconds,
        store_appenders,
        intake,
        baseline,
        store_concurrent,
        store_event_bytes: event_template.stored_bytes,
        intake_over_baseline,
        checks: Vec::new(),
    };
    summary.check(Targets {
        min_intake_over_baseline: options.target_ratio,
        max_p99_ms: options.target_p99_ms,
    });
    Ok(summary)
}

/// Starts the server on `storage`, warms it up, measures the intake and stops the server.
/// Returns the measurement and the server's own intake event, for the store phases to append.
async fn measure_intake(
    options: &Options,
    storage: &Storage,
    clients: usize,
    connections: usize,
) -> anyhow::Result<(PhaseTally, EventTemplate)> {
    let server = RunningServer::start(storage.server_settings(&std::env::temp_dir())).await?;
    let channels = intake::connect(server.port(), connections).await?;
    let complaint = Arc::new(ComplaintTemplate::gate_left_open(chrono::Utc::now()));
    let event_template = first_intake_event(&channels, &complaint).await?;

    if options.warmup_seconds > 0 {
        eprintln!("warming up for {} s", options.warmup_seconds);
        let warmup = Phase {
            name: "warmup",
            clients,
            duration: Duration::from_secs(options.warmup_seconds),
        };
        let tally = intake::drive(&channels, &complaint, warmup).await?;
        if tally.errors > 0 {
            bail!(
                "{} calls failed while warming up, e.g. {:?}",
                tally.errors,
                tally.error_samples
            );
        }
    }
    eprintln!(
        "intake: {clients} clients for {} s over {connections} connections",
        options.seconds
    );
    let measured = Phase {
        name: "measured",
        clients,
        duration: Duration::from_secs(options.seconds),
    };
    let tally = intake::drive(&channels, &complaint, measured).await?;
    drop(channels);
    server.stop().await?;
    Ok((tally, event_template))
}

/// Appends straight to a fresh store with `appenders` tasks; returns the tally and the number
/// of transactions the store committed.
async fn measure_store(
    backend: &Backend,
    purpose: &str,
    event_template: &Arc<EventTemplate>,
    appenders: usize,
    duration: Duration,
    keep_data: bool,
) -> anyhow::Result<(PhaseTally, u64)> {
    let storage = backend.fresh_storage(purpose).await?;
    let store = storage.open_store().await?;
    let tally = baseline::append_for(
        store.shared(),
        Arc::clone(event_template),
        appenders,
        duration,
    )
    .await;
    let commits = store.commits();
    store.close().await;
    storage.finish(keep_data).await?;
    Ok((tally?, commits))
}

/// Registers the contractor, logs one complaint and reads its stored event back, which both
/// proves the request is valid before any clock starts and gives the store phases the server's
/// own event to append.
async fn first_intake_event(
    channels: &[doorstep_server::auth::client::AuthenticatedChannel],
    complaint: &ComplaintTemplate,
) -> anyhow::Result<EventTemplate> {
    let channel = channels.first().context("no connection to the server")?;
    workload::register_contractor(channel.clone()).await?;
    let mut client =
        doorstep_api::v1::complaint_service_client::ComplaintServiceClient::new(channel.clone());
    let response = client
        .log_complaint(intake::log_complaint_request(
            complaint,
            "bench-probe".to_owned(),
        ))
        .await
        .context("the first LogComplaint call failed")?
        .into_inner();
    EventTemplate::read_from_server(
        channel.clone(),
        format!("complaint-{}", response.complaint_id),
    )
    .await
}
