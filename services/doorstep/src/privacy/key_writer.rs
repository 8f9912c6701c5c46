//! New resident keys, written in groups: every intake call that needs a key for a new resident
//! hands it to one task, which stores whatever is waiting in one statement, so concurrent first
//! complaints share one commit (and one flush to disk) as their events do in the event store.
//! Without it each new resident cost a commit of its own, which held intake near the
//! one-commit-per-event rate.

use std::sync::Arc;

use doorstep_store::{ResidentKeyError, ResidentKeyStore};
use tokio::sync::{mpsc, oneshot};

/// The most keys one statement stores (three parameters each).
const MAX_BATCH: usize = 500;

/// A key waiting to be stored, and where to say whether it was.
struct PendingKey {
    reference: String,
    wrapped: String,
    /// True when this key is the one stored; false when the resident already had one.
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The queue in front of the key-writing task.
pub struct KeyWriter {
    queue: mpsc::Sender<PendingKey>,
}

impl KeyWriter {
    /// Starts the task; it ends when the writer is dropped, after the keys already queued.
    /// Every key it is given must be wrapped by master key `generation`.
    pub fn spawn(keys: Arc<dyn ResidentKeyStore>, generation: u32) -> Self {
        let (queue, pending) = mpsc::channel(MAX_BATCH * 2);
        tokio::spawn(run(keys, generation, pending));
        Self { queue }
    }

    /// Stores `wrapped` as the resident's key unless they have one already; returns whether this
    /// key is the one stored. Returns once the key is committed.
    pub async fn insert(&self, reference: &str, wrapped: String) -> Result<bool, ResidentKeyError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(PendingKey {
                reference: reference.to_owned(),
                wrapped,
                reply,
            })
            .await
            .map_err(|_| ResidentKeyError::Closed)?;
        answer
            .await
            .map_err(|_| ResidentKeyError::Closed)?
            .map_err(ResidentKeyError::BatchFailed)
    }
}

async fn run(
    keys: Arc<dyn ResidentKeyStore>,
    generation: u32,
    mut pending: mpsc::Receiver<PendingKey>,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(key) => batch.push(key),
                Err(_) => break,
            }
        }
        let rows: Vec<(String, String)> = batch
            .iter()
            .map(|key| (key.reference.clone(), key.wrapped.clone()))
            .collect();
        match keys.insert_keys(&rows, generation).await {
            Ok(inserted) => {
                let references: Vec<&str> =
                    batch.iter().map(|key| key.reference.as_str()).collect();
                let stored = stored_flags(&references, inserted);
                for (key, stored) in batch.into_iter().zip(stored) {
                    let _ = key.reply.send(Ok(stored));
                }
            }
            Err(error) => {
                tracing::error!(%error, keys = batch.len(), "cannot store new resident keys");
                let message = error.to_string();
                for key in batch {
                    let _ = key.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// Which of a batch's keys is the one stored, given the references the statement inserted: of two
/// keys for one resident in a batch, the first row is the one stored.
fn stored_flags(references: &[&str], inserted: Vec<String>) -> Vec<bool> {
    let mut inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    references
        .iter()
        .map(|reference| inserted.remove(*reference))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::stored_flags;

    #[test]
    fn only_the_first_key_of_a_resident_in_a_batch_is_the_stored_one() {
        let references = ["a", "b", "a", "c", "b"];
        // The statement stored a's first row and b's first row; c already had a key.
        let inserted = vec!["b".to_owned(), "a".to_owned()];
        assert_eq!(
            stored_flags(&references, inserted),
            [true, true, false, false, false]
        );
    }
}
