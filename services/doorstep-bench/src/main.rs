//! `doorstep-bench`: how many complaints per second the real server takes in through
//! `LogComplaint`, at what latency, against the store's own one-commit-per-event rate on the
//! same disk.
//!
//! Beside the intake, an echo phase calls a trivial method through the same server, layers,
//! clients and connections: intake ÷ echo is what Doorstep adds beside gRPC itself.
//!
//! ```sh
//! cargo run --release -p doorstep-bench -- --clients 64 --seconds 20
//! cargo run --release -p doorstep-bench -- --backend postgres
//! cargo run --release -p doorstep-bench -- --database postgres://postgres@127.0.0.1/postgres
//! # the server on one machine (or process), the load from another:
//! cargo run --release -p doorstep-bench -- --serve 0.0.0.0:50051
//! cargo run --release -p doorstep-bench -- --target server-host:50051
//! ```

mod backend;
mod baseline;
#[path = "bin/common/mod.rs"]
mod common;
mod echo;
mod intake;
mod latency;
mod machine;
mod report;
mod server_cpu;
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
use doorstep_server::auth::client::{AuthenticatedChannel, CallerCredential};

use crate::common::{RunningServer, bench_credential};
use crate::intake::{Phase, PhaseTally, Workload};
use crate::machine::Machine;
use crate::report::{CpuCounted, PhaseSummary, Summary, Targets, ratio};
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
    /// Intake must reach this fraction of the echo phase's calls per second.
    #[arg(long, default_value_t = 0.35)]
    target_echo_ratio: f64,
    /// Skip the echo phase.
    #[arg(long)]
    no_echo: bool,
    /// Drive the server at this host:port instead of starting one in this process. The store
    /// phases are skipped, and CPU time counts the clients only. The echo phase needs a server
    /// started with `doorstep-bench --serve`; against `doorstep serve` it is skipped.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "serve")]
    target: Option<String>,
    /// The API key the clients present to `--target` (needs the intake role; registering the
    /// bench's contractor needs admin, and is skipped with a warning without it). Without a key
    /// the clients present a JWT signed with the test secret, which a `--serve` server accepts.
    #[arg(
        long,
        env = "DOORSTEP_BENCH_API_KEY",
        hide_env_values = true,
        requires = "target"
    )]
    api_key: Option<String>,
    /// The `--target` server's Prometheus endpoint (host:port): its `process_cpu_time_seconds_total`
    /// is read before and after each phase, so the report gives the server's CPU per call beside
    /// the clients'. `doorstep serve` has it on its metrics port (9464 by default);
    /// `doorstep-bench --serve` prints where its is.
    #[arg(long, value_name = "HOST:PORT", requires = "target")]
    metrics: Option<String>,
    /// Serve (API and echo) at this host:port on fresh storage until interrupted, for another
    /// `doorstep-bench --target` to drive. Accepts JWTs signed with the test secret.
    #[arg(long, value_name = "HOST:PORT")]
    serve: Option<std::net::SocketAddr>,
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

    let backend = backend(&options)?;
    if let Some(address) = options.serve {
        serve(&backend, address, options.keep_data).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let summary = match &options.target {
        Some(target) => run_against(&options, target).await?,
        None => run(&options, &backend).await?,
    };

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

fn backend(options: &Options) -> anyhow::Result<Backend> {
    Ok(match (&options.database, options.backend) {
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

/// `--serve`: the bench's server (API and echo) on fresh storage until Ctrl-C.
async fn serve(
    backend: &Backend,
    address: std::net::SocketAddr,
    keep_data: bool,
) -> anyhow::Result<()> {
    let storage = backend.fresh_storage("serve").await?;
    let mut settings = storage.server_settings(&std::env::temp_dir());
    settings.server.host = address.ip();
    settings.server.port = address.port();
    // Beside the API, on a free port, for `doorstep-bench --target … --metrics …`.
    settings.metrics.host = address.ip();
    let server = RunningServer::start_with(settings, echo::mounted_on).await?;
    eprintln!(
        "serving the API and the bench's echo on {}:{} ({} backend, data in {}); Ctrl-C stops",
        address.ip(),
        server.port,
        backend.name(),
        backend.location()
    );
    if let Some(metrics) = server.metrics {
        eprintln!("metrics (the server's CPU for --metrics) on {metrics}");
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.stop().await?;
    storage.finish(keep_data).await
}

/// The clients' settings, as counts.
struct Load {
    clients: usize,
    connections: usize,
}

impl Load {
    fn of(options: &Options) -> anyhow::Result<Self> {
        Ok(Self {
            clients: usize::try_from(options.clients).context("too many clients")?,
            connections: usize::try_from(options.connections).context("too many connections")?,
        })
    }
}

/// What the measured phases against one server gave.
struct Measured {
    echo: Result<PhaseTally, String>,
    intake: PhaseTally,
}

/// `--target`: the echo and intake phases against a server elsewhere; no store phases.
async fn run_against(options: &Options, target: &str) -> anyhow::Result<Summary> {
    let load = Load::of(options)?;
    let credential = match &options.api_key {
        Some(key) => CallerCredential::api_key(key)
            .context("the API key holds characters a gRPC header cannot carry")?,
        None => bench_credential()?,
    };
    let server_metrics = match &options.metrics {
        Some(address) => Some(server_cpu::ServerMetrics::connect(address).await?),
        None => None,
    };
    let channels = intake::connect(target, load.connections, &credential).await?;
    let channel = channels.first().context("no connection to the server")?;
    if let Err(error) = workload::register_contractor(channel.clone()).await {
        eprintln!(
            "warning: {error:#}; continuing in case {} is registered already",
            workload::CONTRACTOR_ID
        );
    }
    let complaint = Arc::new(ComplaintTemplate::gate_left_open(chrono::Utc::now()));
    probe_intake(channel, &complaint).await?;
    let measured = measure_phases(
        options,
        &channels,
        &load,
        complaint,
        server_metrics.as_ref(),
    )
    .await?;
    drop(channels);
    let mut summary = summarise(
        options,
        &load,
        measured,
        Machine::describe(None),
        CpuCounted::ClientsOnly,
    );
    summary.backend = "remote".to_owned();
    summary.storage = format!("the server at {target}");
    summary.target = Some(target.to_owned());
    Ok(summary)
}

async fn run(options: &Options, backend: &Backend) -> anyhow::Result<Summary> {
    let load = Load::of(options)?;
    let store_appenders = match options.store_appenders {
        Some(appenders) => usize::try_from(appenders).context("too many appenders")?,
        None => load.clients,
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
    let (measured, event_template) = measure_in_process(options, &intake_storage, &load).await?;
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

    let mut summary = summarise(
        options,
        &load,
        measured,
        machine,
        CpuCounted::ServerAndClients,
    );
    let baseline = PhaseSummary::from_tally(&baseline_tally, Some(baseline_commits));
    summary.intake_over_baseline = ratio(summary.intake.per_second, baseline.per_second);
    summary.backend = backend.name().to_owned();
    summary.storage = backend.location();
    summary.database_settings = database_settings;
    summary.store_appenders = store_appenders;
    summary.baseline = Some(baseline);
    summary.store_concurrent = store_concurrent;
    summary.store_event_bytes = event_template.stored_bytes;
    summary.check(targets(options));
    Ok(summary)
}

fn targets(options: &Options) -> Targets {
    Targets {
        min_intake_over_baseline: options.target_ratio,
        max_p99_ms: options.target_p99_ms,
        min_intake_over_echo: options.target_echo_ratio,
    }
}

/// The summary of the measured phases, without store phases (the caller adds them).
fn summarise(
    options: &Options,
    load: &Load,
    measured: Measured,
    machine: Machine,
    cpu_counted: CpuCounted,
) -> Summary {
    let intake = PhaseSummary::from_tally(&measured.intake, None);
    let (echo, echo_skipped) = match measured.echo {
        Ok(tally) => (Some(PhaseSummary::from_tally(&tally, None)), None),
        Err(reason) => (None, Some(reason)),
    };
    let intake_over_echo = echo
        .as_ref()
        .and_then(|echo| ratio(intake.per_second, echo.per_second));
    let cpu_intake_over_echo = echo
        .as_ref()
        .and_then(|echo| ratio(intake.cpu_us_per_call?, echo.cpu_us_per_call?));
    let server_cpu_intake_over_echo = echo
        .as_ref()
        .and_then(|echo| ratio(intake.server_cpu_us_per_call?, echo.server_cpu_us_per_call?));
    let mut summary = Summary {
        backend: String::new(),
        storage: String::new(),
        database_settings: None,
        machine,
        clients: load.clients,
        connections: load.connections,
        warmup_seconds: options.warmup_seconds,
        store_appenders: 0,
        target: None,
        cpu_counted,
        echo,
        echo_skipped,
        intake,
        intake_over_echo,
        cpu_intake_over_echo,
        server_cpu_intake_over_echo,
        baseline: None,
        store_concurrent: None,
        store_event_bytes: 0,
        intake_over_baseline: None,
        checks: Vec::new(),
    };
    summary.check(targets(options));
    summary
}

/// Starts the server on `storage`, measures the echo and intake phases and stops the server.
/// Returns the measurements and the server's own intake event, for the store phases to append.
async fn measure_in_process(
    options: &Options,
    storage: &Storage,
    load: &Load,
) -> anyhow::Result<(Measured, EventTemplate)> {
    let server = RunningServer::start_with(
        storage.server_settings(&std::env::temp_dir()),
        echo::mounted_on,
    )
    .await?;
    let address = format!("127.0.0.1:{}", server.port);
    let channels = intake::connect(&address, load.connections, &bench_credential()?).await?;
    let channel = channels.first().context("no connection to the server")?;
    workload::register_contractor(channel.clone()).await?;
    let complaint = Arc::new(ComplaintTemplate::gate_left_open(chrono::Utc::now()));
    let complaint_id = probe_intake(channel, &complaint).await?;
    let event_template =
        EventTemplate::read_from_server(channel.clone(), format!("complaint-{complaint_id}"))
            .await?;
    let measured = measure_phases(options, &channels, load, complaint, None).await?;
    drop(channels);
    server.stop().await?;
    Ok((measured, event_template))
}

/// The echo phase (unless skipped, or the server does not serve it), then the intake phase,
/// each after its own warm-up.
async fn measure_phases(
    options: &Options,
    channels: &[AuthenticatedChannel],
    load: &Load,
    complaint: Arc<ComplaintTemplate>,
    server: Option<&server_cpu::ServerMetrics>,
) -> anyhow::Result<Measured> {
    let echo = if options.no_echo {
        Err("--no-echo".to_owned())
    } else if let Some(reason) = echo_unavailable(channels).await? {
        Err(reason)
    } else {
        Ok(measure(options, channels, load, &Workload::Echo, "echo", server).await?)
    };
    let intake = measure(
        options,
        channels,
        load,
        &Workload::Intake(complaint),
        "intake",
        server,
    )
    .await?;
    Ok(Measured { echo, intake })
}

/// Why the echo phase cannot run against this server, or `None` when one call succeeds.
async fn echo_unavailable(channels: &[AuthenticatedChannel]) -> anyhow::Result<Option<String>> {
    let channel = channels.first().context("no connection to the server")?;
    let mut client = echo::proto::echo_service_client::EchoServiceClient::new(channel.clone());
    match client
        .echo(echo::proto::EchoRequest {
            text: "bench-probe".to_owned(),
        })
        .await
    {
        Ok(_) => Ok(None),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Some(
            "the server does not serve the bench's echo (start it with `doorstep-bench --serve`)"
                .to_owned(),
        )),
        Err(status) => bail!(
            "the first echo call failed: {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

/// Warms up with `workload`, then measures it.
async fn measure(
    options: &Options,
    channels: &[AuthenticatedChannel],
    load: &Load,
    workload: &Workload,
    name: &'static str,
    server: Option<&server_cpu::ServerMetrics>,
) -> anyhow::Result<PhaseTally> {
    if options.warmup_seconds > 0 {
        eprintln!("{name}: warming up for {} s", options.warmup_seconds);
        let warmup = Phase {
            name: if name == "echo" {
                "echo-warmup"
            } else {
                "warmup"
            },
            clients: load.clients,
            duration: Duration::from_secs(options.warmup_seconds),
        };
        let tally = intake::drive(channels, workload, warmup, None).await?;
        if tally.errors > 0 {
            bail!(
                "{} {name} calls failed while warming up, e.g. {:?}",
                tally.errors,
                tally.error_samples
            );
        }
    }
    eprintln!(
        "{name}: {} clients for {} s over {} connections",
        load.clients, options.seconds, load.connections
    );
    let measured = Phase {
        name,
        clients: load.clients,
        duration: Duration::from_secs(options.seconds),
    };
    intake::drive(channels, workload, measured, server).await
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

/// Logs one complaint, which proves the request is valid before any clock starts; returns its id.
async fn probe_intake(
    channel: &AuthenticatedChannel,
    complaint: &ComplaintTemplate,
) -> anyhow::Result<String> {
    let mut client =
        doorstep_api::v1::complaint_service_client::ComplaintServiceClient::new(channel.clone());
    let response = client
        .log_complaint(intake::log_complaint_request(
            complaint,
            format!("bench-probe-{}", uuid::Uuid::now_v7()),
        ))
        .await
        .context("the first LogComplaint call failed")?
        .into_inner();
    Ok(response.complaint_id)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("doorstep-bench").chain(args.iter().copied()))
    }

    #[test]
    fn target_mode_takes_an_address_and_an_api_key() {
        let options = parse(&["--target", "10.0.0.5:50051", "--api-key", "dsk_abc"])
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(options.target.as_deref(), Some("10.0.0.5:50051"));
        assert_eq!(options.api_key.as_deref(), Some("dsk_abc"));
        assert!(options.serve.is_none());
        assert!((options.target_echo_ratio - 0.35).abs() < f64::EPSILON);
        assert!(!options.no_echo);
    }

    #[test]
    fn an_api_key_without_a_target_and_serve_with_target_are_refused() {
        assert!(parse(&["--api-key", "dsk_abc"]).is_err());
        assert!(parse(&["--serve", "127.0.0.1:50051", "--target", "h:1"]).is_err());
        assert!(parse(&["--serve", "not-an-address"]).is_err());
        let options =
            parse(&["--serve", "0.0.0.0:50051"]).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            options.serve,
            Some(std::net::SocketAddr::from(([0, 0, 0, 0], 50051)))
        );
    }

    fn quick_options() -> Options {
        parse(&[
            "--seconds",
            "1",
            "--warmup-seconds",
            "0",
            "--clients",
            "4",
            "--connections",
            "2",
        ])
        .unwrap_or_else(|error| panic!("{error}"))
    }

    /// A second of echo and a second of intake against the real server in this process: both
    /// phases complete calls without errors, and the report's figures agree with the tallies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_and_intake_run_against_the_in_process_server() {
        let root = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let backend = Backend::Sqlite {
            root: root.path().to_owned(),
        };
        let options = quick_options();
        let load = Load::of(&options).unwrap_or_else(|error| panic!("{error}"));
        let storage = backend
            .fresh_storage("smoke")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let (measured, event_template) = measure_in_process(&options, &storage, &load)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        assert_eq!(event_template.event_type, "ComplaintReceived");

        let echo = measured
            .echo
            .as_ref()
            .unwrap_or_else(|reason| panic!("no echo phase: {reason}"));
        for (name, tally) in [("echo", echo), ("intake", &measured.intake)] {
            assert!(tally.completed > 0, "{name} completed no call");
            assert_eq!(tally.errors, 0, "{name}: {:?}", tally.error_samples);
            assert_eq!(tally.latency.summary().calls, tally.completed, "{name}");
            assert!(tally.elapsed >= Duration::from_secs(1), "{name}");
        }

        let summary = summarise(
            &options,
            &load,
            measured,
            Machine::describe(None),
            CpuCounted::ServerAndClients,
        );
        let echo = summary.echo.as_ref().unwrap_or_else(|| panic!("no echo"));
        let expected = summary.intake.per_second / echo.per_second;
        let ratio = summary
            .intake_over_echo
            .unwrap_or_else(|| panic!("no ratio"));
        assert!((ratio - expected).abs() < 1e-9, "{ratio} vs {expected}");
        for phase in [echo, &summary.intake] {
            let cpu = phase.cpu.unwrap_or_else(|| panic!("no CPU reading"));
            let per_call = phase
                .cpu_us_per_call
                .unwrap_or_else(|| panic!("no CPU per call"));
            let expected = cpu.process_cpu_seconds * 1e6 / phase.completed as f64;
            assert!((per_call - expected).abs() < 1e-6);
        }
        let table = summary.table();
        assert!(table.contains("echo: trivial call, same stack"), "{table}");
        assert!(table.contains("server and clients together"), "{table}");
        storage
            .finish(false)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// `--target … --metrics …` against a server in another task (as `--serve` starts one): the
    /// report gives the server's own CPU per call for both phases, read from its metrics.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_run_reports_the_servers_cpu_from_its_metrics() {
        let root = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let server = RunningServer::start_with(
            doorstep_server::Settings::for_tests(root.path()),
            echo::mounted_on,
        )
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
        let metrics = server
            .metrics
            .unwrap_or_else(|| panic!("the server has no metrics endpoint"));
        let target = format!("127.0.0.1:{}", server.port);
        let metrics = metrics.to_string();
        let options = parse(&[
            "--seconds",
            "1",
            "--warmup-seconds",
            "0",
            "--clients",
            "4",
            "--connections",
            "2",
            "--target",
            &target,
            "--metrics",
            &metrics,
        ])
        .unwrap_or_else(|error| panic!("{error}"));
        let summary = run_against(&options, &target)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        let echo = summary.echo.as_ref().unwrap_or_else(|| panic!("no echo"));
        for (name, phase) in [("echo", echo), ("intake", &summary.intake)] {
            assert_eq!(phase.errors, 0, "{name}: {:?}", phase.error_samples);
            let server_cpu = phase
                .server_cpu_us_per_call
                .unwrap_or_else(|| panic!("{name}: no server CPU per call"));
            assert!(server_cpu > 0.0, "{name}: {server_cpu}");
        }
        assert!(summary.server_cpu_intake_over_echo.is_some());
        let table = summary.table();
        assert!(table.contains("server CPU"), "{table}");
        assert!(
            parse(&["--metrics", "127.0.0.1:9464"]).is_err(),
            "--metrics needs --target"
        );
        server
            .stop()
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }

    /// The echo passes through authentication and the policy like every API call: no credential,
    /// no answer; a credential without the intake role, PERMISSION_DENIED; the bench's, an echo.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_echo_is_admitted_as_log_complaint_is() {
        let root = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let server = RunningServer::start_with(
            doorstep_server::Settings::for_tests(root.path()),
            echo::mounted_on,
        )
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
        let address = format!("127.0.0.1:{}", server.port);
        let channels = intake::connect(&address, 1, &CallerCredential::none())
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        let mut client =
            echo::proto::echo_service_client::EchoServiceClient::new(channels[0].clone());
        let refused = client
            .echo(echo::proto::EchoRequest {
                text: "hello".to_owned(),
            })
            .await
            .err()
            .unwrap_or_else(|| panic!("an anonymous echo was answered"));
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        // Admitted as LogComplaint is: the intake role, not merely any valid credential.
        let claims = doorstep_server::auth::jwt::TokenClaims::new(
            "auditor-only",
            &["auditor"],
            Duration::from_secs(600),
        );
        let token = doorstep_server::auth::jwt::issue_hs256(
            doorstep_server::settings::TEST_JWT_SECRET.as_bytes(),
            &claims,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let auditor = CallerCredential::bearer(&token).unwrap_or_else(|error| panic!("{error}"));
        let channels = intake::connect(&address, 1, &auditor)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        let mut client =
            echo::proto::echo_service_client::EchoServiceClient::new(channels[0].clone());
        let refused = client
            .echo(echo::proto::EchoRequest {
                text: "hello".to_owned(),
            })
            .await
            .err()
            .unwrap_or_else(|| panic!("an auditor's echo was answered"));
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);

        let channels = intake::connect(
            &address,
            1,
            &bench_credential().unwrap_or_else(|error| panic!("{error}")),
        )
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
        assert_eq!(echo_unavailable(&channels).await.ok(), Some(None));
        drop(channels);
        server
            .stop()
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }
}
