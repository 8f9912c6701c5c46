//! The complaint list: one row per complaint with what callers filter on.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::ServiceStandard;
use doorstep_domain::complaint::{Complaint, Event, Stage, Status};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::database::page;
use crate::upsert::MultiRowUpsert;
use sqlx::query::Query;

/// One complaint as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintRow {
    pub complaint_id: String,
    pub status: Status,
    pub stage: Stage,
    pub contractor_id: String,
    pub uprn: String,
    pub resident_reference: String,
    pub received_at: DateTime<Utc>,
    pub standards: Vec<ServiceStandard>,
    /// The pending Code deadline, if the complaint is waiting on one.
    pub next_deadline: Option<NaiveDate>,
    pub version: u64,
}

impl ComplaintRow {
    /// The row for a complaint's current state: what the projection must hold after its events.
    pub fn from_state(complaint: &Complaint) -> Self {
        Self {
            complaint_id: complaint.id.to_string(),
            status: complaint.status,
            stage: complaint.stage,
            contractor_id: complaint.contractor_id.as_str().to_owned(),
            uprn: complaint.property.uprn.as_str().to_owned(),
            resident_reference: complaint.resident.reference.as_str().to_owned(),
            received_at: complaint.received_at,
            standards: complaint.standards.clone(),
            next_deadline: complaint.pending_deadline(),
            version: complaint.version,
        }
    }

    /// Overdue: a pending deadline that is before `today`.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.next_deadline.is_some_and(|due| due < today)
    }
}

/// The row after one more event of its complaint. Each event carries the dates it set, so the
/// row follows without replaying the stream.
pub fn next_row(row: Option<ComplaintRow>, event: &Event, version: u64) -> Option<ComplaintRow> {
    if let Event::ComplaintReceived {
        complaint_id,
        resident,
        property,
        contractor_id,
        standards,
        received_at,
        acknowledgement_due,
        ..
    } = event
    {
        return Some(row.unwrap_or_else(|| ComplaintRow {
            complaint_id: complaint_id.to_string(),
            status: Status::AwaitingAcknowledgement,
            stage: Stage::One,
            contractor_id: contractor_id.as_str().to_owned(),
            uprn: property.uprn.as_str().to_owned(),
            resident_reference: resident.reference.as_str().to_owned(),
            received_at: *received_at,
            standards: standards.clone(),
            next_deadline: Some(*acknowledgement_due),
            version,
        }));
    }
    let mut row = row?;
    row.version = version;
    match event {
        Event::ComplaintReceived { .. }
        | Event::FindingsRecorded { .. }
        | Event::NoteAdded { .. }
        | Event::EscalationRaised { .. }
        | Event::EscalationAcknowledged { .. } => {}
        Event::ComplaintAcknowledged { response_due, .. } => {
            row.status = Status::UnderInvestigation;
            row.next_deadline = Some(*response_due);
        }
        Event::DeadlineExtended { response_due, .. } => row.next_deadline = Some(*response_due),
        Event::ResponseIssued { .. } => {
            row.status = Status::Responded;
            row.next_deadline = None;
        }
        Event::StageTwoRequested {
            acknowledgement_due,
            ..
        } => {
            row.stage = Stage::Two;
            row.status = Status::AwaitingAcknowledgement;
            row.next_deadline = Some(*acknowledgement_due);
        }
        Event::ComplaintClosed { .. } => {
            row.status = Status::Closed;
            row.next_deadline = None;
        }
        Event::ComplaintWithdrawn { .. } => {
            row.status = Status::Withdrawn;
            row.next_deadline = None;
        }
        Event::ComplaintReopened {
            acknowledgement_due,
            response_due,
            ..
        } => {
            if let Some(due) = response_due {
                row.status = Status::UnderInvestigation;
                row.next_deadline = Some(*due);
            } else {
                row.status = Status::AwaitingAcknowledgement;
                row.next_deadline = *acknowledgement_due;
            }
        }
    }
    Some(row)
}

/// What `ListComplaints` filters on; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplaintFilter {
    pub contractor_id: Option<String>,
    pub status: Option<Status>,
    pub stage: Option<Stage>,
    /// Only complaints whose pending deadline is before this date (today, in England).
    pub overdue_on: Option<NaiveDate>,
    pub uprn: Option<String>,
    pub resident_reference: Option<String>,
    pub received_from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub received_to: Option<DateTime<Utc>>,
}

/// Where the next page starts: the last row of the previous page (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub received_at_micros: i64,
    pub complaint_id: String,
}

impl PageCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at_micros, self.complaint_id)
    }

    pub fn decode(token: &str) -> Result<Self, ProjectionError> {
        let (micros, id) = token
            .split_once('.')
            .ok_or(ProjectionError::InvalidPageToken)?;
        let received_at_micros = micros
            .parse()
            .map_err(|_| ProjectionError::InvalidPageToken)?;
        if id.is_empty() || id.len() > 64 {
            return Err(ProjectionError::InvalidPageToken);
        }
        Ok(Self {
            received_at_micros,
            complaint_id: id.to_owned(),
        })
    }
}

/// A value bound to a `$n` placeholder.
enum Parameter {
    Text(String),
    Integer(i64),
}

/// SQL text with `$1, $2, …` placeholders and the values for them, built up clause by clause.
struct Statement {
    sql: String,
    parameters: Vec<Parameter>,
}

impl Statement {
    fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Appends `clause`, replacing its `{}` with the next placeholder.
    fn push(&mut self, clause: &str, parameter: Parameter) {
        self.parameters.push(parameter);
        let placeholder = format!("${}", self.parameters.len());
        self.sql.push_str(&clause.replacen("{}", &placeholder, 1));
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments> {
        // Safe: the SQL is assembled only from this module's constant clauses; every value a
        // caller supplied is a bound parameter.
        let sql = sqlx::AssertSqlSafe(self.sql.as_str());
        self.parameters
            .iter()
            .fold(sqlx::query(sql), |query, parameter| match parameter {
                Parameter::Text(text) => query.bind(text.as_str()),
                Parameter::Integer(integer) => query.bind(*integer),
            })
    }
}

/// The columns `decode` reads, in a macro so `concat!` can build constant queries from them.
macro_rules! columns {
    () => {
        "complaint_id, status, stage, contractor_id, uprn, resident_reference, \
         received_at_micros, standards, next_deadline, version"
    };
}

pub(crate) async fn load(
    connection: &mut AnyConnection,
    complaint_id: &str,
) -> Result<Option<ComplaintRow>, ProjectionError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM complaint_list WHERE complaint_id = $1"
    ))
    .bind(complaint_id)
    .fetch_optional(connection)
    .await?;
    row.map(|row| decode(&row)).transpose()
}

/// Writes list rows; bound by [`bind`].
pub(crate) const UPSERT: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO complaint_list (complaint_id, status, stage, contractor_id, uprn, \
             resident_reference, received_at_micros, standards, next_deadline, version, \
             last_position)",
    width: 11,
    on_conflict: "ON CONFLICT (complaint_id) DO UPDATE SET status = excluded.status, \
                  stage = excluded.stage, next_deadline = excluded.next_deadline, \
                  version = excluded.version, last_position = excluded.last_position",
};

/// Binds one row of [`UPSERT`]: the row and the position of the last event that changed it.
pub(crate) fn bind<'q>(
    query: Query<'q, Any, AnyArguments>,
    row: &ComplaintRow,
    position: u64,
) -> Query<'q, Any, AnyArguments> {
    let standards: Vec<&str> = row.standards.iter().map(|s| s.code()).collect();
    query
        .bind(row.complaint_id.clone())
        .bind(row.status.code())
        .bind(i64::from(row.stage.number()))
        .bind(row.contractor_id.clone())
        .bind(row.uprn.clone())
        .bind(row.resident_reference.clone())
        .bind(row.received_at.timestamp_micros())
        .bind(standards.join(","))
        .bind(row.next_deadline.map(|date| date.to_string()))
        .bind(i64::try_from(row.version).unwrap_or(i64::MAX))
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
}

/// One page of the list, newest first, and the cursor of the page after it.
pub(crate) async fn list(
    pool: &AnyPool,
    filter: &ComplaintFilter,
    page_size: u32,
    after: Option<&PageCursor>,
) -> Result<(Vec<ComplaintRow>, Option<PageCursor>), ProjectionError> {
    let mut statement = Statement::new(concat!(
        "SELECT ",
        columns!(),
        " FROM complaint_list WHERE 1 = 1"
    ));
    push_filter(&mut statement, filter);
    if let Some(cursor) = after {
        push_after(&mut statement, cursor);
    }
    // One row more than the page tells whether another page follows.
    statement.push(
        " ORDER BY received_at_micros DESC, complaint_id DESC LIMIT {}",
        Parameter::Integer(i64::from(page_size) + 1),
    );
    let rows = statement.query().fetch_all(pool).await?;
    let complaints = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(page(complaints, page_size, |last| PageCursor {
        received_at_micros: last.received_at.timestamp_micros(),
        complaint_id: last.complaint_id.clone(),
    }))
}

/// The conditions of `filter`, each one it sets.
fn push_filter(statement: &mut Statement, filter: &ComplaintFilter) {
    if let Some(contractor_id) = &filter.contractor_id {
        statement.push(
            " AND contractor_id = {}",
            Parameter::Text(contractor_id.clone()),
        );
    }
    if let Some(status) = filter.status {
        statement.push(
            " AND status = {}",
            Parameter::Text(status.code().to_owned()),
        );
    }
    if let Some(stage) = filter.stage {
        statement.push(
            " AND stage = {}",
            Parameter::Integer(i64::from(stage.number())),
        );
    }
    if let Some(today) = filter.overdue_on {
        statement.push(
            " AND next_deadline IS NOT NULL AND next_deadline < {}",
            Parameter::Text(today.to_string()),
        );
    }
    if let Some(uprn) = &filter.uprn {
        statement.push(" AND uprn = {}", Parameter::Text(uprn.clone()));
    }
    if let Some(reference) = &filter.resident_reference {
        statement.push(
            " AND resident_reference = {}",
            Parameter::Text(reference.clone()),
        );
    }
    if let Some(from) = filter.received_from {
        statement.push(
            " AND received_at_micros >= {}",
            Parameter::Integer(from.timestamp_micros()),
        );
    }
    if let Some(to) = filter.received_to {
        statement.push(
            " AND received_at_micros < {}",
            Parameter::Integer(to.timestamp_micros()),
        );
    }
}

/// Only complaints after `cursor` in the list's order (newest first).
fn push_after(statement: &mut Statement, cursor: &PageCursor) {
    statement.push(
        " AND (received_at_micros < {}",
        Parameter::Integer(cursor.received_at_micros),
    );
    statement.push(
        " OR (received_at_micros = {}",
        Parameter::Integer(cursor.received_at_micros),
    );
    statement.push(
        " AND complaint_id < {}))",
        Parameter::Text(cursor.complaint_id.clone()),
    );
}

fn decode(row: &AnyRow) -> Result<ComplaintRow, ProjectionError> {
    let complaint_id: String = row.try_get("complaint_id")?;
    let corrupt = |reason: &str| ProjectionError::CorruptRow {
        complaint_id: complaint_id.clone(),
        reason: reason.to_owned(),
    };
    let status: String = row.try_get("status")?;
    let stage: i64 = row.try_get("stage")?;
    let micros: i64 = row.try_get("received_at_micros")?;
    let standards: String = row.try_get("standards")?;
    let next_deadline: Option<String> = row.try_get("next_deadline")?;
    let version: i64 = row.try_get("version")?;
    Ok(ComplaintRow {
        complaint_id: complaint_id.clone(),
        status: Status::from_code(&status).ok_or_else(|| corrupt("unknown status"))?,
        stage: match stage {
            1 => Stage::One,
            2 => Stage::Two,
            _ => return Err(corrupt("unknown stage")),
        },
        contractor_id: row.try_get("contractor_id")?,
        uprn: row.try_get("uprn")?,
        resident_reference: row.try_get("resident_reference")?,
        received_at: DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| corrupt("received_at out of range"))?,
        standards: standards
            .split(',')
            .filter(|code| !code.is_empty())
            .map(|code| ServiceStandard::from_code(code).ok_or_else(|| corrupt("unknown standard")))
            .collect::<Result<_, _>>()?,
        next_deadline: next_deadline
            .map(|text| {
                text.parse()
                    .map_err(|_| corrupt("next_deadline is not a date"))
            })
            .transpose()?,
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
    })
}

/// Complaints not closed or withdrawn, counted by status and stage.
pub(crate) async fn open_counts(
    pool: &sqlx::AnyPool,
) -> Result<Vec<(Status, u32, u64)>, ProjectionError> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, stage, count(*) FROM complaint_list \
         WHERE status NOT IN ('CLOSED', 'WITHDRAWN') GROUP BY status, stage",
    )
    .fetch_all(pool)
    .await?;
    let corrupt = |reason: &str| ProjectionError::CorruptRow {
        complaint_id: "(open complaint counts)".to_owned(),
        reason: reason.to_owned(),
    };
    rows.into_iter()
        .map(|(status, stage, count)| {
            Ok((
                Status::from_code(&status).ok_or_else(|| corrupt("unknown status"))?,
                u32::try_from(stage).map_err(|_| corrupt("stage out of range"))?,
                u64::try_from(count).unwrap_or(0),
            ))
        })
        .collect()
}

/// One page of the list in the order a caseworker works it: complaints with a pending deadline
/// first, the earliest deadline first (so the overdue, then those due soonest), then the rest
/// newest first. `offset` rows are skipped; returns the page and whether more follow. The
/// partial index on `next_deadline` serves the first part.
pub(crate) async fn list_by_deadline(
    pool: &AnyPool,
    filter: &ComplaintFilter,
    page_size: u32,
    offset: u64,
) -> Result<(Vec<ComplaintRow>, bool), ProjectionError> {
    let mut statement = Statement::new(concat!(
        "SELECT ",
        columns!(),
        " FROM complaint_list WHERE 1 = 1"
    ));
    push_filter(&mut statement, filter);
    statement.push(
        " ORDER BY CASE WHEN next_deadline IS NULL THEN 1 ELSE 0 END, next_deadline, \
         received_at_micros DESC, complaint_id DESC LIMIT {}",
        Parameter::Integer(i64::from(page_size) + 1),
    );
    statement.push(
        " OFFSET {}",
        Parameter::Integer(i64::try_from(offset).unwrap_or(i64::MAX)),
    );
    let rows = statement.query().fetch_all(pool).await?;
    let mut complaints = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let more = complaints.len() > page_size as usize;
    complaints.truncate(page_size as usize);
    Ok((complaints, more))
}
