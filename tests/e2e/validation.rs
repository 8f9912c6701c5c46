//! Input validation through the real server: every string, list and timestamp of every request
//! has a limit (found from the API's descriptors, so a field added later cannot slip through),
//! deadlines the working-day calendar cannot count are refused, and no step may be dated before
//! the step it follows.

use std::collections::HashMap;
use std::str::FromStr;

use bytes::{Buf, BufMut};
use doorstep_api::v1;
use doorstep_tests::requests;
use doorstep_tests::{TestClock, gate_left_open, spawn_app, spawn_app_with, timestamp};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// More than any list's limit (`RecordVisits` takes 10,000 visits).
const OVER_LONG_LIST: usize = 10_001;
/// More than any string's limit (descriptions take 10,000 characters).
const OVER_LONG_STRING: usize = 100_001;
/// Protobuf's Timestamp range, just outside at each end.
const BEFORE_YEAR_ONE: i64 = -70_000_000_000;
const AFTER_YEAR_9999: i64 = 253_402_300_800;

/// Sends and receives messages as the bytes they are on the wire, so one client can call every
/// method of the API with a request built from its descriptor.
#[derive(Debug, Clone, Copy, Default)]
struct WireCodec;

struct WireEncoder;
struct WireDecoder;

impl Codec for WireCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = WireEncoder;
    type Decoder = WireDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder
    }
}

impl Encoder for WireEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for WireDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(number: i32, wire_type: u64, out: &mut Vec<u8>) {
    varint(
        (u64::try_from(number).expect("a field number") << 3) | wire_type,
        out,
    );
}

fn length_delimited(number: i32, bytes: &[u8], out: &mut Vec<u8>) {
    key(number, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn varint_field(number: i32, value: u64, out: &mut Vec<u8>) {
    key(number, 0, out);
    varint(value, out);
}

/// One request that breaks one limit: the field the server must name, and the request's bytes.
struct Case {
    method: String,
    field: String,
    what: &'static str,
    request: Vec<u8>,
}

/// Every way to break a limit inside messages of type `message`: `wrap` turns the bytes of one
/// such message into the bytes of the whole request, `path` is where it sits.
fn cases_in(
    types: &HashMap<String, DescriptorProto>,
    message: &DescriptorProto,
    path: &str,
    wrap: &dyn Fn(Vec<u8>) -> Vec<u8>,
    out: &mut Vec<(String, &'static str, Vec<u8>)>,
) {
    for field in &message.field {
        let number = field.number();
        let name = if path.is_empty() {
            field.name().to_owned()
        } else {
            format!("{path}.{}", field.name())
        };
        let repeated = field.label() == Label::Repeated;
        let nested = (field.r#type() == Type::Message)
            .then(|| field.type_name())
            .filter(|type_name| *type_name != ".google.protobuf.Timestamp")
            .map(|type_name| {
                types
                    .get(type_name)
                    .unwrap_or_else(|| panic!("{type_name} is in the descriptor set"))
            });
        if repeated {
            let mut list = Vec::new();
            for _ in 0..OVER_LONG_LIST {
                match field.r#type() {
                    Type::Message => length_delimited(number, &[], &mut list),
                    Type::String | Type::Bytes => length_delimited(number, b"x", &mut list),
                    _ => varint_field(number, 1, &mut list),
                }
            }
            out.push((name.clone(), "an over-long list", wrap(list)));
        }
        let element = if repeated {
            format!("{name}[0]")
        } else {
            name.clone()
        };
        match field.r#type() {
            Type::String => {
                let mut bytes = Vec::new();
                length_delimited(number, "x".repeat(OVER_LONG_STRING).as_bytes(), &mut bytes);
                out.push((element, "an over-long string", wrap(bytes)));
            }
            Type::Message if nested.is_none() => {
                for (seconds, what) in [
                    (BEFORE_YEAR_ONE, "a time before year 1"),
                    (AFTER_YEAR_9999, "a time after year 9999"),
                ] {
                    let mut time = Vec::new();
                    varint_field(1, seconds as u64, &mut time);
                    let mut bytes = Vec::new();
                    length_delimited(number, &time, &mut bytes);
                    out.push((element.clone(), what, wrap(bytes)));
                }
            }
            Type::Message => {
                let inner_wrap = |inner: Vec<u8>| {
                    let mut bytes = Vec::new();
                    length_delimited(number, &inner, &mut bytes);
                    wrap(bytes)
                };
                if let Some(nested) = nested {
                    cases_in(types, nested, &element, &inner_wrap, out);
                }
            }
            _ => {}
        }
    }
}

/// Every request message of every RPC, each string, list and timestamp in it (nested too).
fn every_case() -> (Vec<Case>, HashMap<String, bool>) {
    let set = FileDescriptorSet::decode(doorstep_api::FILE_DESCRIPTOR_SET)
        .expect("the API's descriptor set decodes");
    let mut types = HashMap::new();
    for file in &set.file {
        for message in &file.message_type {
            types.insert(
                format!(".{}.{}", file.package(), message.name()),
                message.clone(),
            );
        }
    }
    let mut cases = Vec::new();
    let mut streaming = HashMap::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                streaming.insert(path.clone(), method.server_streaming());
                let input = types
                    .get(method.input_type())
                    .unwrap_or_else(|| panic!("{} is in the set", method.input_type()));
                let mut found = Vec::new();
                cases_in(&types, input, "", &|bytes| bytes, &mut found);
                cases.extend(found.into_iter().map(|(field, what, request)| Case {
                    method: path.clone(),
                    field,
                    what,
                    request,
                }));
            }
        }
    }
    (cases, streaming)
}

#[tokio::test]
async fn every_string_list_and_timestamp_of_every_request_has_a_limit() {
    let app = spawn_app().await;
    let (cases, streaming) = every_case();
    // The descriptors really were walked, nested messages included.
    let fields: Vec<_> = cases
        .iter()
        .map(|case| format!("{} {}", case.method, case.field))
        .collect();
    for expected in [
        "/doorstep.v1.ComplaintService/ListComplaints contractor_id",
        "/doorstep.v1.ComplaintService/LogComplaint resident.name",
        "/doorstep.v1.ComplaintService/LogComplaint received_at",
        "/doorstep.v1.ComplaintService/ReopenComplaint effective_at",
        "/doorstep.v1.ComplaintService/RecordFindings findings[0].summary",
        "/doorstep.v1.ContractorService/RegisterContractor profile.contracts[0].standards",
        "/doorstep.v1.VisitService/RecordVisits visits",
        "/doorstep.v1.EventService/SubscribeAll event_types[0]",
    ] {
        assert!(fields.iter().any(|field| field == expected), "{expected}");
    }

    let mut grpc = tonic::client::Grpc::new(app.channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut failures = Vec::new();
    for case in &cases {
        grpc.ready().await.expect("the channel is ready");
        let path = http::uri::PathAndQuery::from_str(&case.method).expect("a path");
        let request = tonic::Request::new(case.request.clone());
        let outcome = if streaming.get(&case.method).copied().unwrap_or(false) {
            grpc.server_streaming(request, path, WireCodec)
                .await
                .map(|_| ())
        } else {
            grpc.unary(request, path, WireCodec).await.map(|_| ())
        };
        let named = outcome
            .as_ref()
            .err()
            .and_then(doorstep_tests::violated_field);
        let code = outcome.as_ref().err().map_or(Code::Ok, tonic::Status::code);
        if code != Code::InvalidArgument || named.as_deref() != Some(case.field.as_str()) {
            failures.push(format!(
                "{} with {} in {}: answered {code:?} naming {named:?}",
                case.method, case.what, case.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests past a limit were not refused naming their field:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

async fn log(app: &doorstep_tests::TestApp, key: &str, received_at: &str) -> String {
    app.client
        .clone()
        .log_complaint(gate_left_open(key, received_at))
        .await
        .expect("the complaint is logged")
        .into_inner()
        .complaint_id
}

#[tokio::test]
async fn a_reopening_dated_before_the_closure_is_refused() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let id = log(&app, "reopen-1", "2026-04-02T10:00:00Z").await;
    client
        .acknowledge_complaint(requests::acknowledgement(
            &id,
            v1::Stage::One,
            "Officer One",
            Some("2026-04-07T09:00:00Z"),
        ))
        .await
        .expect("acknowledged");
    client
        .record_findings(requests::gates_finding(&id, v1::FindingOutcome::Upheld, ""))
        .await
        .expect("findings recorded");
    client
        .issue_response(requests::response(
            &id,
            "Upheld",
            Some("2026-04-14T09:00:00Z"),
        ))
        .await
        .expect("answered");
    client
        .close_complaint(requests::closure(&id, "", Some("2026-04-20T09:00:00Z")))
        .await
        .expect("closed");

    let backdated = client
        .reopen_complaint(v1::ReopenComplaintRequest {
            complaint_id: id.clone(),
            reason: "The gate was left open again".to_owned(),
            effective_at: Some(timestamp("2026-04-15T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect_err("a reopening before the closure is refused");
    assert_eq!(backdated.code(), Code::InvalidArgument);
    assert_eq!(
        doorstep_tests::violated_field(&backdated).as_deref(),
        Some("effective_at")
    );
    assert!(
        backdated.message().contains("closed at 2026-04-20"),
        "{}",
        backdated.message()
    );

    let view = client
        .get_complaint(requests::complaint(&id))
        .await
        .expect("read")
        .into_inner();
    let complaint = view.complaint.expect("a complaint");
    assert_eq!(complaint.status, v1::ComplaintStatus::Closed as i32);
    assert_eq!(complaint.reopen_count, 0);

    let reopened = client
        .reopen_complaint(v1::ReopenComplaintRequest {
            complaint_id: id,
            reason: "The gate was left open again".to_owned(),
            effective_at: Some(timestamp("2026-04-20T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("a reopening at the closure is accepted")
        .into_inner();
    // Ten working days from Monday 20 April 2026.
    assert_eq!(reopened.response_due, "2026-05-05");
}

#[tokio::test]
async fn a_complaint_received_on_christmas_eve_2019_counts_that_christmas() {
    let app = spawn_app().await;
    let id = log(&app, "import-2019", "2019-12-24T10:00:00Z").await;
    let complaint = app
        .client
        .clone()
        .get_complaint(v1::GetComplaintRequest { complaint_id: id })
        .await
        .expect("read")
        .into_inner()
        .complaint
        .expect("a complaint");
    let stage_one = complaint.stage_one.expect("stage 1");
    // 25 and 26 December 2019 and 1 January 2020 were bank holidays.
    assert_eq!(stage_one.acknowledgement_due, "2020-01-03");
}

#[tokio::test]
async fn a_complaint_received_before_the_calendar_is_refused_naming_its_range_and_setting() {
    let app = spawn_app().await;
    let refused = app
        .client
        .clone()
        .log_complaint(gate_left_open("import-2011", "2011-06-01T10:00:00Z"))
        .await
        .expect_err("2011 is before the calendar");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        doorstep_tests::violated_field(&refused).as_deref(),
        Some("received_at")
    );
    for expected in ["2012-01-01", "2030-12-31", "calendar.bank_holidays_file"] {
        assert!(
            refused.message().contains(expected),
            "{expected} in {}",
            refused.message()
        );
    }
}

/// A server whose calendar knows 2026 only, on a clock standing at `now`.
async fn app_with_a_2026_calendar(now: &str) -> doorstep_tests::TestApp {
    spawn_app_with(
        |settings, data_dir| {
            let file = data_dir.join("bank-holidays.json");
            std::fs::write(
                &file,
                r#"{"england-and-wales":{"division":"england-and-wales","events":[
                    {"title":"New Year's Day","date":"2026-01-01","notes":"","bunting":true},
                    {"title":"Christmas Day","date":"2026-12-25","notes":"","bunting":true},
                    {"title":"Boxing Day","date":"2026-12-28","notes":"","bunting":true}]}}"#,
            )
            .expect("the calendar is written");
            settings.calendar.bank_holidays_file = Some(file);
        },
        TestClock::at(now),
    )
    .await
}

#[tokio::test]
async fn a_deadline_past_the_calendar_is_refused() {
    let app = app_with_a_2026_calendar("2026-12-30T12:00:00Z").await;
    let mut client = app.client.clone();
    // Received Monday 21 December 2026: acknowledgement is due Tuesday 29 December, inside 2026.
    let id = log(&app, "late-2026", "2026-12-21T10:00:00Z").await;
    let calendar_version = client
        .get_complaint(requests::complaint(&id))
        .await
        .expect("read")
        .into_inner()
        .complaint
        .expect("a complaint")
        .calendar_version;
    // Operators see how long the calendar still covers: one day, on 30 December 2026.
    let scraped = app.scrape_metrics().await;
    assert_eq!(
        doorstep_tests::metric_value(
            &scraped,
            "doorstep_calendar_coverage_remaining_days",
            &[("calendar", &calendar_version)]
        ),
        Some(1.0),
        "{scraped}"
    );
    // Its response would be due in 2027, which the calendar does not know.
    let refused = client
        .acknowledge_complaint(requests::acknowledgement(
            &id,
            v1::Stage::One,
            "Officer One",
            Some("2026-12-22T09:00:00Z"),
        ))
        .await
        .expect_err("a response deadline in 2027 cannot be counted");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        doorstep_tests::violated_field(&refused).as_deref(),
        Some("effective_at")
    );
    assert!(
        refused.message().contains("2026-01-01 to 2026-12-31"),
        "{}",
        refused.message()
    );
    // A complaint whose acknowledgement deadline falls in 2027 is refused as it is logged.
    let refused = client
        .log_complaint(gate_left_open("late-2026-2", "2026-12-29T10:00:00Z"))
        .await
        .expect_err("an acknowledgement deadline in 2027 cannot be counted");
    assert_eq!(
        doorstep_tests::violated_field(&refused).as_deref(),
        Some("received_at")
    );
}
