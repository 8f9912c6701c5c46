//! What the benches share: the server in this process and the credential its tests' settings
//! accept (every bench), and a kept log's contractor names and reporting window (the benches that
//! start a server on one).

// Each bench binary compiles this module on its own and uses part of it (`doorstep-bench`
// through a `#[path]`).
#![allow(dead_code)]

use std::time::Duration;

use anyhow::Context;
use doorstep_api::v1;
use doorstep_server::{Application, Settings, StartupError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

pub use doorstep_server::auth::client::AuthenticatedChannel as Channel;

/// The actor the bench's token names.
pub const ACTOR: &str = "doorstep-bench";
/// The reporting window queried: a full reporting year inside the generated 24 months.
pub const FROM_MONTH: &str = "2025-04";
pub const TO_MONTH: &str = "2026-03";

/// A token for every staff role, signed with the secret of the servers the benches start
/// (`Settings::for_tests`), naming [`ACTOR`].
pub fn bench_credential() -> anyhow::Result<doorstep_server::auth::client::CallerCredential> {
    let claims = doorstep_server::auth::jwt::TokenClaims::new(
        ACTOR,
        &["intake", "officer", "manager", "admin", "auditor"],
        Duration::from_secs(24 * 3_600),
    );
    let token = doorstep_server::auth::jwt::issue_hs256(
        doorstep_server::settings::TEST_JWT_SECRET.as_bytes(),
        &claims,
    )?;
    Ok(doorstep_server::auth::client::CallerCredential::bearer(
        &token,
    )?)
}

/// The real server, in this process, serving until [`RunningServer::stop`].
pub struct RunningServer {
    pub port: u16,
    /// Where the web console listens.
    pub console: Option<std::net::SocketAddr>,
    /// Where its Prometheus endpoint listens.
    pub metrics: Option<std::net::SocketAddr>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartupError>>,
}

impl RunningServer {
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        Self::start_with(settings, |application| application).await
    }

    /// Starts the server with what `mount` adds to it (`doorstep-bench`'s echo service).
    pub async fn start_with(
        settings: Settings,
        mount: impl FnOnce(Application) -> Application,
    ) -> anyhow::Result<Self> {
        let application = mount(
            Application::build(settings)
                .await
                .context("building the Doorstep application")?,
        );
        let port = application.port();
        let console = application.console_address();
        let metrics = application.metrics_address();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        }));
        Ok(Self {
            port,
            console,
            metrics,
            stop,
            task,
        })
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .context("building the server's endpoint")?
            .timeout(Duration::from_secs(600))
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting to the server")?;
        Ok(bench_credential()?.attach(channel))
    }

    /// Shuts down gracefully: in-flight calls finish and the store commits its last appends.
    pub async fn stop(self) -> anyhow::Result<()> {
        // An error means the server already ended; the join below reports why.
        let _ = self.stop.send(());
        self.task
            .await
            .context("the server task panicked")?
            .context("the server failed")
    }
}

pub fn contractor_name(index: u32) -> String {
    format!("bench-contractor-{index:03}")
}

pub fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// splitmix64: a deterministic, well-spread hash of a unit's index.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A visit in the last 700 days for one of `contractors`, with the id `{prefix}-{index}`.
pub fn visit(prefix: &str, index: u64, contractors: u32, today: chrono::NaiveDate) -> v1::Visit {
    let contractor = u32::try_from(index % u64::from(contractors.max(1))).unwrap_or(0);
    let days_back = mix(index) % 700 + 1;
    let visit_date = today - chrono::Duration::days(i64::try_from(days_back).unwrap_or(1));
    v1::Visit {
        visit_id: format!("{prefix}-{index}"),
        contractor_id: contractor_name(contractor),
        uprn: format!("{}", 100_000_000 + mix(index ^ 0xabcd) % 900_000_000),
        work_order_reference: format!("WO-{}", index / 3),
        visit_date: visit_date.format("%Y-%m-%d").to_string(),
    }
}
