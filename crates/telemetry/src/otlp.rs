//! Whether and how to export over OTLP, read from the standard `OTEL_*` variables.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The service name when `OTEL_SERVICE_NAME` does not give one.
const DEFAULT_SERVICE_NAME: &str = "doorstep";

/// Which signals go out over OTLP.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Otlp {
    traces: bool,
    metrics: bool,
}

impl Otlp {
    pub(crate) fn disabled() -> Self {
        Self::default()
    }

    /// A signal is exported when an endpoint is set for it (generic or per signal), its exporter is
    /// not `none`, and the SDK is not disabled.
    pub(crate) fn from_environment() -> Self {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        let equals = |name: &str, expected: &str| {
            std::env::var(name).is_ok_and(|value| value.trim().eq_ignore_ascii_case(expected))
        };
        if equals("OTEL_SDK_DISABLED", "true") {
            return Self::disabled();
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && !protocol.trim().eq_ignore_ascii_case("grpc")
        {
            eprintln!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported by Doorstep; \
                 exporting OTLP over grpc"
            );
        }
        Self {
            traces: (endpoint || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
                && !equals("OTEL_TRACES_EXPORTER", "none"),
            metrics: (endpoint || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
                && !equals("OTEL_METRICS_EXPORTER", "none"),
        }
    }

    /// Always a real provider, so that spans have ids and events can record them; it exports only
    /// when traces go out over OTLP.
    pub(crate) fn tracer_provider(self, resource: Resource) -> SdkTracerProvider {
        let builder = SdkTracerProvider::builder().with_resource(resource);
        let builder = if self.traces {
            match SpanExporter::builder().with_tonic().build() {
                Ok(exporter) => builder.with_batch_exporter(exporter),
                Err(error) => {
                    eprintln!(
                        "traces will not be exported: cannot build the OTLP exporter: {error}"
                    );
                    builder
                }
            }
        } else {
            builder
        };
        builder.build()
    }

    pub(crate) fn metric_reader(self) -> Option<PeriodicReader<MetricExporter>> {
        if !self.metrics {
            return None;
        }
        match MetricExporter::builder().with_tonic().build() {
            Ok(exporter) => Some(PeriodicReader::builder(exporter).build()),
            Err(error) => {
                eprintln!("metrics will not be pushed: cannot build the OTLP exporter: {error}");
                None
            }
        }
    }
}

/// The resource every span and metric carries: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
/// as the SDK reads them, `doorstep` when neither names the service, and the build's version.
pub(crate) fn resource() -> Resource {
    let named_by_environment = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named_by_environment {
        builder.build()
    } else {
        builder.with_service_name(DEFAULT_SERVICE_NAME).build()
    }
}
