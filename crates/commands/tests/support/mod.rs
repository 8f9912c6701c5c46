//! A small in-memory `EventStore` with the guarantees the conformance suite holds every backend
//! to (idempotent event ids, expected versions, gap-free positions), plus a way to let another
//! writer in just before the next appends.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use doorstep_store::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId,
};
use uuid::Uuid;

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    by_id: HashMap<Uuid, usize>,
    versions: HashMap<String, u64>,
}

#[derive(Default)]
pub struct MemoryStore {
    log: Mutex<Log>,
    /// Events another writer appends just before each of the next appends, one per append.
    interlopers: Mutex<Vec<(StreamId, NewEvent)>>,
    pub closed: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    /// Has another writer append `event` to `stream` just before the next append.
    pub fn let_in_before_next_append(&self, stream: StreamId, event: NewEvent) {
        if let Ok(mut interlopers) = self.interlopers.lock() {
            interlopers.push((stream, event));
        }
    }

    fn select(
        &self,
        limit: usize,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().map_err(|_| StoreError::Closed)?;
        Ok(log
            .events
            .iter()
            .filter(|event| keep(event))
            .take(limit)
            .cloned()
            .collect())
    }

    pub fn len(&self) -> usize {
        self.log.lock().map_or(0, |log| log.events.len())
    }
}

fn same(stored: &RecordedEvent, stream: &StreamId, event: &NewEvent) -> bool {
    stored.stream_id == *stream
        && stored.event_type == event.event_type
        && stored.schema_version == event.schema_version
        && stored.payload == event.payload
}

impl Log {
    fn append(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let stored: Vec<Option<&RecordedEvent>> = events
            .iter()
            .map(|event| self.by_id.get(&event.event_id).map(|&i| &self.events[i]))
            .collect();
        if stored.iter().any(Option::is_some) {
            let all_same = stored
                .iter()
                .zip(&events)
                .all(|(stored, event)| stored.is_some_and(|stored| same(stored, stream, event)));
            return match (all_same, stored.last()) {
                (true, Some(Some(last))) => Ok(AppendOutcome {
                    version: last.version,
                    position: last.position,
                    already_stored: true,
                }),
                _ => Err(StoreError::DuplicateEventId {
                    event_id: events[0].event_id,
                }),
            };
        }
        let actual = self.versions.get(stream.as_str()).copied().unwrap_or(0);
        let matches = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(version) => actual == version,
        };
        if !matches {
            return Err(StoreError::VersionConflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let mut version = actual;
        for event in events {
            version += 1;
            let position = self.events.len() as u64 + 1;
            self.by_id.insert(event.event_id, self.events.len());
            self.events.push(RecordedEvent {
                position,
                stream_id: stream.clone(),
                version,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: chrono::Utc::now(),
            });
        }
        self.versions.insert(stream.as_str().to_owned(), version);
        Ok(AppendOutcome {
            version,
            position: self.events.len() as u64,
            already_stored: false,
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let interloper = self.interlopers.lock().ok().and_then(|mut all| all.pop());
        let mut log = self.log.lock().map_err(|_| StoreError::Closed)?;
        if let Some((other_stream, event)) = interloper {
            log.append(&other_stream, ExpectedVersion::Any, vec![event])?;
        }
        log.append(stream, expected, events)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.select(limit, |event| {
            event.stream_id == *stream && event.version >= from_version
        })
    }

    async fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.select(limit, |event| event.position >= from_position)
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let log = self.log.lock().map_err(|_| StoreError::Closed)?;
        Ok(log.by_id.get(&event_id).map(|&i| log.events[i].clone()))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.len() as u64)
    }

    async fn count_after(&self, position: u64) -> Result<u64, StoreError> {
        Ok((self.len() as u64).saturating_sub(position))
    }

    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(self.len() as u64).1
    }
}
