//! The queue in front of a backend's writer task, and the loop that drains it in batches.
//!
//! Every append of a process goes to one writer task, which commits whatever is already waiting
//! in one transaction (group commit): one commit, and one flush to disk, shared by many callers.
//! This module is the part both backends share: what an append carries, how a batch is taken
//! from the queue, and how the writer stops. What a batch does in the database is each backend's
//! own [`BatchWriter`].

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamId};

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
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
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
) {
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
        writer.write_batch(collected.appends).await;
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
