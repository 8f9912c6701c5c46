//! Logs, traces and metrics for Doorstep's binaries and tests.
//!
//! - **Logs**: `tracing` to stderr, as text or JSON lines; the filter comes from `RUST_LOG`. A line
//!   written inside a traced call carries that call's `trace_id` (a field of the call's span).
//! - **Traces**: every span of Doorstep's own crates is an OpenTelemetry span. Ids are always
//!   made, so events can record the trace of the request that caused them; spans are exported over
//!   OTLP/gRPC only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The W3C `traceparent` propagator is installed.
//! - **Metrics**: one OpenTelemetry meter provider for the process, read by a Prometheus registry
//!   (served by the binary on its metrics port) and pushed over OTLP when configured. The
//!   process's CPU time is one of them (`process.cpu.time`, `process_cpu_time_seconds_total`).
//!
//! The standard variables are honoured as the OpenTelemetry SDK reads them: `OTEL_SERVICE_NAME`
//! (default `doorstep`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`(`_ARG`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER=none`, `OTEL_METRICS_EXPORTER=none`.

mod metrics;
mod otlp;
mod process;
mod propagation;

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics::{MetricsError, ensure_metrics, prometheus_text};
pub use propagation::{TraceIds, current_trace, extract_parent, link_to, record_trace_id};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The instrumentation scope of every Doorstep span and instrument.
pub const SCOPE: &str = "doorstep";

/// The process's tracer provider, kept to flush spans at exit.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The log filter of the server binary when `RUST_LOG` is not set: Doorstep and its libraries at
/// info, the database driver's per-statement logs only when something is wrong.
pub const SERVER_LOG_FILTER: &str = "info,sqlx=warn";

/// An error with its causes, one after another ("error sending request: connection refused"),
/// for a log field or a stored reason where the top-level message alone says little.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Installs logging, tracing and metrics once; later calls do nothing (tests call it per test).
/// Must run inside the Tokio runtime: the OTLP exporters' channels belong to it.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = log_layer(format).with_filter(filter);
    install(Some(logs), otlp::Otlp::from_environment());
}

/// For tests: spans and trace ids as in production, with nothing exported; logs only when
/// `TEST_LOG` is set, so test output stays quiet by default.
pub fn init_for_tests() {
    let logs = std::env::var_os("TEST_LOG").map(|_| {
        log_layer(LogFormat::Text).with_filter(EnvFilter::new(
            "debug,sqlx=warn,h2=warn,hyper=warn,tower=warn",
        ))
    });
    install(logs, otlp::Otlp::disabled());
}

/// Exports the spans still buffered. Call before the process exits.
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("could not flush the last traces: {error}");
    }
    metrics::shutdown();
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync + 'static>;

fn log_layer(format: LogFormat) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        // Colour codes only help a person at a terminal; they corrupt files and pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer.boxed(),
        // The span list carries the fields of every enclosing span, the call's trace id among them.
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    }
}

fn install(logs: Option<impl Layer<tracing_subscriber::Registry> + Send + Sync>, otlp: otlp::Otlp) {
    if TRACER_PROVIDER.get().is_some() {
        return;
    }
    let resource = otlp::resource();
    let provider = otlp.tracer_provider(resource.clone());
    let tracer = provider.tracer(SCOPE);
    if TRACER_PROVIDER.set(provider.clone()).is_err() {
        return;
    }
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider);
    metrics::install(resource, otlp.metric_reader());

    // Only Doorstep's own spans become OpenTelemetry spans: the libraries' (h2, sqlx, …) would
    // swamp a trace with frames nobody asked for.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Busy and idle times would cost two clock reads per poll of every traced future.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(Targets::new().with_target("doorstep", LevelFilter::INFO));
    let _already_installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
}
