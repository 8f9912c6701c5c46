//! What one projection batch changes, gathered in memory and written once per row at its end.
//!
//! Applying events one statement at a time cost several round trips per event, and on SQLite
//! each round trip is a hop to sqlx's worker thread and back. Within a batch, the rows a complaint
//! event changes (its list row, its handling row) are read at most once and written once, however
//! many of the batch's events concern them; counters are summed per key and added once. The
//! writes go out as multi-row statements at the end of the batch, inside its transaction, so the
//! batch is still applied with its checkpoint or not at all.
//!
//! Visit rows are read for a whole batch in a few statements before it is applied. Tables that an
//! event both reads and writes rarely (`complaint_findings`, the registry) are still written as
//! each event is applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use doorstep_domain::{ServiceStandard, WorkingDayCalendar};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{AnyConnection, Row};

use crate::ProjectionError;
use crate::complaint_list::{self, ComplaintRow};
use crate::database::{placeholders, row_values};
use crate::handling::{self, HandlingRow};
use crate::handling_counters;
use crate::performance::{self, StandardDelta};

/// Rows per multi-row statement: few enough statement shapes to stay in sqlx's statement cache,
/// and far below SQLite's and PostgreSQL's limits on bound values.
const ROWS_PER_STATEMENT: usize = 64;

/// A complaint-list row and the position of the last event that changed it.
type ListEntry = (ComplaintRow, u64);

#[derive(Debug, Default)]
pub(crate) struct BatchChanges {
    complaint_rows: HashMap<String, ListEntry>,
    handling_rows: HashMap<String, HandlingRow>,
    /// Each changed handling row as it was before the batch (None: new), so the handling
    /// counters can move by the difference.
    handling_before: HashMap<String, Option<HandlingRow>>,
    standard_deltas: BTreeMap<(String, String, ServiceStandard), StandardDelta>,
    month_visit_deltas: BTreeMap<(String, String), (i64, i64)>,
    /// Visit rows read or changed by the batch (None: no row), and which of them changed.
    visits: HashMap<String, Option<VisitRow>>,
    changed_visits: BTreeSet<String>,
}

/// A row of `visits`: `contractor_id` and `month` stay empty until the visit itself is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VisitRow {
    pub(crate) contractor_id: Option<String>,
    pub(crate) month: Option<String>,
    pub(crate) upheld_breaches: i64,
}

impl BatchChanges {
    /// A complaint's list row as the batch has left it so far.
    pub(crate) async fn complaint_row(
        &self,
        connection: &mut AnyConnection,
        complaint_id: &str,
    ) -> Result<Option<ComplaintRow>, ProjectionError> {
        match self.complaint_rows.get(complaint_id) {
            Some((row, _)) => Ok(Some(row.clone())),
            None => complaint_list::load(connection, complaint_id).await,
        }
    }

    pub(crate) fn put_complaint_row(&mut self, row: ComplaintRow, position: u64) {
        self.complaint_rows
            .insert(row.complaint_id.clone(), (row, position));
    }

    /// A complaint's handling row as the batch has left it so far.
    pub(crate) async fn handling_row(
        &mut self,
        connection: &mut AnyConnection,
        complaint_id: &str,
    ) -> Result<Option<HandlingRow>, ProjectionError> {
        if let Some(row) = self.handling_rows.get(complaint_id) {
            return Ok(Some(row.clone()));
        }
        let stored = handling::load(connection, complaint_id).await?;
        self.handling_before
            .insert(complaint_id.to_owned(), stored.clone());
        Ok(stored)
    }

    pub(crate) fn put_handling_row(&mut self, row: HandlingRow) {
        // A row never loaded is one the batch started.
        self.handling_before
            .entry(row.complaint_id.clone())
            .or_insert(None);
        self.handling_rows.insert(row.complaint_id.clone(), row);
    }

    /// Reads the visit rows of `visit_ids` in a few statements, so that recording a batch of
    /// visits does not read them one by one.
    pub(crate) async fn prefetch_visits(
        &mut self,
        connection: &mut AnyConnection,
        visit_ids: &[&str],
    ) -> Result<(), ProjectionError> {
        let missing: Vec<&str> = visit_ids
            .iter()
            .copied()
            .filter(|visit_id| !self.visits.contains_key(*visit_id))
            .collect();
        for chunk in missing.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(
                "SELECT visit_id, contractor_id, month, upheld_breaches FROM visits \
                 WHERE visit_id IN ({})",
                placeholders(connection, 1, chunk.len())
            );
            let query = chunk.iter().fold(
                sqlx::query(sqlx::AssertSqlSafe(statement)),
                |query, visit_id| query.bind(visit_id.to_string()),
            );
            for visit_id in chunk {
                self.visits.insert((*visit_id).to_owned(), None);
            }
            for row in query.fetch_all(&mut *connection).await? {
                let visit_id: String = row.try_get("visit_id")?;
                let visit = VisitRow {
                    contractor_id: row.try_get("contractor_id")?,
                    month: row.try_get("month")?,
                    upheld_breaches: row.try_get("upheld_breaches")?,
                };
                self.visits.insert(visit_id, Some(visit));
            }
        }
        Ok(())
    }

    /// A visit's row as the batch has left it so far.
    pub(crate) async fn visit(
        &mut self,
        connection: &mut AnyConnection,
        visit_id: &str,
    ) -> Result<Option<VisitRow>, ProjectionError> {
        if !self.visits.contains_key(visit_id) {
            self.prefetch_visits(connection, &[visit_id]).await?;
        }
        Ok(self.visits.get(visit_id).cloned().flatten())
    }

    pub(crate) fn put_visit(&mut self, visit_id: &str, row: VisitRow) {
        self.visits.insert(visit_id.to_owned(), Some(row));
        self.changed_visits.insert(visit_id.to_owned());
    }

    /// Adds to one standard's counters of one contractor and month.
    pub(crate) fn add_to_standard(
        &mut self,
        contractor_id: &str,
        month: String,
        standard: ServiceStandard,
        delta: StandardDelta,
    ) {
        let total = self
            .standard_deltas
            .entry((contractor_id.to_owned(), month, standard))
            .or_default();
        *total = total.plus(delta);
    }

    /// Adds to one contractor-month's visits and visits with an upheld breach.
    pub(crate) fn add_to_month_visits(
        &mut self,
        contractor_id: &str,
        month: &str,
        visits: i64,
        with_upheld_breach: i64,
    ) {
        let total = self
            .month_visit_deltas
            .entry((contractor_id.to_owned(), month.to_owned()))
            .or_default();
        total.0 += visits;
        total.1 += with_upheld_breach;
    }

    /// Writes everything gathered, in the batch's transaction. The calendar counts the working
    /// days behind the handling counters.
    pub(crate) async fn flush(
        self,
        connection: &mut AnyConnection,
        calendar: &WorkingDayCalendar,
    ) -> Result<(), ProjectionError> {
        let mut counter_deltas = BTreeMap::new();
        for (complaint_id, after) in &self.handling_rows {
            let before = self
                .handling_before
                .get(complaint_id)
                .and_then(Option::as_ref);
            handling_counters::add_change(&mut counter_deltas, before, after, calendar);
        }
        let counter_deltas: Vec<_> = counter_deltas
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect();
        write_rows(
            connection,
            &handling_counters::UPSERT,
            &counter_deltas,
            handling_counters::bind,
        )
        .await?;
        let visits: Vec<(String, VisitRow)> = self
            .changed_visits
            .iter()
            .filter_map(|visit_id| {
                let row = self.visits.get(visit_id).cloned().flatten()?;
                Some((visit_id.clone(), row))
            })
            .collect();
        write_rows(
            connection,
            &UPSERT_VISITS,
            &visits,
            |query, (visit_id, row)| {
                query
                    .bind(visit_id.clone())
                    .bind(row.contractor_id.clone())
                    .bind(row.month.clone())
                    .bind(row.upheld_breaches)
            },
        )
        .await?;
        let complaint_rows: Vec<ListEntry> = self.complaint_rows.into_values().collect();
        write_rows(
            connection,
            &complaint_list::UPSERT,
            &complaint_rows,
            |query, (row, position)| complaint_list::bind(query, row, *position),
        )
        .await?;
        let handling_rows: Vec<HandlingRow> = self.handling_rows.into_values().collect();
        write_rows(
            connection,
            &handling::UPSERT,
            &handling_rows,
            handling::bind,
        )
        .await?;
        let standard_deltas: Vec<_> = self
            .standard_deltas
            .into_iter()
            .filter(|(_, delta)| *delta != StandardDelta::default())
            .collect();
        write_rows(
            connection,
            &performance::ADD_TO_STANDARD,
            &standard_deltas,
            |query, ((contractor_id, month, standard), delta)| {
                performance::bind_standard_delta(query, contractor_id, month, *standard, delta)
            },
        )
        .await?;
        let month_visit_deltas: Vec<_> = self
            .month_visit_deltas
            .into_iter()
            .filter(|(_, delta)| *delta != (0, 0))
            .collect();
        write_rows(
            connection,
            &performance::ADD_TO_MONTH_VISITS,
            &month_visit_deltas,
            |query, ((contractor_id, month), (visits, with_upheld_breach))| {
                query
                    .bind(contractor_id.clone())
                    .bind(month.clone())
                    .bind(*visits)
                    .bind(*with_upheld_breach)
            },
        )
        .await
    }
}

const UPSERT_VISITS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO visits (visit_id, contractor_id, month, upheld_breaches)",
    width: 4,
    on_conflict: "ON CONFLICT (visit_id) DO UPDATE SET contractor_id = excluded.contractor_id, \
                  month = excluded.month, upheld_breaches = excluded.upheld_breaches",
};

/// A multi-row `INSERT … VALUES (…), (…) ON CONFLICT …` written once, for any number of rows.
pub(crate) struct MultiRowUpsert {
    /// `INSERT INTO table (columns)`.
    pub(crate) insert: &'static str,
    /// Values per row.
    pub(crate) width: usize,
    /// `ON CONFLICT … DO UPDATE …`.
    pub(crate) on_conflict: &'static str,
}

impl MultiRowUpsert {
    fn statement(&self, connection: &AnyConnection, rows: usize) -> String {
        format!(
            "{} VALUES {} {}",
            self.insert,
            row_values(connection, rows, self.width),
            self.on_conflict
        )
    }
}

type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

async fn write_rows<R>(
    connection: &mut AnyConnection,
    upsert: &MultiRowUpsert,
    rows: &[R],
    bind: impl for<'q> Fn(AnyQuery<'q>, &R) -> AnyQuery<'q>,
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let statement = upsert.statement(connection, chunk.len());
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(statement)), &bind);
        query.execute(&mut *connection).await?;
    }
    Ok(())
}
