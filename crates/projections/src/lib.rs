//! Read models derived from the event log.
//!
//! **Architecture invariant:** a read model is derived data. It is changed only by the
//! [`ProjectionRunner`], which applies each batch of events and its checkpoint in one transaction,
//! so a crash never applies an event twice or skips one, and dropping the tables and replaying
//! from position 0 gives the same rows.
//!
//! The models: the complaint list (`complaint_list`), the contractor registry with its lookup
//! keys (`contractors`), each complaint's handling clock (`handling`), the contractor
//! performance counters (`performance`), and the notifier's escalation schedule
//! (`escalation_schedule`) and escalations (`escalations`). The delivery outbox (`outbox`) lives
//! beside them, written in the same transaction as the escalation it delivers, but it is delivery
//! state: a rebuild keeps it. [`ReadModel`] reads them all; its only writes, to delivery state,
//! are in `read_model/delivery_state.rs`.

mod batch;
mod complaint_list;
mod contractors;
mod database;
mod escalation_planner;
mod escalation_schedule;
mod escalations;
mod generation;
mod handling;
mod handling_counters;
mod inspections;
mod liaison;
mod month;
mod outbox;
mod performance;
mod performance_changes;
mod read_model;
mod runner;
mod snapshot;
mod stall;
mod stored_values;
mod upsert;
mod written_visits;

pub use complaint_list::{ComplaintFilter, ComplaintRow, PageCursor, next_row};
pub use contractors::{
    AuditSummary, ContractStanding, ContractorCursor, ContractorRow, normalise_name, phone_key,
    query_key,
};
pub use database::{Backend, ReadModelDatabase};
pub use escalation_planner::EscalationPlanner;
pub use escalation_schedule::DueEscalation;
pub use escalations::{EscalationFilter, EscalationRow};
pub use generation::{drop_generation, postgres_generation_schema, sqlite_generation_file};
pub use handling::{HandlingCounts, HandlingRow, StageClock, StageCounts};
pub use handling_counters::HandlingSummary;
pub use inspections::{
    DueFindingEscalation, FindingLadder, InspectionCounts, InspectionFilter, InspectionRow,
    RaisedFinding, finding_escalation_document,
};
pub use liaison::LeadHandling;
pub use month::{InvalidMonth, Month};
pub use outbox::{Delivery, DeliveryChannel, delivery_id, escalation_document};
pub use performance::{
    ContractorFigures, ContractorTotals, MonthlyBreaches, StandardDelta, StandardFigures,
    finding_change, is_breach,
};
pub use read_model::ReadModel;
pub use runner::ProjectionRunner;
pub use snapshot::Snapshot;
pub use stall::Stall;

/// The pure "next row" steps of each read model, for tests and for anyone checking a model
/// against the replayed aggregates.
pub mod steps {
    pub use crate::complaint_list::next_row as next_complaint_row;
    pub use crate::contractors::next_row as next_contractor_row;
    pub use crate::handling::next_row as next_handling_row;
}

/// A row the notifier cannot read: it is set aside with this reason (and counted and logged)
/// rather than stopping every other escalation or delivery behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRow {
    /// `escalation_schedule` or `escalation_deliveries`.
    pub table: &'static str,
    /// The row's primary key as stored.
    pub key: String,
    pub reason: String,
}

impl UnreadableRow {
    fn from_error(table: &'static str, key: &str, error: &ProjectionError) -> Self {
        let reason = match error {
            ProjectionError::CorruptRecord { reason, .. } => reason.clone(),
            other => doorstep_telemetry::error_chain(other),
        };
        Self {
            table,
            key: key.to_owned(),
            reason,
        }
    }

    /// The rows, or the error for the first unreadable one: what a caller that cannot set rows
    /// aside gets.
    pub(crate) fn none_in<T>(rows: Vec<Result<T, Self>>) -> Result<Vec<T>, ProjectionError> {
        rows.into_iter()
            .map(|row| row.map_err(Self::into_error))
            .collect()
    }

    /// The error a caller that cannot set rows aside reports.
    pub fn into_error(self) -> ProjectionError {
        ProjectionError::CorruptRecord {
            table: self.table,
            key: self.key,
            reason: self.reason,
        }
    }
}

/// Why a read model could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database error")]
    Database(#[from] sqlx::Error),
    #[error("read model migration error")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("event store error")]
    Store(#[from] doorstep_store::StoreError),
    #[error("read model row for complaint {complaint_id} is invalid: {reason}")]
    CorruptRow {
        complaint_id: String,
        reason: String,
    },
    #[error("read model row {key} in {table} is invalid: {reason}")]
    CorruptRecord {
        table: &'static str,
        key: String,
        reason: String,
    },
    #[error("the event at position {position} cannot be read by this build: {reason}")]
    UndecodableEvent { position: u64, reason: String },
    /// An event the read models cannot apply, whatever the retries: they stop at it.
    #[error("the read models are stuck at event {} (position {})", .stall.event_id, .stall.position)]
    Stuck {
        stall: Stall,
        /// Events of the failed batch before the stuck one, which can be applied alone.
        applicable: usize,
        #[source]
        source: Box<ProjectionError>,
    },
    #[error("cannot remove an old read-model generation's file")]
    Io(#[from] std::io::Error),
    #[error("the read-model database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    /// The task reading a catch-up's next batch ahead panicked or was cancelled.
    #[error("reading the log ahead failed: {0}")]
    ReadAhead(String),
    #[error("page token is not one this service issued")]
    InvalidPageToken,
    /// A read-model table a snapshot reads is not in the database: one opened without its
    /// migrations, or changed under this build.
    #[error("the read-model table {0} does not exist")]
    MissingTable(String),
}
