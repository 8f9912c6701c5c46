//! OpenTelemetry as an operator switches it on: the real binary, configured only with the
//! standard `OTEL_*` variables, exports its spans over OTLP to a real receiver (the collector's
//! own trace service, from the published OpenTelemetry protos, on a tonic server), continues the
//! trace a caller's `traceparent` names, records that trace in the events it appends, and serves
//! Prometheus metrics on a port of its own.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::event_service_client::EventServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::mpsc;

use support::{client, doorstep, register_contractor, small_complaint};

/// The caller's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// What a service name in the resource looks like when the operator set `OTEL_SERVICE_NAME`.
const SERVICE_NAME: &str = "doorstep-under-test";

/// A span as the receiver got it, with the resource's service name beside it.
#[derive(Debug, Clone)]
struct Received {
    service_name: Option<String>,
    span: Span,
}

/// The OTLP trace service: hands every span it receives to the test.
struct Receiver {
    spans: mpsc::UnboundedSender<Received>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans.resource.as_ref().and_then(|resource| {
                resource
                    .attributes
                    .iter()
                    .find(|attribute| attribute.key == "service.name")
                    .and_then(|attribute| string_value(attribute.value.as_ref()))
            });
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    let _ = self.spans.send(Received {
                        service_name: service_name.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn string_value(
    value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>,
) -> Option<String> {
    match value?.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(number) => Some(number.to_string()),
        Value::BoolValue(flag) => Some(flag.to_string()),
        Value::DoubleValue(number) => Some(number.to_string()),
        _ => None,
    }
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|attribute| {
            string_value(attribute.value.as_ref()).map(|value| (attribute.key.clone(), value))
        })
        .collect()
}

/// Starts the receiver on a free port; returns its endpoint URL and the spans it will get.
async fn start_receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port for the OTLP receiver");
    let address = listener.local_addr().expect("the receiver's address");
    let (spans, received) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver { spans }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), received)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// `GET /metrics` as a scraper sends it, returning the body.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics endpoint accepts connections");
    connection
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("the request is sent");
    let mut response = String::new();
    connection
        .read_to_string(&mut response)
        .await
        .expect("the response is text");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response has a head and a body");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Keeps every span received in `seen` until `done` holds for them, for up to 30 s.
async fn wait_for_spans(
    received: &mut mpsc::UnboundedReceiver<Received>,
    seen: &mut Vec<Received>,
    what: &str,
    done: impl Fn(&[Received]) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !done(seen) {
            match received.recv().await {
                Some(span) => seen.push(span),
                None => return,
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && done(seen),
        "the receiver did not get {what}; it got {:?}",
        seen.iter()
            .map(|s| (s.span.name.clone(), hex(&s.span.trace_id)))
            .collect::<Vec<_>>()
    );
}

/// The spans of the test's trace among `seen`.
fn of_trace(seen: &[Received]) -> Vec<Received> {
    seen.iter()
        .filter(|span| hex(&span.span.trace_id) == TRACE_ID)
        .cloned()
        .collect()
}

fn complaint() -> v1::LogComplaintRequest {
    small_complaint("traced-1", "T-1", "A Resident")
}

#[tokio::test]
async fn a_traced_call_arrives_over_otlp_with_the_callers_trace_and_its_store_append() {
    let (endpoint, mut received) = start_receiver().await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!(
        "sqlite://{}",
        directory.path().join("doorstep.db").display()
    );
    let metrics_port = free_port();
    let mut command = doorstep(&database_url);
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", SERVICE_NAME)
        // Export every 100 ms rather than every 5 s, so the test need not wait.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("DOORSTEP__METRICS__PORT", metrics_port.to_string())
        // JSON logs with the access log on: each call's line must carry its trace id.
        .env("DOORSTEP__LOG__JSON", "true")
        .env("RUST_LOG", "info,doorstep_server::observability=debug");
    command.arg("serve");
    let running = support::spawn(command);
    register_contractor(running.port, "acme-retrofit").await;

    let mut request = tonic::Request::new(complaint());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("a valid header"),
    );
    let logged = client(running.port)
        .await
        .log_complaint(request)
        .await
        .expect("the complaint is logged")
        .into_inner();

    let mut seen = Vec::new();
    let names = ["doorstep.v1.ComplaintService/LogComplaint", "store.append"];
    wait_for_spans(&mut received, &mut seen, "the call's spans", |seen| {
        names
            .iter()
            .all(|name| of_trace(seen).iter().any(|span| span.span.name == *name))
    })
    .await;
    let trace = of_trace(&seen);
    let call = trace
        .iter()
        .find(|span| span.span.name == "doorstep.v1.ComplaintService/LogComplaint")
        .expect("the call's span");
    assert_eq!(
        hex(&call.span.parent_span_id),
        PARENT_SPAN_ID,
        "the call continues the caller's span"
    );
    assert_eq!(call.span.kind, SpanKind::Server as i32);
    assert_eq!(call.service_name.as_deref(), Some(SERVICE_NAME));
    let call_attributes = attributes(&call.span);
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "doorstep.v1.ComplaintService"),
        ("rpc.method", "LogComplaint"),
        ("rpc.grpc.status_code", "0"),
    ] {
        assert_eq!(
            call_attributes.get(key).map(String::as_str),
            Some(value),
            "{key} of the call's span; all: {call_attributes:?}"
        );
    }
    let append = trace
        .iter()
        .find(|span| span.span.name == "store.append")
        .expect("the append's span");
    assert_eq!(
        append.span.parent_span_id, call.span.span_id,
        "the append is a child of the call"
    );
    let append_attributes = attributes(&append.span);
    assert_eq!(
        append_attributes.get("db.system").map(String::as_str),
        Some("sqlite")
    );
    let batch_events: u64 = append_attributes
        .get("batch.events")
        .and_then(|value| value.parse().ok())
        .expect("the append says how large its batch was");
    assert!(batch_events >= 1);
    assert!(
        append_attributes.contains_key("commit_ms"),
        "the append says how long its commit took: {append_attributes:?}"
    );

    // The projection batch that applied the complaint links back to the call that logged it.
    wait_for_spans(
        &mut received,
        &mut seen,
        "a projection batch linked to the call",
        |seen| {
            seen.iter().any(|span| {
                span.span.name == "projection.batch"
                    && span.span.links.iter().any(|link| {
                        hex(&link.trace_id) == TRACE_ID && link.span_id == call.span.span_id
                    })
            })
        },
    )
    .await;

    // The event the call appended points back at the trace.
    let events = EventServiceClient::new(support::channel(running.port).await)
        .read_stream(v1::ReadStreamRequest {
            stream_id: format!("complaint-{}", logged.complaint_id),
            from_version: 1,
            max_count: 10,
        })
        .await
        .expect("the complaint's stream is readable")
        .into_inner();
    let metadata = events.events[0]
        .metadata
        .clone()
        .expect("the event has metadata");
    assert_eq!(metadata.trace_id, TRACE_ID);
    assert!(
        trace
            .iter()
            .any(|span| hex(&span.span.span_id) == metadata.span_id),
        "the event names a span of the trace: {}",
        metadata.span_id
    );

    // The access log line of the call, a JSON object, names the call's trace.
    let access_line = running
        .stderr_tail()
        .lines()
        .find(|line| line.contains("call finished") && line.contains("LogComplaint"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "an access log line for LogComplaint in:\n{}",
                running.stderr_tail()
            )
        });
    let access: serde_json::Value =
        serde_json::from_str(&access_line).expect("log lines are JSON objects");
    assert_eq!(access["grpc_status"], 0, "{access_line}");
    let spans = access["spans"]
        .as_array()
        .expect("the line lists its spans");
    assert!(
        spans.iter().any(|span| span["trace_id"] == TRACE_ID),
        "the line carries the trace id: {access_line}"
    );

    // A refused call is traced with its status too.
    let refused = client(running.port)
        .await
        .get_complaint(v1::GetComplaintRequest {
            complaint_id: "not-a-complaint-id".to_owned(),
        })
        .await
        .expect_err("an invalid id is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A path the server does not have is measured as `_OTHER`, so random paths cannot add
    // series without bound.
    let mut grpc = tonic::client::Grpc::new(support::channel(running.port).await);
    grpc.ready().await.expect("the connection is ready");
    let unknown: Result<tonic::Response<()>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/doorstep.v1.Nowhere/RandomPath"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    // The guard answers first: a method with no line in the policy is refused to everyone.
    assert_eq!(
        unknown.expect_err("no such method").code(),
        tonic::Code::PermissionDenied
    );

    // A stream the caller walks away from counts as CANCELLED once it is gone.
    let mut subscription = EventServiceClient::new(support::channel(running.port).await)
        .subscribe_all(v1::SubscribeAllRequest {
            from_position: 1,
            ..Default::default()
        })
        .await
        .expect("the subscription starts")
        .into_inner();
    subscription
        .message()
        .await
        .expect("the stream delivers")
        .expect("a first message");
    drop(subscription);

    // Prometheus, on its own port, has measured both calls by method and status, once the read
    // models hold the complaint.
    client(running.port)
        .await
        .list_complaints(v1::ListComplaintsRequest {
            min_position: Some(logged.position),
            ..Default::default()
        })
        .await
        .expect("the read models reach the complaint");
    let mut scraped = scrape(metrics_port).await;
    for _ in 0..50 {
        if scraped.contains("rpc_method=\"SubscribeAll\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        scraped = scrape(metrics_port).await;
    }
    let count_line = |method: &str, code: u32| {
        scraped.lines().find(|line| {
            line.starts_with("rpc_server_call_duration_seconds_count{")
                && line.contains(&format!("rpc_method=\"{method}\""))
                && line.contains(&format!("rpc_grpc_status_code=\"{code}\""))
        })
    };
    let logged_line = count_line("LogComplaint", 0).unwrap_or_else(|| {
        panic!("LogComplaint is counted with status 0 in:\n{scraped}");
    });
    assert!(logged_line.ends_with(" 1"), "{logged_line}");
    assert!(
        count_line("GetComplaint", 3).is_some(),
        "the refused call is counted with INVALID_ARGUMENT in:\n{scraped}"
    );
    assert!(
        count_line("_OTHER", 7).is_some() && !scraped.contains("RandomPath"),
        "an unknown path is counted as _OTHER, PERMISSION_DENIED, and never by its name:\n{scraped}"
    );
    assert!(
        count_line("SubscribeAll", 1).is_some(),
        "the abandoned stream is counted as CANCELLED:\n{scraped}"
    );
    assert!(
        scraped.contains("doorstep_store_batch_events_count{"),
        "append batches are measured:\n{scraped}"
    );
    let open = scraped
        .lines()
        .find(|line| {
            line.starts_with("doorstep_complaints_open{")
                && line.contains("status=\"AWAITING_ACKNOWLEDGEMENT\"")
                && line.contains("stage=\"1\"")
        })
        .unwrap_or_else(|| panic!("open complaints by status and stage in:\n{scraped}"));
    assert!(open.ends_with(" 1"), "one complaint is open: {open}");
    let lag = scraped
        .lines()
        .find(|line| line.starts_with("doorstep_projection_lag_events"))
        .unwrap_or_else(|| panic!("the read models' lag in:\n{scraped}"));
    assert!(lag.ends_with(" 0"), "the read models have caught up: {lag}");
    // The process's CPU time, which `doorstep-bench --metrics` divides by the calls it made.
    let cpu_seconds: f64 = scraped
        .lines()
        .find(|line| line.starts_with("process_cpu_time_seconds_total"))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("the process's CPU time in:\n{scraped}"));
    assert!(
        cpu_seconds > 0.0,
        "a server that answered calls used CPU: {cpu_seconds}"
    );
}
