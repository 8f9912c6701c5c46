//! The notifier's read models and outbox: each complaint's running clock, the schedule of ladder
//! steps not raised yet (indexed by due time), the escalations raised, and the deliveries each
//! raised escalation owes.
//!
//! The runner keeps the clock with the pure [`clock_after`] step and, whenever the clock changes,
//! replaces the complaint's schedule with the new clock's ladder less the steps already raised.

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

use crate::ProjectionError;
use crate::month::Month;

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

/// Applies one complaint event to the clock, the schedule, the escalations and the outbox.
pub(crate) async fn apply(
    connection: &mut AnyConnection,
    planner: &EscalationPlanner,
    complaint_id: &str,
    event: &Event,
    recorded: &RecordedEvent,
) -> Result<(), ProjectionError> {
    // A stream's first event has no clock to load: skipping the read matters at intake.
    let stored = if recorded.version == 1 {
        None
    } else {
        load_clock(connection, complaint_id).await?
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
            sqlx::query("DELETE FROM escalation_schedule WHERE escalation_id = $1")
                .bind(escalation_id.to_string())
                .execute(&mut *connection)
                .await?;
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
    store_clock(connection, complaint_id, &contractor_id, next.as_ref()).await?;
    if current.is_some() {
        sqlx::query("DELETE FROM escalation_schedule WHERE complaint_id = $1")
            .bind(complaint_id)
            .execute(&mut *connection)
            .await?;
    }
    let Some(clock) = next else {
        return Ok(());
    };
    let (Ok(complaint), Ok(contractor)) = (
        ComplaintId::parse("complaint_id", complaint_id),
        ContractorId::parse("contractor_id", &contractor_id),
    ) else {
        return Err(corrupt(
            complaint_id,
            "complaint or contractor id is invalid",
        ));
    };
    let steps = plan(
        &complaint,
        &contractor,
        &clock,
        &planner.policy,
        &planner.calendar,
    );
    if steps.is_empty() {
        return Ok(());
    }
    // Only a clock that kept its start (an extension moved its deadline) can have steps raised
    // already; those stay raised and are not scheduled again. A new clock's ids are all new.
    let same_clock = current
        .as_ref()
        .is_some_and(|old| old.deadline == clock.deadline && old.started_at == clock.started_at);
    if same_clock {
        for step in &steps {
            sqlx::query(
                "INSERT INTO escalation_schedule (escalation_id, complaint_id, contractor_id, \
                 deadline, level, deadline_date, clock_started_at, due_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE NOT EXISTS (SELECT 1 FROM escalations WHERE escalation_id = $9)",
            )
            .bind(step.escalation_id.to_string())
            .bind(complaint_id)
            .bind(contractor_id.as_str())
            .bind(step.deadline.code())
            .bind(step.level.as_str())
            .bind(step.deadline_date.to_string())
            .bind(exact(step.clock_started_at))
            .bind(millis(step.due_at))
            .bind(step.escalation_id.to_string())
            .execute(&mut *connection)
            .await?;
        }
        return Ok(());
    }
    // One statement for the whole ladder.
    let rows: Vec<String> = (0..steps.len())
        .map(|index| {
            let first = index * 8;
            let placeholders: Vec<String> = (1..=8).map(|n| format!("${}", first + n)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO escalation_schedule (escalation_id, complaint_id, contractor_id, deadline, \
         level, deadline_date, clock_started_at, due_at) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for step in &steps {
        insert = insert
            .bind(step.escalation_id.to_string())
            .bind(complaint_id.to_owned())
            .bind(contractor_id.clone())
            .bind(step.deadline.code())
            .bind(step.level.as_str().to_owned())
            .bind(step.deadline_date.to_string())
            .bind(exact(step.clock_started_at))
            .bind(millis(step.due_at));
    }
    insert.execute(&mut *connection).await?;
    Ok(())
}

type StoredClock = (String, Option<RunningClock>);

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

async fn store_clock(
    connection: &mut AnyConnection,
    complaint_id: &str,
    contractor_id: &str,
    clock: Option<&RunningClock>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO escalation_clocks (complaint_id, contractor_id, deadline, deadline_date, \
         clock_started_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (complaint_id) DO UPDATE SET deadline = excluded.deadline, \
         deadline_date = excluded.deadline_date, clock_started_at = excluded.clock_started_at",
    )
    .bind(complaint_id)
    .bind(contractor_id)
    .bind(clock.map(|clock| clock.deadline.code()))
    .bind(clock.map(|clock| clock.due.to_string()))
    .bind(clock.map(|clock| exact(clock.started_at)))
    .execute(connection)
    .await?;
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

fn parse_deadline(code: &str, key: &str) -> Result<Deadline, ProjectionError> {
    Deadline::from_code(code).ok_or_else(|| corrupt(key, format!("unknown deadline {code}")))
}

fn parse_date(text: &str, key: &str) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| corrupt(key, format!("invalid date {text}")))
}

fn parse_exact(text: &str, key: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| corrupt(key, format!("invalid time {text}")))
}

fn parse_uuid(text: &str, key: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(text).map_err(|_| corrupt(key, format!("invalid id {text}")))
}

fn parse_level(text: &str, key: &str) -> Result<EscalationLevel, ProjectionError> {
    EscalationLevel::parse("level", text).map_err(|_| corrupt(key, format!("invalid level {text}")))
}

/// Ladder steps due at `now`, earliest first.
pub(crate) async fn due(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DueEscalation>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT escalation_id, complaint_id, contractor_id, deadline, level, deadline_date, \
         clock_started_at, due_at FROM escalation_schedule WHERE due_at <= $1 \
         ORDER BY due_at, escalation_id LIMIT $2",
    )
    .bind(millis(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("escalation_id")?;
            let deadline: String = row.try_get("deadline")?;
            let level: String = row.try_get("level")?;
            let date: String = row.try_get("deadline_date")?;
            let started: String = row.try_get("clock_started_at")?;
            Ok(DueEscalation {
                escalation_id: parse_uuid(&id, &id)?,
                complaint_id: row.try_get("complaint_id")?,
                contractor_id: row.try_get("contractor_id")?,
                deadline: parse_deadline(&deadline, &id)?,
                level: parse_level(&level, &id)?,
                deadline_date: parse_date(&date, &id)?,
                clock_started_at: parse_exact(&started, &id)?,
                due_at: from_millis(row.try_get("due_at")?, &id)?,
            })
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
