//! The process's meter provider: a Prometheus registry always, OTLP when configured.
//!
//! Crates record through the OpenTelemetry API (`opentelemetry::global::meter(SCOPE)`); this
//! module installs the provider behind it. Instruments made before it is installed record
//! nothing, so the server calls [`ensure_metrics`] before building anything that makes them.

use std::sync::OnceLock;

use opentelemetry::metrics::{MeterProvider as _, ObservableCounter};
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use prometheus::{Encoder, TextEncoder};

struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    /// Observed at each collection; kept so it lives as long as the provider.
    _cpu_time: ObservableCounter<f64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Why the metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the metrics could not be encoded")]
    Encode(#[from] prometheus::Error),
    #[error("the metrics are not UTF-8")]
    Utf8(#[from] std::string::FromUtf8Error),
}

pub(crate) fn install(resource: Resource, otlp: Option<PeriodicReader<MetricExporter>>) {
    let _ = METRICS.get_or_init(|| build(resource, otlp));
}

/// Installs the meter provider, without OTLP, unless [`crate::init`] already did.
pub fn ensure_metrics() {
    let _ = METRICS.get_or_init(|| build(crate::otlp::resource(), None));
}

fn build(resource: Resource, otlp: Option<PeriodicReader<MetricExporter>>) -> Metrics {
    let registry = prometheus::Registry::new();
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    match opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
    {
        Ok(exporter) => builder = builder.with_reader(exporter),
        Err(error) => eprintln!("metrics will not be served: {error}"),
    }
    if let Some(reader) = otlp {
        builder = builder.with_reader(reader);
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let cpu_time = crate::process::cpu_time_counter(&provider.meter(crate::SCOPE));
    Metrics {
        registry,
        provider,
        _cpu_time: cpu_time,
    }
}

/// Every metric in Prometheus' text exposition format.
pub fn prometheus_text() -> Result<String, MetricsError> {
    ensure_metrics();
    let Some(metrics) = METRICS.get() else {
        return Ok(String::new());
    };
    let mut out = Vec::new();
    TextEncoder::new().encode(&metrics.registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

pub(crate) fn shutdown() {
    if let Some(metrics) = METRICS.get()
        && let Err(error) = metrics.provider.shutdown()
    {
        eprintln!("could not flush the last metrics: {error}");
    }
}
