//! The delivery outbox: what each raised escalation owes each webhook and each email recipient.
//!
//! Rows are inserted by the projection runner in the transaction that records the escalation, so
//! an escalation in the log always has its deliveries; they are then moved by the delivery worker
//! (claimed, delivered, retried, dead-lettered). It is delivery state, not a read model: a
//! rebuild leaves it alone, and re-inserting a delivery id does nothing.

use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::escalation_planner::EscalationPlanner;
use crate::escalations::EscalationRow;
use crate::stored_values::{from_millis, millis};
use crate::{ProjectionError, UnreadableRow};

/// Namespace of delivery ids.
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x9b1c_07d3_5e4a_4f82_a6c1_2d8e_7f30_b4c5);

/// How a delivery reaches its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryChannel {
    Webhook,
    Email,
}

impl DeliveryChannel {
    pub fn code(self) -> &'static str {
        match self {
            Self::Webhook => "WEBHOOK",
            Self::Email => "EMAIL",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "WEBHOOK" => Some(Self::Webhook),
            "EMAIL" => Some(Self::Email),
            _ => None,
        }
    }
}

/// A delivery as the worker and the dead-letter RPCs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub escalation_id: Uuid,
    pub channel: DeliveryChannel,
    /// The URL or the email address.
    pub target: String,
    /// The escalation as JSON.
    pub body: serde_json::Value,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// The id a receiver deduplicates on: the same escalation and target always give the same id.
pub fn delivery_id(escalation_id: Uuid, channel: DeliveryChannel, target: &str) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("{escalation_id}/{}/{target}", channel.code()).as_bytes(),
    )
}

/// The JSON document every delivery of an escalation is made from (the webhook body).
pub fn escalation_document(row: &EscalationRow) -> serde_json::Value {
    serde_json::json!({
        "type": "escalation.raised",
        "escalation_id": row.escalation_id.to_string(),
        "complaint_id": row.complaint_id,
        "contractor_id": row.contractor_id,
        "deadline": row.deadline.code(),
        "level": row.level.as_str(),
        "deadline_date": row.deadline_date.to_string(),
        "clock_started_at": row.clock_started_at.to_rfc3339(),
        "due_at": row.due_at.to_rfc3339(),
        "raised_at": row.raised_at.to_rfc3339(),
        "recipients": row.recipients,
        "position": row.position,
    })
}

pub(crate) async fn enqueue(
    connection: &mut AnyConnection,
    planner: &EscalationPlanner,
    row: &EscalationRow,
) -> Result<(), ProjectionError> {
    enqueue_document(
        connection,
        planner,
        row.escalation_id,
        &row.recipients,
        &escalation_document(row),
        row.raised_at,
    )
    .await
}

/// Fills the outbox for one raised escalation (of a complaint or of an inspection finding):
/// `document` to every webhook, and to each of `recipients` by email when email is on.
pub(crate) async fn enqueue_document(
    connection: &mut AnyConnection,
    planner: &EscalationPlanner,
    escalation_id: Uuid,
    recipients: &[String],
    document: &serde_json::Value,
    raised_at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    let body = document.to_string();
    let webhooks = planner
        .webhook_urls
        .iter()
        .map(|url| (DeliveryChannel::Webhook, url.as_str()));
    let emails = recipients
        .iter()
        .filter(|_| planner.email)
        .map(|address| (DeliveryChannel::Email, address.as_str()));
    for (channel, target) in webhooks.chain(emails) {
        sqlx::query(
            "INSERT INTO escalation_deliveries (delivery_id, escalation_id, channel, target, \
             body, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, $7) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id(escalation_id, channel, target).to_string())
        .bind(escalation_id.to_string())
        .bind(channel.code())
        .bind(target)
        .bind(body.as_str())
        .bind(millis(raised_at))
        .bind(millis(raised_at))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

const COLUMNS: &str = "delivery_id, escalation_id, channel, target, body, attempts, last_error, \
     created_at, next_attempt_at";

fn decode(row: &AnyRow) -> Result<Delivery, ProjectionError> {
    let id: String = row.try_get("delivery_id")?;
    let corrupt = |reason: &str| ProjectionError::CorruptRecord {
        table: "escalation_deliveries",
        key: id.clone(),
        reason: reason.to_owned(),
    };
    let escalation: String = row.try_get("escalation_id")?;
    let channel: String = row.try_get("channel")?;
    let body: String = row.try_get("body")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(Delivery {
        delivery_id: Uuid::parse_str(&id).map_err(|_| corrupt("invalid delivery id"))?,
        escalation_id: Uuid::parse_str(&escalation)
            .map_err(|_| corrupt("invalid escalation id"))?,
        channel: DeliveryChannel::from_code(&channel).ok_or_else(|| corrupt("unknown channel"))?,
        target: row.try_get("target")?,
        body: serde_json::from_str(&body).map_err(|_| corrupt("body is not JSON"))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        created_at: from_millis(row.try_get("created_at")?, &id)?,
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?, &id)?,
    })
}

/// The table deliveries are set aside in.
const OUTBOX: &str = "escalation_deliveries";

/// Claims up to `limit` pending deliveries due at `now` for `lease`; a delivery claimed by
/// another worker (another replica) whose lease has not run out is left to it. A row that
/// cannot be read is returned as such, unclaimed, for the worker to set aside.
pub(crate) async fn claim_due(
    pool: &AnyPool,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
    // The key is read as text whatever was stored in it, so that any row can be set aside.
    let sql = format!(
        "SELECT CAST(delivery_id AS TEXT) AS key, {COLUMNS} FROM escalation_deliveries \
         WHERE state = 'PENDING' \
         AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $2) \
         ORDER BY next_attempt_at LIMIT $3"
    );
    let candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(millis(now))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    lease_each(pool, &candidates, now, lease).await
}

/// Claims for `lease` every other pending email to `target` about `complaint_id` that no
/// worker holds, whenever it is due: a backlog caught up at once is sent as one message per
/// complaint and recipient. A row that cannot be read is returned as such, unclaimed.
pub(crate) async fn claim_companions(
    pool: &AnyPool,
    complaint_id: &str,
    target: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
    // Driven from the pending deliveries (few, and indexed by state), each checked against its
    // escalation by primary key: the escalations table has no index by complaint.
    let sql = format!(
        "SELECT CAST(d.delivery_id AS TEXT) AS key, {COLUMNS} FROM escalation_deliveries d \
         WHERE d.state = 'PENDING' AND d.channel = 'EMAIL' AND d.target = $1 \
         AND (d.lease_until IS NULL OR d.lease_until <= $2) \
         AND EXISTS (SELECT 1 FROM escalations e WHERE e.escalation_id = d.escalation_id \
         AND e.complaint_id = $3) \
         ORDER BY d.created_at, d.delivery_id"
    );
    let candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(target)
        .bind(millis(now))
        .bind(complaint_id)
        .fetch_all(pool)
        .await?;
    lease_each(pool, &candidates, now, lease).await
}

/// The emails still owed (pending) to `$1` about complaint `$2`, held by a worker or not.
macro_rules! pending_emails_to_about {
    () => {
        "FROM escalation_deliveries d \
         WHERE d.state = 'PENDING' AND d.channel = 'EMAIL' AND d.target = $1 \
         AND EXISTS (SELECT 1 FROM escalations e WHERE e.escalation_id = d.escalation_id \
         AND e.complaint_id = $2)"
    };
}

/// How many emails to `target` about `complaint_id` are still owed (pending), held by a worker
/// or not: a letter that claimed fewer leaves some out, held by another worker or given back
/// since its claim.
pub(crate) async fn pending_companions(
    pool: &AnyPool,
    complaint_id: &str,
    target: &str,
) -> Result<u64, ProjectionError> {
    let pending: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) ", pending_emails_to_about!()))
        .bind(target)
        .bind(complaint_id)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(pending).unwrap_or(0))
}

/// The first email (oldest, then by id) still owed to `target` about `complaint_id`, held by a
/// worker or not; `None` when none is, or its id does not read.
pub(crate) async fn first_pending_companion(
    pool: &AnyPool,
    complaint_id: &str,
    target: &str,
) -> Result<Option<uuid::Uuid>, ProjectionError> {
    let first: Option<String> = sqlx::query_scalar(concat!(
        "SELECT CAST(d.delivery_id AS TEXT) ",
        pending_emails_to_about!(),
        " ORDER BY d.created_at, d.delivery_id LIMIT 1"
    ))
    .bind(target)
    .bind(complaint_id)
    .fetch_optional(pool)
    .await?;
    Ok(first.and_then(|id| uuid::Uuid::parse_str(&id).ok()))
}

/// Leases each candidate row no other worker took meanwhile; returns those it leased, and
/// those it cannot read (unleased).
async fn lease_each(
    pool: &AnyPool,
    candidates: &[AnyRow],
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<Result<Delivery, UnreadableRow>>, ProjectionError> {
    let mut claimed = Vec::with_capacity(candidates.len());
    for row in candidates {
        let key: String = row.try_get("key")?;
        let delivery = match decode(row) {
            Ok(delivery) => delivery,
            Err(error) => {
                claimed.push(Err(UnreadableRow::from_error(OUTBOX, &key, &error)));
                continue;
            }
        };
        let result = sqlx::query(
            "UPDATE escalation_deliveries SET lease_until = $1 WHERE delivery_id = $2 \
             AND state = 'PENDING' AND (lease_until IS NULL OR lease_until <= $3)",
        )
        .bind(millis(now + lease))
        .bind(key)
        .bind(millis(now))
        .execute(pool)
        .await?;
        if result.rows_affected() == 1 {
            claimed.push(Ok(delivery));
        }
    }
    Ok(claimed)
}

/// Gives up a claim without trying the delivery: it is due again at once, for any worker.
pub(crate) async fn release(pool: &AnyPool, delivery_id: Uuid) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE escalation_deliveries SET lease_until = NULL WHERE delivery_id = $1 \
         AND state = 'PENDING'",
    )
    .bind(delivery_id.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets a pending delivery aside with `reason`: it is never claimed again, and keeps the
/// reason in `last_error`. Returns false when it was not pending (another worker set it aside).
pub(crate) async fn set_aside(
    pool: &AnyPool,
    key: &str,
    reason: &str,
) -> Result<bool, ProjectionError> {
    let result = sqlx::query(
        "UPDATE escalation_deliveries SET state = 'SET_ASIDE', last_error = $1, \
         lease_until = NULL WHERE delivery_id = $2 AND state = 'PENDING'",
    )
    .bind(reason)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(crate) async fn mark_delivered(
    pool: &AnyPool,
    delivery_id: Uuid,
    attempts: u32,
    now: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE escalation_deliveries SET state = 'DELIVERED', attempts = $1, delivered_at = $2, \
         lease_until = NULL, last_error = NULL WHERE delivery_id = $3",
    )
    .bind(i64::from(attempts))
    .bind(millis(now))
    .bind(delivery_id.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed try: pending again at `next_attempt_at`, or dead when `None`.
pub(crate) async fn mark_failed(
    pool: &AnyPool,
    delivery_id: Uuid,
    attempts: u32,
    error: &str,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<(), ProjectionError> {
    let (state, next) = match next_attempt_at {
        Some(at) => ("PENDING", millis(at)),
        None => ("DEAD", 0),
    };
    sqlx::query(
        "UPDATE escalation_deliveries SET state = $1, attempts = $2, last_error = $3, \
         next_attempt_at = CASE WHEN $4 = 0 THEN next_attempt_at ELSE $5 END, lease_until = NULL \
         WHERE delivery_id = $6",
    )
    .bind(state)
    .bind(i64::from(attempts))
    .bind(error)
    .bind(next)
    .bind(next)
    .bind(delivery_id.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Dead-lettered deliveries, oldest first, after `after` (a delivery id; empty for the start).
pub(crate) async fn dead_letters(
    pool: &AnyPool,
    page_size: u32,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<Delivery>, ProjectionError> {
    let (after_at, after_id) = after.map_or((i64::MIN, String::new()), |(at, id)| {
        (millis(at), id.to_string())
    });
    let sql = format!(
        "SELECT {COLUMNS} FROM escalation_deliveries WHERE state = 'DEAD' \
         AND (created_at > $1 OR (created_at = $2 AND delivery_id > $3)) \
         ORDER BY created_at, delivery_id LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after_at)
        .bind(after_at)
        .bind(after_id)
        .bind(i64::from(page_size))
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode).collect()
}

/// Whether a delivery exists, and if so whether it is dead-lettered.
pub(crate) async fn state(
    pool: &AnyPool,
    delivery_id: Uuid,
) -> Result<Option<String>, ProjectionError> {
    Ok(
        sqlx::query_scalar("SELECT state FROM escalation_deliveries WHERE delivery_id = $1")
            .bind(delivery_id.to_string())
            .fetch_optional(pool)
            .await?,
    )
}

/// Puts a dead-lettered delivery back in the queue with its tries reset; returns false when it
/// is not dead-lettered (any more).
pub(crate) async fn retry_dead(
    pool: &AnyPool,
    delivery_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, ProjectionError> {
    let result = sqlx::query(
        "UPDATE escalation_deliveries SET state = 'PENDING', attempts = 0, next_attempt_at = $1, \
         lease_until = NULL WHERE delivery_id = $2 AND state = 'DEAD'",
    )
    .bind(millis(now))
    .bind(delivery_id.to_string())
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// On SQLite, a later read-model generation reaches the shared outbox in generation 0's file,
/// attached to its connections; a transaction across two WAL files is atomic in each file but not
/// across them if the process dies between their commits. So the batch's outbox rows are held
/// in a table of the connection's own (`temp.escalation_deliveries`, found before the shared one
/// by name) while the batch is applied, and [`commit_held_apart`] commits them in a transaction
/// of their own before the batch's transaction commits. A crash between the two leaves rows for a
/// batch that is applied again, which re-inserts them: inserting a delivery id again does
/// nothing.
pub(crate) async fn hold_apart(connection: &mut AnyConnection) -> Result<(), ProjectionError> {
    sqlx::query(
        "CREATE TEMP TABLE escalation_deliveries AS \
         SELECT * FROM shared_outbox.escalation_deliveries WHERE 0",
    )
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "CREATE UNIQUE INDEX temp.escalation_deliveries_in_batch \
         ON escalation_deliveries (delivery_id)",
    )
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Commits the rows [`hold_apart`] held through another connection of `pool`, in their own
/// transaction, and drops the held table from the batch's transaction.
pub(crate) async fn commit_held_apart(
    pool: &sqlx::AnyPool,
    batch: &mut AnyConnection,
) -> Result<(), ProjectionError> {
    let rows = sqlx::query(
        "SELECT delivery_id, escalation_id, channel, target, body, next_attempt_at, created_at \
         FROM temp.escalation_deliveries",
    )
    .fetch_all(&mut *batch)
    .await?;
    sqlx::query("DROP TABLE temp.escalation_deliveries")
        .execute(&mut *batch)
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut outbox = pool.begin().await?;
    for row in rows {
        sqlx::query(
            "INSERT INTO escalation_deliveries (delivery_id, escalation_id, channel, target, \
             body, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, $7) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(row.try_get::<String, _>("delivery_id")?)
        .bind(row.try_get::<String, _>("escalation_id")?)
        .bind(row.try_get::<String, _>("channel")?)
        .bind(row.try_get::<String, _>("target")?)
        .bind(row.try_get::<String, _>("body")?)
        .bind(row.try_get::<i64, _>("next_attempt_at")?)
        .bind(row.try_get::<i64, _>("created_at")?)
        .execute(&mut *outbox)
        .await?;
    }
    outbox.commit().await?;
    Ok(())
}
