//! What the services and the notifier read: the read models' rows, the position they have
//! reached and whether they are stuck. The writes the notifier makes beside them (claiming and
//! settling deliveries, setting rows aside) are in `delivery_state`.

mod delivery_state;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::contractor::ContractorStatus;
use tokio::sync::watch;

use crate::complaint_list::{self, ComplaintFilter, ComplaintRow, PageCursor};
use crate::contractors::{self, ContractorCursor, ContractorRow};
use crate::database::ReadModelDatabase;
use crate::escalation_schedule::{self, DueEscalation};
use crate::escalations::{self, EscalationFilter, EscalationRow};
use crate::handling::{self, HandlingCounts, HandlingRow};
use crate::handling_counters;
use crate::inspections::{
    self, DueFindingEscalation, InspectionCounts, InspectionFilter, InspectionRow,
};
use crate::liaison::LeadHandling;
use crate::month::Month;
use crate::outbox::{self, Delivery};
use crate::performance::{self, ContractorFigures, ContractorTotals};
use crate::stall::Stall;
use crate::{ProjectionError, UnreadableRow};

/// The read models' queries, with the position they have reached; and the delivery state the
/// notifier writes beside them (`read_model/delivery_state.rs`, the only methods that write).
///
/// Every clone shares one handle on the generation served (see `generation.rs`): when a server
/// switches to a new generation ([`ReadModel::serve`]), every service and the notifier query the
/// new one from their next call. A query takes the generation's pool from the handle and never
/// holds the handle's lock across a wait.
#[derive(Clone)]
pub struct ReadModel {
    served: Arc<RwLock<Arc<Served>>>,
}

/// One generation's database and its runner's progress.
struct Served {
    database: ReadModelDatabase,
    position: watch::Receiver<u64>,
    stall: watch::Receiver<Option<Stall>>,
}

impl ReadModel {
    pub(crate) fn new(
        database: ReadModelDatabase,
        position: watch::Receiver<u64>,
        stall: watch::Receiver<Option<Stall>>,
    ) -> Self {
        Self {
            served: Arc::new(RwLock::new(Arc::new(Served {
                database,
                position,
                stall,
            }))),
        }
    }

    fn current(&self) -> Arc<Served> {
        // A poisoned lock still holds a whole `Arc`: nothing is written half-way under it.
        Arc::clone(&self.served.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn database(&self) -> ReadModelDatabase {
        self.current().database.clone()
    }

    /// Serves what `other` serves (a new generation of the read models, with its runner's
    /// progress) through this handle and every clone of it, from their next query on.
    pub fn serve(&self, other: &ReadModel) {
        let next = other.current();
        *self.served.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// Whether this handle and `other` serve the same generation.
    pub fn serves_same_as(&self, other: &ReadModel) -> bool {
        Arc::ptr_eq(&self.current(), &other.current())
    }

    /// Asks the served generation's database for an answer: for health checks.
    pub async fn ping(&self) -> Result<(), ProjectionError> {
        self.database().ping().await
    }

    /// The log position the read models have reached.
    pub fn position(&self) -> u64 {
        *self.current().position.borrow()
    }

    /// The event the read models are stuck at, if they are.
    pub fn stalled(&self) -> Option<Stall> {
        self.current().stall.borrow().clone()
    }

    /// Follows [`ReadModel::stalled`] (of the generation served now).
    pub fn watch_stall(&self) -> watch::Receiver<Option<Stall>> {
        self.current().stall.clone()
    }

    /// Waits until the read models have reached `position`, for at most `timeout`.
    /// Returns whether they did. A switch to another generation meanwhile is followed: the
    /// answer is about the generation served when the wait ends, which the next query reads.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let waiting = async {
            loop {
                let served = self.current();
                let mut receiver = served.position.clone();
                // Fails when the generation's runner has stopped: it has been switched from.
                let reached = receiver
                    .wait_for(|reached| *reached >= position)
                    .await
                    .is_ok();
                if Arc::ptr_eq(&served, &self.current()) {
                    return reached;
                }
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .unwrap_or(false)
    }

    /// Complaints not closed or withdrawn, by status and stage, for the open-complaints gauge.
    pub async fn open_complaint_counts(
        &self,
    ) -> Result<Vec<(doorstep_domain::complaint::Status, u32, u64)>, ProjectionError> {
        complaint_list::open_counts(self.database().pool()).await
    }

    /// One page of complaints, newest first.
    pub async fn list_complaints(
        &self,
        filter: &ComplaintFilter,
        page_size: u32,
        after: Option<&PageCursor>,
    ) -> Result<(Vec<ComplaintRow>, Option<PageCursor>), ProjectionError> {
        complaint_list::list(self.database().pool(), filter, page_size, after).await
    }

    /// One page of complaints in working order: pending deadlines first, earliest first (the
    /// overdue, then those due soonest), then the rest newest first; and whether more follow.
    pub async fn list_complaints_by_deadline(
        &self,
        filter: &ComplaintFilter,
        page_size: u32,
        offset: u64,
    ) -> Result<(Vec<ComplaintRow>, bool), ProjectionError> {
        complaint_list::list_by_deadline(self.database().pool(), filter, page_size, offset).await
    }

    /// Visits and upheld breaches month by month over `from..=to`, for one contractor or, with
    /// `None`, the whole programme (the run chart).
    pub async fn monthly_breaches(
        &self,
        contractor_id: Option<&str>,
        from: Month,
        to: Month,
    ) -> Result<Vec<performance::MonthlyBreaches>, ProjectionError> {
        performance::monthly_breaches(self.database().pool(), contractor_id, from, to).await
    }

    /// One contractor from the registry.
    pub async fn contractor(
        &self,
        contractor_id: &str,
    ) -> Result<Option<ContractorRow>, ProjectionError> {
        contractors::get(self.database().pool(), contractor_id).await
    }

    /// One page of the registry in contractor id order, optionally only one status.
    pub async fn list_contractors(
        &self,
        status: Option<ContractorStatus>,
        page_size: u32,
        after: Option<&ContractorCursor>,
    ) -> Result<(Vec<ContractorRow>, Option<ContractorCursor>), ProjectionError> {
        contractors::list(self.database().pool(), status, page_size, after).await
    }

    /// Contractors whose legal name or a trading name (case, spacing and punctuation aside) or
    /// phone number (digits only) is `query`, in contractor id order. Empty: nobody by that name
    /// or number is registered.
    pub async fn verify_contractor(
        &self,
        query: &str,
    ) -> Result<Vec<ContractorRow>, ProjectionError> {
        contractors::verify(self.database().pool(), query).await
    }

    /// One contractor's figures for the months `from..=to`.
    pub async fn contractor_performance(
        &self,
        contractor_id: &str,
        from: Month,
        to: Month,
    ) -> Result<ContractorFigures, ProjectionError> {
        performance::contractor_performance(self.database().pool(), contractor_id, from, to).await
    }

    /// Every registered contractor, and every other contractor with visits or complaints in
    /// `from..=to`, with its totals for those months, in contractor id order.
    pub async fn programme_performance(
        &self,
        from: Month,
        to: Month,
    ) -> Result<Vec<ContractorTotals>, ProjectionError> {
        performance::programme_performance(self.database().pool(), from, to).await
    }

    /// Ladder steps whose time has come at `now`, earliest first; an unreadable one is an
    /// error (the scheduler uses [`ReadModel::due_escalation_rows`] and sets those aside).
    pub async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, ProjectionError> {
        UnreadableRow::none_in(self.due_escalation_rows(now, limit).await?)
    }

    /// Ladder steps whose time has come at `now`, earliest first, each read or found
    /// unreadable. Rows set aside are not due.
    pub async fn due_escalation_rows(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Result<DueEscalation, UnreadableRow>>, ProjectionError> {
        escalation_schedule::due(self.database().pool(), now, limit).await
    }

    /// The schedule rows set aside: key, reason and when, oldest first.
    pub async fn set_aside_escalations(
        &self,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, ProjectionError> {
        escalation_schedule::set_aside_rows(self.database().pool()).await
    }

    /// One page of raised escalations in the order raised, after log position `after`.
    pub async fn list_escalations(
        &self,
        filter: &EscalationFilter,
        page_size: u32,
        after: u64,
    ) -> Result<Vec<EscalationRow>, ProjectionError> {
        escalations::list(self.database().pool(), filter, page_size, after).await
    }

    pub async fn escalation(
        &self,
        escalation_id: uuid::Uuid,
    ) -> Result<Option<EscalationRow>, ProjectionError> {
        escalations::get(self.database().pool(), escalation_id).await
    }

    /// Claims the other pending emails to `target` about `complaint_id`, so that one message
    /// stands for all of them.
    pub async fn claim_email_companions(
        &self,
        complaint_id: &str,
        target: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
        outbox::claim_companions(self.database().pool(), complaint_id, target, now, lease).await
    }

    /// How many emails to `target` about `complaint_id` are still owed, whoever holds them
    /// (this worker's included).
    pub async fn pending_email_companions(
        &self,
        complaint_id: &str,
        target: &str,
    ) -> Result<u64, ProjectionError> {
        outbox::pending_companions(self.database().pool(), complaint_id, target).await
    }

    /// The first email (oldest, then by id) still owed to `target` about `complaint_id`.
    pub async fn first_pending_email_companion(
        &self,
        complaint_id: &str,
        target: &str,
    ) -> Result<Option<uuid::Uuid>, ProjectionError> {
        outbox::first_pending_companion(self.database().pool(), complaint_id, target).await
    }

    /// Gives up a claim without trying the delivery.
    pub async fn release_delivery(&self, delivery_id: uuid::Uuid) -> Result<(), ProjectionError> {
        outbox::release(self.database().pool(), delivery_id).await
    }

    /// Whether a step of the complaint's ladder is due at `now` (the service's clock) and not
    /// raised yet.
    pub async fn has_unraised_due_step(
        &self,
        complaint_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        escalation_schedule::has_unraised_due_step(self.database().pool(), complaint_id, now).await
    }

    /// Dead-lettered deliveries, oldest first, after (created_at, delivery_id).
    pub async fn dead_letters(
        &self,
        page_size: u32,
        after: Option<(DateTime<Utc>, uuid::Uuid)>,
    ) -> Result<Vec<Delivery>, ProjectionError> {
        outbox::dead_letters(self.database().pool(), page_size, after).await
    }

    /// A delivery's state (`PENDING`, `DELIVERED`, `DEAD`, `SET_ASIDE`), if it exists.
    pub async fn delivery_state(
        &self,
        delivery_id: uuid::Uuid,
    ) -> Result<Option<String>, ProjectionError> {
        outbox::state(self.database().pool(), delivery_id).await
    }

    /// Each stage's received and responded counts for the months `from..=to` (in England): CH01
    /// and CH02 for a reporting year are this over April to March.
    pub async fn handling_report(
        &self,
        from: Month,
        to: Month,
    ) -> Result<HandlingCounts, ProjectionError> {
        handling_counters::report(self.database().pool(), from, to).await
    }

    /// Each liaison lead's handling of complaints received in `from..=to`, by stored lead code
    /// ('' for unknown); a lead with nothing counted is absent.
    pub async fn liaison_lead_handling(
        &self,
        from: Month,
        to: Month,
    ) -> Result<std::collections::BTreeMap<String, LeadHandling>, ProjectionError> {
        crate::liaison::lead_handling(self.database().pool(), from, to).await
    }

    /// How many registered contractors have no equality audit dated on or after
    /// `oldest_in_time`, or none at all.
    pub async fn contractors_overdue_equality_audit(
        &self,
        oldest_in_time: chrono::NaiveDate,
    ) -> Result<u64, ProjectionError> {
        contractors::overdue_audit_count(self.database().pool(), oldest_in_time).await
    }

    /// One complaint's handling row: its stage clocks as the read model holds them.
    pub async fn complaint_handling(
        &self,
        complaint_id: &str,
    ) -> Result<Option<HandlingRow>, ProjectionError> {
        let mut connection = self.database().pool().acquire().await?;
        handling::load(&mut connection, complaint_id).await
    }

    /// One page of inspections in the order of their last change, after log position `after`.
    pub async fn list_inspections(
        &self,
        filter: &InspectionFilter,
        page_size: u32,
        after: u64,
    ) -> Result<Vec<InspectionRow>, ProjectionError> {
        inspections::list(self.database().pool(), filter, page_size, after).await
    }

    /// Inspection counts per contractor for the months `from..=to` (by month inspected), or
    /// only `contractor_id`'s.
    pub async fn inspection_counts(
        &self,
        from: Month,
        to: Month,
        contractor_id: Option<&str>,
    ) -> Result<BTreeMap<String, InspectionCounts>, ProjectionError> {
        inspections::counts(self.database().pool(), from, to, contractor_id).await
    }

    /// Finding ladder steps whose time has come at `now`, earliest first, each read or found
    /// unreadable. Rows set aside are not due.
    pub async fn due_finding_escalation_rows(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Result<DueFindingEscalation, UnreadableRow>>, ProjectionError> {
        inspections::due(self.database().pool(), now, limit).await
    }

    /// Sets a finding schedule row aside; false when it was already set aside or has gone.
    pub async fn set_aside_finding_escalation(
        &self,
        key: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        escalation_schedule::set_aside(
            self.database().pool(),
            inspections::SCHEDULE,
            key,
            reason,
            now,
        )
        .await
    }

    /// The finding escalations raised, in log order: escalation id, finding id and level.
    pub async fn finding_escalations(
        &self,
    ) -> Result<
        Vec<(
            uuid::Uuid,
            uuid::Uuid,
            doorstep_domain::escalation::EscalationLevel,
        )>,
        ProjectionError,
    > {
        inspections::raised(self.database().pool()).await
    }
}
