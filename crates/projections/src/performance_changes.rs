//! What one projection batch changes in the performance counters and the visit rows, gathered
//! in memory and written once at the batch's end.
//!
//! Counters are summed per key and added once; visit rows are read for a whole batch in a few
//! statements before it is applied, and each changed one is written once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use doorstep_domain::ServiceStandard;
use sqlx::{AnyConnection, Row};

use crate::ProjectionError;
use crate::database::placeholders;
use crate::performance::{self, StandardDelta};
use crate::upsert::{MultiRowUpsert, ROWS_PER_STATEMENT, write_rows};

/// A row of `visits`: `contractor_id` and `month` stay empty until the visit itself is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VisitRow {
    pub(crate) contractor_id: Option<String>,
    pub(crate) month: Option<String>,
    pub(crate) upheld_breaches: i64,
}

#[derive(Debug, Default)]
pub(crate) struct PerformanceChanges {
    standard_deltas: BTreeMap<(String, String, ServiceStandard), StandardDelta>,
    month_visit_deltas: BTreeMap<(String, String), (i64, i64)>,
    /// Visit rows read or changed by the batch (None: no row), and which of them changed.
    visits: HashMap<String, Option<VisitRow>>,
    changed_visits: BTreeSet<String>,
}

impl PerformanceChanges {
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

    /// Writes the visit rows and counter deltas gathered, in the batch's transaction.
    pub(crate) async fn flush(self, connection: &mut AnyConnection) -> Result<(), ProjectionError> {
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
