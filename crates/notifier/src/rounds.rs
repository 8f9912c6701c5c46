//! The loop the escalation scheduler and the delivery worker both run.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `round` until `shutdown` turns true: again at once when it answers true (there may be
/// more waiting), otherwise after `poll_interval` or as soon as `shutdown` changes.
pub(crate) async fn run_rounds<F, R>(
    mut shutdown: watch::Receiver<bool>,
    poll_interval: Duration,
    mut round: F,
) where
    F: FnMut() -> R,
    R: Future<Output = bool>,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        if round().await {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(poll_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
