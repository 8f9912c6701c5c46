//! How each complaint was handled against the Code's clock: one row per complaint with the dates
//! of each stage, behind the regulator's CH01/CH02 and each contractor's handling times.
//!
//! A row records each stage's *first* acknowledgement and *first* response, measured against the
//! deadlines in force when they were given. Reopening a complaint restarts a clock in the
//! aggregate, but it does not rewrite a response already issued, so the figures of a reporting
//! year already published stay put; reopenings are counted on their own (`reopen_count`).

use chrono::NaiveDate;
use doorstep_domain::complaint::{Event, Stage};
use doorstep_domain::contractor::LiaisonLead;
use doorstep_domain::england_date;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::ProjectionError;
use crate::month::Month;
use crate::upsert::MultiRowUpsert;

/// One stage's clock, as dates in England.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageClock {
    /// Receipt (stage 1) or the escalation request (stage 2).
    pub started: NaiveDate,
    pub acknowledgement_due: NaiveDate,
    pub acknowledged: Option<NaiveDate>,
    /// The response deadline as set when the stage was acknowledged (or its clock restarted by
    /// a reopening before any response), before any extension.
    pub response_due_original: Option<NaiveDate>,
    /// The response deadline including extensions.
    pub response_due: Option<NaiveDate>,
    pub responded: Option<NaiveDate>,
}

impl StageClock {
    fn started(started: NaiveDate, acknowledgement_due: NaiveDate) -> Self {
        Self {
            started,
            acknowledgement_due,
            acknowledged: None,
            response_due_original: None,
            response_due: None,
            responded: None,
        }
    }

    /// Whether the response came by the original deadline; None until there is a response.
    pub fn responded_within_original_due(&self) -> Option<bool> {
        within(self.responded, self.response_due_original)
    }

    /// Whether the response came by the deadline including extensions.
    pub fn responded_within_extended_due(&self) -> Option<bool> {
        within(self.responded, self.response_due)
    }
}

fn within(done: Option<NaiveDate>, due: Option<NaiveDate>) -> Option<bool> {
    let done = done?;
    Some(due.is_some_and(|due| done <= due))
}

/// How one complaint was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlingRow {
    pub complaint_id: String,
    pub contractor_id: String,
    /// The month the complaint was received, in England.
    pub month: Month,
    pub visit_id: Option<String>,
    pub received_date: NaiveDate,
    pub stage_one: StageClock,
    /// Set once the resident asked for stage 2.
    pub stage_two: Option<StageClock>,
    pub escalated: bool,
    pub reopen_count: u32,
    pub version: u64,
    /// The liaison lead the complaint is attributed to, fixed when it is received from its
    /// contractor's contracts then (`Contractor::liaison_lead`); None: unknown. The runner sets
    /// it, because complaint events alone do not tell it.
    pub liaison_lead: Option<LiaisonLead>,
}

impl HandlingRow {
    fn stage_mut(&mut self, stage: Stage) -> Option<&mut StageClock> {
        match stage {
            Stage::One => Some(&mut self.stage_one),
            Stage::Two => self.stage_two.as_mut(),
        }
    }
}

/// The row after one more event of its complaint.
pub fn next_row(row: Option<HandlingRow>, event: &Event, version: u64) -> Option<HandlingRow> {
    if let Event::ComplaintReceived { .. } = event {
        return row.or_else(|| received_row(event, version));
    }
    let mut row = row?;
    row.version = version;
    row.follow(event);
    Some(row)
}

/// The row a `ComplaintReceived` event starts; None for any other event.
fn received_row(event: &Event, version: u64) -> Option<HandlingRow> {
    let Event::ComplaintReceived {
        complaint_id,
        contractor_id,
        visit_id,
        received_at,
        acknowledgement_due,
        ..
    } = event
    else {
        return None;
    };
    let received_date = england_date(*received_at);
    Some(HandlingRow {
        complaint_id: complaint_id.to_string(),
        contractor_id: contractor_id.as_str().to_owned(),
        month: Month::of(received_date),
        visit_id: visit_id.as_ref().map(|visit| visit.as_str().to_owned()),
        received_date,
        stage_one: StageClock::started(received_date, *acknowledgement_due),
        stage_two: None,
        escalated: false,
        reopen_count: 0,
        version,
        liaison_lead: None,
    })
}

impl HandlingRow {
    /// What one event after intake changes, apart from the version.
    fn follow(&mut self, event: &Event) {
        match event {
            Event::ComplaintReceived { .. }
            | Event::FindingsRecorded { .. }
            | Event::ComplaintClosed { .. }
            | Event::ComplaintWithdrawn { .. }
            | Event::NoteAdded { .. }
            | Event::EscalationRaised { .. }
            | Event::EscalationAcknowledged { .. } => {}
            Event::ComplaintAcknowledged {
                stage,
                acknowledged_at,
                response_due,
                ..
            } => {
                if let Some(clock) = self.unanswered(*stage) {
                    clock.acknowledged =
                        clock.acknowledged.or(Some(england_date(*acknowledged_at)));
                    clock.response_due_original = Some(*response_due);
                    clock.response_due = Some(*response_due);
                }
            }
            Event::DeadlineExtended {
                stage,
                response_due,
                ..
            } => {
                if let Some(clock) = self.unanswered(*stage) {
                    clock.response_due = Some(*response_due);
                }
            }
            Event::ResponseIssued {
                stage,
                responded_at,
                ..
            } => {
                if let Some(clock) = self.unanswered(*stage) {
                    clock.responded = Some(england_date(*responded_at));
                }
            }
            Event::StageTwoRequested {
                requested_at,
                acknowledgement_due,
                ..
            } => {
                self.escalated = true;
                if self.stage_two.is_none() {
                    self.stage_two = Some(StageClock::started(
                        england_date(*requested_at),
                        *acknowledgement_due,
                    ));
                }
            }
            Event::ComplaintReopened {
                stage,
                acknowledgement_due,
                response_due,
                ..
            } => self.reopened(*stage, *acknowledgement_due, *response_due),
        }
    }

    /// The stage's clock while the stage has no response yet.
    fn unanswered(&mut self, stage: Stage) -> Option<&mut StageClock> {
        self.stage_mut(stage).filter(|c| c.responded.is_none())
    }

    fn reopened(
        &mut self,
        stage: Stage,
        acknowledgement_due: Option<NaiveDate>,
        response_due: Option<NaiveDate>,
    ) {
        self.reopen_count = self.reopen_count.saturating_add(1);
        // Before any response, the reopening's clock is the one the response is measured
        // against; after one, the response already given stands.
        if let Some(clock) = self.unanswered(stage) {
            if let Some(due) = acknowledgement_due {
                clock.acknowledgement_due = due;
            }
            if let Some(due) = response_due {
                clock.response_due_original = Some(due);
                clock.response_due = Some(due);
            }
        }
    }
}

/// What a stage counts in a period, for the regulator's CH01 and CH02.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Stage 1: complaints received in the period; stage 2: escalations requested in it.
    pub received: u64,
    /// Responses issued at this stage in the period.
    pub responded: u64,
    /// Of those, issued by the deadline set at acknowledgement.
    pub responded_within_original_due: u64,
    /// Of those, issued by the deadline including any extension.
    pub responded_within_extended_due: u64,
}

/// Both stages' counts for a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlingCounts {
    pub stage_one: StageCounts,
    pub stage_two: StageCounts,
}

/// The columns `decode` reads.
macro_rules! columns {
    () => {
        "complaint_id, contractor_id, month, visit_id, received_date, \
         stage_one_started, stage_one_acknowledgement_due, stage_one_acknowledged, \
         stage_one_response_due_original, stage_one_response_due, stage_one_responded, \
         stage_two_started, stage_two_acknowledgement_due, stage_two_acknowledged, \
         stage_two_response_due_original, stage_two_response_due, stage_two_responded, \
         escalated, reopen_count, version, liaison_lead"
    };
}

pub(crate) async fn load(
    connection: &mut AnyConnection,
    complaint_id: &str,
) -> Result<Option<HandlingRow>, ProjectionError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM complaint_handling WHERE complaint_id = $1"
    ))
    .bind(complaint_id)
    .fetch_optional(connection)
    .await?;
    row.map(|row| decode(&row)).transpose()
}

fn date_text(date: Option<NaiveDate>) -> Option<String> {
    date.map(|date| date.to_string())
}

/// Writes handling rows; bound by [`bind`].
pub(crate) const UPSERT: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO complaint_handling (complaint_id, contractor_id, month, visit_id, \
             received_date, stage_one_started, stage_one_acknowledgement_due, \
             stage_one_acknowledged, stage_one_response_due_original, stage_one_response_due, \
             stage_one_responded, stage_two_started, stage_two_acknowledgement_due, \
             stage_two_acknowledged, stage_two_response_due_original, stage_two_response_due, \
             stage_two_responded, escalated, reopen_count, version, liaison_lead)",
    width: 21,
    on_conflict: "ON CONFLICT (complaint_id) DO UPDATE SET \
         stage_one_acknowledgement_due = excluded.stage_one_acknowledgement_due, \
         stage_one_acknowledged = excluded.stage_one_acknowledged, \
         stage_one_response_due_original = excluded.stage_one_response_due_original, \
         stage_one_response_due = excluded.stage_one_response_due, \
         stage_one_responded = excluded.stage_one_responded, \
         stage_two_started = excluded.stage_two_started, \
         stage_two_acknowledgement_due = excluded.stage_two_acknowledgement_due, \
         stage_two_acknowledged = excluded.stage_two_acknowledged, \
         stage_two_response_due_original = excluded.stage_two_response_due_original, \
         stage_two_response_due = excluded.stage_two_response_due, \
         stage_two_responded = excluded.stage_two_responded, \
         escalated = excluded.escalated, reopen_count = excluded.reopen_count, \
         version = excluded.version",
};

/// Binds one row of [`UPSERT`].
pub(crate) fn bind<'q>(
    query: Query<'q, Any, AnyArguments>,
    row: &HandlingRow,
) -> Query<'q, Any, AnyArguments> {
    let two = row.stage_two.as_ref();
    query
        .bind(row.complaint_id.clone())
        .bind(row.contractor_id.clone())
        .bind(row.month.to_string())
        .bind(row.visit_id.clone())
        .bind(row.received_date.to_string())
        .bind(row.stage_one.started.to_string())
        .bind(row.stage_one.acknowledgement_due.to_string())
        .bind(date_text(row.stage_one.acknowledged))
        .bind(date_text(row.stage_one.response_due_original))
        .bind(date_text(row.stage_one.response_due))
        .bind(date_text(row.stage_one.responded))
        .bind(date_text(two.map(|clock| clock.started)))
        .bind(date_text(two.map(|clock| clock.acknowledgement_due)))
        .bind(date_text(two.and_then(|clock| clock.acknowledged)))
        .bind(date_text(two.and_then(|clock| clock.response_due_original)))
        .bind(date_text(two.and_then(|clock| clock.response_due)))
        .bind(date_text(two.and_then(|clock| clock.responded)))
        .bind(i64::from(row.escalated))
        .bind(i64::from(row.reopen_count))
        .bind(i64::try_from(row.version).unwrap_or(i64::MAX))
        .bind(lead_code(row.liaison_lead))
}

/// How a liaison lead is stored: its code, or empty for unknown.
pub(crate) fn lead_code(lead: Option<LiaisonLead>) -> &'static str {
    lead.map_or("", LiaisonLead::code)
}

/// A stored liaison lead; None for unknown (empty), an error for any other text.
pub(crate) fn lead_from_code(code: &str) -> Result<Option<LiaisonLead>, String> {
    if code.is_empty() {
        return Ok(None);
    }
    LiaisonLead::from_code(code)
        .map(Some)
        .ok_or_else(|| format!("unknown liaison lead {code}"))
}

/// A count column; a negative one can only come from a broken database.
pub(crate) fn count(row: &AnyRow, column: &str) -> Result<u64, ProjectionError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| ProjectionError::CorruptRecord {
        table: "complaint_handling",
        key: column.to_owned(),
        reason: "negative count".to_owned(),
    })
}

fn decode(row: &AnyRow) -> Result<HandlingRow, ProjectionError> {
    let complaint_id: String = row.try_get("complaint_id")?;
    let corrupt = |reason: String| ProjectionError::CorruptRecord {
        table: "complaint_handling",
        key: complaint_id.clone(),
        reason,
    };
    let optional_date = |column: &str| -> Result<Option<NaiveDate>, ProjectionError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|text| {
            text.parse()
                .map_err(|_| corrupt(format!("{column} is not a date")))
        })
        .transpose()
    };
    let date = |column: &str| -> Result<NaiveDate, ProjectionError> {
        optional_date(column)?.ok_or_else(|| corrupt(format!("{column} is missing")))
    };
    let stage_one = StageClock {
        started: date("stage_one_started")?,
        acknowledgement_due: date("stage_one_acknowledgement_due")?,
        acknowledged: optional_date("stage_one_acknowledged")?,
        response_due_original: optional_date("stage_one_response_due_original")?,
        response_due: optional_date("stage_one_response_due")?,
        responded: optional_date("stage_one_responded")?,
    };
    let stage_two = match optional_date("stage_two_started")? {
        Some(started) => Some(StageClock {
            started,
            acknowledgement_due: date("stage_two_acknowledgement_due")?,
            acknowledged: optional_date("stage_two_acknowledged")?,
            response_due_original: optional_date("stage_two_response_due_original")?,
            response_due: optional_date("stage_two_response_due")?,
            responded: optional_date("stage_two_responded")?,
        }),
        None => None,
    };
    let month: String = row.try_get("month")?;
    let escalated: i64 = row.try_get("escalated")?;
    let reopen_count: i64 = row.try_get("reopen_count")?;
    let version: i64 = row.try_get("version")?;
    let liaison_lead: String = row.try_get("liaison_lead")?;
    Ok(HandlingRow {
        liaison_lead: lead_from_code(&liaison_lead).map_err(corrupt)?,
        contractor_id: row.try_get("contractor_id")?,
        month: Month::parse(&month).map_err(|error| corrupt(error.to_string()))?,
        visit_id: row.try_get("visit_id")?,
        received_date: date("received_date")?,
        stage_one,
        stage_two,
        escalated: escalated != 0,
        reopen_count: u32::try_from(reopen_count)
            .map_err(|_| corrupt("reopen_count out of range".to_owned()))?,
        version: u64::try_from(version).map_err(|_| corrupt("negative version".to_owned()))?,
        complaint_id: complaint_id.clone(),
    })
}
