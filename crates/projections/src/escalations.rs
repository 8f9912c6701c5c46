//! The notifier's read models and outbox: each complaint's running clock, the schedule of ladder
//! steps not raised yet (indexed by due time), the escalations raised, and the deliveries each
//! raised escalation owes.
//!
//! The runner keeps the clock with the pure [`clock_after`] step and, whenever the clock changes,
//! replaces the complaint's schedule with the first step of the new clock's ladder not raised yet.
//! When that step is raised, the next one takes its place. One row per running clock, not one
//! per step: intake writes every complaint's schedule, and five rows each cost it about 15%.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::complaint::Event;
use doorstep_domain::escalation::{
    Deadline, EscalationLevel, EscalationPolicy, RunningClock, clock_after, end_of_england_day,
    plan,
};
use doorstep_domain::input::{ComplaintId, ContractorId};
use doorstep_store::RecordedEvent;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::database::{placeholders, row_values};
use crate::month::Month;
use crate::{ProjectionError, UnreadableRow};

/// What the runner needs to schedule escalations and fill the outbox: the ladder policy, the
/// calendar, and where deliveries go. Every replica on one database must use the same.
#[derive(Debug, Clone)]
pub struct EscalationPlanner {
    pub policy: EscalationPolicy,
    pub calendar: WorkingDayCalendar,
    /// A delivery per escalation to each of these URLs.
    pub webhook_urls: Vec<String>,
    /// A delivery per escalation to each recipient by email.
    pub email: bool,
}

impl Default for EscalationPlanner {
    fn default() -> Self {
        Self {
            policy: EscalationPolicy::default(),
            calendar: WorkingDayCalendar::england_and_wales(),
            webhook_urls: Vec::new(),
            email: false,
        }
    }
}

/// A ladder step whose time has come, as the scheduler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEscalation {
    pub escalation_id: Uuid,
    pub complaint_id: String,
    pub contractor_id: String,
    pub deadline: Deadline,
    pub level: EscalationLevel,
    pub deadline_date: NaiveDate,
    pub clock_started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// One raised escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRow {
    pub escalation_id: Uuid,
    pub complaint_id: String,
    pub contractor_id: String,
    pub deadline: Deadline,
    pub level: EscalationLevel,
    pub deadline_date: NaiveDate,
    pub clock_started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub recipients: Vec<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub position: u64,
}

/// Which escalations to list.
#[derive(Debug, Clone, Default)]
pub struct EscalationFilter {
    /// Only those nobody has acknowledged.
    pub open_only: bool,
    pub level: Option<String>,
    pub contractor_id: Option<String>,
}

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(value: i64, key: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::from_timestamp_millis(value).ok_or_else(|| corrupt(key, "time out of range"))
}

fn exact(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn corrupt(key: &str, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::CorruptRecord {
        table: "escalations",
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Rows per multi-row statement when a batch's schedule changes are written.
const ROWS_PER_STATEMENT: usize = 64;

/// A complaint's contractor and running clock, as stored in `escalation_clocks`.
type StoredClock = (String, Option<RunningClock>);

/// One row of `escalation_schedule`.
#[derive(Debug, Clone)]
struct ScheduleRow {
    escalation_id: Uuid,
    complaint_id: String,
    contractor_id: String,
    deadline: Deadline,
    level: EscalationLevel,
    deadline_date: NaiveDate,
    clock_started_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
}

/// What a complaint's schedule becomes at the end of the batch.
#[derive(Debug, Default)]
struct PendingSchedule {
    /// Delete the complaint's stored rows first (its clock changed since they were written).
    replace_stored: bool,
    /// Stored rows to delete (raised in this batch).
    remove_stored: BTreeSet<Uuid>,
    /// Rows to insert.
    insert: BTreeMap<Uuid, ScheduleRow>,
}

/// The clock and schedule changes of one projection batch, gathered in memory and written once
/// at its end: intake changes every complaint's clock and schedule, and statements per event
/// would dominate the batch. Escalations raised and acknowledged (rare) and the outbox are
/// written as each event is applied.
#[derive(Debug, Default)]
pub(crate) struct EscalationBatch {
    clocks: HashMap<String, StoredClock>,
    changed_clocks: BTreeSet<String>,
    schedules: BTreeMap<String, PendingSchedule>,
}

impl EscalationBatch {
    async fn clock(
        &self,
        connection: &mut AnyConnection,
        complaint_id: &str,
    ) -> Result<Option<StoredClock>, ProjectionError> {
        match self.clocks.get(complaint_id) {
            Some(stored) => Ok(Some(stored.clone())),
            None => load_clock(connection, complaint_id).await,
        }
    }

    fn put_clock(&mut self, complaint_id: &str, stored: StoredClock) {
        self.clocks.insert(complaint_id.to_owned(), stored);
        self.changed_clocks.insert(complaint_id.to_owned());
    }

    /// The complaint's schedule is now `rows`; `had_clock` says whether stored rows may exist.
    fn replace_schedule(&mut self, complaint_id: &str, had_clock: bool, rows: Vec<ScheduleRow>) {
        let pending = self.schedules.entry(complaint_id.to_owned()).or_default();
        pending.replace_stored |= had_clock;
        pending.insert = rows
            .into_iter()
            .map(|row| (row.escalation_id, row))
            .collect();
    }

    /// A step was raised: it leaves the schedule, and `next` (the clock's next step not raised
    /// yet, if any) takes its place.
    fn step_raised(&mut self, complaint_id: &str, escalation_id: Uuid, next: Option<ScheduleRow>) {
        let pending = self.schedules.entry(complaint_id.to_owned()).or_default();
        if pending.insert.remove(&escalation_id).is_none() {
            pending.remove_stored.insert(escalation_id);
        }
        if let Some(next) = next {
            pending.insert.insert(next.escalation_id, next);
        }
    }

    /// Writes the batch's clocks and schedule changes, inside the batch's transaction: stored
    /// rows are deleted before new ones are inserted.
    pub(crate) async fn flush(self, connection: &mut AnyConnection) -> Result<(), ProjectionError> {
        let clocks: Vec<(&String, &StoredClock)> = self
            .changed_clocks
            .iter()
            .filter_map(|id| self.clocks.get(id).map(|stored| (id, stored)))
            .collect();
        for chunk in clocks.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO escalation_clocks (complaint_id, contractor_id, deadline, \
                 deadline_date, clock_started_at) VALUES {} \
                 ON CONFLICT (complaint_id) DO UPDATE SET deadline = excluded.deadline, \
                 deadline_date = excluded.deadline_date, \
                 clock_started_at = excluded.clock_started_at",
                row_values(connection, chunk.len(), 5)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (complaint_id, (contractor_id, clock)) in chunk {
                query = query
                    .bind((*complaint_id).clone())
                    .bind(contractor_id.clone())
                    .bind(clock.as_ref().map(|clock| clock.deadline.code()))
                    .bind(clock.as_ref().map(|clock| clock.due.to_string()))
                    .bind(clock.as_ref().map(|clock| exact(clock.started_at)));
            }
            query.execute(&mut *connection).await?;
        }
        let replaced: Vec<String> = self
            .schedules
            .iter()
            .filter(|(_, pending)| pending.replace_stored)
            .map(|(complaint_id, _)| complaint_id.clone())
            .collect();
        delete_where_in(connection, "complaint_id", &replaced).await?;
        let removed: Vec<String> = self
            .schedules
            .values()
            .filter(|pending| !pending.replace_stored)
            .flat_map(|pending| pending.remove_stored.iter().map(Uuid::to_string))
            .collect();
        delete_where_in(connection, "escalation_id", &removed).await?;
        let rows: Vec<&ScheduleRow> = self
            .schedules
            .values()
            .flat_map(|pending| pending.insert.values())
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO escalation_schedule (escalation_id, complaint_id, contractor_id, \
                 deadline, level, deadline_date, clock_started_at, due_at) VALUES {} \
                 ON CONFLICT (escalation_id) DO NOTHING",
                row_values(connection, chunk.len(), 8)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.escalation_id.to_string())
                    .bind(row.complaint_id.clone())
                    .bind(row.contractor_id.clone())
                    .bind(row.deadline.code())
                    .bind(row.level.as_str().to_owned())
                    .bind(row.deadline_date.to_string())
                    .bind(exact(row.clock_started_at))
                    .bind(millis(row.due_at));
            }
            query.execute(&mut *connection).await?;
        }
        Ok(())
    }
}

/// Deletes the schedule rows whose `column` (`complaint_id` or `escalation_id`) is in `keys`.
async fn delete_where_in(
    connection: &mut AnyConnection,
    column: &'static str,
    keys: &[String],
) -> Result<(), ProjectionError> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM escalation_schedule WHERE {column} IN ({})",
            placeholders(connection, 1, chunk.len())
        );
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, key| {
                query.bind(key.clone())
            });
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

/// Applies one complaint event to the clock, the schedule, the escalations and the outbox.
pub(crate) async fn apply(
    connection: &mut AnyConnection,
    batch: &mut EscalationBatch,
    planner: &EscalationPlanner,
    complaint_id: &str,
    event: &Event,
    recorded: &RecordedEvent,
) -> Result<(), ProjectionError> {
    // A stream's first event has no clock to load: skipping the read matters at intake.
    let stored = if recorded.version == 1 {
        None
    } else {
        batch.clock(connection, complaint_id).await?
    };
    let contractor_id = match (event, &stored) {
        (Event::ComplaintReceived { contractor_id, .. }, _) => contractor_id.as_str().to_owned(),
        (_, Some((contractor_id, _))) => contractor_id.clone(),
        // Events of a complaint whose intake this model never saw (only a corrupt log has them).
        (_, None) => return Ok(()),
    };
    let current = stored.and_then(|(_, clock)| clock);
    match event {
        Event::EscalationRaised {
            escalation_id,
            contractor_id: _,
            deadline,
            level,
            deadline_date,
            clock_started_at,
            due_at,
            raised_at,
            recipients,
        } => {
            let recipients: Vec<String> = recipients
                .iter()
                .map(|address| address.as_str().to_owned())
                .collect();
            let row = EscalationRow {
                escalation_id: *escalation_id,
                complaint_id: complaint_id.to_owned(),
                contractor_id: contractor_id.clone(),
                deadline: *deadline,
                level: level.clone(),
                deadline_date: *deadline_date,
                clock_started_at: *clock_started_at,
                due_at: *due_at,
                raised_at: *raised_at,
                recipients,
                acknowledged_by: None,
                acknowledged_at: None,
                position: recorded.position,
            };
            store_escalation(connection, &row).await?;
            let next = match &current {
                Some(clock)
                    if clock.deadline == *deadline && clock.started_at == *clock_started_at =>
                {
                    next_step(connection, planner, complaint_id, &contractor_id, clock).await?
                }
                // A raise for a clock that has since stopped or moved schedules nothing more.
                _ => None,
            };
            batch.step_raised(complaint_id, *escalation_id, next);
            crate::outbox::enqueue(connection, planner, &row).await?;
        }
        Event::EscalationAcknowledged {
            escalation_id,
            acknowledged_by,
            acknowledged_at,
            ..
        } => {
            sqlx::query(
                "UPDATE escalations SET acknowledged_by = $1, acknowledged_at = $2 \
                 WHERE escalation_id = $3",
            )
            .bind(acknowledged_by.as_str())
            .bind(millis(*acknowledged_at))
            .bind(escalation_id.to_string())
            .execute(&mut *connection)
            .await?;
        }
        _ => {}
    }
    let next = clock_after(current.clone(), event);
    let is_new_complaint = matches!(event, Event::ComplaintReceived { .. });
    if next == current && !is_new_complaint {
        return Ok(());
    }
    batch.put_clock(complaint_id, (contractor_id.clone(), next.clone()));
    let Some(clock) = next else {
        batch.replace_schedule(complaint_id, current.is_some(), Vec::new());
        return Ok(());
    };
    // Only a clock that kept its start (an extension moved its deadline) can have steps raised
    // already; those stay raised and are not scheduled again. A new clock's ids are all new.
    let same_clock = current
        .as_ref()
        .is_some_and(|old| old.deadline == clock.deadline && old.started_at == clock.started_at);
    let row = if same_clock {
        next_step(connection, planner, complaint_id, &contractor_id, &clock).await?
    } else {
        first_step(planner, complaint_id, &contractor_id, &clock, &[])?
    };
    batch.replace_schedule(complaint_id, current.is_some(), row.into_iter().collect());
    Ok(())
}

/// The clock's next ladder step not raised yet (as the escalations model records them), if any.
async fn next_step(
    connection: &mut AnyConnection,
    planner: &EscalationPlanner,
    complaint_id: &str,
    contractor_id: &str,
    clock: &RunningClock,
) -> Result<Option<ScheduleRow>, ProjectionError> {
    let raised: Vec<String> =
        sqlx::query_scalar("SELECT escalation_id FROM escalations WHERE complaint_id = $1")
            .bind(complaint_id)
            .fetch_all(&mut *connection)
            .await?;
    first_step(planner, complaint_id, contractor_id, clock, &raised)
}

/// The first step of the clock's ladder whose id is not in `raised`, as a schedule row.
fn first_step(
    planner: &EscalationPlanner,
    complaint_id: &str,
    contractor_id: &str,
    clock: &RunningClock,
    raised: &[String],
) -> Result<Option<ScheduleRow>, ProjectionError> {
    let (Ok(complaint), Ok(contractor)) = (
        ComplaintId::parse("complaint_id", complaint_id),
        ContractorId::parse("contractor_id", contractor_id),
    ) else {
        return Err(corrupt(
            complaint_id,
            "complaint or contractor id is invalid",
        ));
    };
    let step = plan(
        &complaint,
        &contractor,
        clock,
        &planner.policy,
        &planner.calendar,
    )
    .into_iter()
    .find(|step| !raised.contains(&step.escalation_id.to_string()));
    Ok(step.map(|step| ScheduleRow {
        escalation_id: step.escalation_id,
        complaint_id: complaint_id.to_owned(),
        contractor_id: contractor_id.to_owned(),
        deadline: step.deadline,
        level: step.level,
        deadline_date: step.deadline_date,
        clock_started_at: step.clock_started_at,
        due_at: step.due_at,
    }))
}

async fn load_clock(
    connection: &mut AnyConnection,
    complaint_id: &str,
) -> Result<Option<StoredClock>, ProjectionError> {
    let row = sqlx::query(
        "SELECT contractor_id, deadline, deadline_date, clock_started_at \
         FROM escalation_clocks WHERE complaint_id = $1",
    )
    .bind(complaint_id)
    .fetch_optional(&mut *connection)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let contractor_id: String = row.try_get("contractor_id")?;
    let deadline: Option<String> = row.try_get("deadline")?;
    let Some(deadline) = deadline else {
        return Ok(Some((contractor_id, None)));
    };
    let deadline_date: Option<String> = row.try_get("deadline_date")?;
    let started: Option<String> = row.try_get("clock_started_at")?;
    let clock = RunningClock {
        deadline: parse_deadline(&deadline, complaint_id)?,
        due: parse_date(deadline_date.as_deref().unwrap_or_default(), complaint_id)?,
        started_at: parse_exact(started.as_deref().unwrap_or_default(), complaint_id)?,
    };
    Ok(Some((contractor_id, Some(clock))))
}

async fn store_escalation(
    connection: &mut AnyConnection,
    row: &EscalationRow,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO escalations (escalation_id, complaint_id, contractor_id, deadline, level, \
         deadline_date, clock_started_at, due_at, raised_at, raised_month, after_deadline, \
         recipients, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (escalation_id) DO NOTHING",
    )
    .bind(row.escalation_id.to_string())
    .bind(row.complaint_id.as_str())
    .bind(row.contractor_id.as_str())
    .bind(row.deadline.code())
    .bind(row.level.as_str())
    .bind(row.deadline_date.to_string())
    .bind(exact(row.clock_started_at))
    .bind(millis(row.due_at))
    .bind(millis(row.raised_at))
    .bind(Month::of(doorstep_domain::england_date(row.raised_at)).to_string())
    .bind(i64::from(
        row.due_at >= end_of_england_day(row.deadline_date),
    ))
    .bind(serde_json::Value::from(row.recipients.clone()).to_string())
    .bind(i64::try_from(row.position).unwrap_or(i64::MAX))
    .execute(connection)
    .await?;
    Ok(())
}

fn parse_deadline(code: &str, key: &str) -> Result<Deadline, ProjectionError> {
    Deadline::from_code(code).ok_or_else(|| corrupt(key, format!("unknown deadline {code}")))
}

fn parse_date(text: &str, key: &str) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| corrupt(key, format!("invalid date {text}")))
}

/// Reads a time [`exact`] wrote. RFC 3339 has four-digit years only, so a time before year 1
/// or after 9999 (which `exact` writes with a sign or a fifth digit, as chrono does) is read
/// with chrono's own year format: a row this model wrote must never be one it cannot read.
fn parse_exact(text: &str, key: &str) -> Result<DateTime<Utc>, ProjectionError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    text.strip_suffix('Z')
        .and_then(|utc| chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .map(|at| at.and_utc())
        .ok_or_else(|| corrupt(key, format!("invalid time {text}")))
}

fn parse_uuid(text: &str, key: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(text).map_err(|_| corrupt(key, format!("invalid id {text}")))
}

fn parse_level(text: &str, key: &str) -> Result<EscalationLevel, ProjectionError> {
    EscalationLevel::parse("level", text).map_err(|_| corrupt(key, format!("invalid level {text}")))
}

/// The table the schedule's rows are set aside in.
const SCHEDULE: &str = "escalation_schedule";

/// Ladder steps due at `now`, earliest first, each read or found unreadable. Rows set aside
/// are not due.
pub(crate) async fn due(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Result<DueEscalation, UnreadableRow>>, ProjectionError> {
    // The key is read as text whatever was stored in it, so that any row can be set aside.
    let rows = sqlx::query(
        "SELECT CAST(escalation_id AS TEXT) AS escalation_id, complaint_id, contractor_id, \
         deadline, level, deadline_date, clock_started_at, due_at FROM escalation_schedule \
         WHERE due_at <= $1 AND set_aside_reason IS NULL \
         ORDER BY due_at, escalation_id LIMIT $2",
    )
    .bind(millis(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut due = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("escalation_id")?;
        due.push(
            decode_due(row, &id).map_err(|error| UnreadableRow::from_error(SCHEDULE, &id, &error)),
        );
    }
    Ok(due)
}

fn decode_due(row: &AnyRow, id: &str) -> Result<DueEscalation, ProjectionError> {
    let deadline: String = row.try_get("deadline")?;
    let level: String = row.try_get("level")?;
    let date: String = row.try_get("deadline_date")?;
    let started: String = row.try_get("clock_started_at")?;
    let due = DueEscalation {
        escalation_id: parse_uuid(id, id)?,
        complaint_id: row.try_get("complaint_id")?,
        contractor_id: row.try_get("contractor_id")?,
        deadline: parse_deadline(&deadline, id)?,
        level: parse_level(&level, id)?,
        deadline_date: parse_date(&date, id)?,
        clock_started_at: parse_exact(&started, id)?,
        due_at: from_millis(row.try_get("due_at")?, id)?,
    };
    // A complaint id no complaint can have would fail every raise, round after round.
    ComplaintId::parse("complaint_id", &due.complaint_id)
        .map_err(|_| corrupt(id, format!("invalid complaint id {}", due.complaint_id)))?;
    Ok(due)
}

/// Sets a schedule row aside with `reason`, so it is no longer due. Returns false when it was
/// set aside already (by another scheduler) or has gone.
pub(crate) async fn set_aside(
    pool: &AnyPool,
    key: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, ProjectionError> {
    let result = sqlx::query(
        "UPDATE escalation_schedule SET set_aside_reason = $1, set_aside_at = $2 \
         WHERE escalation_id = $3 AND set_aside_reason IS NULL",
    )
    .bind(reason)
    .bind(millis(now))
    .bind(key)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The schedule rows set aside: key, reason and when, oldest first.
pub(crate) async fn set_aside_rows(
    pool: &AnyPool,
) -> Result<Vec<(String, String, DateTime<Utc>)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT CAST(escalation_id AS TEXT) AS escalation_id, set_aside_reason, set_aside_at \
         FROM escalation_schedule WHERE set_aside_reason IS NOT NULL \
         ORDER BY set_aside_at, escalation_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let key: String = row.try_get("escalation_id")?;
            let at = from_millis(row.try_get("set_aside_at")?, &key)?;
            Ok((key, row.try_get("set_aside_reason")?, at))
        })
        .collect()
}

const ESCALATION_COLUMNS: &str = "escalation_id, complaint_id, contractor_id, deadline, level, \
     deadline_date, clock_started_at, due_at, raised_at, recipients, acknowledged_by, \
     acknowledged_at, position";

fn decode(row: &AnyRow) -> Result<EscalationRow, ProjectionError> {
    let id: String = row.try_get("escalation_id")?;
    let deadline: String = row.try_get("deadline")?;
    let level: String = row.try_get("level")?;
    let date: String = row.try_get("deadline_date")?;
    let started: String = row.try_get("clock_started_at")?;
    let recipients: String = row.try_get("recipients")?;
    let acknowledged_at: Option<i64> = row.try_get("acknowledged_at")?;
    let position: i64 = row.try_get("position")?;
    Ok(EscalationRow {
        escalation_id: parse_uuid(&id, &id)?,
        complaint_id: row.try_get("complaint_id")?,
        contractor_id: row.try_get("contractor_id")?,
        deadline: parse_deadline(&deadline, &id)?,
        level: parse_level(&level, &id)?,
        deadline_date: parse_date(&date, &id)?,
        clock_started_at: parse_exact(&started, &id)?,
        due_at: from_millis(row.try_get("due_at")?, &id)?,
        raised_at: from_millis(row.try_get("raised_at")?, &id)?,
        recipients: serde_json::from_str(&recipients)
            .map_err(|_| corrupt(&id, "recipients are not a JSON array"))?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at: acknowledged_at
            .map(|value| from_millis(value, &id))
            .transpose()?,
        position: u64::try_from(position).unwrap_or_default(),
    })
}

/// One page of escalations in the order raised, after log position `after`.
pub(crate) async fn list(
    pool: &AnyPool,
    filter: &EscalationFilter,
    page_size: u32,
    after: u64,
) -> Result<Vec<EscalationRow>, ProjectionError> {
    let sql = format!(
        "SELECT {ESCALATION_COLUMNS} FROM escalations WHERE position > $1 \
         AND ($2 = 0 OR acknowledged_at IS NULL) \
         AND ($3 = '' OR level = $3) AND ($4 = '' OR contractor_id = $4) \
         ORDER BY position LIMIT $5"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(filter.open_only))
        .bind(filter.level.clone().unwrap_or_default())
        .bind(filter.contractor_id.clone().unwrap_or_default())
        .bind(i64::from(page_size))
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode).collect()
}

/// One escalation by id.
pub(crate) async fn get(
    pool: &AnyPool,
    escalation_id: Uuid,
) -> Result<Option<EscalationRow>, ProjectionError> {
    let sql = format!("SELECT {ESCALATION_COLUMNS} FROM escalations WHERE escalation_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(escalation_id.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Escalations raised against a contractor in months `from..=to` (England), counted apart from
/// stage 2 escalations requested by residents.
pub(crate) async fn raised_count(
    pool: &AnyPool,
    contractor_id: &str,
    from: Month,
    to: Month,
) -> Result<(u64, u64), ProjectionError> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS raised, \
         CAST(COALESCE(SUM(after_deadline), 0) AS BIGINT) AS past_deadline \
         FROM escalations WHERE contractor_id = $1 AND raised_month >= $2 AND raised_month <= $3",
    )
    .bind(contractor_id)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_one(pool)
    .await?;
    let raised: i64 = row.try_get("raised")?;
    let past: i64 = row.try_get("past_deadline")?;
    Ok((
        u64::try_from(raised).unwrap_or_default(),
        u64::try_from(past).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_written_is_read_back_whatever_its_year() {
        for text in [
            "-0001-12-30T09:00:00.5Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "2026-04-02T09:00:00.123456789Z",
            "9999-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
        ] {
            let at: DateTime<Utc> = text
                .parse()
                .unwrap_or_else(|error| panic!("{text}: {error}"));
            let written = exact(at);
            assert_eq!(parse_exact(&written, "key").ok(), Some(at), "{written}");
        }
        assert!(parse_exact("not a time", "key").is_err());
        assert!(parse_exact("-0001-12-30T09:00:00+01:00", "key").is_err());
    }
}
