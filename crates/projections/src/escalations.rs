//! The escalations raised on complaints, and who acknowledged each, as `ListEscalations` and
//! the performance report read them. Raising a step also moves the escalation schedule on
//! (`escalation_schedule`), and the runner fills the delivery outbox from the row recorded here.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::complaint::Event;
use doorstep_domain::escalation::{Deadline, EscalationLevel, RunningClock, end_of_england_day};
use doorstep_store::EventHeader;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::ProjectionError;
use crate::escalation_planner::EscalationPlanner;
use crate::escalation_schedule::{EscalationBatch, next_step};
use crate::month::Month;
use crate::stored_values::{
    corrupt, exact, from_millis, millis, parse_date, parse_deadline, parse_exact, parse_level,
    parse_uuid,
};

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

/// Applies one complaint event to the clock, the schedule and the escalations. Returns the
/// escalation the event raised, for the runner to fill the delivery outbox with.
pub(crate) async fn apply(
    connection: &mut AnyConnection,
    batch: &mut EscalationBatch,
    planner: &EscalationPlanner,
    complaint_id: &str,
    event: &Event,
    recorded: &EventHeader,
) -> Result<Option<EscalationRow>, ProjectionError> {
    let Some((contractor_id, current)) = batch
        .clock_before(connection, complaint_id, event, recorded)
        .await?
    else {
        return Ok(None);
    };
    let raised = EscalationRow::raised(complaint_id, &contractor_id, event, recorded.position);
    if let Some(row) = &raised {
        record_raise(connection, batch, planner, row, current.as_ref()).await?;
    }
    if let Event::EscalationAcknowledged {
        escalation_id,
        acknowledged_by,
        acknowledged_at,
        ..
    } = event
    {
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
    batch
        .follow_clock(
            connection,
            planner,
            complaint_id,
            &contractor_id,
            current,
            event,
        )
        .await?;
    Ok(raised)
}

/// The escalation an `EscalationRaised` event records; None for any other event.
impl EscalationRow {
    /// The row an `EscalationRaised` event at `position` makes (any other event makes none), for
    /// the complaint and the contractor it names.
    pub fn raised(
        complaint_id: &str,
        contractor_id: &str,
        event: &Event,
        position: u64,
    ) -> Option<Self> {
        let Event::EscalationRaised {
            escalation_id,
            contractor_id: _,
            deadline,
            level,
            deadline_date,
            clock_started_at,
            due_at,
            raised_at,
            recipients,
        } = event
        else {
            return None;
        };
        let recipients: Vec<String> = recipients
            .iter()
            .map(|address| address.as_str().to_owned())
            .collect();
        Some(EscalationRow {
            escalation_id: *escalation_id,
            complaint_id: complaint_id.to_owned(),
            contractor_id: contractor_id.to_owned(),
            deadline: *deadline,
            level: level.clone(),
            deadline_date: *deadline_date,
            clock_started_at: *clock_started_at,
            due_at: *due_at,
            raised_at: *raised_at,
            recipients,
            acknowledged_by: None,
            acknowledged_at: None,
            position,
        })
    }
}

/// Records a raised escalation, and moves the schedule on to the clock's next step.
async fn record_raise(
    connection: &mut AnyConnection,
    batch: &mut EscalationBatch,
    planner: &EscalationPlanner,
    row: &EscalationRow,
    current: Option<&RunningClock>,
) -> Result<(), ProjectionError> {
    store_escalation(connection, row).await?;
    let next = match current {
        Some(clock)
            if clock.deadline == row.deadline && clock.started_at == row.clock_started_at =>
        {
            next_step(
                connection,
                planner,
                &row.complaint_id,
                &row.contractor_id,
                clock,
            )
            .await?
        }
        // A raise for a clock that has since stopped or moved schedules nothing more.
        _ => None,
    };
    batch.step_raised(&row.complaint_id, row.escalation_id, next);
    Ok(())
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
        position: u64::try_from(position).map_err(|_| corrupt(&id, "negative position"))?,
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
        // No filter is bound as '' (the query's "any"): absence means every level or contractor.
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
    let count = |column: &str| -> Result<u64, ProjectionError> {
        let value: i64 = row.try_get(column)?;
        u64::try_from(value).map_err(|_| corrupt(contractor_id, format!("negative {column}")))
    };
    Ok((count("raised")?, count("past_deadline")?))
}
