//! The writes [`ReadModel`] makes: delivery state the notifier keeps beside the read models
//! (deliveries claimed, delivered, failed, retried or set aside in the outbox, and unreadable
//! schedule rows set aside). None of it is derived from the log, and a rebuild leaves the outbox
//! alone; every other method of [`ReadModel`] only reads.

use chrono::{DateTime, Utc};

use super::ReadModel;
use crate::escalation_schedule;
use crate::outbox::{self, Delivery};
use crate::{ProjectionError, UnreadableRow};

impl ReadModel {
    /// Sets an unreadable schedule row aside with `reason`, so it is no longer due. False when
    /// it was set aside already (by another scheduler) or has gone.
    pub async fn set_aside_escalation(
        &self,
        key: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        escalation_schedule::set_aside(
            self.database().pool(),
            escalation_schedule::SCHEDULE,
            key,
            reason,
            now,
        )
        .await
    }

    /// Claims pending deliveries due at `now` for `lease`, so no other worker sends them while
    /// this one tries. An unreadable one is an error (the worker uses
    /// [`ReadModel::claim_due_delivery_rows`] and sets those aside).
    pub async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>, ProjectionError> {
        UnreadableRow::none_in(self.claim_due_delivery_rows(now, lease, limit).await?)
    }

    /// As [`ReadModel::claim_due_deliveries`], returning each row that cannot be read,
    /// unclaimed, beside those claimed.
    pub async fn claim_due_delivery_rows(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
        outbox::claim_due(self.database().pool(), now, lease, limit).await
    }

    /// Sets an unreadable pending delivery aside with `reason`: it is never claimed again.
    /// False when it was not pending (another worker set it aside first).
    pub async fn set_aside_delivery(
        &self,
        key: &str,
        reason: &str,
    ) -> Result<bool, ProjectionError> {
        outbox::set_aside(self.database().pool(), key, reason).await
    }

    pub async fn mark_delivered(
        &self,
        delivery_id: uuid::Uuid,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        outbox::mark_delivered(self.database().pool(), delivery_id, attempts, now).await
    }

    /// Records a failed try: tried again at `next_attempt_at`, or dead-lettered when `None`.
    pub async fn mark_failed(
        &self,
        delivery_id: uuid::Uuid,
        attempts: u32,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), ProjectionError> {
        outbox::mark_failed(
            self.database().pool(),
            delivery_id,
            attempts,
            error,
            next_attempt_at,
        )
        .await
    }

    /// Queues a dead-lettered delivery again; false when it is not dead-lettered.
    pub async fn retry_dead_letter(
        &self,
        delivery_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        outbox::retry_dead(self.database().pool(), delivery_id, now).await
    }
}
