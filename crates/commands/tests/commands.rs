//! The application layer's id policies and retry rules, against an in-memory store.

mod support;

use std::sync::Arc;

use doorstep_commands::{
    Aggregate, CommandLog, CommandOrigin, Failure, IdPolicy, Refusal, StoredEvent, new_events,
    record, start,
};
use doorstep_domain::DomainError;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::input::{ComplaintId, RequestKey, SourceSystem, VisitId};
use doorstep_domain::stream::{Category, StreamName};
use doorstep_store::{EventStore, ExpectedVersion, StreamId};
use support::MemoryStore;
use uuid::Uuid;

/// A running total: the smallest aggregate with a rule that can refuse.
struct Tally;

#[derive(Debug, Clone, PartialEq)]
struct Total {
    version: u64,
    total: u64,
}

#[derive(Debug, Clone)]
enum TallyCommand {
    Add(u64),
    /// Adds only while the total is below the limit.
    AddBelow {
        n: u64,
        limit: u64,
    },
    /// Needs the tally to exist.
    Double,
    /// One event per number.
    AddEach(Vec<u64>),
}

#[derive(Debug, Clone)]
struct Added(u64);

impl StoredEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn to_payload(&self) -> serde_json::Value {
        serde_json::json!({ "n": self.0 })
    }
}

impl Aggregate for Tally {
    type State = Total;
    type Command = TallyCommand;
    type Event = Added;
    const CATEGORY: Category = Category::Contractor;
    const NOUN: &'static str = "tally";

    fn decide(
        &self,
        state: Option<&Total>,
        command: TallyCommand,
    ) -> Result<Vec<Added>, DomainError> {
        let total = state.map_or(0, |state| state.total);
        match command {
            TallyCommand::Add(n) => Ok(vec![Added(n)]),
            TallyCommand::AddBelow { n, limit } if total < limit => Ok(vec![Added(n)]),
            TallyCommand::AddBelow { .. } => Err(DomainError::NotAllowed("at the limit".into())),
            TallyCommand::Double if state.is_none() => Err(DomainError::NotFound),
            TallyCommand::Double => Ok(vec![Added(total)]),
            TallyCommand::AddEach(numbers) => Ok(numbers.into_iter().map(Added).collect()),
        }
    }

    fn evolve(state: Option<Total>, event: &Added) -> Option<Total> {
        let state = state.unwrap_or(Total {
            version: 0,
            total: 0,
        });
        Some(Total {
            version: state.version + 1,
            total: state.total + event.0,
        })
    }

    fn version(state: &Total) -> u64 {
        state.version
    }

    fn from_payload(
        _: &str,
        _: u32,
        payload: &serde_json::Value,
    ) -> Result<Added, EventDecodeError> {
        payload["n"]
            .as_u64()
            .map(Added)
            .ok_or_else(|| EventDecodeError {
                event_type: "Added".into(),
                schema_version: 1,
                reason: "no n".into(),
            })
    }
}

fn key(text: &str) -> RequestKey {
    RequestKey::parse("request_id", text).unwrap_or_else(|error| panic!("{error}"))
}

fn origin(request_id: Option<&str>, fingerprint: &str) -> CommandOrigin {
    CommandOrigin {
        actor: "tester".into(),
        source_channel: "test".into(),
        request_id: request_id.map(key),
        fingerprint: fingerprint.into(),
    }
}

fn setup() -> (Arc<MemoryStore>, CommandLog<Tally>) {
    let store = Arc::new(MemoryStore::default());
    let log = CommandLog::new(store.clone() as Arc<dyn EventStore>, Tally);
    (store, log)
}

fn store_id(name: &StreamName) -> StreamId {
    StreamId::from(name.to_string())
}

/// Another writer's event on the tally `t1`.
fn other_writer(n: u64) -> doorstep_store::NewEvent {
    new_events(&[Added(n)], &origin(None, "other"), |_| None).remove(0)
}

/// The values were computed apart from this code, from the names the server hashed before this
/// crate existed (`<stream>/<request_id>/<index>`, `intake/<source_system>/<key>`,
/// `visit/<visit_id>` in the request namespace): a retry against an existing database must
/// derive the same id to be recognised.
#[test]
fn derived_event_ids_are_the_ones_existing_databases_hold() {
    let complaint =
        ComplaintId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001));
    let stream = StreamName::complaint(&complaint);
    let request = key("req-1");
    let id = |policy: IdPolicy<'_>, index| {
        policy
            .event_id(&stream, index)
            .map(|id| id.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        id(IdPolicy::Request(&request), 0),
        "003fa2e7-60f4-5f25-b47c-fc4098c4c925",
    );
    assert_eq!(
        id(IdPolicy::Request(&request), 1),
        "40c6895a-547d-5dbf-8497-8414bcad522e",
    );
    let source = SourceSystem::parse("source_system", "call-centre")
        .unwrap_or_else(|error| panic!("{error}"));
    let intake = IdPolicy::Intake {
        source_system: &source,
        key: &request,
    };
    assert_eq!(id(intake, 0), "c5c7cc2f-3750-5868-b9a3-ce06c606157b");
    assert_eq!(
        intake.event_id(&stream, 1),
        None,
        "later intake events are time-ordered"
    );
    let visit = VisitId::parse("visit_id", "V-42").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        id(IdPolicy::Visit(&visit), 0),
        "290ccd0b-ad36-57f9-92f9-087e33114677",
    );
    let escalation = Uuid::from_u128(99);
    assert_eq!(
        IdPolicy::Escalation(escalation).event_id(&stream, 0),
        Some(escalation)
    );
    assert_eq!(IdPolicy::Fresh.event_id(&stream, 0), None);
}

#[tokio::test]
async fn a_conflict_is_decided_again_on_the_new_state() {
    let (store, log) = setup();
    let stream = CommandLog::<Tally>::stream_of(&"t1");
    store.let_in_before_next_append(store_id(&stream), other_writer(5));
    let executed = log
        .execute(&"t1", None, &origin(Some("r1"), "f1"), TallyCommand::Add(2))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        executed.state,
        Total {
            version: 2,
            total: 7
        }
    );
    assert_eq!(
        (executed.written.version, executed.written.duplicate),
        (2, false)
    );
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn the_rules_see_the_new_state_after_a_conflict() {
    let (store, log) = setup();
    let stream = CommandLog::<Tally>::stream_of(&"t1");
    store.let_in_before_next_append(store_id(&stream), other_writer(10));
    let refused = log
        .execute(
            &"t1",
            None,
            &origin(None, "f1"),
            TallyCommand::AddBelow { n: 1, limit: 5 },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(refused, Err(Refusal::Domain(DomainError::NotAllowed(_)))),
        "{refused:?}"
    );
    assert_eq!(store.len(), 1, "only the other writer's event");
}

#[tokio::test]
async fn a_pinned_version_is_refused_on_conflict_not_retried() {
    let (store, log) = setup();
    let stream = CommandLog::<Tally>::stream_of(&"t1");
    store.let_in_before_next_append(store_id(&stream), other_writer(5));
    let refused = log
        .execute(&"t1", Some(0), &origin(None, "f1"), TallyCommand::Add(2))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(
            refused,
            Err(Refusal::VersionConflict {
                expected: 0,
                actual: 1
            })
        ),
        "{refused:?}"
    );
    let stale = log
        .execute(&"t1", Some(3), &origin(None, "f1"), TallyCommand::Add(2))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(
            stale,
            Err(Refusal::VersionConflict {
                expected: 3,
                actual: 1
            })
        ),
        "{stale:?}"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn writers_that_always_get_in_first_end_in_contention() {
    let (store, log) = setup();
    let stream = CommandLog::<Tally>::stream_of(&"t1");
    for _ in 0..5 {
        store.let_in_before_next_append(store_id(&stream), other_writer(1));
    }
    let refused = log
        .execute(&"t1", None, &origin(None, "f1"), TallyCommand::Add(2))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(matches!(refused, Err(Refusal::Contention)), "{refused:?}");
}

#[tokio::test]
async fn a_retry_gets_the_first_result_even_when_the_rules_would_now_refuse() {
    let (store, log) = setup();
    let command = TallyCommand::AddBelow { n: 9, limit: 5 };
    let first = log
        .execute(&"t1", None, &origin(Some("r1"), "f1"), command.clone())
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    let retry = log
        .execute(&"t1", None, &origin(Some("r1"), "f1"), command)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(!first.written.duplicate);
    assert!(retry.written.duplicate);
    assert_eq!(retry.written.position, first.written.position);
    assert_eq!(retry.state, first.state);
    assert_eq!(store.len(), 1);
}

/// A command that wrote several events answers its retry with where the last one landed, as
/// the first attempt did: a caller waiting for `min_position` then sees all of them.
#[tokio::test]
async fn a_retry_of_a_command_with_several_events_answers_the_last_ones_position() {
    let (store, log) = setup();
    let command = TallyCommand::AddEach(vec![1, 2, 3]);
    let first = log
        .execute(&"t1", None, &origin(Some("r1"), "f1"), command.clone())
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    let retry = log
        .execute(&"t1", None, &origin(Some("r1"), "f1"), command)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(retry.written.duplicate);
    assert_eq!(first.written.version, 3);
    assert_eq!(
        (retry.written.version, retry.written.position),
        (first.written.version, first.written.position)
    );
    assert_eq!(store.len(), 3);
}

#[tokio::test]
async fn a_reused_request_id_with_other_content_is_refused() {
    let (store, log) = setup();
    log.execute(&"t1", None, &origin(Some("r1"), "f1"), TallyCommand::Add(1))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    let refused = log
        .execute(&"t1", None, &origin(Some("r1"), "f2"), TallyCommand::Add(2))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(
            refused,
            Err(Refusal::KeyReused {
                key_field: "request_id"
            })
        ),
        "{refused:?}"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn concurrent_identical_retries_write_once_and_agree() {
    let (store, log) = setup();
    let log = Arc::new(log);
    let calls = (0..8).map(|_| {
        let log = log.clone();
        tokio::spawn(async move {
            log.execute(&"t1", None, &origin(Some("r1"), "f1"), TallyCommand::Add(3))
                .await
                .unwrap_or_else(|error| panic!("{error}"))
                .unwrap_or_else(|error| panic!("{error}"))
                .written
        })
    });
    let mut written = Vec::new();
    for call in calls {
        written.push(call.await.unwrap_or_else(|error| panic!("{error}")));
    }
    assert_eq!(store.len(), 1, "one event whatever the number of retries");
    assert!(written.iter().all(|w| w.position == 1 && w.version == 1));
    assert_eq!(written.iter().filter(|w| !w.duplicate).count(), 1);
}

#[tokio::test]
async fn refusals_and_failures_stay_apart() {
    let (store, log) = setup();
    let missing = log
        .execute(&"t9", None, &origin(None, "f1"), TallyCommand::Double)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(missing, Err(Refusal::NotFound { noun: "tally" })),
        "{missing:?}"
    );
    store
        .closed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = log
        .execute(&"t1", None, &origin(None, "f1"), TallyCommand::Add(1))
        .await;
    assert!(
        matches!(
            failed,
            Err(Failure::Store(doorstep_store::StoreError::Closed))
        ),
        "{:?}",
        failed.map(|_| ())
    );
}

#[tokio::test]
async fn an_intake_retry_finds_the_first_stream_and_a_reused_key_is_refused() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::default());
    let source = SourceSystem::parse("source_system", "crm").unwrap_or_else(|e| panic!("{e}"));
    let request = key("k1");
    let policy = IdPolicy::Intake {
        source_system: &source,
        key: &request,
    };
    // Each attempt picks a new stream, as intake does; the key finds the first one.
    let attempt = |fingerprint: &'static str, n| {
        let store = store.clone();
        async move {
            let stream = StreamName::new(Category::Complaint, Uuid::now_v7());
            let origin = origin(Some("k1"), fingerprint);
            let landed = start(
                &store,
                &stream,
                ExpectedVersion::NoStream,
                &origin,
                policy,
                &[Added(n)],
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
            (stream, landed)
        }
    };
    let (first_stream, first) = attempt("f1", 1).await;
    let first = first.unwrap_or_else(|error| panic!("{error}"));
    let (_, retry) = attempt("f1", 1).await;
    let retry = retry.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(retry.stream, first_stream);
    assert!(retry.written.duplicate && !first.written.duplicate);
    assert_eq!(retry.written.position, first.written.position);
    let (_, other) = attempt("f2", 2).await;
    assert!(
        matches!(
            other,
            Err(Refusal::KeyReused {
                key_field: "idempotency_key"
            })
        ),
        "{other:?}"
    );
}

#[tokio::test]
async fn a_visit_is_the_same_visit_when_its_content_is() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::default());
    let visit = VisitId::parse("visit_id", "V-1").unwrap_or_else(|e| panic!("{e}"));
    let stream = StreamName::visit(&visit);
    let send = |fingerprint: &'static str, n| {
        let store = store.clone();
        let stream = stream.clone();
        let visit = visit.clone();
        async move {
            start(
                &store,
                &stream,
                ExpectedVersion::NoStream,
                &origin(None, fingerprint),
                IdPolicy::Visit(&visit),
                &[Added(n)],
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"))
        }
    };
    let first = send("batch-1", 1).await.unwrap_or_else(|e| panic!("{e}"));
    // Sent again in another batch (another fingerprint) with the same details.
    let again = send("batch-2", 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(again.written.duplicate && !first.written.duplicate);
    let changed = send("batch-3", 2).await;
    assert!(
        matches!(
            changed,
            Err(Refusal::KeyReused {
                key_field: "visit_id"
            })
        ),
        "{changed:?}"
    );
}

#[tokio::test]
async fn an_erasure_is_recorded_once_per_request_id() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::default());
    let stream = StreamName::new(Category::Resident, "R-1");
    let first = record(&store, &stream, &Added(0), &origin(Some("e1"), "f1"))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    let retry = record(&store, &stream, &Added(0), &origin(Some("e1"), "f1"))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!((retry.position, retry.duplicate), (first.position, true));
    let unkeyed = record(&store, &stream, &Added(0), &origin(None, "f1"))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!((unkeyed.version, unkeyed.duplicate), (2, false));
}
