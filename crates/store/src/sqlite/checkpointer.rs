//! Moves the log's committed pages from the write-ahead log into the database file, in the
//! background.
//!
//! By default SQLite does this inside a commit: the connection whose commit takes the WAL past
//! 1,000 pages copies them and flushes the database file before its caller hears back. Here that
//! commit is usually the event writer's, so every few hundred appends one batch, and every
//! caller in it, waited for a checkpoint; that was most of intake's p99 latency (a WAL allowed
//! ten times larger made p90 better and p99 worse). The store's connections therefore never
//! checkpoint (`wal_autocheckpoint = 0`), and this task does, on a connection of its own.
//!
//! A PASSIVE checkpoint runs beside the writer and readers without blocking them, but under
//! steady appends it never catches up with the writer, and SQLite starts the WAL file over only
//! after a checkpoint has copied all of it: the file would grow without end (600 MB in 12 s of
//! full intake). So once the WAL holds [`RESTART_FRAMES`] pages, the task copies what is left
//! while holding the writer between transactions ([`super::SqliteEventStore::exclusive_write`]).
//! That pause is short, since the background checkpoints have already copied nearly all of it,
//! and the writer's next transaction starts the WAL over.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqliteConnection;
use tokio::sync::{Mutex, mpsc, watch};

use crate::writer_queue::WriterMessage;

/// How often the task looks for new commits to checkpoint.
const INTERVAL: Duration = Duration::from_millis(100);

/// How many pages the WAL may hold before the writer is paused to let a checkpoint finish it:
/// 16 MB with 4 KiB pages, about a third of a second of full intake.
const RESTART_FRAMES: i64 = 4_000;

/// Checkpoints whenever the head has moved, until the writer stops.
pub(super) async fn run(
    mut connection: SqliteConnection,
    mut head: watch::Receiver<u64>,
    writer: mpsc::WeakSender<WriterMessage>,
    write_gate: Arc<Mutex<()>>,
) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let writer_running = writer.upgrade().is_some_and(|sender| !sender.is_closed());
        if !writer_running {
            break;
        }
        if !head.has_changed().unwrap_or(false) {
            continue;
        }
        head.mark_unchanged();
        let Some(wal_frames) = checkpoint(&mut connection).await else {
            continue;
        };
        if wal_frames >= RESTART_FRAMES {
            let _writing = write_gate.lock().await;
            checkpoint(&mut connection).await;
        }
    }
    // The last connection to close checkpoints whatever is left.
    let _ = sqlx::Connection::close(connection).await;
}

/// Runs a PASSIVE checkpoint; returns how many pages the WAL holds, or `None` when it failed.
async fn checkpoint(connection: &mut SqliteConnection) -> Option<i64> {
    // Columns: whether it was blocked, pages in the WAL, pages copied to the database.
    let result: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *connection)
            .await;
    match result {
        Ok((_, wal_frames, _)) => Some(wal_frames),
        Err(error) => {
            tracing::warn!(%error, "a background checkpoint of the event log failed");
            None
        }
    }
}
