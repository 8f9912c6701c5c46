//! On-site inspections as read models: each inspection after its latest correction
//! (`inspections`, for `ListInspections`), the "what we saw" counters per contractor, month and
//! standard (`inspection_month_standard`, `inspection_month`), and the notifier's schedule of
//! unresolved findings (`finding_schedule`) with the escalations raised (`finding_escalations`).
//!
//! A correction replaces an inspection's details whole, so the counters first take back what the
//! stored row counted (its contractor, month and observations) and then count the corrected
//! details: the figures always follow an inspection's latest version. Inspection events are rare
//! beside intake, so each is written as it is applied, inside the batch's transaction.
//!
//! The finding schedule holds one row per open finding: the first step of the finding ladder not
//! raised yet. A raise moves it to the next step; a resolution or withdrawal deletes it, so a
//! resolved finding escalates no further.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use doorstep_domain::ServiceStandard;
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::{EscalationLevel, LadderStep, WarningTime, ladder_due_times};
use doorstep_domain::inspection::{
    InspectionDetails, InspectionEvent, ObservationResult, finding_escalation_id,
};
use doorstep_store::EventHeader;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::month::Month;
use crate::stored_values::{corrupt, from_millis, millis, parse_date, parse_level, parse_uuid};
use crate::{ProjectionError, UnreadableRow};

/// The ladder an unresolved finding climbs, and the calendar its steps are counted in.
#[derive(Debug, Clone)]
pub struct FindingLadder {
    pub steps: Vec<LadderStep>,
    pub calendar: WorkingDayCalendar,
    /// When a step before the due date fires (UK time), as for the Code's deadlines.
    pub warning_time: NaiveTime,
}

impl Default for FindingLadder {
    /// No steps: nobody is told (what a runner without the notifier's settings schedules).
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            calendar: WorkingDayCalendar::england_and_wales(),
            warning_time: WarningTime::default().0,
        }
    }
}

/// One inspection as `ListInspections` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectionRow {
    pub inspection_id: String,
    pub contractor_id: String,
    pub contract_reference: String,
    pub uprn: String,
    pub inspected_at: DateTime<Utc>,
    pub met: u32,
    pub not_met: u32,
    pub not_observed: u32,
    pub open_findings: u32,
    pub position: u64,
}

/// Which inspections to list.
#[derive(Debug, Clone, Default)]
pub struct InspectionFilter {
    pub contractor_id: Option<String>,
    pub open_findings_only: bool,
}

/// A contractor's inspection counts over some months.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectionCounts {
    pub inspections: u64,
    /// Per standard: observations met or not met, and those not met.
    pub standards: BTreeMap<ServiceStandard, (u64, u64)>,
}

impl InspectionCounts {
    /// Observations met or not met, over every standard.
    pub fn observations(&self) -> u64 {
        self.standards
            .values()
            .map(|(observations, _)| observations)
            .sum()
    }

    pub fn not_met(&self) -> u64 {
        self.standards.values().map(|(_, not_met)| not_met).sum()
    }
}

/// A finding's ladder step whose time has come, as the scheduler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueFindingEscalation {
    pub escalation_id: Uuid,
    pub finding_id: Uuid,
    pub inspection_id: String,
    pub contractor_id: String,
    pub level: EscalationLevel,
    pub due_date: NaiveDate,
    pub due_at: DateTime<Utc>,
}

/// What the counters hold for one inspection: its contractor, month and results by standard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    contractor_id: String,
    month: Month,
    results: BTreeMap<String, ObservationResult>,
}

impl Counted {
    fn of(details: &InspectionDetails) -> Self {
        Self {
            contractor_id: details.contractor_id.as_str().to_owned(),
            month: Month::of(doorstep_domain::england_date(details.inspected_at)),
            results: details
                .observations
                .iter()
                .map(|observation| (observation.standard.code().to_owned(), observation.result))
                .collect(),
        }
    }

    fn count(&self, result: ObservationResult) -> i64 {
        self.results
            .values()
            .filter(|seen| **seen == result)
            .count() as i64
    }
}

/// Applies one inspection event. Returns the document of the finding escalation it raised, if
/// any, for the runner to fill the delivery outbox with.
pub(crate) async fn apply(
    connection: &mut AnyConnection,
    ladder: &FindingLadder,
    inspection_id: &str,
    event: &InspectionEvent,
    recorded: &EventHeader,
) -> Result<Option<RaisedFinding>, ProjectionError> {
    let position = i64::try_from(recorded.position).unwrap_or(i64::MAX);
    match event {
        InspectionEvent::InspectionRecorded { details, .. } => {
            let counted = Counted::of(details);
            count(connection, &counted, 1).await?;
            store_row(connection, inspection_id, details, &counted, position).await?;
        }
        InspectionEvent::InspectionCorrected { details, .. } => {
            let before = load_counted(connection, inspection_id).await?;
            count(connection, &before, -1).await?;
            let counted = Counted::of(details);
            count(connection, &counted, 1).await?;
            store_row(connection, inspection_id, details, &counted, position).await?;
        }
        InspectionEvent::FindingOpened {
            finding_id,
            contractor_id,
            standard,
            due_date,
            ..
        } => {
            move_open_findings(connection, inspection_id, 1, position).await?;
            let next = next_step(
                connection,
                ladder,
                *finding_id,
                inspection_id,
                contractor_id.as_str(),
                *standard,
                *due_date,
            )
            .await?;
            schedule(connection, next).await?;
        }
        InspectionEvent::FindingResolved { finding_id, .. }
        | InspectionEvent::FindingWithdrawn { finding_id, .. } => {
            move_open_findings(connection, inspection_id, -1, position).await?;
            sqlx::query("DELETE FROM finding_schedule WHERE finding_id = $1")
                .bind(finding_id.to_string())
                .execute(&mut *connection)
                .await?;
        }
        InspectionEvent::FindingEscalated {
            escalation_id,
            finding_id,
            contractor_id,
            standard,
            level,
            due_date,
            due_at,
            raised_at,
            recipients,
        } => {
            let raised = RaisedFinding {
                escalation_id: *escalation_id,
                finding_id: *finding_id,
                inspection_id: inspection_id.to_owned(),
                contractor_id: contractor_id.as_str().to_owned(),
                standard: *standard,
                level: level.clone(),
                due_date: *due_date,
                due_at: *due_at,
                raised_at: *raised_at,
                recipients: recipients
                    .iter()
                    .map(|address| address.as_str().to_owned())
                    .collect(),
                position: recorded.position,
            };
            store_escalation(connection, &raised).await?;
            // An escalation is a change to the inspection too: its row moves to this position.
            move_open_findings(connection, inspection_id, 0, position).await?;
            sqlx::query("DELETE FROM finding_schedule WHERE finding_id = $1")
                .bind(finding_id.to_string())
                .execute(&mut *connection)
                .await?;
            let next = next_step(
                connection,
                ladder,
                *finding_id,
                inspection_id,
                contractor_id.as_str(),
                *standard,
                *due_date,
            )
            .await?;
            schedule(connection, next).await?;
            return Ok(Some(raised));
        }
    }
    Ok(None)
}

/// A finding escalation the log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedFinding {
    pub escalation_id: Uuid,
    pub finding_id: Uuid,
    pub inspection_id: String,
    pub contractor_id: String,
    pub standard: ServiceStandard,
    pub level: EscalationLevel,
    pub due_date: NaiveDate,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub recipients: Vec<String>,
    pub position: u64,
}

/// The JSON document every delivery of a finding escalation is made from (the webhook body).
pub fn finding_escalation_document(raised: &RaisedFinding) -> serde_json::Value {
    serde_json::json!({
        "type": "inspection_finding.escalated",
        "escalation_id": raised.escalation_id.to_string(),
        "finding_id": raised.finding_id.to_string(),
        "inspection_id": raised.inspection_id,
        "contractor_id": raised.contractor_id,
        "standard": raised.standard.code(),
        "standard_label": raised.standard.label(),
        "level": raised.level.as_str(),
        "due_date": raised.due_date.to_string(),
        "due_at": raised.due_at.to_rfc3339(),
        "raised_at": raised.raised_at.to_rfc3339(),
        "recipients": raised.recipients,
        "position": raised.position,
    })
}

async fn count(
    connection: &mut AnyConnection,
    counted: &Counted,
    sign: i64,
) -> Result<(), ProjectionError> {
    let month = counted.month.to_string();
    sqlx::query(
        "INSERT INTO inspection_month (contractor_id, month, inspections) VALUES ($1, $2, $3) \
         ON CONFLICT (contractor_id, month) \
         DO UPDATE SET inspections = inspection_month.inspections + excluded.inspections",
    )
    .bind(counted.contractor_id.as_str())
    .bind(month.as_str())
    .bind(sign)
    .execute(&mut *connection)
    .await?;
    for (standard, result) in &counted.results {
        let (observations, not_met) = match result {
            ObservationResult::Met => (1, 0),
            ObservationResult::NotMet => (1, 1),
            ObservationResult::NotObserved => continue,
        };
        sqlx::query(
            "INSERT INTO inspection_month_standard \
             (contractor_id, month, standard, observations, not_met) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (contractor_id, month, standard) DO UPDATE SET \
             observations = inspection_month_standard.observations + excluded.observations, \
             not_met = inspection_month_standard.not_met + excluded.not_met",
        )
        .bind(counted.contractor_id.as_str())
        .bind(month.as_str())
        .bind(standard.as_str())
        .bind(sign * observations)
        .bind(sign * not_met)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn store_row(
    connection: &mut AnyConnection,
    inspection_id: &str,
    details: &InspectionDetails,
    counted: &Counted,
    position: i64,
) -> Result<(), ProjectionError> {
    let observations = serde_json::to_string(&counted.results)
        .map_err(|error| corrupt(inspection_id, error.to_string()))?;
    sqlx::query(
        "INSERT INTO inspections (inspection_id, contractor_id, contract_reference, uprn, \
         inspected_at, inspected_month, observations, met, not_met, not_observed, open_findings, \
         position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11) \
         ON CONFLICT (inspection_id) DO UPDATE SET contractor_id = excluded.contractor_id, \
         contract_reference = excluded.contract_reference, uprn = excluded.uprn, \
         inspected_at = excluded.inspected_at, inspected_month = excluded.inspected_month, \
         observations = excluded.observations, met = excluded.met, \
         not_met = excluded.not_met, not_observed = excluded.not_observed, \
         position = excluded.position",
    )
    .bind(inspection_id)
    .bind(details.contractor_id.as_str())
    .bind(details.contract_reference.as_str())
    .bind(details.uprn.as_str())
    .bind(millis(details.inspected_at))
    .bind(counted.month.to_string())
    .bind(observations)
    .bind(counted.count(ObservationResult::Met))
    .bind(counted.count(ObservationResult::NotMet))
    .bind(counted.count(ObservationResult::NotObserved))
    .bind(position)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn load_counted(
    connection: &mut AnyConnection,
    inspection_id: &str,
) -> Result<Counted, ProjectionError> {
    let row = sqlx::query(
        "SELECT contractor_id, inspected_month, observations FROM inspections \
         WHERE inspection_id = $1",
    )
    .bind(inspection_id)
    .fetch_optional(&mut *connection)
    .await?
    .ok_or_else(|| corrupt(inspection_id, "a corrected inspection has no row"))?;
    let month: String = row.try_get("inspected_month")?;
    let observations: String = row.try_get("observations")?;
    Ok(Counted {
        contractor_id: row.try_get("contractor_id")?,
        month: Month::parse(&month)
            .map_err(|_| corrupt(inspection_id, format!("invalid month {month}")))?,
        results: serde_json::from_str(&observations)
            .map_err(|_| corrupt(inspection_id, "observations are not a JSON object"))?,
    })
}

async fn move_open_findings(
    connection: &mut AnyConnection,
    inspection_id: &str,
    by: i64,
    position: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE inspections SET open_findings = open_findings + $1, position = $2 \
         WHERE inspection_id = $3",
    )
    .bind(by)
    .bind(position)
    .bind(inspection_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// A finding schedule row.
struct ScheduleRow {
    escalation_id: Uuid,
    finding_id: Uuid,
    inspection_id: String,
    contractor_id: String,
    standard: ServiceStandard,
    level: EscalationLevel,
    due_date: NaiveDate,
    due_at: DateTime<Utc>,
}

/// The finding's first ladder step not raised yet (as `finding_escalations` records them).
async fn next_step(
    connection: &mut AnyConnection,
    ladder: &FindingLadder,
    finding_id: Uuid,
    inspection_id: &str,
    contractor_id: &str,
    standard: ServiceStandard,
    due_date: NaiveDate,
) -> Result<Option<ScheduleRow>, ProjectionError> {
    let raised: Vec<String> =
        sqlx::query_scalar("SELECT level FROM finding_escalations WHERE finding_id = $1")
            .bind(finding_id.to_string())
            .fetch_all(&mut *connection)
            .await?;
    let step = ladder_due_times(
        due_date,
        &ladder.steps,
        &ladder.calendar,
        ladder.warning_time,
    )
    .into_iter()
    .find(|step| !raised.iter().any(|level| level == step.level.as_str()));
    Ok(step.map(|step| ScheduleRow {
        escalation_id: finding_escalation_id(finding_id, &step.level),
        finding_id,
        inspection_id: inspection_id.to_owned(),
        contractor_id: contractor_id.to_owned(),
        standard,
        level: step.level,
        due_date,
        due_at: step.due_at,
    }))
}

async fn schedule(
    connection: &mut AnyConnection,
    row: Option<ScheduleRow>,
) -> Result<(), ProjectionError> {
    let Some(row) = row else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO finding_schedule (escalation_id, finding_id, inspection_id, contractor_id, \
         standard, level, due_date, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (escalation_id) DO NOTHING",
    )
    .bind(row.escalation_id.to_string())
    .bind(row.finding_id.to_string())
    .bind(row.inspection_id)
    .bind(row.contractor_id)
    .bind(row.standard.code())
    .bind(row.level.as_str().to_owned())
    .bind(row.due_date.to_string())
    .bind(millis(row.due_at))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn store_escalation(
    connection: &mut AnyConnection,
    raised: &RaisedFinding,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO finding_escalations (escalation_id, finding_id, inspection_id, \
         contractor_id, standard, level, due_date, raised_at, recipients, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (escalation_id) DO NOTHING",
    )
    .bind(raised.escalation_id.to_string())
    .bind(raised.finding_id.to_string())
    .bind(raised.inspection_id.as_str())
    .bind(raised.contractor_id.as_str())
    .bind(raised.standard.code())
    .bind(raised.level.as_str())
    .bind(raised.due_date.to_string())
    .bind(millis(raised.raised_at))
    .bind(serde_json::Value::from(raised.recipients.clone()).to_string())
    .bind(i64::try_from(raised.position).unwrap_or(i64::MAX))
    .execute(connection)
    .await?;
    Ok(())
}

fn decode_row(row: &AnyRow) -> Result<InspectionRow, ProjectionError> {
    let id: String = row.try_get("inspection_id")?;
    let count = |column: &str| -> Result<u32, ProjectionError> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| corrupt(&id, format!("{column} is {value}")))
    };
    let position: i64 = row.try_get("position")?;
    Ok(InspectionRow {
        contractor_id: row.try_get("contractor_id")?,
        contract_reference: row.try_get("contract_reference")?,
        uprn: row.try_get("uprn")?,
        inspected_at: from_millis(row.try_get("inspected_at")?, &id)?,
        met: count("met")?,
        not_met: count("not_met")?,
        not_observed: count("not_observed")?,
        open_findings: count("open_findings")?,
        position: u64::try_from(position).map_err(|_| corrupt(&id, "negative position"))?,
        inspection_id: id,
    })
}

/// One page of inspections in the order of their last change, after log position `after`.
pub(crate) async fn list(
    pool: &AnyPool,
    filter: &InspectionFilter,
    page_size: u32,
    after: u64,
) -> Result<Vec<InspectionRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT inspection_id, contractor_id, contract_reference, uprn, inspected_at, met, \
         not_met, not_observed, open_findings, position FROM inspections WHERE position > $1 \
         AND ($2 = '' OR contractor_id = $2) AND ($3 = 0 OR open_findings > 0) \
         ORDER BY position LIMIT $4",
    )
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    // No filter is bound as '' (the query's "any").
    .bind(filter.contractor_id.clone().unwrap_or_default())
    .bind(i64::from(filter.open_findings_only))
    .bind(i64::from(page_size))
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode_row).collect()
}

/// Every contractor's inspection counts in months `from..=to`, or one contractor's.
pub(crate) async fn counts(
    pool: &AnyPool,
    from: Month,
    to: Month,
    contractor_id: Option<&str>,
) -> Result<BTreeMap<String, InspectionCounts>, ProjectionError> {
    let contractor = contractor_id.unwrap_or_default();
    let mut counts: BTreeMap<String, InspectionCounts> = BTreeMap::new();
    let inspections = sqlx::query(
        "SELECT contractor_id, CAST(SUM(inspections) AS BIGINT) AS inspections \
         FROM inspection_month WHERE month >= $1 AND month <= $2 \
         AND ($3 = '' OR contractor_id = $3) GROUP BY contractor_id",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(contractor)
    .fetch_all(pool)
    .await?;
    for row in &inspections {
        let id: String = row.try_get("contractor_id")?;
        let value: i64 = row.try_get("inspections")?;
        counts.entry(id.clone()).or_default().inspections =
            u64::try_from(value).map_err(|_| corrupt(&id, "negative inspections"))?;
    }
    let standards = sqlx::query(
        "SELECT contractor_id, standard, CAST(SUM(observations) AS BIGINT) AS observations, \
         CAST(SUM(not_met) AS BIGINT) AS not_met FROM inspection_month_standard \
         WHERE month >= $1 AND month <= $2 AND ($3 = '' OR contractor_id = $3) \
         GROUP BY contractor_id, standard",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(contractor)
    .fetch_all(pool)
    .await?;
    for row in &standards {
        let id: String = row.try_get("contractor_id")?;
        let code: String = row.try_get("standard")?;
        let standard = ServiceStandard::from_code(&code)
            .ok_or_else(|| corrupt(&id, format!("unknown standard {code}")))?;
        let observations: i64 = row.try_get("observations")?;
        let not_met: i64 = row.try_get("not_met")?;
        let (Ok(observations), Ok(not_met)) = (u64::try_from(observations), u64::try_from(not_met))
        else {
            return Err(corrupt(&id, "negative observation counts"));
        };
        if observations > 0 {
            counts
                .entry(id)
                .or_default()
                .standards
                .insert(standard, (observations, not_met));
        }
    }
    Ok(counts)
}

/// The table finding steps are set aside in.
pub(crate) const SCHEDULE: &str = "finding_schedule";

/// Finding ladder steps due at `now`, earliest first, each read or found unreadable.
pub(crate) async fn due(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Result<DueFindingEscalation, UnreadableRow>>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT CAST(escalation_id AS TEXT) AS escalation_id, finding_id, inspection_id, \
         contractor_id, level, due_date, due_at FROM finding_schedule \
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

fn decode_due(row: &AnyRow, id: &str) -> Result<DueFindingEscalation, ProjectionError> {
    let finding: String = row.try_get("finding_id")?;
    let level: String = row.try_get("level")?;
    let date: String = row.try_get("due_date")?;
    Ok(DueFindingEscalation {
        escalation_id: parse_uuid(id, id)?,
        finding_id: parse_uuid(&finding, id)?,
        inspection_id: row.try_get("inspection_id")?,
        contractor_id: row.try_get("contractor_id")?,
        level: parse_level(&level, id)?,
        due_date: parse_date(&date, id)?,
        due_at: from_millis(row.try_get("due_at")?, id)?,
    })
}

/// The finding escalations raised, in log order: (escalation id, finding id, level).
pub(crate) async fn raised(
    pool: &AnyPool,
) -> Result<Vec<(Uuid, Uuid, EscalationLevel)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT escalation_id, finding_id, level FROM finding_escalations ORDER BY position",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("escalation_id")?;
            let finding: String = row.try_get("finding_id")?;
            let level: String = row.try_get("level")?;
            Ok((
                parse_uuid(&id, &id)?,
                parse_uuid(&finding, &id)?,
                parse_level(&level, &id)?,
            ))
        })
        .collect()
}
