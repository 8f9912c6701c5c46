//! `doorstep-bench-performance`: the contractor performance workload (issue 4) on SQLite.
//!
//! 1. `RecordVisits` through the real server: visits per second, then one batch sent again to
//!    show that duplicates are recognised.
//! 2. A large log appended straight to `SqliteEventStore` (complaint lifecycles decided by the
//!    domain crate, contractor registrations, visits; ~50 contractors over 24 months), the read
//!    model rebuild rate over it, then the latency of the three performance queries against the
//!    server started on that log.
//!
//! ```sh
//! cargo run --release -p doorstep-bench --bin doorstep-bench-performance -- --events 1000000
//! ```

// The server runs in this process, so it gets the same allocator as the `doorstep` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
use clap::Parser;
use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::complaint::{
    self, CodeTimescales, Command, FindingInput, FindingOutcome, HandlingContext, LogComplaint,
    PropertyInput, ResidentInput, Stage,
};
use doorstep_domain::contractor::{
    ContractTerms, ContractorCommand, ContractorProfile, Visit, VisitEvent, handle_contractor,
};
use doorstep_domain::input::{
    Address, ComplaintId, ContractorId, Handler, LongText, OptionalText, PersonName, PhoneNumber,
    ResidentReference, ShortText, SourceSystem, Uprn, VisitId,
};
use doorstep_domain::standard::ServiceStandard;
use doorstep_server::Settings;
use doorstep_store::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, SqliteEventStore, SqliteSettings,
    StreamId,
};
use uuid::Uuid;

use common::{
    ACTOR, Channel, FROM_MONTH, RunningServer, TO_MONTH, contractor_name, file_size, mix, ms,
};

const REPORTING_YEAR: u32 = 2025;

/// Measures RecordVisits, the read-model rebuild and the performance queries on SQLite.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Events in the large log (phase 2). 0 skips phase 2.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Visits sent through RecordVisits (phase 1). 0 skips phase 1.
    #[arg(long, default_value_t = 200_000)]
    visits: u64,
    /// Visits per RecordVisits call (the server takes at most 10,000).
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// RecordVisits calls in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrent_batches: usize,
    /// Contractors registered through gRPC in phase 1.
    #[arg(long, default_value_t = 5)]
    intake_contractors: u32,
    /// Contractors in the large log.
    #[arg(long, default_value_t = 50)]
    contractors: u32,
    /// Concurrent appenders building the large log.
    #[arg(long, default_value_t = 256)]
    appenders: usize,
    /// Timed calls of each query.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Where the fresh SQLite directories go; defaults to `doorstep-bench/` in the target dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Leave the databases behind.
    #[arg(long)]
    keep_data: bool,
    /// Phase 2 on the log in this directory (`doorstep.db`), built there first if it has none,
    /// and kept: the same log can then be rebuilt again and again (`--events` is only the size
    /// of a log built here).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Phase 2 stops after the rebuild (no server, no queries), so the process's peak memory
    /// is the rebuild's.
    #[arg(long)]
    rebuild_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    doorstep_telemetry::init(doorstep_telemetry::LogFormat::Text, "warn");
    if options.batch == 0 || options.batch > 10_000 {
        bail!("--batch must be 1 to 10000");
    }
    if options.contractors == 0 || options.intake_contractors == 0 {
        bail!("--contractors and --intake-contractors must be at least 1");
    }
    let root = options.data_dir.clone().unwrap_or_else(default_data_root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    println!("data under {}", root.display());
    if options.visits > 0 {
        record_visits_phase(&options, &root).await?;
    }
    if options.events > 0 {
        large_log_phase(&options, &root).await?;
    }
    Ok(())
}

fn default_data_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("doorstep-bench")))
        .unwrap_or_else(|| std::env::temp_dir().join("doorstep-bench"))
}

fn fresh_dir(root: &std::path::Path, purpose: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{purpose}-"))
        .tempdir_in(root)
        .with_context(|| format!("creating a directory in {}", root.display()))
}

fn finish(dir: tempfile::TempDir, keep: bool) -> anyhow::Result<()> {
    if keep {
        println!("kept {}", dir.keep().display());
        Ok(())
    } else {
        dir.close().context("removing a benchmark data directory")
    }
}

fn with_actor<T>(message: T) -> tonic::Request<T> {
    // The actor recorded is the principal the bench's token names, not a header.
    tonic::Request::new(message)
}

// ---------------------------------------------------------------------------------------------
// Phase 1: RecordVisits through gRPC.

async fn record_visits_phase(options: &Options, root: &std::path::Path) -> anyhow::Result<()> {
    let dir = fresh_dir(root, "visits")?;
    let server = RunningServer::start(Settings::for_tests(dir.path())).await?;
    let channel = server.channel().await?;
    for index in 0..options.intake_contractors {
        register_through_grpc(channel.clone(), &contractor_name(index)).await?;
    }
    let today = Utc::now().date_naive();
    let batches: Vec<v1::RecordVisitsRequest> = (0..options.visits)
        .collect::<Vec<_>>()
        .chunks(usize::try_from(options.batch).context("batch too large")?)
        .map(|chunk| v1::RecordVisitsRequest {
            visits: chunk
                .iter()
                .map(|&i| common::visit("grpc-visit", i, options.intake_contractors, today))
                .collect(),
        })
        .collect();
    let batches = Arc::new(batches);
    println!(
        "RecordVisits: {} visits in {} calls of up to {}, {} in flight, {} contractors",
        options.visits,
        batches.len(),
        options.batch,
        options.concurrent_batches,
        options.intake_contractors
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.concurrent_batches.max(1) {
        let batches = Arc::clone(&batches);
        let next = Arc::clone(&next);
        let mut client = VisitServiceClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        workers.push(tokio::spawn(async move {
            let mut recorded = 0_u64;
            let mut call_times = Vec::new();
            loop {
                let index = usize::try_from(next.fetch_add(1, Ordering::Relaxed))?;
                let Some(batch) = batches.get(index) else {
                    break;
                };
                let call = Instant::now();
                let response = client
                    .record_visits(with_actor(batch.clone()))
                    .await
                    .context("RecordVisits failed")?
                    .into_inner();
                call_times.push(call.elapsed());
                if !response.rejected.is_empty() {
                    bail!(
                        "{} visits rejected, e.g. {:?}",
                        response.rejected.len(),
                        response.rejected.first()
                    );
                }
                recorded += u64::from(response.recorded);
            }
            anyhow::Ok((recorded, call_times))
        }));
    }
    let mut recorded = 0;
    let mut call_times = Vec::new();
    for worker in workers {
        let (count, times) = worker.await.context("a visit sender panicked")??;
        recorded += count;
        call_times.extend(times);
    }
    let elapsed = started.elapsed();
    call_times.sort();
    println!(
        "  recorded {recorded} in {:.2} s: {:.0} visits/s; per call median {:.0} ms, max {:.0} ms",
        elapsed.as_secs_f64(),
        recorded as f64 / elapsed.as_secs_f64(),
        ms(median(&call_times)),
        ms(call_times.last().copied().unwrap_or_default())
    );

    let first = batches.first().context("no batch was sent")?.clone();
    let mut client = VisitServiceClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let again = Instant::now();
    let response = client
        .record_visits(with_actor(first.clone()))
        .await
        .context("RecordVisits (resend) failed")?
        .into_inner();
    let again = again.elapsed();
    println!(
        "  resent the first batch of {}: {} duplicates, {} recorded, {} rejected in {:.0} ms ({:.0} visits/s)",
        first.visits.len(),
        response.duplicates,
        response.recorded,
        response.rejected.len(),
        ms(again),
        first.visits.len() as f64 / again.as_secs_f64()
    );
    drop(client);
    drop(channel);
    server.stop().await?;
    finish(dir, options.keep_data)
}

async fn register_through_grpc(channel: Channel, contractor_id: &str) -> anyhow::Result<()> {
    ContractorServiceClient::new(channel)
        .register_contractor(with_actor(v1::RegisterContractorRequest {
            contractor_id: contractor_id.to_owned(),
            profile: Some(v1::ContractorProfile {
                legal_name: format!("{contractor_id} Ltd"),
                trading_names: vec![format!("{contractor_id} Warm Homes")],
                logo_url: String::new(),
                public_contact_name: "Sam Site".to_owned(),
                public_phone: "0113 496 0000".to_owned(),
                contracts: vec![v1::ContractTerms {
                    reference: "RETRO-2026-01".to_owned(),
                    standards: vec![
                        v1::ServiceStandard::GatesSecured as i32,
                        v1::ServiceStandard::NoSmoking as i32,
                    ],
                    ..v1::ContractTerms::default()
                }],
            }),
            request_id: format!("register-{contractor_id}"),
        }))
        .await
        .with_context(|| format!("registering {contractor_id}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: a large log, the rebuild and the queries.

/// Where phase 2's log lives: a fresh directory, or the one `--log-dir` names (always kept).
enum LogDir {
    Fresh(tempfile::TempDir),
    Given(PathBuf),
}

impl LogDir {
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Fresh(dir) => dir.path(),
            Self::Given(path) => path,
        }
    }

    fn finish(self, keep: bool) -> anyhow::Result<()> {
        match self {
            Self::Fresh(dir) => finish(dir, keep),
            Self::Given(path) => {
                println!("kept {}", path.display());
                Ok(())
            }
        }
    }
}

async fn large_log_phase(options: &Options, root: &std::path::Path) -> anyhow::Result<()> {
    let dir = match &options.log_dir {
        Some(path) => {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
            LogDir::Given(path.clone())
        }
        None => LogDir::Fresh(fresh_dir(root, "log")?),
    };
    let settings = Settings::for_tests(dir.path());
    let path = dir.path().join("doorstep.db");
    if path.exists() {
        println!("reusing the log in {}", path.display());
    } else {
        build_log(options, &path).await?;
    }
    let started = Instant::now();
    let applied = doorstep_server::startup::rebuild_read_models(&settings, |_| {}, |_, _| {})
        .await
        .context("rebuilding the read models")?;
    let elapsed = started.elapsed();
    println!(
        "  rebuild: {applied} events in {:.1} s: {:.0} events/s; read models {:.0} MB",
        elapsed.as_secs_f64(),
        applied as f64 / elapsed.as_secs_f64(),
        file_size(&dir.path().join("doorstep.read-models.db")) as f64 / 1e6
    );
    if options.rebuild_only {
        return dir.finish(options.keep_data);
    }

    let console_key = doorstep_server::auth::api_keys::create(
        &settings.auth.api_keys_file,
        "bench-console",
        &[
            doorstep_server::auth::Role::Manager,
            doorstep_server::auth::Role::Officer,
            doorstep_server::auth::Role::Admin,
        ],
        None,
    )
    .context("creating the console's API key")?;
    let server = RunningServer::start(settings).await?;
    let channel = server.channel().await?;
    let mut client =
        PerformanceServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let contractor = contractor_name(options.contractors / 2);
    let mut one = Vec::new();
    let mut list = Vec::new();
    let mut handling = Vec::new();
    let mut shown = String::new();
    // One untimed round first: the first call warms SQLite's page cache.
    for call in 0..=options.calls {
        let started = Instant::now();
        let response = client
            .get_contractor_performance(with_actor(v1::GetContractorPerformanceRequest {
                contractor_id: contractor.clone(),
                from_month: FROM_MONTH.to_owned(),
                to_month: TO_MONTH.to_owned(),
                min_position: None,
            }))
            .await
            .context("GetContractorPerformance failed")?
            .into_inner();
        let one_time = started.elapsed();
        let started = Instant::now();
        let listed = client
            .list_contractor_performance(with_actor(v1::ListContractorPerformanceRequest {
                from_month: FROM_MONTH.to_owned(),
                to_month: TO_MONTH.to_owned(),
                min_visits: 100,
                min_position: None,
            }))
            .await
            .context("ListContractorPerformance failed")?
            .into_inner();
        let list_time = started.elapsed();
        let started = Instant::now();
        let report = client
            .get_complaint_handling_report(with_actor(v1::GetComplaintHandlingReportRequest {
                reporting_year: REPORTING_YEAR,
                homes: 12_000,
                min_position: None,
            }))
            .await
            .context("GetComplaintHandlingReport failed")?
            .into_inner();
        let handling_time = started.elapsed();
        if call == 0 {
            println!(
                "  first (untimed) calls: {:.1} / {:.1} / {:.1} ms",
                ms(one_time),
                ms(list_time),
                ms(handling_time)
            );
            shown = format!(
                "{contractor}: {} visits, {} complaints, {} upheld breaches; list: {} contractors, \
                 {} programme visits; handling report: {} bytes encoded",
                response.visits,
                response.complaints,
                response.upheld_breaches,
                listed.contractors.len(),
                listed.programme_visits,
                prost::Message::encoded_len(&report)
            );
        } else {
            one.push(one_time);
            list.push(list_time);
            handling.push(handling_time);
        }
    }
    println!("  answers: {shown}");
    for (name, times) in [
        (
            "GetContractorPerformance (1 contractor, 12 months)",
            &mut one,
        ),
        ("ListContractorPerformance (12 months)", &mut list),
        ("GetComplaintHandlingReport (1 year)", &mut handling),
    ] {
        times.sort();
        println!(
            "  {name}: median {:.2} ms, max {:.2} ms over {} calls",
            ms(median(times)),
            ms(times.last().copied().unwrap_or_default()),
            times.len()
        );
    }
    if let Some(console) = server.console {
        console_pages(
            console,
            &console_key,
            channel.clone(),
            &contractor,
            options.calls,
        )
        .await?;
    }
    drop(client);
    drop(channel);
    server.stop().await?;
    dir.finish(options.keep_data)
}

/// Appends the large log to a new SQLite store at `path`.
async fn build_log(options: &Options, path: &std::path::Path) -> anyhow::Result<()> {
    let store = SqliteEventStore::open(SqliteSettings::new(path))
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let generator = Arc::new(Generator::new(options.contractors)?);

    println!(
        "building a log of {} events ({} contractors, 24 months, {} appenders)",
        options.events, options.contractors, options.appenders
    );
    let started = Instant::now();
    for index in 0..options.contractors {
        let (stream, events) = generator.registration(index)?;
        shared
            .append(&stream, ExpectedVersion::NoStream, events)
            .await?;
    }
    let written = Arc::new(AtomicU64::new(u64::from(options.contractors)));
    let next_unit = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for _ in 0..options.appenders.max(1) {
        let shared = Arc::clone(&shared);
        let generator = Arc::clone(&generator);
        let written = Arc::clone(&written);
        let next_unit = Arc::clone(&next_unit);
        let tally = Arc::clone(&tally);
        let target = options.events;
        workers.push(tokio::spawn(async move {
            while written.load(Ordering::Relaxed) < target {
                let unit = next_unit.fetch_add(1, Ordering::Relaxed);
                let (stream, events) = generator.unit(unit, &tally)?;
                let count = events.len() as u64;
                if count == 0 {
                    continue;
                }
                shared
                    .append(&stream, ExpectedVersion::NoStream, events)
                    .await?;
                written.fetch_add(count, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let progress = {
        let written = Arc::clone(&written);
        let target = options.events;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let now = written.load(Ordering::Relaxed);
                eprintln!("  … {now} / {target} events");
                if now >= target {
                    break;
                }
            }
        })
    };
    for worker in workers {
        worker.await.context("an appender panicked")??;
    }
    progress.abort();
    let elapsed = started.elapsed();
    let head = shared.head_position().await?;
    let commits = store.commits();
    store.close().await;
    let db_bytes = file_size(path);
    println!(
        "  wrote {head} events in {:.1} s ({:.0} events/s, {:.1} events per commit); \
         {} complaints ({} stage 2, {} refused steps), {} visits; database {:.0} MB",
        elapsed.as_secs_f64(),
        head as f64 / elapsed.as_secs_f64(),
        head as f64 / commits.max(1) as f64,
        tally.complaints.load(Ordering::Relaxed),
        tally.stage_two.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.visits.load(Ordering::Relaxed),
        db_bytes as f64 / 1e6
    );

    Ok(())
}

/// Times each console page over HTTP on loopback, signed in as a manager who is also an officer
/// and an administrator (so every section of every page is drawn): an upper bound on the time
/// the server spends on it.
async fn console_pages(
    console: std::net::SocketAddr,
    key: &doorstep_server::auth::api_keys::CreatedKey,
    channel: Channel,
    contractor: &str,
    calls: usize,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("http://{console}");
    let form = http.get(format!("{base}/sign-in")).send().await?;
    let sign_in_cookie = form
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .context("the sign-in form sets its cookie")?
        .to_owned();
    let body = form.text().await?;
    let marker = "name=\"csrf_token\" value=\"";
    let start = body.find(marker).context("the sign-in form has a token")? + marker.len();
    let token = &body[start..start + 64];
    let signed_in = http
        .post(format!("{base}/sign-in/key"))
        .header(reqwest::header::COOKIE, &sign_in_cookie)
        .form(&[("api_key", key.key.expose_secret()), ("csrf_token", token)])
        .send()
        .await?;
    let session = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("doorstep_session="))
        .and_then(|value| value.split(';').next())
        .context("signed in to the console")?
        .to_owned();
    let complaint =
        doorstep_api::v1::complaint_service_client::ComplaintServiceClient::new(channel)
            .list_complaints(with_actor(v1::ListComplaintsRequest {
                contractor_id: contractor.to_owned(),
                page_size: 1,
                ..Default::default()
            }))
            .await?
            .into_inner()
            .complaints
            .first()
            .map(|complaint| complaint.complaint_id.clone())
            .context("the contractor has a complaint")?;
    let period = format!("from={FROM_MONTH}&to={TO_MONTH}");
    let pages = [
        ("programme", format!("/programme?{period}")),
        ("league CSV", format!("/programme/league.csv?{period}")),
        ("contractor", format!("/contractors/{contractor}?{period}")),
        ("complaints (first page)", "/complaints".to_owned()),
        ("complaints (page 20)", "/complaints?page=20".to_owned()),
        ("case page", format!("/complaints/{complaint}")),
        ("escalations", "/escalations".to_owned()),
    ];
    println!("  console pages over HTTP ({calls} timed calls each after one untimed):");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for call in 0..=calls {
            let started = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .header(reqwest::header::COOKIE, &session)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            let elapsed = started.elapsed();
            if !status.is_success() {
                bail!("{path} answered {status}");
            }
            bytes = body.len();
            if call > 0 {
                times.push(elapsed);
            }
        }
        times.sort();
        let p95 = times
            .get((times.len() * 95).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default();
        println!(
            "    {name}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} kB)",
            ms(median(&times)),
            ms(p95),
            ms(times.last().copied().unwrap_or_default()),
            bytes / 1024
        );
    }
    Ok(())
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

#[derive(Default)]
struct Tally {
    complaints: AtomicU64,
    stage_two: AtomicU64,
    visits: AtomicU64,
    refused: AtomicU64,
}

/// Makes the log's streams from a unit index, so any appender can make any unit.
struct Generator {
    contractors: u32,
    calendar: WorkingDayCalendar,
    timescales: CodeTimescales,
    /// The first day of the 24 months.
    first_month: NaiveDate,
}

/// One complaint per this many units; the rest are visits (about 1 complaint per 50 visits).
const COMPLAINT_EVERY: u64 = 51;

impl Generator {
    fn new(contractors: u32) -> anyhow::Result<Self> {
        let first_month =
            NaiveDate::from_ymd_opt(2024, 11, 1).context("the first month is not a date")?;
        Ok(Self {
            contractors,
            calendar: WorkingDayCalendar::england_and_wales(),
            timescales: CodeTimescales::default(),
            first_month,
        })
    }

    fn metadata(&self, request_id: String, channel: &str) -> EventMetadata {
        EventMetadata {
            actor: ACTOR.to_owned(),
            causation_id: None,
            correlation_id: Some(Uuid::now_v7()),
            request_id: Some(request_id),
            source_channel: channel.to_owned(),
            command_fingerprint: Some("0".repeat(64)),
            ..EventMetadata::default()
        }
    }

    fn contractor_id(&self, index: u32) -> anyhow::Result<ContractorId> {
        Ok(ContractorId::parse(
            "contractor_id",
            &contractor_name(index),
        )?)
    }

    fn registration(&self, index: u32) -> anyhow::Result<(StreamId, Vec<NewEvent>)> {
        let contractor_id = self.contractor_id(index)?;
        let name = contractor_name(index);
        let profile = ContractorProfile {
            legal_name: ShortText::parse("legal_name", &format!("{name} Ltd"))?,
            trading_names: vec![ShortText::parse("trading_names", &format!("{name} Homes"))?],
            logo_url: OptionalText::parse("logo_url", "")?,
            public_contact_name: PersonName::parse("public_contact_name", "Sam Site")?,
            public_phone: PhoneNumber::parse("public_phone", "0113 496 0000")?,
            contracts: vec![ContractTerms {
                reference: ShortText::parse("reference", "RETRO-2024-01")?,
                standards: vec![
                    ServiceStandard::GatesSecured,
                    ServiceStandard::NoSmoking,
                    ServiceStandard::Parking,
                    ServiceStandard::Courtesy,
                ],
                liaison: None,
                equality_conditions: None,
            }],
        };
        let at = Utc.from_utc_datetime(
            &self
                .first_month
                .and_hms_opt(8, 0, 0)
                .context("registration time")?,
        );
        let events = handle_contractor(
            None,
            ContractorCommand::Register {
                contractor_id: contractor_id.clone(),
                profile,
                at,
            },
        )?;
        let new_events = events
            .iter()
            .map(|event| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.to_payload(),
                metadata: self.metadata(format!("register-{name}"), "grpc"),
            })
            .collect();
        Ok((StreamId::new("contractor", &contractor_id), new_events))
    }

    /// The day of unit `unit`, spread evenly over the 24 months, with its contractor.
    fn place(&self, unit: u64) -> anyhow::Result<(u32, NaiveDate)> {
        let hash = mix(unit);
        let contractor = u32::try_from(hash % u64::from(self.contractors))?;
        let month = u32::try_from((hash >> 20) % 24)?;
        let day = u32::try_from((hash >> 32) % 28)? + 1;
        let first = self
            .first_month
            .checked_add_months(Months::new(month))
            .context("month out of range")?;
        let date = NaiveDate::from_ymd_opt(first.year(), first.month(), day)
            .context("day out of range")?;
        Ok((contractor, date))
    }

    fn unit(&self, unit: u64, tally: &Tally) -> anyhow::Result<(StreamId, Vec<NewEvent>)> {
        if unit.is_multiple_of(COMPLAINT_EVERY) {
            self.complaint(unit, tally)
        } else {
            tally.visits.fetch_add(1, Ordering::Relaxed);
            self.visit(unit)
        }
    }

    fn visit(&self, unit: u64) -> anyhow::Result<(StreamId, Vec<NewEvent>)> {
        let (contractor, date) = self.place(unit)?;
        let visit_id = VisitId::parse("visit_id", &format!("visit-{unit}"))?;
        let event = VisitEvent::VisitRecorded {
            visit: Visit {
                visit_id: visit_id.clone(),
                contractor_id: self.contractor_id(contractor)?,
                uprn: Uprn::parse(
                    "uprn",
                    &format!("{}", 100_000_000 + mix(unit ^ 7) % 1_000_000),
                )?,
                work_order_reference: ShortText::parse(
                    "work_order_reference",
                    &format!("WO-{}", unit / 3),
                )?,
                visit_date: date,
            },
        };
        let new_event = NewEvent {
            event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("visit/{visit_id}").as_bytes()),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
            metadata: self.metadata(format!("batch-{}", unit / 10_000), "grpc"),
        };
        Ok((StreamId::new("visit", &visit_id), vec![new_event]))
    }

    /// A complaint's lifecycle, decided step by step by the domain: received, acknowledged,
    /// findings, response; about one in five goes on to stage 2 (acknowledged, findings,
    /// response). The steps' times follow the receipt by a few days each.
    fn complaint(&self, unit: u64, tally: &Tally) -> anyhow::Result<(StreamId, Vec<NewEvent>)> {
        let (contractor, date) = self.place(unit)?;
        let hash = mix(unit ^ 0x5eed);
        let received = Utc.from_utc_datetime(
            &date
                .and_hms_opt(9 + u32::try_from(hash % 8)?, 15, 0)
                .context("receipt time")?,
        );
        let day = |days: u64| received + chrono::Duration::days(i64::try_from(days).unwrap_or(0));
        let standards_pool = [
            ServiceStandard::GatesSecured,
            ServiceStandard::NoSmoking,
            ServiceStandard::Parking,
            ServiceStandard::Courtesy,
        ];
        let first = usize::try_from(hash % 4)?;
        let mut standards = vec![standards_pool[first]];
        if hash.is_multiple_of(5) {
            standards.push(standards_pool[(first + 1) % 4]);
        }
        let outcome_for = |salt: u64| match mix(hash ^ salt) % 10 {
            0..=3 => FindingOutcome::Upheld,
            4..=5 => FindingOutcome::PartlyUpheld,
            _ => FindingOutcome::NotUpheld,
        };
        let findings = |salt: u64| -> anyhow::Result<Vec<FindingInput>> {
            standards
                .iter()
                .enumerate()
                .map(|(i, standard)| {
                    Ok(FindingInput {
                        standard: *standard,
                        outcome: outcome_for(salt + i as u64),
                        summary: OptionalText::parse("summary", "Checked with the site manager")?,
                    })
                })
                .collect()
        };
        let complaint_id = Uuid::now_v7();
        // Late acknowledgements and responses now and then, so the Code's deadlines are missed.
        let ack_days = if hash.is_multiple_of(7) { 9 } else { 2 };
        let response_days = ack_days + if hash.is_multiple_of(6) { 20 } else { 8 };
        let mut commands = vec![
            (
                Command::Log(Box::new(LogComplaint {
                    complaint_id: ComplaintId::from_uuid(complaint_id),
                    channel: "phone".to_owned(),
                    source_system: SourceSystem::parse("source_system", "call-centre")?,
                    resident: ResidentInput {
                        reference: ResidentReference::parse(
                            "reference",
                            &format!("T-{}", hash % 100_000),
                        )?,
                        name: PersonName::parse("name", "Ada Resident")?,
                        phone: Some(PhoneNumber::parse("phone", "07700 900123")?),
                        email: None,
                    },
                    property: PropertyInput {
                        uprn: Uprn::parse("uprn", &format!("{}", 100_000_000 + hash % 1_000_000))?,
                        address: Address::parse("address", "1 Example Road, Leeds")?,
                    },
                    contractor_id: self.contractor_id(contractor)?,
                    visit_id: None,
                    standards: standards.clone(),
                    description: LongText::parse(
                        "description",
                        "The side gate was left open during loft insulation work and the dog got \
                         out onto the main road; the resident had asked twice that it be kept shut.",
                    )?,
                    occurred_at: Some(received),
                    received_at: received,
                    outcome_sought: OptionalText::parse("outcome_sought", "An apology")?,
                    reasonable_adjustments: OptionalText::parse("reasonable_adjustments", "")?,
                })),
                "phone",
            ),
            (
                Command::Acknowledge {
                    stage: Stage::One,
                    handler: Handler::parse("handler", "Officer One")?,
                    complaint_definition: OptionalText::parse("complaint_definition", "Gate")?,
                    outcome_sought: OptionalText::parse("outcome_sought", "")?,
                    at: day(ack_days),
                },
                "grpc",
            ),
            (
                Command::RecordFindings {
                    findings: findings(1)?,
                    at: day(response_days - 1),
                },
                "grpc",
            ),
            (
                Command::IssueResponse {
                    decision: ShortText::parse("decision", "Apology given; crew briefed")?,
                    remedy: OptionalText::parse("remedy", "")?,
                    at: day(response_days),
                },
                "grpc",
            ),
        ];
        let stage_two = hash % 5 == 1;
        if stage_two {
            let start = response_days + 6;
            commands.extend([
                (
                    Command::RequestStageTwo {
                        reason: OptionalText::parse("reason", "Not satisfied")?,
                        at: day(start),
                    },
                    "grpc",
                ),
                (
                    Command::Acknowledge {
                        stage: Stage::Two,
                        handler: Handler::parse("handler", "Officer Two")?,
                        complaint_definition: OptionalText::parse("complaint_definition", "")?,
                        outcome_sought: OptionalText::parse("outcome_sought", "")?,
                        at: day(start + 2),
                    },
                    "grpc",
                ),
                (
                    Command::RecordFindings {
                        findings: findings(11)?,
                        at: day(start + 20),
                    },
                    "grpc",
                ),
                (
                    Command::IssueResponse {
                        decision: ShortText::parse("decision", "Stage 1 decision upheld")?,
                        remedy: OptionalText::parse("remedy", "")?,
                        at: day(start + 21),
                    },
                    "grpc",
                ),
            ]);
        }
        let context = HandlingContext {
            calendar: &self.calendar,
            timescales: self.timescales,
        };
        let mut state = None;
        let mut new_events = Vec::new();
        for (step, (command, channel)) in commands.into_iter().enumerate() {
            match complaint::handle(state.as_ref(), command, &context) {
                Ok(events) => {
                    let metadata = self.metadata(format!("{complaint_id}/{step}"), channel);
                    for event in &events {
                        state = complaint::apply(state, event);
                        new_events.push(NewEvent {
                            event_id: Uuid::now_v7(),
                            event_type: event.event_type().to_owned(),
                            schema_version: event.schema_version(),
                            payload: event.to_payload(),
                            metadata: metadata.clone(),
                        });
                    }
                }
                Err(_) => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        tally.complaints.fetch_add(1, Ordering::Relaxed);
        if stage_two {
            tally.stage_two.fetch_add(1, Ordering::Relaxed);
        }
        Ok((StreamId::new("complaint", complaint_id), new_events))
    }
}
