//! `doorstep-bench-rebuild`: the read models rebuilt on an existing log (issue 18), offline and
//! online, with the queries' latencies while the online rebuild runs.
//!
//! The log comes from `doorstep-bench-performance --visits 0 --events N --keep-data`, which
//! leaves a directory holding `doorstep.db`. Both rebuilds run the real `doorstep` binary, as an
//! operator would:
//!
//! 1. **Offline**: `doorstep projections rebuild` with no server, under `/usr/bin/time` for its
//!    peak memory.
//! 2. **Online**: the server starts on the log (in this process), query clients call
//!    `GetContractorPerformance`, `ListContractorPerformance` and `ListComplaints` without pause
//!    and a writer records visits, while `doorstep projections rebuild --online` runs beside it.
//!    Latencies are kept apart for before, during and after the rebuild; any failed call is
//!    counted and fails the run.
//!
//! ```sh
//! cargo build --release -p doorstep-server -p doorstep-bench
//! ./target/release/doorstep-bench-performance --visits 0 --events 1000000 --keep-data
//! ./target/release/doorstep-bench-rebuild --log-dir target/doorstep-bench/log-XXXX
//! ```

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_server::Settings;
use hdrhistogram::Histogram;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Mutex;

use common::{RunningServer, contractor_name};

/// Rebuilds the read models of an existing log offline and online.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// A directory holding `doorstep.db` (from `doorstep-bench-performance --keep-data`).
    #[arg(long)]
    log_dir: PathBuf,
    /// The `doorstep` binary; defaults to the one beside this bench.
    #[arg(long)]
    doorstep: Option<PathBuf>,
    /// Skip the offline rebuild.
    #[arg(long)]
    no_offline: bool,
    /// Skip the online rebuild.
    #[arg(long)]
    no_online: bool,
    /// Query clients running throughout the online rebuild.
    #[arg(long, default_value_t = 4)]
    query_clients: usize,
    /// Visits recorded per second throughout the online rebuild (in calls of 10).
    #[arg(long, default_value_t = 100)]
    visits_per_second: u64,
    /// Seconds of queries measured before and after the online rebuild.
    #[arg(long, default_value_t = 10)]
    settle_seconds: u64,
    /// Contractors in the log (as `doorstep-bench-performance --contractors`).
    #[arg(long, default_value_t = 50)]
    contractors: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    doorstep_telemetry::init(doorstep_telemetry::LogFormat::Text, "warn");
    let doorstep = match &options.doorstep {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench has no directory")?
            .join("doorstep"),
    };
    if !doorstep.exists() {
        bail!(
            "{} does not exist: `cargo build --release -p doorstep-server`, or pass --doorstep",
            doorstep.display()
        );
    }
    let log = options.log_dir.join("doorstep.db");
    if !log.exists() {
        bail!(
            "{} does not exist: pass the directory `doorstep-bench-performance --keep-data` kept",
            log.display()
        );
    }
    println!(
        "log {} ({:.0} MB)",
        log.display(),
        common::file_size(&log) as f64 / 1e6
    );
    if !options.no_offline {
        offline(&options, &doorstep).await?;
    }
    if !options.no_online {
        online(&options, &doorstep).await?;
    }
    Ok(())
}

/// The `doorstep` command on the log's settings (its database only; everything else as the
/// servers this bench starts, `Settings::for_tests`).
fn doorstep_command(doorstep: &Path, log_dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(doorstep);
    command
        .env(
            "DOORSTEP__DATABASE__URL",
            format!("sqlite://{}", log_dir.join("doorstep.db").display()),
        )
        .env("RUST_LOG", "info")
        .current_dir(log_dir);
    command
}

async fn offline(options: &Options, doorstep: &Path) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::new("/usr/bin/time");
    command
        .arg("-f")
        .arg("peak-rss-kib %M")
        .arg(doorstep)
        .args(["projections", "rebuild"])
        .env(
            "DOORSTEP__DATABASE__URL",
            format!("sqlite://{}", options.log_dir.join("doorstep.db").display()),
        )
        .env("RUST_LOG", "info")
        .current_dir(&options.log_dir);
    println!("offline: doorstep projections rebuild");
    let started = Instant::now();
    let output = command
        .output()
        .await
        .context("running doorstep projections rebuild")?;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the offline rebuild failed: {stderr}");
    }
    let peak = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-rss-kib "))
        .and_then(|kib| kib.trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.0} MB", kib / 1024.0),
        );
    let events = events_in_log(&stderr);
    println!(
        "  {} events in {:.1} s: {:.0} events/s; peak memory {peak}; read models {:.0} MB",
        events.map_or_else(|| "?".to_owned(), |e| e.to_string()),
        elapsed.as_secs_f64(),
        events.map_or(0.0, |e| e as f64 / elapsed.as_secs_f64()),
        read_model_bytes(&options.log_dir) as f64 / 1e6
    );
    Ok(())
}

/// The events the rebuild says it applied (its `read models rebuilt` log line).
fn events_in_log(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .filter(|line| line.contains("rebuilt"))
        .find_map(|line| {
            let start = line.find("events=")? + "events=".len();
            line[start..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

/// The size of every read-model file beside the log (every generation).
fn read_model_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("doorstep.read-models") && name.ends_with(".db")
        })
        .map(|entry| common::file_size(&entry.path()))
        .sum()
}

/// Which part of the run a call was made in.
#[derive(Clone, Copy)]
enum Phase {
    Before = 0,
    During = 1,
    After = 2,
}

const PHASES: [&str; 3] = ["before", "during", "after"];

/// What the query clients and the writer saw, per phase.
struct Observed {
    phase: AtomicU64,
    stop: AtomicBool,
    /// Per phase, per query: latencies in microseconds.
    latencies: Mutex<Vec<Vec<Histogram<u64>>>>,
    failures: Mutex<Vec<String>>,
    visits: AtomicU64,
}

const QUERIES: [&str; 3] = [
    "GetContractorPerformance",
    "ListContractorPerformance",
    "ListComplaints",
];

impl Observed {
    fn new() -> anyhow::Result<Self> {
        let mut latencies = Vec::new();
        for _ in PHASES {
            let mut per_query = Vec::new();
            for _ in QUERIES {
                per_query.push(Histogram::new_with_bounds(1, 600_000_000, 3)?);
            }
            latencies.push(per_query);
        }
        Ok(Self {
            phase: AtomicU64::new(Phase::Before as u64),
            stop: AtomicBool::new(false),
            latencies: Mutex::new(latencies),
            failures: Mutex::new(Vec::new()),
            visits: AtomicU64::new(0),
        })
    }

    async fn record(&self, query: usize, elapsed: Duration) {
        let phase = usize::try_from(self.phase.load(Ordering::Relaxed)).unwrap_or(0);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = self
            .latencies
            .lock()
            .await
            .get_mut(phase)
            .and_then(|p| p.get_mut(query))
        {
            histogram.saturating_record(micros);
        }
    }

    async fn failed(&self, what: String) {
        let mut failures = self.failures.lock().await;
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

async fn online(options: &Options, doorstep: &Path) -> anyhow::Result<()> {
    println!("online: the server on the log, queries and visits throughout");
    let settings = Settings::for_tests(&options.log_dir);
    let server = RunningServer::start(settings).await?;
    let channel = server.channel().await?;
    let observed = Arc::new(Observed::new()?);
    let mut tasks = Vec::new();
    for client in 0..options.query_clients {
        let observed = Arc::clone(&observed);
        let channel = channel.clone();
        let contractors = options.contractors;
        tasks.push(tokio::spawn(async move {
            query_loop(client, contractors, channel, &observed).await
        }));
    }
    {
        let observed = Arc::clone(&observed);
        let channel = channel.clone();
        let per_second = options.visits_per_second;
        let contractors = options.contractors;
        tasks.push(tokio::spawn(async move {
            visit_loop(per_second, contractors, channel, &observed).await
        }));
    }
    let settle = Duration::from_secs(options.settle_seconds);
    tokio::time::sleep(settle).await;

    observed
        .phase
        .store(Phase::During as u64, Ordering::Relaxed);
    let started = Instant::now();
    let mut child = doorstep_command(doorstep, &options.log_dir)
        .args(["projections", "rebuild", "--online"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting doorstep projections rebuild --online")?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let mut said = Vec::new();
    while let Some(line) = lines.next_line().await? {
        said.push(line);
    }
    let status = child.wait().await?;
    let elapsed = started.elapsed();
    observed.phase.store(Phase::After as u64, Ordering::Relaxed);
    if !status.success() {
        bail!("the online rebuild failed:\n{}", said.join("\n"));
    }
    let events = events_in_log(&said.join("\n"));
    println!(
        "  rebuild --online: {} events in {:.1} s: {:.0} events/s",
        events.map_or_else(|| "?".to_owned(), |e| e.to_string()),
        elapsed.as_secs_f64(),
        events.map_or(0.0, |e| e as f64 / elapsed.as_secs_f64()),
    );
    tokio::time::sleep(settle).await;
    observed.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("a load task panicked")??;
    }
    let latencies = observed.latencies.lock().await;
    println!("  query latency, ms (p50 / p99 / max, calls):");
    for (phase, name) in PHASES.iter().enumerate() {
        for (query, query_name) in QUERIES.iter().enumerate() {
            if let Some(histogram) = latencies.get(phase).and_then(|p| p.get(query)) {
                println!(
                    "    {name:6} {query_name:26} {:7.2} / {:7.2} / {:7.2}  {}",
                    histogram.value_at_quantile(0.5) as f64 / 1e3,
                    histogram.value_at_quantile(0.99) as f64 / 1e3,
                    histogram.max() as f64 / 1e3,
                    histogram.len()
                );
            }
        }
    }
    println!(
        "  visits recorded throughout: {}",
        observed.visits.load(Ordering::Relaxed)
    );
    let failures = observed.failures.lock().await;
    if !failures.is_empty() {
        bail!(
            "{} calls failed, e.g.:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    println!("  no call failed");
    drop(channel);
    server.stop().await
}

async fn query_loop(
    client: usize,
    contractors: u32,
    channel: common::Channel,
    observed: &Observed,
) -> anyhow::Result<()> {
    let mut performance =
        PerformanceServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut complaints = ComplaintServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut call = 0_u32;
    while !observed.stop.load(Ordering::Relaxed) {
        call = call.wrapping_add(1);
        let contractor =
            contractor_name((call.wrapping_add(u32::try_from(client)?)) % contractors.max(1));
        let started = Instant::now();
        let answer = performance
            .get_contractor_performance(v1::GetContractorPerformanceRequest {
                contractor_id: contractor.clone(),
                from_month: common::FROM_MONTH.to_owned(),
                to_month: common::TO_MONTH.to_owned(),
                min_position: None,
            })
            .await;
        match answer {
            Ok(_) => observed.record(0, started.elapsed()).await,
            Err(status) => {
                observed
                    .failed(format!("GetContractorPerformance: {status}"))
                    .await
            }
        }
        let started = Instant::now();
        let answer = performance
            .list_contractor_performance(v1::ListContractorPerformanceRequest {
                from_month: common::FROM_MONTH.to_owned(),
                to_month: common::TO_MONTH.to_owned(),
                min_visits: 100,
                min_position: None,
            })
            .await;
        match answer {
            Ok(_) => observed.record(1, started.elapsed()).await,
            Err(status) => {
                observed
                    .failed(format!("ListContractorPerformance: {status}"))
                    .await
            }
        }
        let started = Instant::now();
        let answer = complaints
            .list_complaints(v1::ListComplaintsRequest {
                contractor_id: contractor,
                page_size: 50,
                ..Default::default()
            })
            .await;
        match answer {
            Ok(_) => observed.record(2, started.elapsed()).await,
            Err(status) => observed.failed(format!("ListComplaints: {status}")).await,
        }
    }
    Ok(())
}

/// Records visits at a steady rate, ten a call, so writes go on throughout.
async fn visit_loop(
    per_second: u64,
    contractors: u32,
    channel: common::Channel,
    observed: &Observed,
) -> anyhow::Result<()> {
    if per_second == 0 {
        return Ok(());
    }
    let mut visits = VisitServiceClient::new(channel);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(10.0 / per_second as f64));
    let today = chrono::Utc::now().date_naive();
    let prefix = format!("bench-{}", uuid::Uuid::now_v7());
    let mut next = 0_u64;
    while !observed.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let batch: Vec<v1::Visit> = (next..next + 10)
            .map(|index| common::visit(&prefix, index, contractors, today))
            .collect();
        next += 10;
        match visits
            .record_visits(v1::RecordVisitsRequest { visits: batch })
            .await
        {
            Ok(answer) if answer.get_ref().rejected.is_empty() => {
                observed
                    .visits
                    .fetch_add(u64::from(answer.get_ref().recorded), Ordering::Relaxed);
            }
            Ok(answer) => {
                observed
                    .failed(format!(
                        "RecordVisits rejected {:?}",
                        answer.get_ref().rejected.first()
                    ))
                    .await;
            }
            Err(status) => observed.failed(format!("RecordVisits: {status}")).await,
        }
    }
    Ok(())
}
