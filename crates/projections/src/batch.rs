//! What one projection batch changes, gathered in memory and written once per row at its end.
//!
//! Applying events one statement at a time cost several round trips per event, and on SQLite
//! each round trip is a hop to sqlx's worker thread and back. Within a batch, the rows a complaint
//! event changes (its list row, its handling row) are read at most once and written once, however
//! many of the batch's events concern them; counters are summed per key and added once
//! ([`PerformanceChanges`]). The writes go out as multi-row statements at the end of the batch,
//! inside its transaction, so the batch is still applied with its checkpoint or not at all.
//!
//! Visit rows are read for a whole batch in a few statements before it is applied, and a
//! complaint's findings once per batch. Tables that events change rarely (the registry, the
//! escalations raised, inspections, the outbox) are still written as each event is applied.
//!
//! The dependency runs one way: this module uses the read models' loads and upserts; no read
//! model uses it.

use std::collections::{BTreeMap, HashMap};

use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::contractor::LiaisonLead;
use sqlx::AnyConnection;

use crate::ProjectionError;
use crate::complaint_list::{self, ComplaintRow};
use crate::contractors;
use crate::handling::{self, HandlingRow};
use crate::handling_counters::{self, CounterDeltas};
use crate::performance_changes::PerformanceChanges;
use crate::upsert::write_rows;

/// A complaint-list row and the position of the last event that changed it.
type ListEntry = (ComplaintRow, u64);

#[derive(Debug, Default)]
pub(crate) struct BatchChanges {
    complaint_rows: HashMap<String, ListEntry>,
    handling_rows: HashMap<String, HandlingRow>,
    /// Each changed handling row as it was before the batch (None: new), so the handling
    /// counters can move by the difference.
    handling_before: HashMap<String, Option<HandlingRow>>,
    /// The performance counters and visit rows the batch changes.
    pub(crate) performance: PerformanceChanges,
    /// Contractors' liaison leads (None: unknown) as the batch has left them, so that a batch of
    /// intake reads each contractor's once.
    liaison_leads: HashMap<String, Option<LiaisonLead>>,
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

    /// Whether the complaint's handling row was started by this batch (nothing of the complaint
    /// is stored yet).
    pub(crate) fn received_in_batch(&self, complaint_id: &str) -> bool {
        matches!(self.handling_before.get(complaint_id), Some(None))
    }

    /// The liaison lead a complaint about `contractor_id` received now is attributed to.
    pub(crate) async fn liaison_lead(
        &mut self,
        connection: &mut AnyConnection,
        contractor_id: &str,
    ) -> Result<Option<LiaisonLead>, ProjectionError> {
        if let Some(lead) = self.liaison_leads.get(contractor_id) {
            return Ok(*lead);
        }
        let lead = contractors::liaison_lead(connection, contractor_id).await?;
        self.liaison_leads.insert(contractor_id.to_owned(), lead);
        Ok(lead)
    }

    /// A contractor event of the batch set the contractor's lead.
    pub(crate) fn put_liaison_lead(&mut self, contractor_id: &str, lead: Option<LiaisonLead>) {
        self.liaison_leads.insert(contractor_id.to_owned(), lead);
    }

    /// Writes everything gathered, in the batch's transaction. The calendar counts the working
    /// days behind the handling counters.
    pub(crate) async fn flush(
        self,
        connection: &mut AnyConnection,
        calendar: &WorkingDayCalendar,
    ) -> Result<(), ProjectionError> {
        let mut counter_deltas = CounterDeltas::default();
        let mut lead_deltas = CounterDeltas::default();
        for (complaint_id, after) in &self.handling_rows {
            let before = self
                .handling_before
                .get(complaint_id)
                .and_then(Option::as_ref);
            handling_counters::add_change(
                &mut counter_deltas,
                &mut lead_deltas,
                before,
                after,
                calendar,
            );
        }
        let lead_deltas = handling_counters::in_key_order(lead_deltas);
        // A complaint's lead, contractor and month never change after intake: only the rows the
        // batch started add to the contractors behind each lead.
        let mut lead_contractors: BTreeMap<(&'static str, &str, String), i64> = BTreeMap::new();
        for (complaint_id, row) in &self.handling_rows {
            if matches!(self.handling_before.get(complaint_id), Some(None)) {
                let key = (
                    crate::handling::lead_code(row.liaison_lead),
                    row.contractor_id.as_str(),
                    row.month.to_string(),
                );
                *lead_contractors.entry(key).or_default() += 1;
            }
        }
        let lead_contractors: Vec<_> = lead_contractors.into_iter().collect();
        write_rows(
            connection,
            &crate::liaison::ADD_CONTRACTOR_COMPLAINTS,
            &lead_contractors,
            |query, ((lead, contractor_id, month), complaints)| {
                query
                    .bind(*lead)
                    .bind(contractor_id.to_string())
                    .bind(month.clone())
                    .bind(*complaints)
            },
        )
        .await?;
        write_rows(
            connection,
            &handling_counters::UPSERT_LEADS,
            &lead_deltas,
            handling_counters::bind,
        )
        .await?;
        let counter_deltas = handling_counters::in_key_order(counter_deltas);
        write_rows(
            connection,
            &handling_counters::UPSERT,
            &counter_deltas,
            handling_counters::bind,
        )
        .await?;
        self.performance.flush(connection).await?;
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
        .await
    }
}
