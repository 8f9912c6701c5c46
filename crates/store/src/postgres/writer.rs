//! The single writer task of one process: every append of this process goes through it, and it
//! commits them in groups.
//!
//! Every commit waits for the WAL to be flushed (`synchronous_commit` stays on). One task that
//! owns one connection and commits every append already waiting in one transaction shares that
//! flush between many callers (group commit). Each append runs in its own savepoint (see
//! [`batch`](super::batch)), so an append that is refused is rolled back alone while the rest of
//! its group commits. Other processes may run writers of their own on the same database; the
//! unique indexes keep them honest.
//!
//! Answers are given once the events are readable (see [`head`](super::head)): most of the time
//! right after the commit, otherwise by the head tracker once older transactions have finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::batch::{AppendResult, BatchFailure, WrittenBatch, write_batch};
use super::head::{PendingAnswer, publish_head, writing_transaction};
use super::rows::recorded_at_now;
use crate::StoreError;
use crate::writer_queue::{AppendRequest, BatchWriter, batch_failed};

/// How many transactions one batch may take. Another is needed for appends deferred because a
/// younger transaction extended their stream first (the next transaction is younger than that
/// one), and after writers deadlocked (which sorting makes rare, see `commit_batch`; the retry runs
/// after the other writer committed). Each retry means another process made progress on the same
/// streams, so running out of attempts takes sustained contention.
const TRANSACTION_ATTEMPTS: usize = 10;

/// How long the writer waits for a new connection before failing the batch that needs it.
const RECONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The PostgreSQL side of the writer task; the queue in front of it is [`crate::writer_queue`].
pub(super) struct Writer {
    /// `None` after the connection broke; the next batch connects again.
    pub(super) connection: Option<PgConnection>,
    pub(super) connect_options: PgConnectOptions,
    pub(super) head: Arc<watch::Sender<u64>>,
    pub(super) commits: Arc<AtomicU64>,
    /// Where answers go that must wait until their events are readable.
    pub(super) pending_answers: mpsc::UnboundedSender<PendingAnswer>,
    pub(super) head_tracker: JoinHandle<()>,
    pub(super) writer_process_id: Arc<AtomicU32>,
}

impl BatchWriter for Writer {
    async fn write_batch(&mut self, batch: Vec<AppendRequest>) {
        // PostgreSQL stores a new resident's key before it submits the append
        // (`append_with_new_key`), so no request carries one here; one that did would be refused
        // rather than its key dropped.
        let (keyed, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|request| request.new_key.is_some());
        for request in keyed {
            request.answer(Err(StoreError::Database(sqlx::Error::Protocol(
                "the PostgreSQL writer does not store resident keys".to_owned(),
            ))));
        }
        self.commit_batch(batch).await;
    }

    async fn close(self) {
        self.shut_down().await;
    }
}

impl Writer {
    /// Writes one batch, in one transaction unless it must be retried, and answers every caller
    /// in it.
    async fn commit_batch(&mut self, batch: Vec<AppendRequest>) {
        let started = Instant::now();
        let batch_appends = batch.len();
        let batch_events: usize = batch.iter().map(|request| request.events.len()).sum();
        let mut remaining = batch;
        // Every writer inserts a batch's streams in the same order, so two processes' batches
        // waiting on each other's `(stream_id, version)` entries cannot form a cycle (a deadlock,
        // which PostgreSQL only breaks after a second). The order of appends that were waiting
        // together is arbitrary anyway; the stable sort keeps one stream's appends in queue order.
        remaining.sort_by(|left, right| left.stream.cmp(&right.stream));
        let mut attempts = 0;
        let mut reconnected = false;
        while !remaining.is_empty() {
            attempts += 1;
            let had_connection = self.connection.is_some();
            match self.write_once(&remaining).await {
                Ok(written) => {
                    if written.committed {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    remaining = self.answer(remaining, written);
                    if !remaining.is_empty() && attempts >= TRANSACTION_ATTEMPTS {
                        for request in remaining.drain(..) {
                            let _ = request.reply.send(Err(StoreError::Database(
                                sqlx::Error::Protocol(format!(
                                    "the append to {} kept meeting younger writers of its stream",
                                    request.stream
                                )),
                            )));
                        }
                    }
                }
                Err(failure) if failure.retryable && attempts < TRANSACTION_ATTEMPTS => {
                    tracing::info!(
                        error = %failure.error,
                        attempts,
                        "a batch of appends met another writer; trying it again"
                    );
                }
                // The connection broke (the database restarted, or the network dropped it
                // while the writer was idle): try once more on a new one. Safe even if the
                // first COMMIT went through unseen: the appends' event ids are then stored with
                // the same content, and the retry answers where they landed.
                Err(failure) if had_connection && !failure.connection_usable && !reconnected => {
                    reconnected = true;
                    tracing::warn!(
                        error = %failure.error,
                        "the writer's connection broke; trying the batch on a new connection"
                    );
                }
                Err(failure) => {
                    tracing::error!(
                        error = %failure.error,
                        batch_appends = remaining.len(),
                        "a batch of appends failed and was rolled back"
                    );
                    for request in remaining.drain(..) {
                        let _ = request.reply.send(Err(batch_failed(&failure.error)));
                    }
                }
            }
        }
        tracing::debug!(
            batch_appends,
            batch_events,
            transactions = attempts,
            elapsed_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "wrote a batch of appends"
        );
    }

    /// One attempt at a batch, on a connection that is opened first if the last one broke.
    async fn write_once(
        &mut self,
        requests: &[AppendRequest],
    ) -> Result<WrittenBatch, BatchFailure> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let connection = self.reconnect().await.map_err(|error| BatchFailure {
                    error,
                    retryable: false,
                    connection_usable: false,
                })?;
                self.connection.insert(connection)
            }
        };
        let written = write_batch(connection, requests, recorded_at_now()).await;
        if let Err(failure) = &written
            && !failure.connection_usable
        {
            tracing::warn!("dropping the writer connection after a failure");
            self.connection = None;
        }
        written
    }

    async fn reconnect(&self) -> Result<PgConnection, sqlx::Error> {
        // A partitioned network would otherwise hold the batch for a whole TCP connect timeout.
        let mut connection =
            tokio::time::timeout(RECONNECT_TIMEOUT, self.connect_options.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let process_id = writer_process_id(&mut connection).await?;
        self.writer_process_id.store(process_id, Ordering::Relaxed);
        tracing::info!("the event store writer reconnected");
        Ok(connection)
    }

    /// Answers every caller whose events are readable now, hands the others to the head
    /// tracker, and returns the deferred appends, which need another transaction.
    fn answer(&self, requests: Vec<AppendRequest>, written: WrittenBatch) -> Vec<AppendRequest> {
        let mut readable_head = None;
        let mut deferred = Vec::new();
        for (request, result) in requests.into_iter().zip(written.results) {
            let outcome = match result {
                AppendResult::Deferred => {
                    deferred.push(request);
                    continue;
                }
                AppendResult::Decided(Ok(outcome)) => outcome,
                AppendResult::Decided(Err(refusal)) => {
                    let _ = request.reply.send(Err(refusal));
                    continue;
                }
            };
            if writing_transaction(outcome.position) < written.oldest_running_transaction {
                readable_head = readable_head.max(Some(outcome.position));
                // A caller that gave up waiting no longer needs the answer; its events are
                // written all the same, and a retry with the same ids is idempotent.
                let _ = request.reply.send(Ok(outcome));
                continue;
            }
            let pending = PendingAnswer {
                outcome,
                reply: request.reply,
                committed_at: Instant::now(),
            };
            if let Err(mpsc::error::SendError(pending)) = self.pending_answers.send(pending) {
                // The tracker only stops after the writer; should it have failed, the caller
                // still hears that its append is durable.
                let _ = pending.reply.send(Ok(pending.outcome));
            }
        }
        if let Some(position) = readable_head {
            publish_head(&self.head, position);
        }
        deferred
    }

    /// Lets the head tracker give its last answers, then closes the connection.
    async fn shut_down(self) {
        let Self {
            connection,
            pending_answers,
            head_tracker,
            ..
        } = self;
        // Closing the channel tells the tracker to stop once it has answered everyone.
        drop(pending_answers);
        if let Err(error) = head_tracker.await {
            tracing::error!(error = %error, "the event store head tracker failed");
        }
        if let Some(connection) = connection
            && let Err(error) = connection.close().await
        {
            tracing::warn!(error = %error, "closing the writer connection failed");
        }
    }
}

/// Readies a connection for the writer (time limits on lock waits and on idling in a transaction)
/// and returns its backend process, whose notifications the tracker can skip.
pub(super) async fn writer_process_id(connection: &mut PgConnection) -> Result<u32, sqlx::Error> {
    // A batch waiting on a lock for longer than this fails (its callers retry, idempotently)
    // rather than hang behind a session whose process has gone; and PostgreSQL ends a writer
    // session left idle inside a transaction (its process cut off mid-batch), releasing what it
    // held, so other replicas' writers are not blocked by it for good.
    sqlx::raw_sql("SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '60s'")
        .execute(&mut *connection)
        .await?;
    let process_id: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await?;
    Ok(u32::try_from(process_id).unwrap_or(0))
}
