//! `doorstep.v1.EventService`: reading one stream, and following the whole log.

use std::collections::HashSet;
use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::event_service_server::EventService;
use doorstep_domain::InvalidInput;
use doorstep_domain::complaint::upcast;
use doorstep_store::{EventStore, RecordedEvent, StreamId};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use crate::convert;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::parse;

const DEFAULT_READ_COUNT: u32 = 100;
const MAX_READ_COUNT: u32 = 1_000;
/// Events read from the log per query while a subscription catches up.
const SUBSCRIPTION_READ_BATCH: usize = 256;
/// Messages buffered per subscriber. A subscriber that reads slower than the log grows makes its
/// own reader wait here, so the server's memory per subscriber stays bounded.
const SUBSCRIPTION_BUFFER: usize = 64;

pub struct EventApi {
    store: Arc<dyn EventStore>,
    shutdown: watch::Receiver<bool>,
}

impl EventApi {
    /// `shutdown` turning true ends every open subscription, so a graceful stop need not wait
    /// for subscribers to hang up.
    pub fn new(store: Arc<dyn EventStore>, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, shutdown }
    }
}

/// Which events a subscription delivers.
#[derive(Debug, Clone, Default)]
struct SubscriptionFilter {
    categories: HashSet<String>,
    event_types: HashSet<String>,
}

impl SubscriptionFilter {
    fn parse(request: &v1::SubscribeAllRequest) -> Result<Self, InvalidInput> {
        let set = |field: &str, values: &[String]| -> Result<HashSet<String>, InvalidInput> {
            if values.len() > parse::MAX_FILTER_VALUES {
                return Err(InvalidInput::new(
                    field,
                    format!("may hold at most {} values", parse::MAX_FILTER_VALUES),
                ));
            }
            values
                .iter()
                .enumerate()
                .map(|(index, value)| {
                    let value = value.trim();
                    if value.is_empty() || value.len() > 128 {
                        return Err(InvalidInput::new(
                            format!("{field}[{index}]"),
                            "must be 1 to 128 characters",
                        ));
                    }
                    Ok(value.to_owned())
                })
                .collect()
        };
        Ok(Self {
            categories: set("stream_categories", &request.stream_categories)?,
            event_types: set("event_types", &request.event_types)?,
        })
    }

    fn admits(&self, event: &RecordedEvent) -> bool {
        (self.categories.is_empty() || self.categories.contains(event.stream_id.category()))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// The protobuf form of a stored event, upcast to its type's current schema version.
fn recorded_event(event: &RecordedEvent) -> Result<v1::RecordedEvent, ApiError> {
    let (schema_version, payload) = upcast(
        &event.event_type,
        event.schema_version,
        event.payload.clone(),
    )
    .map_err(ApiError::internal)?;
    let mut payload = payload;
    crate::privacy::withhold(&event.event_type, &mut payload);
    let metadata = &event.metadata;
    Ok(v1::RecordedEvent {
        position: event.position,
        stream_id: event.stream_id.to_string(),
        version: event.version,
        event_id: event.event_id.to_string(),
        event_type: event.event_type.clone(),
        schema_version,
        payload_json: payload.to_string(),
        metadata: Some(v1::EventMetadata {
            actor: metadata.actor.clone(),
            // Metadata that an event lacks (no cause, no request id, no trace before tracing) is shown as proto3 shows any absent string: empty.
            causation_id: metadata
                .causation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            correlation_id: metadata
                .correlation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            request_id: metadata.request_id.clone().unwrap_or_default(),
            source_channel: metadata.source_channel.clone(),
            trace_id: metadata.trace_id.clone().unwrap_or_default(),
            span_id: metadata.span_id.clone().unwrap_or_default(),
        }),
        recorded_at: Some(convert::timestamp(event.recorded_at)),
    })
}

impl EventApi {
    async fn read_stream(
        &self,
        request: Request<v1::ReadStreamRequest>,
    ) -> Result<v1::ReadStreamResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let stream_id = body.stream_id.trim();
        if stream_id.is_empty() || stream_id.len() > 200 {
            return Err(ApiError::from(InvalidInput::new(
                "stream_id",
                "must be 1 to 200 characters",
            )));
        }
        let max_count = match body.max_count {
            0 => DEFAULT_READ_COUNT,
            count if count <= MAX_READ_COUNT => count,
            _ => {
                return Err(ApiError::from(InvalidInput::new(
                    "max_count",
                    format!("may be at most {MAX_READ_COUNT}"),
                )));
            }
        };
        let from_version = body.from_version.max(1);
        let stored = self
            .store
            .read_stream(
                &StreamId::from(stream_id.to_owned()),
                from_version,
                max_count as usize,
            )
            .await?;
        let next_version = stored
            .last()
            .map_or(from_version, |event| event.version + 1);
        let events = stored
            .iter()
            .map(recorded_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v1::ReadStreamResponse {
            events,
            next_version,
        })
    }

    async fn subscribe_all(
        &self,
        request: Request<v1::SubscribeAllRequest>,
    ) -> Result<<Self as EventService>::SubscribeAllStream, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let filter = SubscriptionFilter::parse(&body)?;
        let message: EventMessage<v1::SubscribeAllResponse> = Box::new(move |event| {
            filter.admits(event).then(|| {
                recorded_event(event)
                    .map(|event| v1::SubscribeAllResponse {
                        message: Some(v1::subscribe_all_response::Message::Event(event)),
                    })
                    .map_err(Status::from)
            })
        });
        Ok(follow_log(
            self.store.clone(),
            body.from_position,
            self.shutdown.clone(),
            message,
            |position| v1::SubscribeAllResponse {
                message: Some(v1::subscribe_all_response::Message::CaughtUp(
                    v1::CaughtUp { position },
                )),
            },
        ))
    }
}

answered_by! {
    /// Delegates every call to [`EventApi`]'s own methods and answers in one step.
    EventService, EventApi {
        type SubscribeAllStream = ReceiverStream<Result<v1::SubscribeAllResponse, Status>>;
        fn read_stream(v1::ReadStreamRequest) -> v1::ReadStreamResponse;
        fn subscribe_all(v1::SubscribeAllRequest) -> Self::SubscribeAllStream;
    }
}

/// A message a log follower sends for one stored event; `None` skips the event.
pub(crate) type EventMessage<M> =
    Box<dyn Fn(&RecordedEvent) -> Option<Result<M, Status>> + Send + Sync>;

/// Follows the log from `from_position` for one subscriber: what `SubscribeAll` and
/// `EscalationService.WatchEscalations` both stream. `message` turns each event into the
/// subscriber's message (or skips it); `caught_up` is sent once, when the catch-up is done.
pub(crate) fn follow_log<M: Send + 'static>(
    store: Arc<dyn EventStore>,
    from_position: u64,
    shutdown: watch::Receiver<bool>,
    message: EventMessage<M>,
    caught_up: fn(u64) -> M,
) -> ReceiverStream<Result<M, Status>> {
    let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
    let subscription = Subscription {
        store,
        next_position: from_position.max(1),
        sender,
        shutdown,
        message,
        caught_up,
    };
    tokio::spawn(subscription.run());
    ReceiverStream::new(receiver)
}

/// One subscriber's reader: catches up from the log, then waits for commits and reads on.
/// It always reads the log by position, so there is no separate live buffer and nothing can be
/// skipped or delivered twice when it switches from catching up to live.
struct Subscription<M> {
    store: Arc<dyn EventStore>,
    next_position: u64,
    sender: mpsc::Sender<Result<M, Status>>,
    shutdown: watch::Receiver<bool>,
    message: EventMessage<M>,
    caught_up: fn(u64) -> M,
}

impl<M: Send + 'static> Subscription<M> {
    async fn run(mut self) {
        let mut head = self.store.watch_head();
        let mut caught_up_sent = false;
        loop {
            if *self.shutdown.borrow() {
                let _ = self.sender.send(Err(ApiError::Unavailable.into())).await;
                return;
            }
            let batch = match self
                .store
                .read_all(self.next_position, SUBSCRIPTION_READ_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = self.sender.send(Err(ApiError::from(error).into())).await;
                    return;
                }
            };
            for event in &batch {
                self.next_position = event.position + 1;
                let Some(message) = (self.message)(event) else {
                    continue;
                };
                // Waiting here is the back-pressure: a slow subscriber holds only its buffer.
                if self.sender.send(message).await.is_err() {
                    return;
                }
            }
            if batch.len() == SUBSCRIPTION_READ_BATCH {
                continue;
            }
            if !caught_up_sent {
                caught_up_sent = true;
                let caught_up = (self.caught_up)(self.next_position.saturating_sub(1));
                if self.sender.send(Ok(caught_up)).await.is_err() {
                    return;
                }
            }
            // Mark the current head as seen before reading again, so a commit that lands while
            // we read still wakes us.
            head.borrow_and_update();
            if *head.borrow() >= self.next_position {
                continue;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                _ = self.shutdown.changed() => {}
                () = self.sender.closed() => return,
            }
        }
    }
}
