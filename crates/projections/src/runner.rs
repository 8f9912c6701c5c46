//! Follows the event log and keeps the read models up to date.

use std::sync::Arc;
use std::time::Duration;

use doorstep_domain::complaint::Event;
use doorstep_domain::contractor::{ContractorEvent, VisitEvent};
use doorstep_domain::inspection::InspectionEvent;
use doorstep_domain::stream::{Category, id_in};
use doorstep_domain::{StoredPayload, WorkingDayCalendar};
use doorstep_store::{EventHeader, EventStore, RecordedEvent};
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// How many of a batch's appending calls its span links to.
const MAX_LINKS_PER_BATCH: usize = 64;

use crate::ProjectionError;
use crate::batch::BatchChanges;
use crate::complaint_list;
use crate::contractors;
use crate::database::ReadModelDatabase;
use crate::escalation_planner::EscalationPlanner;
use crate::escalation_schedule::EscalationBatch;
use crate::escalations;
use crate::handling;
use crate::inspections::{self, FindingLadder};
use crate::outbox;
use crate::performance_changes;
use crate::read_model::ReadModel;
use crate::stall::Stall;
use crate::written_visits::WrittenVisits;

/// The name of the checkpoint every read model shares. It kept the name of the first read model
/// so that existing databases keep their checkpoint row.
const COMPLAINT_LIST: &str = "complaint_list";
/// Empties every read-model table and the checkpoint: what a reset runs, in one transaction.
pub(crate) const RESET: [&str; 20] = [
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
    "DELETE FROM inspections",
    "DELETE FROM inspection_month",
    "DELETE FROM inspection_month_standard",
    "DELETE FROM finding_schedule",
    "DELETE FROM finding_escalations",
    "DELETE FROM liaison_handling_counters",
    "DELETE FROM liaison_contractor_months",
    "DELETE FROM projection_checkpoints",
];
/// The tables [`RESET`] empties: every read model and the shared checkpoint.
pub(crate) fn derived_tables() -> impl Iterator<Item = &'static str> {
    RESET
        .iter()
        .filter_map(|statement| statement.strip_prefix("DELETE FROM "))
}
/// Events applied per transaction following the live log. (SQLite read models live in a file of
/// their own, so a long batch holds no lock the event writer needs.)
const BATCH_SIZE: usize = 500;
/// Events applied per transaction by [`ProjectionRunner::catch_up`] (a rebuild, or a start far
/// behind the head). Each batch reads every row it changes at most once and writes it once, so
/// the larger the batch the fewer reads and writes per event (a complaint's events, a counter's
/// many deltas, fall in one batch); the batch is held in memory, a few kB per event, so this
/// bounds the memory a catch-up takes whatever the log's size.
const CATCH_UP_BATCH_SIZE: usize = 25_000;
/// The page cache of the connection catching up on SQLite, in KiB (256 MiB), instead of
/// [`crate::database::SQLITE_CACHE`]'s.
const CATCH_UP_CACHE: &str = "PRAGMA cache_size = -262144";
/// How long the live runner lets events gather after a batch smaller than [`BATCH_SIZE`]. Under
/// steady intake this makes batches several times larger: a batch costs a commit
/// and a write of every page it touches whatever its size, so fewer, larger batches cost less
/// per event. The first event after a quiet spell is applied at once; read models lag the log
/// by at most this much more while it is busy.
const LIVE_GATHER: Duration = Duration::from_millis(10);
/// Pause after a failed batch before trying again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

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
    findings: Arc<FindingLadder>,
    /// Events per transaction while catching up.
    catch_up_batch_size: usize,
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
        let read_model = ReadModel::new(database.clone(), receiver, stall_receiver);
        Ok((
            Self {
                store,
                database,
                calendar,
                position,
                stall,
                escalations: Arc::new(EscalationPlanner::default()),
                findings: Arc::new(FindingLadder::default()),
                catch_up_batch_size: CATCH_UP_BATCH_SIZE,
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

    /// Schedules unresolved inspection findings up `ladder` (without it, none escalates).
    pub fn with_finding_ladder(mut self, ladder: FindingLadder) -> Self {
        self.findings = Arc::new(ladder);
        self
    }

    /// Catches up `events` events per transaction (at least one) instead of
    /// [`CATCH_UP_BATCH_SIZE`]: the read models must not depend on it, which tests check by
    /// rebuilding one event per batch.
    pub fn with_catch_up_batch_size(mut self, events: usize) -> Self {
        self.catch_up_batch_size = events.max(1);
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
    ///
    /// The next batch is read (and its rows decoded, on another thread) while this one is
    /// applied, so reading the log overlaps writing the read models. At most two batches are in
    /// memory at once, beside the one before them while it is freed.
    pub async fn catch_up_reporting(
        &self,
        progress: impl FnMut(usize, u64),
    ) -> Result<u64, ProjectionError> {
        // One connection for the whole catch-up. On SQLite its commits skip the fsync of WAL
        // checkpoints while it runs (`synchronous = OFF`: with WAL a crashed process cannot leave
        // the file corrupt, and a batch lost to a power cut is applied again from the log), and
        // at the end the WAL is checkpointed with fsync before the connection goes back.
        let mut connection = self.database.pool().acquire().await?;
        let sqlite = self.database.backend() == crate::database::Backend::Sqlite;
        if sqlite {
            sqlx::query("PRAGMA synchronous = OFF")
                .execute(&mut *connection)
                .await?;
            // A catch-up touches every page of the read models, and a rebuild's grow past the
            // usual 64 MiB page cache (about 900 MB at ten million events): a larger cache
            // while it runs spares re-reading them from the OS.
            sqlx::query(CATCH_UP_CACHE)
                .execute(&mut *connection)
                .await?;
            // Each batch commits its changed pages to the WAL, and SQLite copies the WAL into the
            // file every 1,000 pages by default: every few batches, so the pages most batches
            // change (counters, the tops of the trees) were copied again and again. Copying
            // every 100,000 pages (about 400 MB of WAL at most) copies each of them once in
            // many batches.
            sqlx::query("PRAGMA wal_autocheckpoint = 100000")
                .execute(&mut *connection)
                .await?;
        }
        let caught_up = self.catch_up_on(&mut connection, progress).await;
        if sqlite {
            let restored = async {
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *connection)
                    .await?;
                sqlx::query(crate::database::SQLITE_CACHE)
                    .execute(&mut *connection)
                    .await?;
                sqlx::query("PRAGMA wal_autocheckpoint = 1000")
                    .execute(&mut *connection)
                    .await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut *connection)
                    .await?;
                Ok::<(), ProjectionError>(())
            }
            .await;
            if let Err(error) = restored {
                // Never lend out a connection that may still skip fsyncs.
                connection.close_on_drop();
                return caught_up.and(Err(error));
            }
        }
        caught_up
    }

    async fn catch_up_on(
        &self,
        connection: &mut AnyConnection,
        mut progress: impl FnMut(usize, u64),
    ) -> Result<u64, ProjectionError> {
        let limit = self.catch_up_batch_size;
        let mut read_ahead: Option<ReadAhead> = None;
        let mut written_visits = self.written_visits_from_empty(connection).await?;
        loop {
            let checkpoint = *self.position.borrow();
            let events = match read_ahead.take() {
                // Another runner may have moved the checkpoint since the read began (a read
                // ahead that is not used is dropped, which stops it).
                Some(ahead) if ahead.from == checkpoint + 1 => ahead.events().await?,
                _ => decode_all(self.store.read_all_bulk(checkpoint + 1, limit).await?),
            };
            let Some(last) = events.last().map(|event| event.recorded.position) else {
                return Ok(checkpoint);
            };
            if events.len() == limit {
                read_ahead = Some(ReadAhead::start(Arc::clone(&self.store), last + 1, limit));
            }
            let applied = self
                .apply_read_batch(
                    &mut *connection,
                    checkpoint,
                    &events,
                    last,
                    &mut written_visits,
                )
                .await?;
            // Freeing a batch of decoded events is work of its own: not on the applying task.
            tokio::task::spawn_blocking(move || drop(events));
            if applied == 0 {
                return Ok(*self.position.borrow());
            }
            progress(applied, *self.position.borrow());
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
                    Ok(applied) => {
                        self.moved_on();
                        self.gather(applied, &mut shutdown).await;
                    }
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

    /// After a batch that was not full, waits [`LIVE_GATHER`] for more events, or less if
    /// `shutdown` changes; after a full one, not at all (more are waiting). The batch's size
    /// decides rather than the head: on PostgreSQL positions have gaps, so the head less the
    /// checkpoint does not count the events waiting.
    async fn gather(&self, applied: usize, shutdown: &mut watch::Receiver<bool>) {
        if applied >= BATCH_SIZE {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(LIVE_GATHER) => {}
            _ = shutdown.changed() => {}
        }
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

    /// The read models got past the event they were stuck at, if any. Nothing is woken when
    /// they were not stuck: this runs after every batch.
    fn moved_on(&self) {
        let mut cleared = None;
        self.stall.send_if_modified(|stall| {
            cleared = stall.take();
            cleared.is_some()
        });
        if let Some(stall) = cleared {
            tracing::info!(
                position = stall.position,
                event_id = %stall.event_id,
                "the read models got past the event they were stuck at"
            );
        }
    }

    async fn apply_next_batch(&self, limit: usize) -> Result<usize, ProjectionError> {
        let checkpoint = *self.position.borrow();
        let events = decode_all(self.store.read_all_bulk(checkpoint + 1, limit).await?);
        let Some(last) = events.last().map(|event| event.recorded.position) else {
            return Ok(0);
        };
        let mut connection = self.database.pool().acquire().await?;
        self.apply_read_batch(&mut connection, checkpoint, &events, last, &mut None)
            .await
    }

    /// For a catch-up that starts from empty read models (a rebuild), a record of the visit rows
    /// it writes, so that it need not look up visits it has never written; `None` otherwise.
    async fn written_visits_from_empty(
        &self,
        connection: &mut AnyConnection,
    ) -> Result<Option<WrittenVisits>, ProjectionError> {
        let checkpoint = *self.position.borrow();
        if checkpoint != 0 {
            return Ok(None);
        }
        let any_visit: Option<i64> = sqlx::query_scalar("SELECT 1 FROM visits LIMIT 1")
            .fetch_optional(&mut *connection)
            .await?;
        if any_visit.is_some() {
            return Ok(None);
        }
        let events = self.store.count_after(checkpoint).await?;
        Ok(Some(WrittenVisits::new(
            usize::try_from(events).unwrap_or(usize::MAX),
        )))
    }

    /// Applies `events`, read after `checkpoint` and ending at position `last`, in one
    /// transaction, in a span that links to the calls that appended them.
    async fn apply_read_batch(
        &self,
        connection: &mut AnyConnection,
        checkpoint: u64,
        events: &[ReadEvent],
        last: u64,
        written_visits: &mut Option<WrittenVisits>,
    ) -> Result<usize, ProjectionError> {
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
        for metadata in events.iter().map(|event| &event.recorded.metadata) {
            if let (Some(trace_id), Some(span_id)) = (&metadata.trace_id, &metadata.span_id)
                && linked.len() < MAX_LINKS_PER_BATCH
                && linked.insert(span_id.as_str())
            {
                doorstep_telemetry::link_to(&span, trace_id, span_id);
            }
        }
        self.apply_batch(connection, checkpoint, events, last, written_visits)
            .instrument(span)
            .await
    }

    async fn apply_batch(
        &self,
        connection: &mut AnyConnection,
        checkpoint: u64,
        events: &[ReadEvent],
        last: u64,
        written_visits: &mut Option<WrittenVisits>,
    ) -> Result<usize, ProjectionError> {
        let mut transaction = sqlx::Connection::begin(connection).await?;
        // Replicas on one PostgreSQL database share these tables: the batch applies only if the
        // stored checkpoint is still the one these events were read after. Otherwise another
        // runner got there first, and this one takes up from where that one left off.
        let stored = claim_checkpoint(&mut transaction).await?;
        if stored != checkpoint {
            // Another runner has written rows this one has not seen.
            *written_visits = None;
            transaction.rollback().await?;
            self.position.send_replace(stored);
            tracing::debug!(
                stored,
                checkpoint,
                "another runner moved the checkpoint; following it"
            );
            return Ok(usize::from(stored > checkpoint));
        }
        // The outbox in another SQLite file: its rows are committed apart, first.
        let outbox_apart = self.database.outbox_apart();
        if outbox_apart {
            outbox::hold_apart(&mut transaction).await?;
        }
        let mut changes = BatchChanges::default();
        let mut escalation_changes = EscalationBatch::default();
        let mut visit_ids: Vec<&str> = events
            .iter()
            .filter_map(|event| event.recorded.stream_id.as_str().strip_prefix("visit-"))
            .collect();
        if let Some(written) = written_visits {
            let (may_have_rows, have_none): (Vec<&str>, Vec<&str>) = visit_ids
                .into_iter()
                .partition(|visit_id| written.may_have_row(visit_id));
            changes.performance.assume_no_rows(&have_none);
            visit_ids = may_have_rows;
        }
        changes
            .performance
            .prefetch_visits(&mut transaction, &visit_ids)
            .await?;
        for (index, event) in events.iter().enumerate() {
            let recorded = &event.recorded;
            let applied = apply_event(
                &mut transaction,
                &mut changes,
                &mut escalation_changes,
                &self.escalations,
                &self.findings,
                event,
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
        if let Some(written) = written_visits {
            // Before the batch commits: a batch that then fails leaves ids it did not write,
            // which only costs lookups.
            for visit_id in changes.performance.changed_visit_ids() {
                written.insert(visit_id);
            }
        }
        changes.flush(&mut transaction, &self.calendar).await?;
        escalation_changes.flush(&mut transaction).await?;
        if outbox_apart {
            outbox::commit_held_apart(self.database.pool(), &mut transaction).await?;
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

/// The next batch of a catch-up, being read from the log on a task of its own, in bulk
/// ([`EventStore::read_all_bulk`]: on SQLite a JSON text per few thousand events rather than a
/// row per event), and its events decoded on that task, so that the task applying a batch does
/// nothing but apply it.
struct ReadAhead {
    /// The position the read starts at.
    from: u64,
    task: JoinHandle<Result<Vec<ReadEvent>, doorstep_store::StoreError>>,
}

impl ReadAhead {
    fn start(store: Arc<dyn EventStore>, from: u64, limit: usize) -> Self {
        let task =
            tokio::spawn(async move { Ok(decode_all(store.read_all_bulk(from, limit).await?)) });
        Self { from, task }
    }

    async fn events(mut self) -> Result<Vec<ReadEvent>, ProjectionError> {
        match (&mut self.task).await {
            Ok(read) => Ok(read?),
            Err(error) => Err(ProjectionError::ReadAhead(error.to_string())),
        }
    }
}

impl Drop for ReadAhead {
    /// A read ahead that is not used (the catch-up failed, or another runner moved the
    /// checkpoint) stops rather than reading on unseen.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the stored checkpoint inside the batch transaction, in one statement: it creates the
/// row if there is none (a new database, or after a reset) and otherwise writes it unchanged,
/// which on PostgreSQL locks it until the batch commits, so that two runners cannot both apply
/// the batch after it (a second waits, then reads the position the first committed). On SQLite
/// the write takes the file's one write lock for the transaction.
async fn claim_checkpoint(connection: &mut AnyConnection) -> Result<u64, ProjectionError> {
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0) \
         ON CONFLICT (projection) DO UPDATE SET position = projection_checkpoints.position \
         RETURNING position",
    )
    .bind(COMPLAINT_LIST)
    .fetch_one(&mut *connection)
    .await?;
    checkpoint_position(position)
}

/// A stored checkpoint: a negative one is corrupt, not the start of the log (replaying from 0
/// would count every counter twice).
fn checkpoint_position(position: i64) -> Result<u64, ProjectionError> {
    u64::try_from(position).map_err(|_| ProjectionError::CorruptRecord {
        table: "projection_checkpoints",
        key: COMPLAINT_LIST.to_owned(),
        reason: format!("negative position {position}"),
    })
}

/// An event read from the log, and what it decodes to (or why it does not).
struct ReadEvent {
    /// The event without its payload, which is decoded below.
    recorded: EventHeader,
    /// The event, or why this build cannot read it.
    decoded: Result<DecodedEvent, String>,
}

/// A stored event decoded by its stream's category; `Other` feeds no read model. A catch-up
/// holds two batches of 25,000 of these, nine in ten of them visits: the larger, rarer kinds are
/// boxed so that each takes the size of a visit rather than of a complaint's largest event.
enum DecodedEvent {
    Complaint(Box<Event>),
    Contractor(Box<ContractorEvent>),
    Visit(VisitEvent),
    Inspection(Box<InspectionEvent>),
    Other,
}

/// Decodes each event once, before its batch is applied, and lets its payload go. An event that
/// does not decode keeps its error, which stops the read models at it when its turn comes (the
/// events before it still apply) rather than being skipped: skipping would advance the
/// checkpoint that every replica shares, so a newer event met by an older replica during a
/// rolling upgrade would be lost from the read models for good. Both readers (live and
/// catching up) hand each payload on as its stored text (`read_all_bulk`), parsed straight into
/// the event; a parsed payload decodes the same.
fn decode_all<P>(events: Vec<RecordedEvent<P>>) -> Vec<ReadEvent>
where
    for<'a> &'a P: Into<StoredPayload<'a>>,
{
    events
        .into_iter()
        .map(|recorded| {
            let (event_type, version) = (recorded.event_type.as_str(), recorded.schema_version);
            let payload: StoredPayload<'_> = (&recorded.payload).into();
            let decoded = match recorded.stream_id.category() {
                "complaint" => Event::from_payload(event_type, version, payload)
                    .map(|event| DecodedEvent::Complaint(Box::new(event))),
                "contractor" => ContractorEvent::from_payload(event_type, version, payload)
                    .map(|event| DecodedEvent::Contractor(Box::new(event))),
                "visit" => {
                    VisitEvent::from_payload(event_type, version, payload).map(DecodedEvent::Visit)
                }
                "inspection" => InspectionEvent::from_payload(event_type, version, payload)
                    .map(|event| DecodedEvent::Inspection(Box::new(event))),
                _ => Ok(DecodedEvent::Other),
            }
            .map_err(|error| error.to_string());
            ReadEvent {
                recorded: recorded.map_payload(drop),
                decoded,
            }
        })
        .collect()
}

/// Applies one event to every read model its stream category feeds.
async fn apply_event(
    connection: &mut AnyConnection,
    changes: &mut BatchChanges,
    escalation_changes: &mut EscalationBatch,
    escalations: &EscalationPlanner,
    findings: &FindingLadder,
    event: &ReadEvent,
) -> Result<(), ProjectionError> {
    let recorded = &event.recorded;
    let decoded = match &event.decoded {
        Ok(decoded) => decoded,
        Err(reason) => {
            return Err(ProjectionError::UndecodableEvent {
                position: recorded.position,
                reason: reason.clone(),
            });
        }
    };
    match decoded {
        DecodedEvent::Complaint(event) => {
            let complaint_id = stream_id(recorded, Category::Complaint)?;
            let raised = escalations::apply(
                connection,
                escalation_changes,
                escalations,
                complaint_id,
                event,
                recorded,
            )
            .await?;
            // The outbox is filled in the transaction that records the escalation it delivers.
            if let Some(row) = raised {
                outbox::enqueue(connection, escalations, &row).await?;
            }
            apply_complaint_event(connection, changes, complaint_id, event, recorded).await
        }
        DecodedEvent::Contractor(event) => {
            let contractor_id = stream_id(recorded, Category::Contractor)?;
            let current = contractors::get(&mut *connection, contractor_id).await?;
            match contractors::next_row(current, contractor_id, event, recorded.version) {
                Some(row) => {
                    changes.put_liaison_lead(contractor_id, row.liaison_lead);
                    contractors::store(connection, &row, recorded.position).await
                }
                None => Ok(()),
            }
        }
        DecodedEvent::Visit(VisitEvent::VisitRecorded { visit }) => {
            performance_changes::record_visit(connection, &mut changes.performance, visit).await
        }
        DecodedEvent::Inspection(event) => {
            let inspection_id = stream_id(recorded, Category::Inspection)?;
            let raised =
                inspections::apply(connection, findings, inspection_id, event, recorded).await?;
            // As for a complaint's: the outbox is filled with the escalation it delivers.
            if let Some(raised) = raised {
                outbox::enqueue_document(
                    connection,
                    escalations,
                    raised.escalation_id,
                    &raised.recipients,
                    &inspections::finding_escalation_document(&raised),
                    raised.raised_at,
                )
                .await?;
            }
            Ok(())
        }
        DecodedEvent::Other => Ok(()),
    }
}

async fn apply_complaint_event(
    connection: &mut AnyConnection,
    changes: &mut BatchChanges,
    complaint_id: &str,
    event: &Event,
    recorded: &EventHeader,
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
    let Some(mut row) = handling::next_row(current, event, recorded.version) else {
        return Ok(());
    };
    if newly_received {
        // Attributed once, from the contractor's contracts as the log stands at intake.
        row.liaison_lead = changes.liaison_lead(connection, &row.contractor_id).await?;
    }
    match event {
        Event::ComplaintReceived { standards, .. } if newly_received => {
            performance_changes::record_allegations(&mut changes.performance, &row, standards);
        }
        Event::FindingsRecorded { findings, .. } => {
            let received_in_batch = changes.received_in_batch(complaint_id);
            performance_changes::record_findings(
                connection,
                &mut changes.performance,
                &row,
                findings,
                received_in_batch,
            )
            .await?;
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
    // No checkpoint row yet: nothing has been applied.
    position.map_or(Ok(0), checkpoint_position)
}

/// The id in an event's stream name; a corrupt name stops the read models at the event rather
/// than filing it under an empty id.
fn stream_id(recorded: &EventHeader, category: Category) -> Result<&str, ProjectionError> {
    id_in(recorded.stream_id.as_str(), category).map_err(|error| {
        ProjectionError::UndecodableEvent {
            position: recorded.position,
            reason: error.to_string(),
        }
    })
}
