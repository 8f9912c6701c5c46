//! Follows the event log and keeps the read models up to date.

use std::sync::Arc;
use std::time::Duration;

use doorstep_domain::complaint::Event;
use doorstep_store::{EventStore, RecordedEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ProjectionError;
use crate::complaint_list::{self, ComplaintFilter, ComplaintRow, PageCursor};
use crate::database::ReadModelDatabase;

/// The checkpoint name of the complaint list.
const COMPLAINT_LIST: &str = "complaint_list";
/// Events applied per transaction.
const BATCH_SIZE: usize = 500;
/// Pause after a failed batch before trying again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Applies new events to the read models, one transaction per batch with its checkpoint.
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    database: ReadModelDatabase,
    position: watch::Sender<u64>,
}

/// The query side of the read models, with the position they have reached.
#[derive(Clone)]
pub struct ReadModel {
    database: ReadModelDatabase,
    position: watch::Receiver<u64>,
}

impl ProjectionRunner {
    /// Loads the checkpoint of the read models in `database`.
    pub async fn open(
        store: Arc<dyn EventStore>,
        database: ReadModelDatabase,
    ) -> Result<(Self, ReadModel), ProjectionError> {
        let checkpoint = load_checkpoint(&database).await?;
        let (position, receiver) = watch::channel(checkpoint);
        let read_model = ReadModel {
            database: database.clone(),
            position: receiver,
        };
        Ok((
            Self {
                store,
                database,
                position,
            },
            read_model,
        ))
    }

    /// Empties every read model and its checkpoint, so the next run replays from position 0.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut transaction = self.database.pool().begin().await?;
        sqlx::query("DELETE FROM complaint_list")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM projection_checkpoints")
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        self.position.send_replace(0);
        Ok(())
    }

    /// Applies every event up to the head of the log, then returns the position reached.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        loop {
            let applied = self.apply_next_batch().await?;
            if applied == 0 {
                return Ok(*self.position.borrow());
            }
        }
    }

    /// Runs until `shutdown` turns true, waking on every commit to the log.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut head = self.store.watch_head();
            loop {
                if *shutdown.borrow() {
                    return;
                }
                match self.apply_next_batch().await {
                    Ok(0) => {
                        tokio::select! {
                            changed = head.changed() => if changed.is_err() { return },
                            _ = shutdown.changed() => {}
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(error = ?error, "projection batch failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY_DELAY) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            }
        })
    }

    async fn apply_next_batch(&self) -> Result<usize, ProjectionError> {
        let checkpoint = *self.position.borrow();
        let events = self.store.read_all(checkpoint + 1, BATCH_SIZE).await?;
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(0);
        };
        let mut transaction = self.database.pool().begin().await?;
        for recorded in &events {
            apply_event(&mut transaction, recorded).await?;
        }
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, $2) \
             ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
        )
        .bind(COMPLAINT_LIST)
        .bind(i64::try_from(last).unwrap_or(i64::MAX))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        self.position.send_replace(last);
        tracing::debug!(
            events = events.len(),
            position = last,
            "projection batch applied"
        );
        Ok(events.len())
    }
}

async fn apply_event(
    connection: &mut sqlx::AnyConnection,
    recorded: &RecordedEvent,
) -> Result<(), ProjectionError> {
    if recorded.stream_id.category() != "complaint" {
        return Ok(());
    }
    let event = match Event::from_payload(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    ) {
        Ok(event) => event,
        Err(error) => {
            // The log is the source of truth; an event this build cannot read is skipped
            // loudly rather than stopping every read model behind it.
            tracing::error!(position = recorded.position, error = %error, "skipping undecodable event");
            return Ok(());
        }
    };
    let complaint_id = recorded
        .stream_id
        .as_str()
        .strip_prefix("complaint-")
        .unwrap_or_default();
    let current = complaint_list::load(connection, complaint_id).await?;
    if let Some(row) = complaint_list::next_row(current, &event, recorded.version) {
        complaint_list::store(connection, &row, recorded.position).await?;
    }
    Ok(())
}

async fn load_checkpoint(database: &ReadModelDatabase) -> Result<u64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
            .bind(COMPLAINT_LIST)
            .fetch_optional(database.pool())
            .await?;
    Ok(position.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
}

impl ReadModel {
    /// The log position the read models have reached.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the read models have reached `position`, for at most `timeout`.
    /// Returns whether they did.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut receiver = self.position.clone();
        tokio::time::timeout(timeout, receiver.wait_for(|reached| *reached >= position))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// One page of complaints, newest first.
    pub async fn list_complaints(
        &self,
        filter: &ComplaintFilter,
        page_size: u32,
        after: Option<&PageCursor>,
    ) -> Result<(Vec<ComplaintRow>, Option<PageCursor>), ProjectionError> {
        complaint_list::list(self.database.pool(), filter, page_size, after).await
    }
}
