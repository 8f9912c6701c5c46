//! gRPC health that reflects the database: the overall status (the empty service name) and every
//! Doorstep service are NOT_SERVING while the event store or the read models do not answer, and
//! SERVING again once they do. The `liveness` name stays SERVING while the process runs.

use std::time::Duration;

use doorstep_projections::ReadModelDatabase;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::backend::OpenedStore;

/// How often the databases are asked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A database that has not answered in this long counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Follows the databases and sets the health statuses of `services` (and the overall one).
pub struct HealthMonitor {
    pub store: OpenedStore,
    pub read_models: ReadModelDatabase,
    pub reporter: HealthReporter,
    pub services: Vec<&'static str>,
}

impl HealthMonitor {
    /// Runs until `stop` turns true. Statuses start SERVING (the databases answered at start-up)
    /// and change only when reachability does.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut serving = true;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(CHECK_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
                let reachable = self.databases_answer().await;
                if *stop.borrow() {
                    return;
                }
                if reachable != serving {
                    serving = reachable;
                    if serving {
                        tracing::info!("the database answers again: health is SERVING");
                    } else {
                        tracing::error!("the database does not answer: health is NOT_SERVING");
                    }
                    self.set(if serving {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    })
                    .await;
                }
            }
        })
    }

    async fn databases_answer(&self) -> bool {
        let checks = async {
            let store = self.store.ping().await;
            let read_models = sqlx::query("SELECT 1")
                .execute(self.read_models.pool())
                .await;
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
