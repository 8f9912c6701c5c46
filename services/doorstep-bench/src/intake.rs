//! The measured phases: many concurrent clients calling `LogComplaint` (intake) or the bench's
//! trivial `Echo` over a few HTTP/2 connections for a fixed time, against the real server in this
//! process or one given with `--target`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_server::auth::client::{AuthenticatedChannel, CallerCredential};
use tokio::task::JoinSet;
use tonic::transport::Endpoint;

use crate::echo::proto::EchoRequest;
use crate::echo::proto::echo_service_client::EchoServiceClient;
use crate::latency::LatencyRecorder;
use crate::machine::{CpuSnapshot, CpuUsage};
use crate::server_cpu::ServerMetrics;
use crate::workload::ComplaintTemplate;

/// A call that takes longer than this counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct error messages kept for the report; the count covers them all.
const KEPT_ERROR_SAMPLES: usize = 5;

/// Opens `count` separate HTTP/2 connections to `address` (`host:port`), each presenting
/// `credential`: tonic multiplexes every call on one connection per `Channel`, so clients are
/// spread over several channels.
pub async fn connect(
    address: &str,
    count: usize,
    credential: &CallerCredential,
) -> anyhow::Result<Vec<AuthenticatedChannel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("{address} is not a host:port the bench can connect to"))?
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to the server at {address}"))?;
        channels.push(credential.clone().attach(channel));
    }
    Ok(channels)
}

/// What each client calls, back to back.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `LogComplaint` with this complaint under a fresh idempotency key each time.
    Intake(Arc<ComplaintTemplate>),
    /// The bench's trivial `Echo`, with the same fresh key as its text.
    Echo,
}

/// One client's stub for its workload.
enum Caller {
    Intake(
        ComplaintServiceClient<AuthenticatedChannel>,
        Arc<ComplaintTemplate>,
    ),
    Echo(EchoServiceClient<AuthenticatedChannel>),
}

impl Caller {
    fn new(workload: &Workload, channel: AuthenticatedChannel) -> Self {
        match workload {
            Workload::Intake(template) => {
                Self::Intake(ComplaintServiceClient::new(channel), Arc::clone(template))
            }
            Workload::Echo => Self::Echo(EchoServiceClient::new(channel)),
        }
    }

    /// One call; `Ok(true)` when the server answered that the key was a duplicate.
    async fn call(&mut self, key: String) -> Result<bool, tonic::Status> {
        match self {
            Self::Intake(client, template) => client
                .log_complaint(log_complaint_request(template, key))
                .await
                .map(|response| response.get_ref().duplicate),
            Self::Echo(client) => client
                .echo(tonic::Request::new(EchoRequest { text: key }))
                .await
                .map(|_| false),
        }
    }
}

/// What the clients of one phase achieved.
#[derive(Debug)]
pub struct PhaseTally {
    pub completed: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub latency: LatencyRecorder,
    /// From the start of the phase until the last client's last call returned.
    pub elapsed: Duration,
    pub cpu: Option<CpuUsage>,
    /// The server's CPU time over the phase, in seconds, when it was read from its metrics.
    pub server_cpu_seconds: Option<f64>,
}

impl PhaseTally {
    pub fn empty() -> anyhow::Result<Self> {
        Ok(Self {
            completed: 0,
            errors: 0,
            error_samples: Vec::new(),
            latency: LatencyRecorder::new()?,
            elapsed: Duration::ZERO,
            cpu: None,
            server_cpu_seconds: None,
        })
    }

    pub fn absorb(&mut self, other: Self) -> anyhow::Result<()> {
        self.completed += other.completed;
        self.errors += other.errors;
        for sample in other.error_samples {
            keep_error_sample(&mut self.error_samples, sample);
        }
        self.latency.merge(&other.latency)
    }

    pub fn per_second(&self) -> f64 {
        per_second(self.completed, self.elapsed)
    }
}

pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Keeps the first few distinct error messages.
pub fn keep_error_sample(samples: &mut Vec<String>, sample: String) {
    if samples.len() < KEPT_ERROR_SAMPLES && !samples.contains(&sample) {
        samples.push(sample);
    }
}

/// This process's mark in every idempotency key (a UUIDv7's random tail), so a second run
/// against the same `--target` server never reuses the first one's keys.
static RUN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| uuid::Uuid::now_v7().simple().to_string()[20..].to_owned());

/// One labelled batch of calls: `phase` goes into every idempotency key, so a warm-up and the
/// measurement never reuse each other's keys.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub name: &'static str,
    pub clients: usize,
    pub duration: Duration,
}

/// Runs `phase.clients` clients, spread round-robin over `channels`, each calling `workload`
/// back to back until the phase's time is up. A call started before the end is waited for and
/// counted. With `server`, the server's CPU time is read before and after.
pub async fn drive(
    channels: &[AuthenticatedChannel],
    workload: &Workload,
    phase: Phase,
    server: Option<&ServerMetrics>,
) -> anyhow::Result<PhaseTally> {
    if channels.is_empty() {
        bail!("no connection to drive the server through");
    }
    let server_cpu_at_start = match server {
        Some(server) => Some(server.cpu_seconds().await?),
        None => None,
    };
    let cpu_at_start = CpuSnapshot::now();
    let started = Instant::now();
    let deadline = started + phase.duration;
    let mut clients = JoinSet::new();
    for client_index in 0..phase.clients {
        let channel = channels[client_index % channels.len()].clone();
        clients.spawn(run_client(
            Caller::new(workload, channel),
            format!("{}-{}-{client_index}", *RUN, phase.name),
            deadline,
        ));
    }
    let mut tally = PhaseTally::empty()?;
    while let Some(joined) = clients.join_next().await {
        let client_tally = joined.map_err(|error| anyhow!("a client task failed: {error}"))??;
        tally.absorb(client_tally)?;
    }
    tally.elapsed = started.elapsed();
    tally.cpu = CpuSnapshot::usage_since(&cpu_at_start);
    if let (Some(server), Some(at_start)) = (server, server_cpu_at_start) {
        tally.server_cpu_seconds = Some(server.cpu_seconds().await? - at_start);
    }
    Ok(tally)
}

async fn run_client(
    mut caller: Caller,
    key_prefix: String,
    deadline: Instant,
) -> anyhow::Result<PhaseTally> {
    let mut tally = PhaseTally::empty()?;
    let mut sequence: u64 = 0;
    while Instant::now() < deadline {
        sequence += 1;
        let key = format!("bench-{key_prefix}-{sequence}");
        let call_started = Instant::now();
        let outcome = caller.call(key).await;
        let latency = call_started.elapsed();
        match outcome {
            Ok(true) => {
                tally.errors += 1;
                keep_error_sample(
                    &mut tally.error_samples,
                    "a fresh idempotency key was answered as a duplicate".to_owned(),
                );
            }
            Ok(false) => {
                tally.completed += 1;
                tally.latency.record(latency);
            }
            Err(status) => {
                tally.errors += 1;
                keep_error_sample(
                    &mut tally.error_samples,
                    format!("{:?}: {}", status.code(), status.message()),
                );
            }
        }
    }
    Ok(tally)
}

pub fn log_complaint_request(
    template: &ComplaintTemplate,
    idempotency_key: String,
) -> tonic::Request<doorstep_api::v1::LogComplaintRequest> {
    // The actor recorded is the principal the bench's token names.
    tonic::Request::new(template.request(idempotency_key))
}
