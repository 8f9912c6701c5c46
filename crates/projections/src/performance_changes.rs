//! What one projection batch changes in the performance counters and the visit rows, gathered
//! in memory and written once at the batch's end.
//!
//! Counters are summed per key and added once; visit rows are read for a whole batch in a few
//! statements before it is applied, and each changed one is written once. The runner applies
//! allegations, findings and visits here (`record_*`); `performance` holds the pure deltas, the
//! tables' upserts and the reports, and knows nothing of batches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use doorstep_domain::ServiceStandard;
use doorstep_domain::complaint::{Finding, FindingOutcome};
use doorstep_domain::contractor::Visit;
use indexmap::IndexMap;
use sqlx::{AnyConnection, Row};

use crate::ProjectionError;
use crate::database::placeholders;
use crate::handling::HandlingRow;
use crate::month::Month;
use crate::performance::{self, StandardDelta, finding_change, outcome_from_code};
use crate::upsert::{MultiRowUpsert, in_list_chunks, write_rows};

/// A row of `visits`: `contractor_id` and `month` stay empty until the visit itself is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VisitRow {
    pub(crate) contractor_id: Option<String>,
    pub(crate) month: Option<String>,
    pub(crate) upheld_breaches: i64,
}

/// A visit's row as the batch has read or left it (None: no row), and whether the batch
/// changed it.
#[derive(Debug, Default)]
struct VisitEntry {
    row: Option<VisitRow>,
    changed: bool,
}

/// Maps filled once or more per event of a rebuild: keyed by ids from the log, hashed fast.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub(crate) struct PerformanceChanges {
    standard_deltas: BTreeMap<(String, String, ServiceStandard), StandardDelta>,
    /// Visits and visits with an upheld breach added, by contractor, then month (looked up
    /// without building a key: nearly every event of a large log adds to one).
    month_visit_deltas: FastMap<String, FastMap<String, (i64, i64)>>,
    /// Visit rows read or changed by the batch, in the order the batch met them (the log's,
    /// usually the keys' order too, which makes sorting them to write nearly free).
    visits: IndexMap<String, VisitEntry, foldhash::fast::RandomState>,
    /// Each finding's outcome as the batch has left it, for the complaints in
    /// `findings_loaded`, and which of them changed (written once at the batch's end).
    findings: HashMap<(String, ServiceStandard), FindingOutcome>,
    findings_loaded: HashSet<String>,
    changed_findings: BTreeSet<(String, ServiceStandard)>,
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
        for chunk in in_list_chunks(&missing) {
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
                self.visits
                    .insert((*visit_id).to_owned(), VisitEntry::default());
            }
            for row in query.fetch_all(&mut *connection).await? {
                let visit_id: String = row.try_get("visit_id")?;
                let visit = VisitRow {
                    contractor_id: row.try_get("contractor_id")?,
                    month: row.try_get("month")?,
                    upheld_breaches: row.try_get("upheld_breaches")?,
                };
                self.visits.insert(
                    visit_id,
                    VisitEntry {
                        row: Some(visit),
                        changed: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// Takes it that the visits of `visit_ids` have no rows, without reading them: for a catch-up
    /// from empty tables that has written none of them (`WrittenVisits`).
    pub(crate) fn assume_no_rows(&mut self, visit_ids: &[&str]) {
        for visit_id in visit_ids {
            self.visits.entry((*visit_id).to_owned()).or_default();
        }
    }

    /// The visits whose rows the batch writes.
    pub(crate) fn changed_visit_ids(&self) -> impl Iterator<Item = &str> {
        self.visits
            .iter()
            .filter(|(_, entry)| entry.changed)
            .map(|(visit_id, _)| visit_id.as_str())
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
        Ok(self
            .visits
            .get(visit_id)
            .and_then(|entry| entry.row.clone()))
    }

    pub(crate) fn put_visit(&mut self, visit_id: &str, row: VisitRow) {
        let entry = VisitEntry {
            row: Some(row),
            changed: true,
        };
        match self.visits.get_mut(visit_id) {
            Some(stored) => *stored = entry,
            None => {
                self.visits.insert(visit_id.to_owned(), entry);
            }
        }
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
        let months = match self.month_visit_deltas.get_mut(contractor_id) {
            Some(months) => months,
            None => self
                .month_visit_deltas
                .entry(contractor_id.to_owned())
                .or_default(),
        };
        let total = match months.get_mut(month) {
            Some(total) => total,
            None => months.entry(month.to_owned()).or_default(),
        };
        total.0 += visits;
        total.1 += with_upheld_breach;
    }

    /// Reads a complaint's stored findings once per batch; a complaint received in this batch
    /// (`received_in_batch`) has none stored yet, so nothing is read for it.
    async fn load_findings(
        &mut self,
        connection: &mut AnyConnection,
        complaint_id: &str,
        received_in_batch: bool,
    ) -> Result<(), ProjectionError> {
        if !self.findings_loaded.insert(complaint_id.to_owned()) || received_in_batch {
            return Ok(());
        }
        let rows =
            sqlx::query("SELECT standard, outcome FROM complaint_findings WHERE complaint_id = $1")
                .bind(complaint_id)
                .fetch_all(&mut *connection)
                .await?;
        for row in rows {
            let standard: String = row.try_get("standard")?;
            let code: String = row.try_get("outcome")?;
            let corrupt = |reason: String| ProjectionError::CorruptRecord {
                table: "complaint_findings",
                key: complaint_id.to_owned(),
                reason,
            };
            let standard = ServiceStandard::from_code(&standard)
                .ok_or_else(|| corrupt(format!("unknown standard {standard}")))?;
            let outcome = outcome_from_code(&code)
                .ok_or_else(|| corrupt(format!("unknown outcome {code}")))?;
            self.findings
                .insert((complaint_id.to_owned(), standard), outcome);
        }
        Ok(())
    }

    /// Writes the visit rows and counter deltas gathered, in the batch's transaction.
    pub(crate) async fn flush(self, connection: &mut AnyConnection) -> Result<(), ProjectionError> {
        let findings: Vec<(&(String, ServiceStandard), FindingOutcome)> = self
            .changed_findings
            .iter()
            .filter_map(|key| Some((key, *self.findings.get(key)?)))
            .collect();
        write_rows(
            connection,
            &UPSERT_FINDINGS,
            &findings,
            |query, ((complaint_id, standard), outcome)| {
                query
                    .bind(complaint_id.clone())
                    .bind(standard.code())
                    .bind(outcome.code())
            },
        )
        .await?;
        // In key order, which is the order the table keeps them in. A batch's visits arrive
        // interleaved from many writers, so this is a real sort of ~20,000 keys a batch:
        // comparing their first 16 bytes held beside them, before following the pointers to the
        // whole keys, made it several times cheaper (same order: see `key_prefix`).
        let mut visits: Vec<(u128, &String, &VisitRow)> = self
            .visits
            .iter()
            .filter(|(_, entry)| entry.changed)
            .filter_map(|(visit_id, entry)| {
                Some((key_prefix(visit_id), visit_id, entry.row.as_ref()?))
            })
            .collect();
        visits.sort_unstable_by(|(a_prefix, a, _), (b_prefix, b, _)| {
            a_prefix.cmp(b_prefix).then_with(|| a.cmp(b))
        });
        write_rows(
            connection,
            &UPSERT_VISITS,
            &visits,
            |query, (_, visit_id, row)| {
                query
                    .bind((*visit_id).clone())
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
        let mut month_visit_deltas: Vec<_> = self
            .month_visit_deltas
            .into_iter()
            .flat_map(|(contractor_id, months)| {
                months
                    .into_iter()
                    .map(move |(month, delta)| ((contractor_id.clone(), month), delta))
            })
            .filter(|(_, delta)| *delta != (0, 0))
            .collect();
        month_visit_deltas.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
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

const UPSERT_FINDINGS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO complaint_findings (complaint_id, standard, outcome)",
    width: 3,
    on_conflict: "ON CONFLICT (complaint_id, standard) DO UPDATE SET outcome = excluded.outcome",
};

const UPSERT_VISITS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO visits (visit_id, contractor_id, month, upheld_breaches)",
    width: 4,
    on_conflict: "ON CONFLICT (visit_id) DO UPDATE SET contractor_id = excluded.contractor_id, \
                  month = excluded.month, upheld_breaches = excluded.upheld_breaches",
};

/// Counts the standards a newly received complaint alleges, in its contractor and month.
pub(crate) fn record_allegations(
    changes: &mut PerformanceChanges,
    complaint: &HandlingRow,
    standards: &[ServiceStandard],
) {
    let alleged: BTreeSet<ServiceStandard> = standards.iter().copied().collect();
    for standard in alleged {
        let delta = StandardDelta {
            reported: 1,
            ..StandardDelta::default()
        };
        changes.add_to_standard(
            &complaint.contractor_id,
            complaint.month.to_string(),
            standard,
            delta,
        );
    }
}

/// Applies findings in the order given (a later finding on the same standard wins, as in the
/// aggregate), moving counts from each standard's previous outcome to its new one. Outcomes are
/// read once per complaint and batch (not at all for a complaint received in the batch) and
/// written once at its end.
pub(crate) async fn record_findings(
    connection: &mut AnyConnection,
    changes: &mut PerformanceChanges,
    complaint: &HandlingRow,
    findings: &[Finding],
    received_in_batch: bool,
) -> Result<(), ProjectionError> {
    changes
        .load_findings(connection, &complaint.complaint_id, received_in_batch)
        .await?;
    for finding in findings {
        let key = (complaint.complaint_id.clone(), finding.standard);
        let previous = changes.findings.get(&key).copied();
        let Some((standard_delta, visit_delta)) = finding_change(previous, finding.outcome) else {
            continue;
        };
        changes.findings.insert(key.clone(), finding.outcome);
        changes.changed_findings.insert(key);
        changes.add_to_standard(
            &complaint.contractor_id,
            complaint.month.to_string(),
            finding.standard,
            standard_delta,
        );
        if let Some(visit_id) = &complaint.visit_id
            && visit_delta != 0
        {
            add_upheld_breaches(connection, changes, visit_id, visit_delta).await?;
        }
    }
    Ok(())
}

/// Adds `delta` to a visit's upheld breaches and, when the visit is recorded and crosses
/// between none and some, to its contractor-month's visits with an upheld breach.
async fn add_upheld_breaches(
    connection: &mut AnyConnection,
    changes: &mut PerformanceChanges,
    visit_id: &str,
    delta: i64,
) -> Result<(), ProjectionError> {
    // No row yet: a complaint named the visit before it was recorded, and this row starts it.
    let mut visit = changes
        .visit(connection, visit_id)
        .await?
        .unwrap_or_default();
    let before = visit.upheld_breaches;
    visit.upheld_breaches += delta;
    let crossed = i64::from(visit.upheld_breaches > 0) - i64::from(before > 0);
    if let (Some(contractor_id), Some(month)) = (&visit.contractor_id, &visit.month)
        && crossed != 0
    {
        changes.add_to_month_visits(contractor_id, month, 0, crossed);
    }
    changes.put_visit(visit_id, visit);
    Ok(())
}

/// A key's first 16 bytes as a number, padded with zeros: two keys whose prefixes differ are in
/// the prefixes' order (a key that ends first pads with 0, below any byte a longer key has
/// there, or equal to a 0 byte, whose tie the whole keys then break).
fn key_prefix(key: &str) -> u128 {
    let mut bytes = [0_u8; 16];
    let len = key.len().min(16);
    bytes[..len].copy_from_slice(&key.as_bytes()[..len]);
    u128::from_be_bytes(bytes)
}

/// Counts a visit in its contractor and month, with the upheld breaches complaints have already
/// found on it. A visit recorded twice counts once; the first record stands.
pub(crate) async fn record_visit(
    connection: &mut AnyConnection,
    changes: &mut PerformanceChanges,
    visit: &Visit,
) -> Result<(), ProjectionError> {
    // No row yet: no complaint has named the visit, and recording it starts the row.
    let mut row = changes
        .visit(connection, visit.visit_id.as_str())
        .await?
        .unwrap_or_default();
    if row.contractor_id.is_some() {
        tracing::warn!(visit_id = %visit.visit_id, "visit recorded again; the first record stands");
        return Ok(());
    }
    let month = Month::of(visit.visit_date).to_string();
    changes.add_to_month_visits(
        visit.contractor_id.as_str(),
        &month,
        1,
        i64::from(row.upheld_breaches > 0),
    );
    row.contractor_id = Some(visit.contractor_id.as_str().to_owned());
    row.month = Some(month);
    changes.put_visit(visit.visit_id.as_str(), row);
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::key_prefix;

    fn by_prefix_then_key(mut keys: Vec<String>) -> Vec<String> {
        keys.sort_unstable_by(|a, b| key_prefix(a).cmp(&key_prefix(b)).then_with(|| a.cmp(b)));
        keys
    }

    fn by_key(mut keys: Vec<String>) -> Vec<String> {
        keys.sort_unstable();
        keys
    }

    #[test]
    fn prefixes_keep_the_keys_order_at_the_edges() {
        let keys: Vec<String> = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "visit-999",
            "visit-1000",
            "visit-10000000000",
            "visit-1000000000",
            "visit-10000000000\0",
            "visit-10000000000a",
            "é",
            "e\u{ff}",
            "0123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdeg",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(by_prefix_then_key(keys.clone()), by_key(keys));
    }

    proptest! {
        #[test]
        fn prefixes_keep_the_keys_order(keys in prop::collection::vec("[a\\x00é-]{0,20}", 0..40)) {
            prop_assert_eq!(by_prefix_then_key(keys.clone()), by_key(keys));
        }
    }
}
