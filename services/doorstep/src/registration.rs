//! This server's row in the store's registry of running servers (`doorstep_store::
//! ServerRegistry`), so that `doorstep projections rebuild` can refuse while it runs and say
//! which server holds the database. The row is renewed every [`HEARTBEAT`] to expire
//! [`EXPIRY`] later, and removed on a clean stop; a server that crashed stops renewing, and its
//! row is ignored once it has expired.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use doorstep_store::{RunningServer, ServerRegistry, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a running server renews its row.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a row holds without being renewed: three heartbeats, so a busy moment or two does
/// not make a running server look gone.
pub const EXPIRY: Duration = Duration::from_secs(30);

/// This machine's name, as the kernel gives it (Linux), or `HOSTNAME`, or "an unnamed host".
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unnamed host".to_owned())
}

fn expiry() -> chrono::Duration {
    chrono::Duration::from_std(EXPIRY).unwrap_or(chrono::Duration::seconds(30))
}

/// The registration while the server runs.
pub struct Registration {
    registry: Arc<dyn ServerRegistry>,
    server_id: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Registration {
    /// Registers this process, serving at `address` in `role`, and starts renewing its row.
    pub async fn start(
        registry: Arc<dyn ServerRegistry>,
        address: String,
        role: String,
    ) -> Result<Self, StoreError> {
        let now = Utc::now();
        let server = RunningServer {
            server_id: uuid::Uuid::now_v7().to_string(),
            host: host_name(),
            pid: std::process::id(),
            address,
            role,
            started_at: now,
            heartbeat_at: now,
            expires_at: now + expiry(),
        };
        registry.register(&server).await?;
        let server_id = server.server_id.clone();
        let (stop, mut stopped) = watch::channel(false);
        let renewing = Arc::clone(&registry);
        let task = tokio::spawn(async move {
            let mut server = server;
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(HEARTBEAT) => {}
                }
                let now = Utc::now();
                server.heartbeat_at = now;
                server.expires_at = now + expiry();
                let renewed = renewing
                    .heartbeat(&server.server_id, now, server.expires_at)
                    .await;
                let result = match renewed {
                    // Someone removed the row: put it back.
                    Ok(false) => renewing.register(&server).await,
                    Ok(true) => Ok(()),
                    Err(error) => Err(error),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "cannot renew this server's row in running_servers");
                }
            }
        });
        Ok(Self {
            registry,
            server_id,
            stop,
            task,
        })
    }

    /// This server's id in the registry.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Stops renewing and removes the row: the server is stopping cleanly.
    pub async fn end(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(error) = self.registry.deregister(&self.server_id).await {
            tracing::warn!(%error, "cannot remove this server's row from running_servers");
        }
    }
}

/// The servers holding the database now, in words for a person: host, pid, address, role, since
/// when and when last heard from.
pub fn describe(servers: &[RunningServer]) -> String {
    let now = Utc::now();
    servers
        .iter()
        .map(|server| {
            let heard = (now - server.heartbeat_at).num_seconds().max(0);
            format!(
                "pid {} on {}, serving {} (role {}) since {}, last heard from {heard} s ago",
                server.pid,
                server.host,
                server.address,
                server.role,
                server
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
