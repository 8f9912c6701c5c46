//! gRPC health that reflects the database: the overall status (the empty service name) and every
//! Doorstep service are NOT_SERVING while the event store or the read models do not answer, and
//! SERVING again once they do. The `liveness` name stays SERVING while the process runs.
//!
//! The `read_models` name follows the read models themselves: NOT_SERVING also while they are
//! stuck at an event they cannot apply. It is for alerting, not readiness: writes and
//! `GetComplaint` still work then, and every replica shares the stuck checkpoint, so taking them
//! all out of service would turn stale lists into an outage.

use std::time::Duration;

use doorstep_projections::ReadModel;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::backend::OpenedStore;

/// How often the databases are asked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A database that has not answered in this long counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The health check name of the read models (see the module comment).
pub const READ_MODELS_SERVICE: &str = "read_models";

/// Follows the databases and sets the health statuses of `services` (and the overall one).
pub struct HealthMonitor {
    pub store: OpenedStore,
    /// Says whether the projection runner is stuck at an event.
    pub read_model: ReadModel,
    pub reporter: HealthReporter,
    pub services: Vec<&'static str>,
}

impl HealthMonitor {
    /// Runs until `stop` turns true. Statuses start SERVING (the databases answered at start-up)
    /// and change only when reachability does.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut serving = true;
            let mut read_models_serving = None;
            let mut stall = Some(self.read_model.watch_stall());
            // Whether the last round saw the read models stuck.
            let mut stuck = false;
            loop {
                let reachable = if read_models_serving.is_none() {
                    // The first round: the databases answered at start-up.
                    true
                } else {
                    if stall.is_none() {
                        // The runner followed before was switched from (an online rebuild): follow
                        // the one of the generation served now, unless it has stopped too.
                        let served = self.read_model.watch_stall();
                        if served.has_changed().is_ok() {
                            stall = Some(served);
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(CHECK_INTERVAL) => {}
                        // A stall is reported at once, without waiting for the next check.
                        () = stall_changed(&mut stall, stuck) => {}
                        _ = stop.changed() => return,
                    }
                    self.databases_answer().await
                };
                if *stop.borrow() {
                    return;
                }
                stuck = self.read_model.stalled().is_some();
                let read_models_now = reachable && !stuck;
                if read_models_serving != Some(read_models_now) {
                    read_models_serving = Some(read_models_now);
                    self.reporter
                        .set_service_status(READ_MODELS_SERVICE, status(read_models_now))
                        .await;
                }
                if reachable != serving {
                    serving = reachable;
                    if serving {
                        tracing::info!("the database answers again: health is SERVING");
                    } else {
                        tracing::error!("the database does not answer: health is NOT_SERVING");
                    }
                    self.set(status(serving)).await;
                }
            }
        })
    }

    async fn databases_answer(&self) -> bool {
        let checks = async {
            let store = self.store.ping().await;
            let read_models = self.read_model.ping().await;
            if let Err(error) = &store {
                tracing::debug!(%error, "the event store's database does not answer");
            }
            if let Err(error) = &read_models {
                tracing::debug!(%error, "the read models' database does not answer");
            }
            store.is_ok() && read_models.is_ok()
        };
        tokio::time::timeout(CHECK_TIMEOUT, checks)
            .await
            .unwrap_or(false)
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for service in &self.services {
            self.reporter.set_service_status(*service, status).await;
        }
    }
}

/// Waits until the runner's stall report says otherwise than `stuck`; once the runner has gone
/// (its task ended), never, so the monitor falls back to its regular checks instead of waking in
/// a loop. Only a change between stuck and unstuck wakes it: a report of another stuck event
/// changes no status, and waking per batch would ask both databases for an answer once per batch
/// (two `SELECT 1` per batch at intake). (The runner sends nothing when a batch leaves the read
/// models as unstuck as they were.)
async fn stall_changed(
    stall: &mut Option<watch::Receiver<Option<doorstep_projections::Stall>>>,
    stuck: bool,
) {
    match stall {
        Some(receiver) => {
            if receiver
                .wait_for(|now| now.is_some() != stuck)
                .await
                .is_err()
            {
                *stall = None;
            }
        }
        None => std::future::pending().await,
    }
}

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

#[cfg(test)]
mod tests {
    use doorstep_projections::Stall;
    use futures::FutureExt;
    use tokio::sync::watch;

    use super::stall_changed;

    fn stall() -> Stall {
        Stall {
            position: 7,
            event_id: uuid::Uuid::nil(),
            event_type: "ComplaintReceived".to_owned(),
            stream_id: "complaint-1".to_owned(),
            reason: "cannot decode".to_owned(),
        }
    }

    /// The runner reports "not stuck" after every batch; only turning stuck or unstuck wakes the
    /// monitor (which then asks both databases for an answer).
    #[test]
    fn only_turning_stuck_or_unstuck_wakes_the_monitor() {
        let (sender, receiver) = watch::channel(None);
        let mut stall_report = Some(receiver);

        // A batch applied: "not stuck" again, while the monitor last saw the read models fine.
        sender.send_replace(None);
        assert!(
            stall_changed(&mut stall_report, false)
                .now_or_never()
                .is_none()
        );

        sender.send_replace(Some(stall()));
        assert!(
            stall_changed(&mut stall_report, false)
                .now_or_never()
                .is_some()
        );
        // Still stuck at the same event: nothing to report.
        assert!(
            stall_changed(&mut stall_report, true)
                .now_or_never()
                .is_none()
        );

        sender.send_replace(None);
        assert!(
            stall_changed(&mut stall_report, true)
                .now_or_never()
                .is_some()
        );
    }
}
