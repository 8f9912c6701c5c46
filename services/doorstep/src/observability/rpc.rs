//! A span and a duration measurement per gRPC call, outermost of the server's layers, so refused
//! calls are traced and counted too.
//!
//! The span is named after the method, continues the caller's trace when the request carries a
//! W3C `traceparent`, and ends with the call's gRPC status. A unary error comes back in the
//! response headers; a success, or any status of a streaming call, comes in the trailers at the end
//! of the body, so the body is watched until then. A call dropped before it ends (the caller went
//! away, its deadline passed, or shutdown cut it off) counts as CANCELLED.
//!
//! Method names come from outside: a path that is not one of the server's methods is recorded as
//! `_OTHER` (OpenTelemetry's convention), with the path itself only on the span, so random paths
//! cannot grow the metric's series without bound. Health checks are measured but not traced:
//! probes every few seconds would bury the traces people look for.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tonic::body::Body;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::middleware::{Around, AroundLayer, Request, Response, ResponseFuture};

/// Adds a span and a duration measurement around each call of a service.
pub type RpcTelemetryLayer = AroundLayer<RpcDuration>;

/// The histogram every call's duration is recorded in.
#[derive(Clone)]
pub struct RpcDuration(Histogram<f64>);

impl RpcDuration {
    pub fn new() -> Self {
        let duration = opentelemetry::global::meter(doorstep_telemetry::SCOPE)
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of gRPC calls, by service, method and gRPC status code")
            .with_boundaries(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .build();
        Self(duration)
    }
}

impl Around for RpcDuration {
    fn around<S>(&self, mut inner: S, request: Request) -> ResponseFuture<S::Error>
    where
        S: tower::Service<Request, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
    {
        let mut call = Call::start(&request, self.0.clone());
        let span = call.span.clone();
        Box::pin(
            async move {
                let response = inner.call(request).await;
                let response = match response {
                    Ok(response) => response,
                    Err(error) => {
                        call.finish(tonic::Code::Unknown);
                        return Err(error);
                    }
                };
                match grpc_status(response.headers()) {
                    // Trailers-only: the call is over.
                    Some(code) => {
                        call.finish(code);
                        Ok(response)
                    }
                    None => Ok(response.map(|body| {
                        Body::new(WatchedBody {
                            inner: body,
                            call: Some(call),
                        })
                    })),
                }
            }
            .instrument(span),
        )
    }
}

/// The gRPC health service, probed by load balancers and orchestrators.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// What a method the server does not have is recorded as.
const OTHER: &str = "_OTHER";

/// Every `package.Service/Method` the server answers: the API's, health and reflection.
fn known_methods() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known: HashSet<String> = [
            "grpc.health.v1.Health/Check",
            "grpc.health.v1.Health/Watch",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        match doorstep_api::methods() {
            Ok(methods) => known.extend(methods.into_iter().map(|method| method.path)),
            // A build whose descriptor set does not decode is broken; say so rather than measure
            // every call as `_OTHER` without a word.
            Err(error) => tracing::error!(
                %error,
                "the API's descriptor set does not decode: calls are measured as _OTHER"
            ),
        }
        known
    })
}

/// One call in flight: its span, when it started, and what it is, for the measurement. Dropped
/// before [`Call::finish`], it finishes as CANCELLED.
struct Call {
    span: tracing::Span,
    started: Instant,
    duration: Histogram<f64>,
    service: &'static str,
    method: &'static str,
    finished: bool,
}

impl Call {
    fn start(request: &http::Request<Body>, duration: Histogram<f64>) -> Self {
        let path = request.uri().path().trim_start_matches('/');
        let (service, method) = match known_methods().get(path) {
            Some(known) => known.split_once('/').unwrap_or((known.as_str(), "")),
            None => (OTHER, OTHER),
        };
        let span = if service == HEALTH_SERVICE {
            tracing::debug_span!("grpc", trace_id = Empty)
        } else {
            tracing::info_span!(
                "grpc",
                otel.name = if service == OTHER { OTHER } else { path },
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.method_original = Empty,
                rpc.grpc.status_code = Empty,
                trace_id = Empty,
            )
        };
        if service == OTHER {
            span.record("rpc.method_original", path);
        }
        let _ = span.set_parent(doorstep_telemetry::extract_parent(request.headers()));
        doorstep_telemetry::record_trace_id(&span);
        Self {
            span,
            started: Instant::now(),
            duration,
            service,
            method,
            finished: false,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let status = code as i64;
        let elapsed = self.started.elapsed();
        self.span.record("rpc.grpc.status_code", status);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        // An access log, off unless asked for (`RUST_LOG=…,doorstep_server::observability=debug`);
        // inside the span, so it carries the call's trace id.
        self.span.in_scope(|| {
            tracing::debug!(
                grpc_status = status,
                elapsed_ms = elapsed.as_secs_f64() * 1_000.0,
                "call finished"
            );
        });
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", status),
            ],
        );
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// The codes OpenTelemetry's conventions count as the server's failure; the others (NOT_FOUND,
/// INVALID_ARGUMENT, …) are the caller's, and the span stays unset.
fn is_server_error(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    )
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

/// A response body that finishes its call when the trailers pass or the body ends; dropped
/// earlier, the call finishes as CANCELLED. Frames are made inside the call's span, so a stream's
/// work carries its trace.
struct WatchedBody {
    inner: Body,
    call: Option<Call>,
}

impl WatchedBody {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(mut call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let span = self.call.as_ref().map(|call| call.span.clone());
        let _entered = span.as_ref().map(tracing::Span::enter);
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(tonic::Code::Internal),
            // A body that ends without trailers has not said how the call went.
            Poll::Ready(None) => self.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
