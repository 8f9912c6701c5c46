//! Running commands against streams.

use std::sync::Arc;

use doorstep_domain::stream::StreamName;
use doorstep_store::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId,
};

use crate::{Aggregate, CommandOrigin, Failure, IdPolicy, Outcome, Refusal, StoredEvent, Written};

/// How often a command without a pinned version is decided again when another write got in
/// first.
const CONFLICT_RETRIES: usize = 5;
/// More events than any aggregate will ever have; a stream is read whole.
const MAX_STREAM_EVENTS: usize = 100_000;

/// An aggregate's state and the events it was folded from.
pub struct Loaded<A: Aggregate> {
    pub state: Option<A::State>,
    pub events: Vec<(RecordedEvent, A::Event)>,
}

/// A command that ran: where it landed and the aggregate's state after it.
#[derive(Debug)]
pub struct Executed<S> {
    pub written: Written,
    pub state: S,
}

/// Where a fact appended without an aggregate landed: its stream (the first attempt's, for a
/// retry) and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub stream: StreamName,
    pub written: Written,
}

/// An aggregate's rules over the event store.
pub struct CommandLog<A> {
    store: Arc<dyn EventStore>,
    aggregate: A,
}

impl<A: Aggregate> CommandLog<A> {
    pub fn new(store: Arc<dyn EventStore>, aggregate: A) -> Self {
        Self { store, aggregate }
    }

    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn stream_of(id: &impl std::fmt::Display) -> StreamName {
        StreamName::new(A::CATEGORY, id)
    }

    /// Reads the aggregate's stream and folds it.
    pub async fn load(&self, id: &impl std::fmt::Display) -> Result<Loaded<A>, Failure> {
        self.load_stream(&Self::stream_of(id)).await
    }

    async fn load_stream(&self, stream: &StreamName) -> Result<Loaded<A>, Failure> {
        let recorded = self
            .store
            .read_stream(&store_id(stream), 1, MAX_STREAM_EVENTS)
            .await?;
        let mut events = Vec::with_capacity(recorded.len());
        for record in recorded {
            let event =
                A::from_payload(&record.event_type, record.schema_version, &record.payload)?;
            events.push((record, event));
        }
        let state = events
            .iter()
            .fold(None, |state, (_, event)| A::evolve(state, event));
        Ok(Loaded { state, events })
    }

    /// Runs `command` on the aggregate `id`: the caller's request id in `origin` makes a retry
    /// find the first result, and `expected_version` pins the version it must find.
    pub async fn execute(
        &self,
        id: &impl std::fmt::Display,
        expected_version: Option<u64>,
        origin: &CommandOrigin,
        command: A::Command,
    ) -> Outcome<Executed<A::State>> {
        let policy = IdPolicy::request(origin.request_id.as_ref());
        let executed = self
            .execute_when(id, expected_version, origin, policy, |_| {
                Ok(Some(command.clone()))
            })
            .await?;
        Ok(match executed {
            Ok(Some(executed)) => Ok(executed),
            Ok(None) => return Err(Failure::Inconsistent("a command decided nothing")),
            Err(refusal) => Err(refusal),
        })
    }

    /// Runs the command `command_for` makes from the current state (`None`: nothing to do now,
    /// answered as `Ok(Ok(None))`), with event ids from `policy`. On a conflict the state is read
    /// again and `command_for` asked again, unless the caller pinned `expected_version`.
    pub async fn execute_when(
        &self,
        id: &impl std::fmt::Display,
        expected_version: Option<u64>,
        origin: &CommandOrigin,
        policy: IdPolicy<'_>,
        mut command_for: impl FnMut(Option<&A::State>) -> Result<Option<A::Command>, Refusal>,
    ) -> Outcome<Option<Executed<A::State>>> {
        let stream = Self::stream_of(id);
        for _ in 0..CONFLICT_RETRIES {
            if policy.looks_first()
                && let Some(first) = self.first_attempt(&policy, &stream).await?
            {
                return self.answer_retry(&first, origin, &policy).await;
            }
            let loaded = self.load_stream(&stream).await?;
            let actual = loaded.state.as_ref().map_or(0, A::version);
            if let Some(expected) = expected_version
                && expected != actual
            {
                return Ok(Err(Refusal::VersionConflict { expected, actual }));
            }
            let command = match command_for(loaded.state.as_ref()) {
                Ok(Some(command)) => command,
                Ok(None) => return Ok(Ok(None)),
                Err(refusal) => return Ok(Err(refusal)),
            };
            let events = match self.aggregate.decide(loaded.state.as_ref(), command) {
                Ok(events) => events,
                Err(error) => return Ok(Err(Refusal::from_domain(error, A::NOUN))),
            };
            let new_events =
                crate::new_events(&events, origin, |index| policy.event_id(&stream, index));
            match self
                .store
                .append(
                    &store_id(&stream),
                    ExpectedVersion::Exact(actual),
                    new_events,
                )
                .await
            {
                Ok(outcome) => {
                    let Some(state) = events.iter().fold(loaded.state, A::evolve) else {
                        return Ok(Err(Refusal::NotFound { noun: A::NOUN }));
                    };
                    let written = Written {
                        version: outcome.version,
                        position: outcome.position,
                        duplicate: outcome.already_stored,
                    };
                    return Ok(Ok(Some(Executed { written, state })));
                }
                Err(StoreError::VersionConflict { actual: now_at, .. }) => {
                    if let Some(expected) = expected_version {
                        return Ok(Err(Refusal::VersionConflict {
                            expected,
                            actual: now_at,
                        }));
                    }
                    // The caller did not pin a version: decide again on the new state.
                }
                // A policy that looks first finds the first attempt on the next round.
                Err(StoreError::DuplicateEventId { .. }) if policy.looks_first() => {}
                Err(StoreError::DuplicateEventId { .. }) => {
                    let first = self
                        .first_attempt(&policy, &stream)
                        .await?
                        .ok_or(Failure::Inconsistent("a duplicate event cannot be found"))?;
                    return self.answer_retry(&first, origin, &policy).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Err(Refusal::Contention))
    }

    async fn first_attempt(
        &self,
        policy: &IdPolicy<'_>,
        stream: &StreamName,
    ) -> Result<Option<RecordedEvent>, Failure> {
        first_attempt(&self.store, policy, stream).await
    }

    /// The first attempt's result and the state now, or the refusal of a reused key.
    async fn answer_retry(
        &self,
        first: &RecordedEvent,
        origin: &CommandOrigin,
        policy: &IdPolicy<'_>,
    ) -> Outcome<Option<Executed<A::State>>> {
        let stream = StreamName::parse(first.stream_id.as_str())?;
        let last = last_of_call(&self.store, policy, &stream, first).await?;
        let written = match same_call(first, &last, origin, policy) {
            Ok(written) => written,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let state = self
            .load_stream(&stream)
            .await?
            .state
            .ok_or(Failure::Inconsistent("a retried stream has no events"))?;
        Ok(Ok(Some(Executed { written, state })))
    }
}

/// Appends `events`, which need no aggregate to decide them (a new complaint, a visit), to
/// `stream` expecting `expected`, with ids from `policy`: a retry gets the first attempt's
/// result and stream, a reused key with other content is refused.
pub async fn start<E: StoredEvent>(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    expected: ExpectedVersion,
    origin: &CommandOrigin,
    policy: IdPolicy<'_>,
    events: &[E],
) -> Outcome<Landed> {
    start_with(
        store,
        stream,
        expected,
        origin,
        policy,
        events,
        |id, expected, new_events| async move { store.append(&id, expected, new_events).await },
    )
    .await
}

/// [`start`], appending through `append` (given the stream's id, `expected`, and the events with
/// their ids and metadata) instead of [`EventStore::append`]: intake stores a new resident's key with its
/// events. An error `append` returns that `start` does not answer itself (a version conflict, a
/// taken event id) is returned as [`Failure::Store`].
pub async fn start_with<E, F>(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    expected: ExpectedVersion,
    origin: &CommandOrigin,
    policy: IdPolicy<'_>,
    events: &[E],
    append: impl FnOnce(StreamId, ExpectedVersion, Vec<NewEvent>) -> F,
) -> Outcome<Landed>
where
    E: StoredEvent,
    F: Future<Output = Result<AppendOutcome, StoreError>>,
{
    if policy.looks_first()
        && let Some(first) = first_attempt(store, &policy, stream).await?
    {
        return landed_retry(store, &first, origin, &policy).await;
    }
    let new_events = crate::new_events(events, origin, |index| policy.event_id(stream, index));
    match append(store_id(stream), expected, new_events).await {
        Ok(outcome) => Ok(Ok(Landed {
            stream: stream.clone(),
            written: Written {
                version: outcome.version,
                position: outcome.position,
                duplicate: outcome.already_stored,
            },
        })),
        // An earlier call with this key (perhaps a concurrent one) stored its events.
        Err(StoreError::DuplicateEventId { .. }) if policy.compares_fingerprints() => {
            let first = first_attempt(store, &policy, stream)
                .await?
                .ok_or(Failure::Inconsistent("a duplicate event cannot be found"))?;
            landed_retry(store, &first, origin, &policy).await
        }
        Err(StoreError::DuplicateEventId { .. }) => Ok(Err(Refusal::KeyReused {
            key_field: policy.key_field(),
        })),
        Err(StoreError::VersionConflict { actual, .. }) => Ok(Err(Refusal::VersionConflict {
            expected: match expected {
                ExpectedVersion::Exact(version) => version,
                ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
            },
            actual,
        })),
        Err(error) => Err(error.into()),
    }
}

/// Appends one event that needs no aggregate to decide it (a fact recorded as it happens, such
/// as an erasure) to `stream` whatever its version, once per request id in `origin`.
pub async fn record<E: StoredEvent>(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    event: &E,
    origin: &CommandOrigin,
) -> Outcome<Written> {
    let policy = IdPolicy::request(origin.request_id.as_ref());
    let landed = start(
        store,
        stream,
        ExpectedVersion::Any,
        origin,
        policy,
        std::slice::from_ref(event),
    )
    .await?;
    Ok(landed.map(|landed| landed.written))
}

async fn first_attempt(
    store: &Arc<dyn EventStore>,
    policy: &IdPolicy<'_>,
    stream: &StreamName,
) -> Result<Option<RecordedEvent>, Failure> {
    match policy.event_id(stream, 0) {
        Some(first_id) => Ok(store.find_event(first_id).await?),
        None => Ok(None),
    }
}

async fn landed_retry(
    store: &Arc<dyn EventStore>,
    first: &RecordedEvent,
    origin: &CommandOrigin,
    policy: &IdPolicy<'_>,
) -> Outcome<Landed> {
    let stream = StreamName::parse(first.stream_id.as_str())?;
    let last = last_of_call(store, policy, &stream, first).await?;
    Ok(same_call(first, &last, origin, policy).map(|written| Landed { stream, written }))
}

/// The last event the first attempt appended (its events' ids follow the policy's indexes), so
/// a retry answers the version and position the first attempt answered, however many events it
/// wrote.
async fn last_of_call(
    store: &Arc<dyn EventStore>,
    policy: &IdPolicy<'_>,
    stream: &StreamName,
    first: &RecordedEvent,
) -> Result<RecordedEvent, Failure> {
    let mut last = first.clone();
    for index in 1.. {
        let Some(id) = policy.event_id(stream, index) else {
            break;
        };
        match store.find_event(id).await? {
            Some(next) if next.stream_id == first.stream_id => last = next,
            _ => break,
        }
    }
    Ok(last)
}

/// The answer to a retried command: the first result if it was the same command, where `last`
/// is the last event that first attempt appended.
fn same_call(
    first: &RecordedEvent,
    last: &RecordedEvent,
    origin: &CommandOrigin,
    policy: &IdPolicy<'_>,
) -> Result<Written, Refusal> {
    if first.metadata.command_fingerprint.as_deref() != Some(origin.fingerprint.as_str()) {
        return Err(Refusal::KeyReused {
            key_field: policy.key_field(),
        });
    }
    Ok(Written {
        version: last.version,
        position: last.position,
        duplicate: true,
    })
}

fn store_id(stream: &StreamName) -> StreamId {
    StreamId::from(stream.to_string())
}
