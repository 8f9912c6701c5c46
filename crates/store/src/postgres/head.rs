//! Which events a reader may see, and telling followers when that changes.
//!
//! An event's position is `xid * 2^20 + i`, where `xid` is the id of the transaction that wrote
//! it. Transactions commit in any order, so the log is only readable up to the oldest transaction
//! still running: every transaction with a smaller id has finished, so nothing can ever appear
//! below that line. [`readable_limit!`] is that line as SQL, and every checkpointed read uses it.
//!
//! [`HeadTracker`] keeps `watch_head` current. It hears of other processes' commits through
//! `LISTEN`, and it holds back the answers to appends whose events are committed but not yet
//! readable, so that a caller who reads right after its append returned sees its own events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{AppendOutcome, StoreError};

/// How many events one transaction may write: the low 20 bits of a position count them.
pub(super) const EVENTS_PER_TRANSACTION: u64 = 1 << 20;

/// Transaction ids from here on would make `xid * 2^20` overflow a BIGINT position.
pub(super) const TRANSACTION_ID_LIMIT: u64 = 1 << 43;

/// The channel every writer notifies after a commit, with its last position as the payload.
pub(super) const NOTIFICATION_CHANNEL: &str = "doorstep_events";

/// The highest position a reader may return, as an SQL expression: the last position of the
/// transaction just below the oldest one still running, `xmin * 2^20 - 1`. Written so that it
/// cannot overflow a BIGINT, whatever `xmin` is. It must be evaluated in the statement that reads
/// the events: `pg_current_snapshot()` is that statement's snapshot, so the events it sees and the
/// limit agree.
macro_rules! readable_limit {
    () => {
        "((LEAST(pg_snapshot_xmin(pg_current_snapshot())::text::bigint, 8796093022208) - 1) \
         * 1048576 + 1048575)"
    };
}
pub(super) use readable_limit;

/// The oldest transaction still running, as seen by a fresh snapshot.
pub(super) const OLDEST_RUNNING_TRANSACTION: &str =
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";

/// The highest readable position (0 when nothing is readable) and the snapshot's oldest running
/// transaction, from one snapshot.
const READABLE_HEAD: &str = concat!(
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, ",
    "COALESCE((SELECT MAX(position) FROM events WHERE position <= ",
    readable_limit!(),
    "), 0)"
);

/// How often the head is checked again while another process has notified a position that is
/// not readable yet (an older transaction is still running somewhere).
const NOTIFIED_LAG_RECHECK: Duration = Duration::from_millis(100);

/// How often the head is checked while the listener connection cannot be used, since
/// notifications may be missed meanwhile.
const LISTENER_DOWN_RECHECK: Duration = Duration::from_secs(1);

/// The first and the longest pause between checks while appends wait to become readable. The
/// transactions they wait for are usually other writers' batches, which end within milliseconds.
const PENDING_RECHECK_FIRST: Duration = Duration::from_millis(1);
const PENDING_RECHECK_LONGEST: Duration = Duration::from_millis(50);

/// How long an append's answer waits for its events to become readable. Past this an unrelated
/// long transaction is holding every reader back; the append is durable all the same, so it is
/// answered rather than held hostage.
const READABLE_WAIT_LIMIT: Duration = Duration::from_secs(2);

/// Parses the text form of an `xid8`.
pub(super) fn parse_transaction_id(text: &str) -> Result<u64, sqlx::Error> {
    text.parse::<u64>().map_err(|error| {
        sqlx::Error::Protocol(format!("transaction id {text:?} is not a number: {error}"))
    })
}

/// The id of the transaction that wrote the event at `position`.
pub(super) fn writing_transaction(position: u64) -> u64 {
    position / EVENTS_PER_TRANSACTION
}

/// Raises the published head to `position`, never lowers it.
pub(super) fn publish_head(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|published| {
        if position > *published {
            *published = position;
            true
        } else {
            false
        }
    });
}

/// An append that succeeded and is durable, whose caller is told once its events are readable.
#[derive(Debug)]
pub(super) struct PendingAnswer {
    pub(super) outcome: AppendOutcome,
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    pub(super) committed_at: Instant,
}

impl PendingAnswer {
    /// Readable once the oldest running transaction is younger than the one that wrote the events.
    fn is_readable(&self, oldest_running_transaction: u64) -> bool {
        writing_transaction(self.outcome.position) < oldest_running_transaction
    }

    fn answer(self) {
        // A caller that gave up waiting no longer needs the answer; its events are written all
        // the same, and a retry with the same ids is idempotent.
        let _ = self.reply.send(Ok(self.outcome));
    }
}

/// The task behind `watch_head`; see the module documentation.
pub(super) struct HeadTracker {
    pub(super) pool: PgPool,
    pub(super) listener: PgListener,
    /// The listener's own pool, closed when the tracker stops.
    pub(super) listener_pool: PgPool,
    pub(super) head: Arc<watch::Sender<u64>>,
    /// Answers from the writer; closed when the writer stops, which stops this task once every
    /// answer has been given.
    pub(super) pending_answers: mpsc::UnboundedReceiver<PendingAnswer>,
    /// The writer connection's backend process: its notifications are about commits this
    /// process already knows of.
    pub(super) writer_process_id: Arc<AtomicU32>,
}

/// What the tracker's state says about when to look at the database again.
struct TrackerState {
    waiting: Vec<PendingAnswer>,
    highest_notified_position: u64,
    pending_recheck: Duration,
    /// Set when the listener failed: it is not asked again before then, and the head is checked
    /// periodically meanwhile.
    listener_resumes_at: Option<Instant>,
    writer_stopped: bool,
}

impl TrackerState {
    fn listener_is_usable(&self) -> bool {
        self.listener_resumes_at
            .is_none_or(|resumes_at| Instant::now() >= resumes_at)
    }
}

impl HeadTracker {
    pub(super) async fn run(mut self) {
        let mut state = TrackerState {
            waiting: Vec::new(),
            highest_notified_position: 0,
            pending_recheck: PENDING_RECHECK_FIRST,
            listener_resumes_at: None,
            writer_stopped: false,
        };
        while !(state.writer_stopped && state.waiting.is_empty()) {
            let recheck_after = self.recheck_after(&state);
            let must_check = tokio::select! {
                answer = self.pending_answers.recv(), if !state.writer_stopped => match answer {
                    Some(answer) => {
                        state.waiting.push(answer);
                        // Take every answer already queued, so that one check serves them all.
                        while let Ok(answer) = self.pending_answers.try_recv() {
                            state.waiting.push(answer);
                        }
                        true
                    }
                    None => {
                        state.writer_stopped = true;
                        false
                    }
                },
                received = self.listener.try_recv(), if state.listener_is_usable() => {
                    self.on_notification(received, &mut state)
                }
                () = sleep_or_wait_forever(recheck_after) => {
                    state.pending_recheck = (state.pending_recheck * 2).min(PENDING_RECHECK_LONGEST);
                    true
                }
            };
            if must_check {
                self.check(&mut state).await;
            }
        }
        // The listener holds the pool's only connection, and closing a pool waits for every
        // connection to come back.
        drop(self.listener);
        self.listener_pool.close().await;
        tracing::debug!("event store head tracker stopped");
    }

    fn recheck_after(&self, state: &TrackerState) -> Option<Duration> {
        if !state.waiting.is_empty() {
            return Some(state.pending_recheck);
        }
        if state.listener_resumes_at.is_some() {
            return Some(LISTENER_DOWN_RECHECK);
        }
        if *self.head.borrow() < state.highest_notified_position {
            return Some(NOTIFIED_LAG_RECHECK);
        }
        None
    }

    /// Returns whether the head must be checked.
    fn on_notification(
        &mut self,
        received: Result<Option<PgNotification>, sqlx::Error>,
        state: &mut TrackerState,
    ) -> bool {
        match received {
            Ok(Some(notification)) => {
                state.listener_resumes_at = None;
                let mut must_check = self.is_news(&notification, state);
                // A burst of commits elsewhere is served by one check.
                while let Some(notification) = self.listener.next_buffered() {
                    must_check |= self.is_news(&notification, state);
                }
                must_check
            }
            // The connection was lost and re-established: notifications may have been missed.
            Ok(None) => {
                state.listener_resumes_at = None;
                true
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "the event notification listener failed; checking the head periodically"
                );
                state.listener_resumes_at = Some(Instant::now() + LISTENER_DOWN_RECHECK);
                true
            }
        }
    }

    /// Whether a notification may have moved the head past what is published.
    fn is_news(&self, notification: &PgNotification, state: &mut TrackerState) -> bool {
        if notification.process_id() == self.writer_process_id.load(Ordering::Relaxed) {
            // This process's own writer: it has published (or will) what it committed.
            return false;
        }
        match notification.payload().parse::<u64>() {
            Ok(position) => {
                state.highest_notified_position = state.highest_notified_position.max(position);
                position > *self.head.borrow()
            }
            // Someone else notified the channel; the head is checked all the same.
            Err(_) => true,
        }
    }

    /// Reads the readable head, publishes it and answers every append that became readable.
    async fn check(&self, state: &mut TrackerState) {
        let oldest_running_transaction = match self.read_head().await {
            Ok((oldest_running_transaction, head_position)) => {
                publish_head(&self.head, head_position);
                Some(oldest_running_transaction)
            }
            Err(error) => {
                if !matches!(error, sqlx::Error::PoolClosed) {
                    tracing::warn!(error = %error, "cannot read the readable head");
                }
                None
            }
        };
        let waiting = std::mem::take(&mut state.waiting);
        for answer in waiting {
            let readable =
                oldest_running_transaction.is_some_and(|oldest| answer.is_readable(oldest));
            if readable {
                answer.answer();
            } else if answer.committed_at.elapsed() >= READABLE_WAIT_LIMIT
                || state.writer_stopped && oldest_running_transaction.is_none()
            {
                tracing::warn!(
                    position = answer.outcome.position,
                    "answering an append before its events are readable: an older transaction \
                     is still running"
                );
                answer.answer();
            } else {
                state.waiting.push(answer);
            }
        }
        if state.waiting.is_empty() {
            state.pending_recheck = PENDING_RECHECK_FIRST;
        }
    }

    async fn read_head(&self) -> Result<(u64, u64), sqlx::Error> {
        let (oldest_running_transaction, head_position): (String, i64) =
            sqlx::query_as(READABLE_HEAD).fetch_one(&self.pool).await?;
        Ok((
            parse_transaction_id(&oldest_running_transaction)?,
            u64::try_from(head_position).unwrap_or(0),
        ))
    }
}

async fn sleep_or_wait_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
