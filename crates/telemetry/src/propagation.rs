//! W3C trace context in and out: the parent a request names, and the ids of the current span.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_http::HeaderExtractor;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A span's ids as lowercase hex, as `traceparent` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// The context a request's `traceparent` (and `tracestate`) headers name; an empty context when
/// they are missing or malformed, so the request starts a trace of its own.
pub fn extract_parent(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// The ids of the current `tracing` span, when tracing is installed and the span is recorded.
pub fn current_trace() -> Option<TraceIds> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| TraceIds {
        trace_id: span_context.trace_id().to_string(),
        span_id: span_context.span_id().to_string(),
    })
}

/// Records `span`'s trace id in its `trace_id` field (declared empty), so that every log line
/// written inside it carries the id.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Links `span` to the span that `trace_id` and `span_id` (hex, as events record them) name: a
/// batch that applies events points at the requests that appended them. Ids that do not parse
/// are ignored.
pub fn link_to(span: &tracing::Span, trace_id: &str, span_id: &str) {
    if let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(trace_id), SpanId::from_hex(span_id)) {
        span.add_link(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
    }
}
