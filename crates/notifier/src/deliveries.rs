//! The delivery worker: claims due deliveries from the outbox, tries each, and records the
//! outcome: delivered, tried again later with exponential back-off and jitter, or dead-lettered
//! after the last try. Delivery times are the machine's real time (they are about receivers
//! coming back), unlike escalations, whose time comes from the service's clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use doorstep_projections::{Delivery, DeliveryChannel, ProjectionError, ReadModel, UnreadableRow};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use tracing::Instrument as _;

use crate::email::Letter;
use crate::metrics::{DeliveryOutcome, NotifierMetrics};
use crate::rounds::run_rounds;
use crate::{CaseLookup, DeliveryError, EmailSender, WebhookSender};

/// Deliveries claimed per round.
const BATCH: u32 = 32;

/// How long, on the service's clock, an email waits for levels of its complaint that are due
/// but not raised yet, so that a backlog goes out as one message.
const HOLD_FOR_MORE_LEVELS: chrono::Duration = chrono::Duration::minutes(15);

/// How often and how long a delivery is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries before the delivery is dead-lettered.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one try may take.
    pub timeout: Duration,
}

/// The wait after failed try number `attempt` (1 for the first): the initial back-off doubled
/// for each earlier failure, capped, plus up to half of that again chosen by `jitter` (0 to 1),
/// so that many deliveries failing together do not all come back at once.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let base = policy
        .initial_backoff
        .saturating_mul(1_u32 << doublings)
        .min(policy.max_backoff);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Sends what the outbox owes, until told to stop.
#[derive(Clone)]
pub struct DeliveryWorker {
    read_model: ReadModel,
    webhook: WebhookSender,
    email: Option<EmailSender>,
    /// Where an email finds its complaint's details; without it, an email names what the
    /// escalation itself holds.
    cases: Option<Arc<dyn CaseLookup>>,
    /// The service's clock, which the escalation schedule is kept in.
    schedule_clock: Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>,
    policy: RetryPolicy,
    poll_interval: Duration,
    metrics: NotifierMetrics,
}

impl DeliveryWorker {
    pub fn new(
        read_model: ReadModel,
        webhook: WebhookSender,
        email: Option<EmailSender>,
        policy: RetryPolicy,
        poll_interval: Duration,
    ) -> Self {
        Self {
            read_model,
            webhook,
            email,
            cases: None,
            schedule_clock: Arc::new(Utc::now),
            policy,
            poll_interval,
            metrics: NotifierMetrics::new(),
        }
    }

    /// Emails name the complaint with what `cases` finds: the contractor's name, the standards,
    /// the handler and, for the landlord's staff, the resident's reference and the property.
    #[must_use]
    pub fn with_cases(mut self, cases: Arc<dyn CaseLookup>) -> Self {
        self.cases = Some(cases);
        self
    }

    /// The service's clock, which decides when escalations fall due (tests set it).
    #[must_use]
    pub fn with_schedule_clock(
        mut self,
        now: Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>,
    ) -> Self {
        self.schedule_clock = now;
        self
    }

    /// One email: `main` with the `also` deliveries it stands for, written with the complaint's
    /// details. A failed look-up is a failed try, retried like a relay that is down.
    async fn send_email(
        &self,
        email: &EmailSender,
        main: &Delivery,
        also: &[Delivery],
    ) -> Result<(), DeliveryError> {
        let case = match (
            &self.cases,
            main.body.get("complaint_id").and_then(|id| id.as_str()),
        ) {
            (Some(cases), Some(complaint_id)) => cases
                .case(complaint_id)
                .await
                .map_err(|error| DeliveryError::Lookup(doorstep_telemetry::error_chain(&*error)))?,
            _ => None,
        };
        email
            .send(&Letter {
                main,
                also,
                case: case.as_ref(),
            })
            .await
    }

    /// Runs until `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let worker = &self;
            run_rounds(shutdown, self.poll_interval, move || async move {
                match worker.deliver_due().await {
                    // A full batch: there may be more waiting.
                    Ok(claimed) => claimed >= BATCH as usize,
                    Err(error) => {
                        tracing::error!(error = ?error, "delivery round failed; retrying");
                        false
                    }
                }
            })
            .await;
        })
    }

    /// One round: claims the due deliveries and tries each at once. Emails to one recipient
    /// about one complaint go as one message, at the highest level reached, listing the others
    /// (a backlog caught up at once); each webhook delivery goes on its own. Returns how many
    /// rows it took up: claimed, or set aside because they cannot be read (counted, and logged
    /// at error once; one bad row must not hold up every other delivery).
    pub async fn deliver_due(&self) -> Result<usize, ProjectionError> {
        // A claim outlives every try it covers, so no other worker takes a delivery mid-try.
        let lease = chrono::Duration::from_std(self.policy.timeout * 2 + Duration::from_secs(5))
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let now = Utc::now();
        let rows = self
            .read_model
            .claim_due_delivery_rows(now, lease, BATCH)
            .await?;
        let mut count = rows.len();
        let mut sends: Vec<Vec<Delivery>> = Vec::new();
        let mut letters: BTreeMap<(String, String), Vec<Delivery>> = BTreeMap::new();
        for row in rows {
            let delivery = match row {
                Ok(delivery) => delivery,
                Err(unreadable) => {
                    self.set_aside(&unreadable).await?;
                    continue;
                }
            };
            match (delivery.channel, complaint_of(&delivery)) {
                (DeliveryChannel::Email, Some(complaint_id)) => letters
                    .entry((complaint_id, delivery.target.clone()))
                    .or_default()
                    .push(delivery),
                _ => sends.push(vec![delivery]),
            }
        }
        for ((complaint_id, target), mut letter) in letters {
            if self.more_levels_coming(&complaint_id, &letter).await? {
                count -= letter.len();
                self.release(&letter).await?;
                continue;
            }
            count += self
                .claim_companions_into(&complaint_id, &target, &mut letter, now, lease)
                .await?;
            if self
                .split_with_another_worker(&complaint_id, &target, &letter)
                .await?
            {
                let (whole, claimed) = self
                    .take_up_the_rest(&complaint_id, &target, &mut letter, now, lease)
                    .await?;
                count += claimed;
                if !whole {
                    count -= letter.len();
                    self.release(&letter).await?;
                    continue;
                }
            }
            sends.push(letter);
        }
        let mut tries = JoinSet::new();
        for mut send in sends {
            // The highest level reached last: the one the message is sent for.
            send.sort_by_key(level_order);
            let Some(main) = send.pop() else {
                continue;
            };
            let worker = self.clone();
            let span = tracing::info_span!(
                "notifier.deliver",
                delivery_id = %main.delivery_id,
                escalation_id = %main.escalation_id,
                channel = main.channel.code(),
                attempt = main.attempts.saturating_add(1),
                also = send.len(),
                outcome = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            doorstep_telemetry::record_trace_id(&span);
            tries.spawn(async move { worker.try_once(main, send).await }.instrument(span));
        }
        while let Some(result) = tries.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(error = ?error, "cannot record a delivery"),
                Err(error) => tracing::error!(%error, "a delivery task failed"),
            }
        }
        Ok(count)
    }

    /// Whether this letter leaves out some of the emails it would stand for: held by another
    /// worker (a replica, or this process's own loop beside a round run by hand), or given back
    /// by one since this letter's claim (counting only those held would miss it, and send this
    /// letter without it: two messages for one complaint). Then the letter waits
    /// ([`DeliveryWorker::take_up_the_rest`] says which worker gives way), so the recipient
    /// still gets one message; only briefly, so that an email is never held back for good.
    async fn split_with_another_worker(
        &self,
        complaint_id: &str,
        target: &str,
        letter: &[Delivery],
    ) -> Result<bool, ProjectionError> {
        if !self.within_hold(letter) {
            return Ok(false);
        }
        let owed = self
            .read_model
            .pending_email_companions(complaint_id, target)
            .await?;
        Ok(owed > letter.len() as u64)
    }

    /// Breaks the tie between two workers holding parts of one letter, who would otherwise give
    /// theirs back to each other round after round for as long as the hold lasts: the one
    /// holding the first email owed keeps its part, takes up what the other gave back since,
    /// and sends if its letter is then whole; the other gives way. Returns whether the letter is
    /// whole, and how many rows it claimed.
    async fn take_up_the_rest(
        &self,
        complaint_id: &str,
        target: &str,
        letter: &mut Vec<Delivery>,
        now: chrono::DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<(bool, usize), ProjectionError> {
        let first = self
            .read_model
            .first_pending_email_companion(complaint_id, target)
            .await?;
        if !first.is_some_and(|id| letter.iter().any(|delivery| delivery.delivery_id == id)) {
            return Ok((false, 0));
        }
        let claimed = self
            .claim_companions_into(complaint_id, target, letter, now, lease)
            .await?;
        let whole = !self
            .split_with_another_worker(complaint_id, target, letter)
            .await?;
        Ok((whole, claimed))
    }

    /// Claims the letter's companions no worker holds into `letter` (setting aside those that
    /// cannot be read); returns how many rows it took up.
    async fn claim_companions_into(
        &self,
        complaint_id: &str,
        target: &str,
        letter: &mut Vec<Delivery>,
        now: chrono::DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<usize, ProjectionError> {
        let rows = self
            .read_model
            .claim_email_companions(complaint_id, target, now, lease)
            .await?;
        let taken = rows.len();
        for row in rows {
            match row {
                Ok(delivery) => letter.push(delivery),
                Err(unreadable) => self.set_aside(&unreadable).await?,
            }
        }
        Ok(taken)
    }

    async fn release(&self, letter: &[Delivery]) -> Result<(), ProjectionError> {
        for delivery in letter {
            self.read_model
                .release_delivery(delivery.delivery_id)
                .await?;
        }
        Ok(())
    }

    /// Whether the newest delivery of a letter was raised recently enough (on the service's
    /// clock) for the letter to wait for the rest of its complaint's levels.
    fn within_hold(&self, letter: &[Delivery]) -> bool {
        let now = (self.schedule_clock)();
        letter
            .iter()
            .map(|delivery| delivery.created_at)
            .max()
            .is_some_and(|created| now - created <= HOLD_FOR_MORE_LEVELS)
    }

    /// Whether the scheduler is about to raise another level of this complaint (one is due on
    /// the service's clock and not raised yet): its email waits a round to go with it, rather
    /// than ahead of it. Only briefly, so that a step that cannot be raised never holds an
    /// email back for good.
    async fn more_levels_coming(
        &self,
        complaint_id: &str,
        letter: &[Delivery],
    ) -> Result<bool, ProjectionError> {
        if !self.within_hold(letter) {
            return Ok(false);
        }
        self.read_model
            .has_unraised_due_step(complaint_id, (self.schedule_clock)())
            .await
    }

    async fn set_aside(&self, unreadable: &UnreadableRow) -> Result<(), ProjectionError> {
        let newly = self
            .read_model
            .set_aside_delivery(&unreadable.key, &unreadable.reason)
            .await?;
        // Another worker may have set it aside first: it counted and logged it.
        if newly {
            self.metrics.row_set_aside(unreadable.table);
            tracing::error!(
                table = unreadable.table,
                delivery_id = unreadable.key,
                reason = unreadable.reason,
                "an outbox row cannot be read; it is set aside (state SET_ASIDE, the reason in \
                 last_error) and will not be delivered"
            );
        }
        Ok(())
    }

    fn observe(&self, delivery: &Delivery, outcome: DeliveryOutcome) {
        self.metrics.delivery(delivery.channel.code(), outcome);
        tracing::Span::current().record("outcome", outcome.code());
    }

    /// One try of `main`, an email also standing for `also`; every delivery it stands for is
    /// recorded with the outcome.
    async fn try_once(&self, main: Delivery, also: Vec<Delivery>) -> Result<(), ProjectionError> {
        let outcome = match main.channel {
            DeliveryChannel::Webhook => self.webhook.send(&main).await,
            DeliveryChannel::Email => match &self.email {
                Some(email) => self.send_email(email, &main, &also).await,
                None => Err(DeliveryError::NotConfigured("email".to_owned())),
            },
        };
        let now = Utc::now();
        for delivery in std::iter::once(&main).chain(&also) {
            self.record(delivery, &outcome, &main, now).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        delivery: &Delivery,
        outcome: &Result<(), DeliveryError>,
        main: &Delivery,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        let attempt = delivery.attempts.saturating_add(1);
        match outcome {
            Ok(()) => {
                self.observe(delivery, DeliveryOutcome::Delivered);
                tracing::info!(
                    delivery_id = %delivery.delivery_id,
                    escalation_id = %delivery.escalation_id,
                    channel = delivery.channel.code(),
                    target = delivery.target,
                    attempt,
                    sent_as = %main.delivery_id,
                    "escalation delivered"
                );
                self.read_model
                    .mark_delivered(delivery.delivery_id, attempt, now)
                    .await
            }
            Err(error) => {
                let message = error.to_string();
                let next = (attempt < self.policy.max_attempts).then(|| {
                    let delay = retry_delay(&self.policy, attempt, fastrand::f64());
                    now + chrono::Duration::from_std(delay)
                        .unwrap_or_else(|_| chrono::Duration::hours(1))
                });
                self.observe(
                    delivery,
                    match next {
                        Some(_) => DeliveryOutcome::Failed,
                        None => DeliveryOutcome::DeadLettered,
                    },
                );
                match next {
                    Some(at) => tracing::warn!(
                        delivery_id = %delivery.delivery_id,
                        target = delivery.target,
                        attempt,
                        error = message,
                        next_attempt_at = %at,
                        "delivery failed; will retry"
                    ),
                    None => tracing::error!(
                        delivery_id = %delivery.delivery_id,
                        target = delivery.target,
                        attempt,
                        error = message,
                        "delivery failed for the last time; dead-lettered"
                    ),
                }
                self.read_model
                    .mark_failed(delivery.delivery_id, attempt, &message, next)
                    .await
            }
        }
    }
}

/// The complaint an escalation delivery is about, from its body.
fn complaint_of(delivery: &Delivery) -> Option<String> {
    delivery
        .body
        .get("complaint_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// The order levels were reached in: by when they fell due, then by log position.
fn level_order(delivery: &Delivery) -> (String, i64) {
    let due = delivery
        .body
        .get("due_at")
        .and_then(serde_json::Value::as_str)
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|at| {
            at.with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_default();
    let position = delivery
        .body
        .get("position")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_default();
    (due, position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_with_at_most_half_again_of_jitter() {
        let policy = policy();
        assert_eq!(retry_delay(&policy, 1, 0.0), Duration::from_secs(5));
        assert_eq!(retry_delay(&policy, 2, 0.0), Duration::from_secs(10));
        assert_eq!(retry_delay(&policy, 4, 0.0), Duration::from_secs(40));
        assert_eq!(retry_delay(&policy, 4, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(&policy, 20, 0.0), Duration::from_secs(3600));
        assert_eq!(
            retry_delay(&policy, u32::MAX, 0.5),
            Duration::from_secs(4500)
        );
    }
}
