//! The escalation schedule: each complaint's running clock (`escalation_clocks`) and the next
//! ladder step of that clock not raised yet (`escalation_schedule`, indexed by due time), which
//! the scheduler reads.
//!
//! The runner keeps the clock with the pure [`clock_after`] step and, whenever the clock changes,
//! replaces the complaint's schedule with the first step of the new clock's ladder not raised yet.
//! When that step is raised, the next one takes its place. One row per running clock, not one
//! per step: intake writes every complaint's schedule, and five rows each cost it about 15%.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::complaint::Event;
use doorstep_domain::escalation::{
    Deadline, EscalationLevel, RunningClock, clock_after, plan_steps,
};
use doorstep_domain::input::{ComplaintId, ContractorId};
use doorstep_store::EventHeader;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::database::placeholders;
use crate::escalation_planner::EscalationPlanner;
use crate::stored_values::{
    corrupt, exact, from_millis, millis, parse_date, parse_deadline, parse_exact, parse_level,
    parse_uuid,
};
use crate::upsert::{MultiRowUpsert, in_list_chunks, write_rows};
use crate::{ProjectionError, UnreadableRow};

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

/// A complaint's contractor and running clock, as stored in `escalation_clocks`.
type StoredClock = (String, Option<RunningClock>);

/// One row of `escalation_schedule`.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleRow {
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

    /// The complaint's contractor and running clock before `event`; None for the events of a
    /// complaint whose intake this model never saw (only a corrupt log has them).
    pub(crate) async fn clock_before(
        &self,
        connection: &mut AnyConnection,
        complaint_id: &str,
        event: &Event,
        recorded: &EventHeader,
    ) -> Result<Option<(String, Option<RunningClock>)>, ProjectionError> {
        // A stream's first event has no clock to load: skipping the read matters at intake.
        let stored = if recorded.version == 1 {
            None
        } else {
            self.clock(connection, complaint_id).await?
        };
        let contractor_id = match (event, &stored) {
            (Event::ComplaintReceived { contractor_id, .. }, _) => {
                contractor_id.as_str().to_owned()
            }
            (_, Some((contractor_id, _))) => contractor_id.clone(),
            (_, None) => return Ok(None),
        };
        Ok(Some((contractor_id, stored.and_then(|(_, clock)| clock))))
    }

    /// Moves the complaint's clock past `event` (it was `current`) and, when the clock changed,
    /// replaces the complaint's schedule with the new clock's first step not raised yet.
    pub(crate) async fn follow_clock(
        &mut self,
        connection: &mut AnyConnection,
        planner: &EscalationPlanner,
        complaint_id: &str,
        contractor_id: &str,
        current: Option<RunningClock>,
        event: &Event,
    ) -> Result<(), ProjectionError> {
        let next = clock_after(current.clone(), event);
        let is_new_complaint = matches!(event, Event::ComplaintReceived { .. });
        if next == current && !is_new_complaint {
            return Ok(());
        }
        self.put_clock(complaint_id, (contractor_id.to_owned(), next.clone()));
        let Some(clock) = next else {
            self.replace_schedule(complaint_id, current.is_some(), Vec::new());
            return Ok(());
        };
        // Only a clock that kept its start (an extension moved its deadline) can have steps raised
        // already; those stay raised and are not scheduled again. A new clock's ids are all new.
        let same_clock = current.as_ref().is_some_and(|old| {
            old.deadline == clock.deadline && old.started_at == clock.started_at
        });
        let row = if same_clock {
            next_step(connection, planner, complaint_id, contractor_id, &clock).await?
        } else {
            first_step(planner, complaint_id, contractor_id, &clock, &[])?
        };
        self.replace_schedule(complaint_id, current.is_some(), row.into_iter().collect());
        Ok(())
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
    pub(crate) fn step_raised(
        &mut self,
        complaint_id: &str,
        escalation_id: Uuid,
        next: Option<ScheduleRow>,
    ) {
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
        write_rows(
            connection,
            &UPSERT_CLOCKS,
            &clocks,
            |query, (complaint_id, (contractor_id, clock))| {
                query
                    .bind((*complaint_id).clone())
                    .bind(contractor_id.clone())
                    .bind(clock.as_ref().map(|clock| clock.deadline.code()))
                    .bind(clock.as_ref().map(|clock| clock.due.to_string()))
                    .bind(clock.as_ref().map(|clock| exact(clock.started_at)))
            },
        )
        .await?;
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
        write_rows(connection, &INSERT_SCHEDULE, &rows, |query, row| {
            query
                .bind(row.escalation_id.to_string())
                .bind(row.complaint_id.clone())
                .bind(row.contractor_id.clone())
                .bind(row.deadline.code())
                .bind(row.level.as_str().to_owned())
                .bind(row.deadline_date.to_string())
                .bind(exact(row.clock_started_at))
                .bind(millis(row.due_at))
        })
        .await
    }
}

const UPSERT_CLOCKS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO escalation_clocks (complaint_id, contractor_id, deadline, \
             deadline_date, clock_started_at)",
    width: 5,
    on_conflict: "ON CONFLICT (complaint_id) DO UPDATE SET deadline = excluded.deadline, \
                  deadline_date = excluded.deadline_date, \
                  clock_started_at = excluded.clock_started_at",
};

const INSERT_SCHEDULE: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO escalation_schedule (escalation_id, complaint_id, contractor_id, \
             deadline, level, deadline_date, clock_started_at, due_at)",
    width: 8,
    on_conflict: "ON CONFLICT (escalation_id) DO NOTHING",
};

/// Deletes the schedule rows whose `column` (`complaint_id` or `escalation_id`) is in `keys`.
async fn delete_where_in(
    connection: &mut AnyConnection,
    column: &'static str,
    keys: &[String],
) -> Result<(), ProjectionError> {
    for chunk in in_list_chunks(keys) {
        let sql = format!(
            "DELETE FROM escalation_schedule WHERE {column} IN ({})",
            placeholders(connection, 1, chunk.len())
        );
        let query = chunk
            .into_iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, key| {
                query.bind(key.clone())
            });
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

/// The clock's next ladder step not raised yet (as the escalations model records them), if any.
pub(crate) async fn next_step(
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
    let step = plan_steps(
        &complaint,
        &contractor,
        clock,
        &planner.policy,
        &planner.calendar,
    )
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
    // A running clock has all three; one without its date or start is corrupt, not empty.
    let deadline_date: Option<String> = row.try_get("deadline_date")?;
    let deadline_date = deadline_date
        .ok_or_else(|| corrupt(complaint_id, "a running clock has no deadline date"))?;
    let started: Option<String> = row.try_get("clock_started_at")?;
    let started = started.ok_or_else(|| corrupt(complaint_id, "a running clock has no start"))?;
    let clock = RunningClock {
        deadline: parse_deadline(&deadline, complaint_id)?,
        due: parse_date(&deadline_date, complaint_id)?,
        started_at: parse_exact(&started, complaint_id)?,
    };
    Ok(Some((contractor_id, Some(clock))))
}

/// The table the schedule's rows are set aside in.
pub(crate) const SCHEDULE: &str = "escalation_schedule";

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

/// Whether a step of `complaint_id`'s ladder is due at `now` and not raised yet (rows set aside
/// are not due): the scheduler is about to raise it.
pub(crate) async fn has_unraised_due_step(
    pool: &AnyPool,
    complaint_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, ProjectionError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM escalation_schedule WHERE complaint_id = $1 AND due_at <= $2 \
         AND set_aside_reason IS NULL LIMIT 1",
    )
    .bind(complaint_id)
    .bind(millis(now))
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
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

/// Sets a row of schedule `table` (this module's [`SCHEDULE`] or the findings' one) aside with
/// `reason`, so it is no longer due. Returns false when it was set aside already (by another
/// scheduler) or has gone.
pub(crate) async fn set_aside(
    pool: &AnyPool,
    table: &'static str,
    key: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, ProjectionError> {
    // `table` is one of two constants, never input.
    let result = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET set_aside_reason = $1, set_aside_at = $2 \
         WHERE escalation_id = $3 AND set_aside_reason IS NULL"
    )))
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
