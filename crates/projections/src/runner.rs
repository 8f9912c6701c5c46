//! Follows the event log and keeps the read models up to date.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::complaint::Event;
use doorstep_domain::contractor::{ContractorEvent, ContractorStatus, VisitEvent};
use doorstep_domain::stream::{Category, id_in};
use doorstep_store::{EventStore, RecordedEvent};
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// How many of a batch's appending calls its span links to.
const MAX_LINKS_PER_BATCH: usize = 64;

use crate::batch::BatchChanges;
use crate::complaint_list::{self, ComplaintFilter, ComplaintRow, PageCursor};
use crate::contractors::{self, ContractorCursor, ContractorRow};
use crate::database::ReadModelDatabase;
use crate::escalations::{
    self, DueEscalation, EscalationBatch, EscalationFilter, EscalationPlanner, EscalationRow,
};
use crate::handling::{self, HandlingCounts, HandlingRow};
use crate::handling_counters;
use crate::month::Month;
use crate::outbox::{self, Delivery};
use crate::performance::{self, ContractorFigures, ContractorTotals};
use crate::{ProjectionError, UnreadableRow};

/// The name of the checkpoint every read model shares. It kept the name of the first read model
/// so that existing databases keep their checkpoint row.
const COMPLAINT_LIST: &str = "complaint_list";
/// Empties every read-model table and the checkpoint: what a reset runs, in one transaction.
const RESET: [&str; 13] = [
    "DELETE FROM complaint_list",
    "DELETE FROM contractors",
    "DELETE FROM contractor_lookup",
    "DELETE FROM visits",
    "DELETE FROM contractor_month_visits",
    "DELETE FROM contractor_month_standard",
    "DELETE FROM complaint_findings",
    "DELETE FROM complaint_handling",
    "DELETE FROM handling_counters",
    "DELETE FROM escalation_clocks",
    "DELETE FROM escalation_schedule",
    "DELETE FROM escalations",
    "DELETE FROM projection_checkpoints",
];
/// Events applied per transaction, catching up or following the live log. (SQLite read models
/// live in a file of their own, so a long batch holds no lock the event writer needs.)
const BATCH_SIZE: usize = 500;
/// Pause after a failed batch before trying again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// The event the read models are stuck at: one they cannot apply (this build cannot decode it,
/// or a read-model row it needs cannot be read). They stay stuck until the runner gets past it,
/// because skipping it would advance the checkpoint every replica shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub stream_id: String,
    pub reason: String,
}

impl Stall {
    fn at(recorded: &RecordedEvent, error: &ProjectionError) -> Self {
        Self {
            position: recorded.position,
            event_id: recorded.event_id,
            event_type: recorded.event_type.clone(),
            stream_id: recorded.stream_id.as_str().to_owned(),
            reason: crate::error_chain(error),
        }
    }
}

/// Whether retrying cannot help: the same event meets the same failure every time.
fn cannot_apply(error: &ProjectionError) -> bool {
    matches!(
        error,
        ProjectionError::UndecodableEvent { .. }
            | ProjectionError::CorruptRow { .. }
            | ProjectionError::CorruptRecord { .. }
    )
}

/// Applies new events to the read models, one transaction per batch with its checkpoint.
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    database: ReadModelDatabase,
    /// Counts the working days behind the handling counters; a changed calendar needs a
    /// rebuild to recount them.
    calendar: Arc<WorkingDayCalendar>,
    position: watch::Sender<u64>,
    stall: watch::Sender<Option<Stall>>,
    escalations: Arc<EscalationPlanner>,
}

/// The query side of the read models, with the position they have reached.
#[derive(Clone)]
pub struct ReadModel {
    database: ReadModelDatabase,
    position: watch::Receiver<u64>,
    stall: watch::Receiver<Option<Stall>>,
}

impl ProjectionRunner {
    /// Loads the checkpoint of the read models in `database`.
    pub async fn open(
        store: Arc<dyn EventStore>,
        database: ReadModelDatabase,
        calendar: Arc<WorkingDayCalendar>,
    ) -> Result<(Self, ReadModel), ProjectionError> {
        let checkpoint = load_checkpoint(&database).await?;
        let (position, receiver) = watch::channel(checkpoint);
        let (stall, stall_receiver) = watch::channel(None);
        let read_model = ReadModel {
            database: database.clone(),
            position: receiver,
            stall: stall_receiver,
        };
        Ok((
            Self {
                store,
                database,
                calendar,
                position,
                stall,
                escalations: Arc::new(EscalationPlanner::default()),
            },
            read_model,
        ))
    }

    /// Schedules escalations with `planner` (the policy and calendar in force, and where
    /// deliveries go) instead of the default policy, which tells nobody.
    pub fn with_escalations(mut self, planner: EscalationPlanner) -> Self {
        self.escalations = Arc::new(planner);
        self
    }

    /// Empties every read model and its checkpoint, so the next run replays from position 0.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut transaction = self.database.pool().begin().await?;
        for statement in RESET {
            sqlx::query(statement).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        self.position.send_replace(0);
        Ok(())
    }

    /// Applies every event up to the head of the log, then returns the position reached.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_reporting(|_, _| {}).await
    }

    /// As [`ProjectionRunner::catch_up`], telling `progress` after every batch how many events it
    /// applied and the position reached.
    pub async fn catch_up_reporting(
        &self,
        mut progress: impl FnMut(usize, u64),
    ) -> Result<u64, ProjectionError> {
        loop {
            let applied = self.apply_next_batch(BATCH_SIZE).await?;
            let position = *self.position.borrow();
            if applied == 0 {
                return Ok(position);
            }
            progress(applied, position);
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
                match self.apply_next_batch(BATCH_SIZE).await {
                    Ok(0) => {
                        self.moved_on();
                        tokio::select! {
                            changed = head.changed() => if changed.is_err() { return },
                            _ = shutdown.changed() => {}
                        }
                    }
                    Ok(_) => self.moved_on(),
                    Err(ProjectionError::Stuck {
                        stall,
                        applicable,
                        source,
                    }) => {
                        // The events before the stuck one are applied, so the read models
                        // stop exactly at it.
                        if applicable > 0
                            && let Err(error) = self.apply_next_batch(applicable).await
                        {
                            tracing::warn!(error = ?error, "cannot apply the events before a stuck one");
                        }
                        self.stuck(stall, &source);
                        tokio::select! {
                            () = tokio::time::sleep(RETRY_DELAY) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
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

    /// Records that the read models are stuck at `stall`, logging it at error when it is new.
    fn stuck(&self, stall: Stall, error: &ProjectionError) {
        let already = self.stall.borrow().as_ref() == Some(&stall);
        if already {
            tracing::debug!(position = stall.position, "the read models are still stuck");
            return;
        }
        tracing::error!(
            position = stall.position,
            event_id = %stall.event_id,
            event_type = stall.event_type,
            stream_id = stall.stream_id,
            error = ?error,
            "the read models are stuck at an event they cannot apply: they stop here (health \
             `read_models` is NOT_SERVING) and retry until they get past it"
        );
        self.stall.send_replace(Some(stall));
    }

    /// The read models got past the event they were stuck at, if any.
    fn moved_on(&self) {
        if let Some(stall) = self.stall.send_replace(None) {
            tracing::info!(
                position = stall.position,
                event_id = %stall.event_id,
                "the read models got past the event they were stuck at"
            );
        }
    }

    async fn apply_next_batch(&self, limit: usize) -> Result<usize, ProjectionError> {
        let checkpoint = *self.position.borrow();
        let events = self.store.read_all(checkpoint + 1, limit).await?;
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(0);
        };
        let span = tracing::info_span!(
            "projection.batch",
            events = events.len(),
            from_position = checkpoint + 1,
            to_position = last,
            trace_id = tracing::field::Empty,
        );
        doorstep_telemetry::record_trace_id(&span);
        // The batch points back at the calls that appended its events (a few dozen at most).
        let mut linked = std::collections::HashSet::new();
        for metadata in events.iter().map(|event| &event.metadata) {
            if let (Some(trace_id), Some(span_id)) = (&metadata.trace_id, &metadata.span_id)
                && linked.len() < MAX_LINKS_PER_BATCH
                && linked.insert(span_id.as_str())
            {
                doorstep_telemetry::link_to(&span, trace_id, span_id);
            }
        }
        self.apply_batch(checkpoint, &events, last)
            .instrument(span)
            .await
    }

    async fn apply_batch(
        &self,
        checkpoint: u64,
        events: &[RecordedEvent],
        last: u64,
    ) -> Result<usize, ProjectionError> {
        let mut transaction = self.database.pool().begin().await?;
        // Replicas on one PostgreSQL database share these tables: the batch applies only if the
        // stored checkpoint is still the one these events were read after. Otherwise another
        // runner got there first, and this one takes up from where that one left off.
        let stored = claim_checkpoint(&mut transaction, self.database.backend()).await?;
        if stored != checkpoint {
            transaction.rollback().await?;
            self.position.send_replace(stored);
            tracing::debug!(
                stored,
                checkpoint,
                "another runner moved the checkpoint; following it"
            );
            return Ok(usize::from(stored > checkpoint));
        }
        let mut changes = BatchChanges::default();
        let mut escalation_changes = EscalationBatch::default();
        let visit_ids: Vec<&str> = events
            .iter()
            .filter_map(|recorded| recorded.stream_id.as_str().strip_prefix("visit-"))
            .collect();
        changes
            .prefetch_visits(&mut transaction, &visit_ids)
            .await?;
        for (index, recorded) in events.iter().enumerate() {
            let applied = apply_event(
                &mut transaction,
                &mut changes,
                &mut escalation_changes,
                &self.escalations,
                recorded,
            )
            .await;
            match applied {
                Ok(()) => {}
                Err(error) if cannot_apply(&error) => {
                    return Err(ProjectionError::Stuck {
                        stall: Stall::at(recorded, &error),
                        applicable: index,
                        source: Box::new(error),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        changes.flush(&mut transaction, &self.calendar).await?;
        escalation_changes.flush(&mut transaction).await?;
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

/// Reads the stored checkpoint inside the batch transaction, locking it on PostgreSQL so that two
/// runners cannot both apply the batch after it. (SQLite has one writer at a time already.)
async fn claim_checkpoint(
    connection: &mut AnyConnection,
    backend: crate::database::Backend,
) -> Result<u64, ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0) \
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(COMPLAINT_LIST)
    .execute(&mut *connection)
    .await?;
    let select = match backend {
        crate::database::Backend::Postgres => {
            "SELECT position FROM projection_checkpoints WHERE projection = $1 FOR UPDATE"
        }
        crate::database::Backend::Sqlite => {
            "SELECT position FROM projection_checkpoints WHERE projection = $1"
        }
    };
    let position: i64 = sqlx::query_scalar(select)
        .bind(COMPLAINT_LIST)
        .fetch_one(&mut *connection)
        .await?;
    Ok(u64::try_from(position).unwrap_or(0))
}

/// Applies one event to every read model its stream category feeds.
async fn apply_event(
    connection: &mut AnyConnection,
    changes: &mut BatchChanges,
    escalation_changes: &mut EscalationBatch,
    escalations: &EscalationPlanner,
    recorded: &RecordedEvent,
) -> Result<(), ProjectionError> {
    match recorded.stream_id.category() {
        "complaint" => {
            let event = decode(recorded, Event::from_payload)?;
            let complaint_id = stream_id(recorded, Category::Complaint)?;
            escalations::apply(
                connection,
                escalation_changes,
                escalations,
                complaint_id,
                &event,
                recorded,
            )
            .await?;
            apply_complaint_event(connection, changes, complaint_id, &event, recorded).await
        }
        "contractor" => {
            let event = decode(recorded, ContractorEvent::from_payload)?;
            let contractor_id = stream_id(recorded, Category::Contractor)?;
            let current = contractors::load(connection, contractor_id).await?;
            match contractors::next_row(current, contractor_id, &event, recorded.version) {
                Some(row) => contractors::store(connection, &row, recorded.position).await,
                None => Ok(()),
            }
        }
        "visit" => match decode(recorded, VisitEvent::from_payload)? {
            VisitEvent::VisitRecorded { visit } => {
                performance::record_visit(connection, changes, &visit).await
            }
        },
        _ => Ok(()),
    }
}

/// Decodes a stored event. An event this build cannot read stops the read models at it (the
/// runner reports a [`Stall`], logged once, and retries) rather than being skipped: skipping
/// would advance the checkpoint that every replica shares, so a newer event met by an older
/// replica during a rolling upgrade would be lost from the read models for good.
fn decode<T, E: std::fmt::Display>(
    recorded: &RecordedEvent,
    from_payload: impl FnOnce(&str, u32, &serde_json::Value) -> Result<T, E>,
) -> Result<T, ProjectionError> {
    from_payload(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    )
    .map_err(|error| ProjectionError::UndecodableEvent {
        position: recorded.position,
        reason: error.to_string(),
    })
}

async fn apply_complaint_event(
    connection: &mut AnyConnection,
    changes: &mut BatchChanges,
    complaint_id: &str,
    event: &Event,
    recorded: &RecordedEvent,
) -> Result<(), ProjectionError> {
    // A stream's first event starts its rows: each event is applied exactly once (batch and
    // checkpoint commit together), so there is nothing to load for it. Skipping the two reads
    // matters at intake, where nearly every event is a first one.
    let first_event = recorded.version == 1;
    let current = if first_event {
        None
    } else {
        changes.complaint_row(connection, complaint_id).await?
    };
    if let Some(row) = complaint_list::next_row(current, event, recorded.version) {
        changes.put_complaint_row(row, recorded.position);
    }

    let current = if first_event {
        None
    } else {
        changes.handling_row(connection, complaint_id).await?
    };
    let newly_received = current.is_none();
    let Some(row) = handling::next_row(current, event, recorded.version) else {
        return Ok(());
    };
    match event {
        Event::ComplaintReceived { standards, .. } if newly_received => {
            performance::record_allegations(changes, &row, standards);
        }
        Event::FindingsRecorded { findings, .. } => {
            performance::record_findings(connection, changes, &row, findings).await?;
        }
        _ => {}
    }
    changes.put_handling_row(row);
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

    /// The event the read models are stuck at, if they are.
    pub fn stalled(&self) -> Option<Stall> {
        self.stall.borrow().clone()
    }

    /// Follows [`ReadModel::stalled`].
    pub fn watch_stall(&self) -> watch::Receiver<Option<Stall>> {
        self.stall.clone()
    }

    /// Waits until the read models have reached `position`, for at most `timeout`.
    /// Returns whether they did.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut receiver = self.position.clone();
        tokio::time::timeout(timeout, receiver.wait_for(|reached| *reached >= position))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// Complaints not closed or withdrawn, by status and stage, for the open-complaints gauge.
    pub async fn open_complaint_counts(
        &self,
    ) -> Result<Vec<(doorstep_domain::complaint::Status, u32, u64)>, ProjectionError> {
        complaint_list::open_counts(self.database.pool()).await
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

    /// One contractor from the registry.
    pub async fn contractor(
        &self,
        contractor_id: &str,
    ) -> Result<Option<ContractorRow>, ProjectionError> {
        contractors::get(self.database.pool(), contractor_id).await
    }

    /// One page of the registry in contractor id order, optionally only one status.
    pub async fn list_contractors(
        &self,
        status: Option<ContractorStatus>,
        page_size: u32,
        after: Option<&ContractorCursor>,
    ) -> Result<(Vec<ContractorRow>, Option<ContractorCursor>), ProjectionError> {
        contractors::list(self.database.pool(), status, page_size, after).await
    }

    /// Contractors whose legal name or a trading name (case, spacing and punctuation aside) or
    /// phone number (digits only) is `query`, in contractor id order. Empty: nobody by that name
    /// or number is registered.
    pub async fn verify_contractor(
        &self,
        query: &str,
    ) -> Result<Vec<ContractorRow>, ProjectionError> {
        contractors::verify(self.database.pool(), query).await
    }

    /// One contractor's figures for the months `from..=to`.
    pub async fn contractor_performance(
        &self,
        contractor_id: &str,
        from: Month,
        to: Month,
    ) -> Result<ContractorFigures, ProjectionError> {
        performance::contractor_performance(self.database.pool(), contractor_id, from, to).await
    }

    /// Every registered contractor, and every other contractor with visits or complaints in
    /// `from..=to`, with its totals for those months, in contractor id order.
    pub async fn programme_performance(
        &self,
        from: Month,
        to: Month,
    ) -> Result<Vec<ContractorTotals>, ProjectionError> {
        performance::programme_performance(self.database.pool(), from, to).await
    }

    /// Ladder steps whose time has come at `now`, earliest first; an unreadable one is an
    /// error (the scheduler uses [`ReadModel::due_escalation_rows`] and sets those aside).
    pub async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, ProjectionError> {
        self.due_escalation_rows(now, limit)
            .await?
            .into_iter()
            .map(|row| row.map_err(UnreadableRow::into_error))
            .collect()
    }

    /// Ladder steps whose time has come at `now`, earliest first, each read or found
    /// unreadable. Rows set aside are not due.
    pub async fn due_escalation_rows(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Result<DueEscalation, UnreadableRow>>, ProjectionError> {
        escalations::due(self.database.pool(), now, limit).await
    }

    /// Sets an unreadable schedule row aside with `reason`, so it is no longer due. False when
    /// it was set aside already (by another scheduler) or has gone.
    pub async fn set_aside_escalation(
        &self,
        key: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        escalations::set_aside(self.database.pool(), key, reason, now).await
    }

    /// The schedule rows set aside: key, reason and when, oldest first.
    pub async fn set_aside_escalations(
        &self,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, ProjectionError> {
        escalations::set_aside_rows(self.database.pool()).await
    }

    /// One page of raised escalations in the order raised, after log position `after`.
    pub async fn list_escalations(
        &self,
        filter: &EscalationFilter,
        page_size: u32,
        after: u64,
    ) -> Result<Vec<EscalationRow>, ProjectionError> {
        escalations::list(self.database.pool(), filter, page_size, after).await
    }

    pub async fn escalation(
        &self,
        escalation_id: uuid::Uuid,
    ) -> Result<Option<EscalationRow>, ProjectionError> {
        escalations::get(self.database.pool(), escalation_id).await
    }

    /// Claims pending deliveries due at `now` for `lease`, so no other worker sends them while
    /// this one tries. An unreadable one is an error (the worker uses
    /// [`ReadModel::claim_due_delivery_rows`] and sets those aside).
    pub async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>, ProjectionError> {
        self.claim_due_delivery_rows(now, lease, limit)
            .await?
            .into_iter()
            .map(|row| row.map_err(UnreadableRow::into_error))
            .collect()
    }

    /// As [`ReadModel::claim_due_deliveries`], returning each row that cannot be read, unclaimed,
    /// beside those claimed.
    pub async fn claim_due_delivery_rows(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
        outbox::claim_due(self.database.pool(), now, lease, limit).await
    }

    /// Sets an unreadable pending delivery aside with `reason`: it is never claimed again.
    /// False when it was not pending (another worker set it aside first).
    pub async fn set_aside_delivery(
        &self,
        key: &str,
        reason: &str,
    ) -> Result<bool, ProjectionError> {
        outbox::set_aside(self.database.pool(), key, reason).await
    }

    pub async fn mark_delivered(
        &self,
        delivery_id: uuid::Uuid,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        outbox::mark_delivered(self.database.pool(), delivery_id, attempts, now).await
    }

    /// Records a failed try: tried again at `next_attempt_at`, or dead-lettered when `None`.
    pub async fn mark_failed(
        &self,
        delivery_id: uuid::Uuid,
        attempts: u32,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), ProjectionError> {
        outbox::mark_failed(
            self.database.pool(),
            delivery_id,
            attempts,
            error,
            next_attempt_at,
        )
        .await
    }

    /// Dead-lettered deliveries, oldest first, after (created_at, delivery_id).
    pub async fn dead_letters(
        &self,
        page_size: u32,
        after: Option<(DateTime<Utc>, uuid::Uuid)>,
    ) -> Result<Vec<Delivery>, ProjectionError> {
        outbox::dead_letters(self.database.pool(), page_size, after).await
    }

    /// A delivery's state (`PENDING`, `DELIVERED`, `DEAD`, `SET_ASIDE`), if it exists.
    pub async fn delivery_state(
        &self,
        delivery_id: uuid::Uuid,
    ) -> Result<Option<String>, ProjectionError> {
        outbox::state(self.database.pool(), delivery_id).await
    }

    /// Queues a dead-lettered delivery again; false when it is not dead-lettered.
    pub async fn retry_dead_letter(
        &self,
        delivery_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        outbox::retry_dead(self.database.pool(), delivery_id, now).await
    }

    /// Each stage's received and responded counts for the months `from..=to` (in England): CH01
    /// and CH02 for a reporting year are this over April to March.
    pub async fn handling_report(
        &self,
        from: Month,
        to: Month,
    ) -> Result<HandlingCounts, ProjectionError> {
        handling_counters::report(self.database.pool(), from, to).await
    }

    /// One complaint's handling row: its stage clocks as the read model holds them.
    pub async fn complaint_handling(
        &self,
        complaint_id: &str,
    ) -> Result<Option<HandlingRow>, ProjectionError> {
        let mut connection = self.database.pool().acquire().await?;
        handling::load(&mut connection, complaint_id).await
    }
}

/// The id in an event's stream name; a corrupt name stops the read models at the event rather
/// than filing it under an empty id.
fn stream_id(recorded: &RecordedEvent, category: Category) -> Result<&str, ProjectionError> {
    id_in(recorded.stream_id.as_str(), category).map_err(|error| {
        ProjectionError::UndecodableEvent {
            position: recorded.position,
            reason: error.to_string(),
        }
    })
}
