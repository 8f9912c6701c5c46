//! The queue in front of a backend's writer task, and the loop that drains it in batches.
//!
//! Every append of a process goes to one writer task, which commits whatever is already waiting
//! in one transaction (group commit): one commit, and one flush to disk, shared by many callers.
//! This module is the part both backends share: what an append carries, how a batch is taken
//! from the queue, and how the writer stops. What a batch does in the database is each backend's
//! own [`BatchWriter`].

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use tracing::field::Empty;
use uuid::Uuid;

use crate::{AppendOutcome, ExpectedVersion, NewEvent, NewResidentKey, StoreError, StreamId};

/// A [`NewEvent`] already serialised for its row, so the writer task only talks to the database.
#[derive(Debug, Clone)]
pub(crate) struct EncodedEvent {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    /// Kept parsed to compare with a stored payload when the same event id is appended again.
    pub(crate) payload: serde_json::Value,
    pub(crate) payload_json: String,
    pub(crate) metadata_json: String,
}

impl EncodedEvent {
    pub(crate) fn encode(event: NewEvent) -> Result<Self, StoreError> {
        let metadata_json = serde_json::to_string(&event.metadata)
            .map_err(|error| StoreError::Database(sqlx::Error::Encode(Box::new(error))))?;
        Ok(Self {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload_json: event.payload.to_string(),
            payload: event.payload,
            metadata_json,
        })
    }
}

/// One caller's append, waiting for the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub(crate) stream: StreamId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<EncodedEvent>,
    /// A new resident's key to store with the events ([`crate::ResidentKeyStore::append_with_new_key`]);
    /// only SQLite's writer is given one.
    pub(crate) new_key: Option<NewResidentKey>,
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    /// Filled by the writer when it takes the append into a batch, for the caller's span.
    pub(crate) batch: Arc<OnceLock<BatchNote>>,
}

/// The batch an append was committed in, as its caller's span reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchNote {
    appends: usize,
    events: usize,
    /// When the writer began the batch: the caller's wait before it is time in the queue, after
    /// it is the batch's time in the database.
    started: Instant,
}

/// Queues an append for the writer task and waits for its answer, in a `store.append` span that
/// tells how long it queued, how large a batch it was committed in, and how long that took.
pub(crate) async fn submit(
    queue: &mpsc::Sender<WriterMessage>,
    system: &'static str,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    new_key: Option<NewResidentKey>,
) -> Result<AppendOutcome, StoreError> {
    let events = events
        .into_iter()
        .map(EncodedEvent::encode)
        .collect::<Result<Vec<_>, _>>()?;
    let span = tracing::info_span!(
        "store.append",
        db.system = system,
        stream = %stream,
        events = events.len(),
        batch.appends = Empty,
        batch.events = Empty,
        queued_ms = Empty,
        commit_ms = Empty,
    );
    async move {
        let queued = Instant::now();
        let (reply, outcome) = oneshot::channel();
        let batch = Arc::new(OnceLock::new());
        let request = AppendRequest {
            stream: stream.clone(),
            expected,
            events,
            new_key,
            reply,
            batch: batch.clone(),
        };
        queue
            .send(WriterMessage::Append(request))
            .await
            .map_err(|_| StoreError::Closed)?;
        // The writer drops the reply sender only when it stops without answering.
        let outcome = outcome.await.map_err(|_| StoreError::Closed)?;
        if let Some(note) = batch.get() {
            let span = tracing::Span::current();
            span.record("batch.appends", note.appends);
            span.record("batch.events", note.events);
            span.record("queued_ms", millis(note.started.duration_since(queued)));
            span.record("commit_ms", millis(note.started.elapsed()));
        }
        outcome
    }
    .instrument(span)
    .await
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// What the writer measures of every batch.
struct BatchMetrics {
    events: Histogram<u64>,
    duration: Histogram<f64>,
    attributes: [KeyValue; 1],
}

impl BatchMetrics {
    fn new(system: &'static str) -> Self {
        // The scope every Doorstep instrument shares (`doorstep_telemetry::SCOPE`); the store
        // records through the OpenTelemetry API only and does not depend on that crate.
        let meter = opentelemetry::global::meter("doorstep");
        Self {
            events: meter
                .u64_histogram("doorstep.store.batch.events")
                .with_unit("{event}")
                .with_description("Events committed per append batch (group commit)")
                .with_boundaries(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ])
                .build(),
            duration: meter
                .f64_histogram("doorstep.store.batch.duration")
                .with_unit("s")
                .with_description("Time to write and commit one append batch")
                .with_boundaries(vec![
                    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0,
                ])
                .build(),
            attributes: [KeyValue::new("db.system", system)],
        }
    }
}

impl AppendRequest {
    /// Tells the caller how its append ended. A caller that gave up waiting no longer needs the
    /// answer; its events are written all the same, and a retry with the same ids is idempotent.
    pub(crate) fn answer(self, outcome: Result<AppendOutcome, StoreError>) {
        let _ = self.reply.send(outcome);
    }
}

#[derive(Debug)]
pub(crate) enum WriterMessage {
    Append(AppendRequest),
    /// Sent by `close()`: everything queued before it is still written and answered; the writer
    /// then stops and acknowledges once its connection is closed.
    Shutdown {
        acknowledge: oneshot::Sender<()>,
    },
}

/// What a backend does with the batches the queue hands it.
pub(crate) trait BatchWriter: Send + 'static {
    /// Writes the appends, in as few transactions as it can, and answers every one of them.
    fn write_batch(&mut self, batch: Vec<AppendRequest>) -> impl Future<Output = ()> + Send;

    /// Releases the connection and anything else the writer holds; called once, last.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Drains `requests` into `writer` in batches of at most `max_batch_events` events until
/// `close()` asks it to stop or every store handle is dropped.
pub(crate) async fn run_writer<W: BatchWriter>(
    mut writer: W,
    mut requests: mpsc::Receiver<WriterMessage>,
    max_batch_events: usize,
    system: &'static str,
) {
    let metrics = BatchMetrics::new(system);
    let mut held_back: Option<AppendRequest> = None;
    let mut shutdown_acknowledgements = Vec::new();
    loop {
        let first_request = match held_back.take() {
            Some(request) => request,
            None => match requests.recv().await {
                Some(WriterMessage::Append(request)) => request,
                Some(WriterMessage::Shutdown { acknowledge }) => {
                    shutdown_acknowledgements.push(acknowledge);
                    break;
                }
                None => break,
            },
        };
        let collected = collect_batch(&mut requests, first_request, max_batch_events);
        held_back = collected.held_back;
        let started = Instant::now();
        let events: usize = collected.appends.iter().map(|a| a.events.len()).sum();
        let note = BatchNote {
            appends: collected.appends.len(),
            events,
            started,
        };
        for append in &collected.appends {
            let _ = append.batch.set(note);
        }
        writer.write_batch(collected.appends).await;
        metrics.events.record(
            u64::try_from(events).unwrap_or(u64::MAX),
            &metrics.attributes,
        );
        metrics
            .duration
            .record(started.elapsed().as_secs_f64(), &metrics.attributes);
        if let Some(acknowledge) = collected.shutdown {
            shutdown_acknowledgements.push(acknowledge);
            break;
        }
    }

    // Refuse whatever is still queued, close the connection, then let `close()` return.
    requests.close();
    if let Some(request) = held_back {
        request.answer(Err(StoreError::Closed));
    }
    while let Ok(message) = requests.try_recv() {
        match message {
            WriterMessage::Append(request) => request.answer(Err(StoreError::Closed)),
            WriterMessage::Shutdown { acknowledge } => shutdown_acknowledgements.push(acknowledge),
        }
    }
    writer.close().await;
    tracing::debug!("event store writer stopped");
    for acknowledge in shutdown_acknowledgements {
        let _ = acknowledge.send(());
    }
}

/// What the writer found while filling a batch, besides the batch itself.
struct CollectedBatch {
    appends: Vec<AppendRequest>,
    /// An append that would have made the batch too large; it starts the next batch.
    held_back: Option<AppendRequest>,
    /// A shutdown request that arrived behind the batch.
    shutdown: Option<oneshot::Sender<()>>,
}

/// Takes whatever else is already queued, without waiting, up to `max_batch_events` events.
/// The first append is always taken, even when it alone is larger than the limit.
fn collect_batch(
    requests: &mut mpsc::Receiver<WriterMessage>,
    first_request: AppendRequest,
    max_batch_events: usize,
) -> CollectedBatch {
    let mut event_count = first_request.events.len();
    let mut collected = CollectedBatch {
        appends: vec![first_request],
        held_back: None,
        shutdown: None,
    };
    while event_count < max_batch_events {
        match requests.try_recv() {
            Ok(WriterMessage::Append(request)) => {
                if event_count + request.events.len() > max_batch_events {
                    collected.held_back = Some(request);
                    break;
                }
                event_count += request.events.len();
                collected.appends.push(request);
            }
            Ok(WriterMessage::Shutdown { acknowledge }) => {
                collected.shutdown = Some(acknowledge);
                break;
            }
            Err(_) => break,
        }
    }
    collected
}

/// The error every caller of a failed batch gets. `sqlx::Error` cannot be cloned, so each caller
/// gets its own copy of the message; the full error is logged once by the writer.
pub(crate) fn batch_failed(error: &sqlx::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
        "the batch holding this append was rolled back: {error}"
    ))))
}
