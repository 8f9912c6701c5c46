//! Read-model generations in a running service, and the online rebuild that makes them
//! (`doorstep projections rebuild --online`).
//!
//! The rebuild builds the next generation beside the live one with the same `ProjectionRunner`
//! while servers keep serving and writing, catches up to the head, and flips `live` in the
//! store's registry (`doorstep_store::GenerationRegistry`) in one transaction. Every server's
//! [`GenerationFollower`] polls the registry, opens the new generation, lets its own runner bring
//! it up to where the old one was, swaps the `ReadModel` handle every service and the notifier
//! share, stops the old runner and lets the old pool go when its last query ends, and records the generation it serves in
//! its `running_servers` row. The rebuild waits for every server to report the new generation,
//! then drops the old one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use doorstep_domain::WorkingDayCalendar;
use doorstep_projections::{
    EscalationPlanner, FindingLadder, ProjectionRunner, ReadModel, ReadModelDatabase,
};
use doorstep_store::{EventStore, GenerationRegistry};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backend::{OpenedStore, open_read_models};
use crate::settings::{DatabaseSettings, Settings};
use crate::startup::StartupError;

/// How often a server asks the registry which generation is live.
pub const POLL: Duration = Duration::from_millis(500);
/// Every this many polls (10 s) a server records again the generation it serves.
const RECORD_EVERY_POLLS: u32 = 20;
/// How long a server lets a new generation's runner catch up with the old one before it serves
/// it anyway (it follows the log from there, and `min_position` waits for it).
const CATCH_UP_BEFORE_SERVING: Duration = Duration::from_secs(10);
/// The rebuild switches once its generation is this close to the head of the log (positions).
const SWITCH_LAG: u64 = 1_000;
/// How often the rebuild writes its progress to the registry.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// What it takes to run the read models' runner on any generation, as the settings say.
#[derive(Clone)]
pub struct RunnerParts {
    pub database: DatabaseSettings,
    pub store: Arc<dyn EventStore>,
    pub calendar: Arc<WorkingDayCalendar>,
    pub planner: EscalationPlanner,
    pub findings: FindingLadder,
}

impl RunnerParts {
    /// The parts for `store` under `settings`: its escalation policy, calendar and finding ladder.
    pub fn new(settings: &Settings, store: Arc<dyn EventStore>) -> Result<Self, StartupError> {
        let policy = settings
            .escalation
            .policy()
            .map_err(StartupError::Settings)?;
        let calendar = Arc::new(crate::startup::calendar(settings)?);
        let findings =
            crate::notifier::finding_ladder(settings, &policy, calendar.as_ref().clone())
                .map_err(StartupError::Settings)?;
        let planner = crate::notifier::planner(settings, policy, calendar.as_ref().clone());
        Ok(Self {
            database: settings.database.clone(),
            store,
            calendar,
            planner,
            findings,
        })
    }

    /// Opens `generation` and a runner on it, with the query side it feeds.
    pub async fn open(
        &self,
        generation: u64,
    ) -> Result<(ReadModelDatabase, ProjectionRunner, ReadModel), StartupError> {
        let database = open_read_models(&self.database, generation).await?;
        let (runner, read_model) =
            ProjectionRunner::open(self.store.clone(), database.clone(), self.calendar.clone())
                .await?;
        let runner = runner
            .with_escalations(self.planner.clone())
            .with_finding_ladder(self.findings.clone());
        Ok((database, runner, read_model))
    }
}

/// A generation a server serves: its pool and its running runner.
struct Serving {
    generation: u64,
    database: ReadModelDatabase,
    stop: watch::Sender<bool>,
    runner: JoinHandle<()>,
}

impl Serving {
    fn start(generation: u64, database: ReadModelDatabase, runner: ProjectionRunner) -> Self {
        let (stop, stopped) = watch::channel(false);
        Self {
            generation,
            database,
            runner: runner.spawn(stopped),
            stop,
        }
    }

    /// Stops the runner and closes the pool: the server is stopping.
    async fn stop(self) {
        let database = self.database.clone();
        self.retire().await;
        database.close().await;
    }

    /// Stops the runner and lets the pool go without closing it: a query that took it just
    /// before the switch still runs on it, and the pool closes when that query lets it go
    /// (closing it here would fail such a query with "pool closed").
    async fn retire(self) {
        let _ = self.stop.send(true);
        let _ = self.runner.await;
    }
}

/// Keeps a server on the live generation: runs its runner, and switches when the registry says.
pub struct GenerationFollower {
    pub parts: RunnerParts,
    pub registry: Arc<dyn GenerationRegistry>,
    /// The handle every service and the notifier query.
    pub read_model: ReadModel,
    /// This server's row in `running_servers`.
    pub server_id: String,
    pub generation: u64,
    pub database: ReadModelDatabase,
    pub runner: ProjectionRunner,
}

impl GenerationFollower {
    /// Runs until `stop` turns true, then stops the runner and closes the generation's pool.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let Self {
            parts,
            registry,
            read_model,
            server_id,
            generation,
            database,
            runner,
        } = self;
        let this = Following {
            parts,
            registry,
            read_model,
            server_id,
        };
        tokio::spawn(async move {
            let mut serving = Serving::start(generation, database, runner);
            this.record(serving.generation).await;
            let mut polls = 0_u32;
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(POLL) => {}
                }
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(RECORD_EVERY_POLLS) {
                    // A row registered again (removed by an operator, or expired in a stall)
                    // starts at generation 0: say again which one this server serves.
                    this.record(serving.generation).await;
                }
                let live = match this.registry.live_generation().await {
                    Ok(live) => live,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read which read-model generation is live");
                        continue;
                    }
                };
                if live == serving.generation {
                    continue;
                }
                match this.switch(live).await {
                    Ok(next) => {
                        let old = std::mem::replace(&mut serving, next);
                        let from = old.generation;
                        old.retire().await;
                        this.record(live).await;
                        tracing::info!(from, to = live, "now serving a new read-model generation");
                    }
                    Err(error) => {
                        tracing::error!(error = ?error, generation = live,
                            "cannot switch to the live read-model generation; retrying");
                    }
                }
            }
            serving.stop().await;
        })
    }
}

/// What the follower needs once it runs.
struct Following {
    parts: RunnerParts,
    registry: Arc<dyn GenerationRegistry>,
    read_model: ReadModel,
    server_id: String,
}

impl Following {
    /// Opens `generation`, lets its runner reach the position served now, and serves it.
    async fn switch(&self, generation: u64) -> Result<Serving, StartupError> {
        let (database, runner, read_model) = self.parts.open(generation).await?;
        let next = Serving::start(generation, database, runner);
        let reached = self.read_model.position();
        if !read_model.wait_for(reached, CATCH_UP_BEFORE_SERVING).await {
            tracing::warn!(
                generation,
                reached,
                "the new read-model generation is behind the old one; serving it anyway"
            );
        }
        self.read_model.serve(&read_model);
        Ok(next)
    }

    async fn record(&self, generation: u64) {
        if let Err(error) = self
            .registry
            .set_serving_generation(&self.server_id, generation)
            .await
        {
            tracing::warn!(%error, "cannot record the read-model generation this server serves");
        }
    }
}

/// What the online rebuild tells its caller as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum RebuildProgress {
    /// Building `generation`, from `position` (0 unless a build that stopped is resumed).
    Started {
        generation: u64,
        resumed: bool,
        position: u64,
    },
    /// A batch applied: events in it, position reached, head of the log aimed at.
    Applied {
        events: usize,
        position: u64,
        target: u64,
    },
    /// `generation` is live; the servers are switching.
    Switched { generation: u64, retired: u64 },
    /// Every server serves the new generation and the old one is dropped (or, when some server
    /// did not switch in time, kept).
    Finished { dropped: Option<u64> },
}

/// How the online rebuild runs.
#[derive(Debug, Clone)]
pub struct OnlineRebuildOptions {
    /// Discard a generation left building by a rebuild that stopped, rather than resuming it.
    pub restart: bool,
    /// How long to wait for every running server to serve the new generation before dropping the
    /// old one.
    pub switch_wait: Duration,
    /// Tests: stop (as a crash would, mid-batch or between batches) after this many batches.
    pub stop_after_batches: Option<usize>,
    /// Tests: events per catch-up batch instead of the runner's own (25,000), so a small log
    /// still takes several batches.
    pub catch_up_batch_size: Option<usize>,
}

impl Default for OnlineRebuildOptions {
    fn default() -> Self {
        Self {
            restart: false,
            switch_wait: Duration::from_secs(60),
            stop_after_batches: None,
            catch_up_batch_size: None,
        }
    }
}

/// How an online rebuild ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineRebuild {
    /// `generation` is live, built from `from` with `applied` events.
    Done {
        generation: u64,
        from: u64,
        applied: u64,
    },
    /// Stopped by `stop_after_batches` before switching.
    Stopped { generation: u64 },
}

/// Builds the next read-model generation beside the live one while servers serve, switches every
/// server to it and drops the old one. See the module's documentation.
pub async fn rebuild_online(
    settings: &Settings,
    options: OnlineRebuildOptions,
    mut report: impl FnMut(RebuildProgress),
) -> Result<OnlineRebuild, StartupError> {
    let store = OpenedStore::open(&settings.database).await?;
    let result = build_and_switch(settings, &store, &options, &mut report).await;
    store.close().await;
    result
}

async fn build_and_switch(
    settings: &Settings,
    store: &OpenedStore,
    options: &OnlineRebuildOptions,
    report: &mut impl FnMut(RebuildProgress),
) -> Result<OnlineRebuild, StartupError> {
    let registry = store.generations();
    let url = settings
        .database
        .read_model_url()
        .map_err(StartupError::Settings)?;
    let shared = store.shared();
    let (mut building, mut resumed) = registry.begin_building(chrono::Utc::now()).await?;
    if resumed && options.restart {
        registry.discard_building(building.generation).await?;
        doorstep_projections::drop_generation(&url, building.generation).await?;
        (building, resumed) = registry.begin_building(chrono::Utc::now()).await?;
    }
    let generation = building.generation;
    let parts = RunnerParts::new(settings, shared.clone())?;
    let (database, runner, read_model) = parts.open(generation).await?;
    let runner = match options.catch_up_batch_size {
        Some(events) => runner.with_catch_up_batch_size(events),
        None => runner,
    };
    let from = read_model.position();
    report(RebuildProgress::Started {
        generation,
        resumed,
        position: from,
    });
    let mut applied = 0_u64;
    let mut batches = 0_usize;
    loop {
        let target = shared.head_position().await?;
        let caught_up = catch_up(
            &runner,
            registry.as_ref(),
            generation,
            target,
            options
                .stop_after_batches
                .map(|limit| limit.saturating_sub(batches)),
            &mut |events, position| {
                applied += events as u64;
                batches += 1;
                report(RebuildProgress::Applied {
                    events,
                    position,
                    target: target.max(position),
                });
            },
        )
        .await?;
        let Some(reached) = caught_up else {
            database.close().await;
            return Ok(OnlineRebuild::Stopped { generation });
        };
        let head = shared.head_position().await?;
        if head.saturating_sub(reached) <= SWITCH_LAG {
            break;
        }
    }
    database.close().await;
    let retired = registry.switch_live(generation, chrono::Utc::now()).await?;
    report(RebuildProgress::Switched {
        generation,
        retired,
    });
    let dropped = if every_server_serves(
        registry.as_ref(),
        generation,
        retired,
        options.switch_wait,
    )
    .await?
    {
        doorstep_projections::drop_generation(&url, retired).await?;
        Some(retired)
    } else {
        None
    };
    report(RebuildProgress::Finished { dropped });
    Ok(OnlineRebuild::Done {
        generation,
        from,
        applied,
    })
}

/// Applies batches up to the head, reporting each and writing progress to the registry every
/// [`REPORT_EVERY`]. `None` when stopped by `stop_after` batches (the batch in hand is dropped
/// half-way, as a crash would).
async fn catch_up(
    runner: &ProjectionRunner,
    registry: &dyn GenerationRegistry,
    generation: u64,
    target: u64,
    stop_after: Option<usize>,
    progress: &mut impl FnMut(usize, u64),
) -> Result<Option<u64>, StartupError> {
    let (sender, mut batches) = mpsc::unbounded_channel::<(usize, u64)>();
    let applying = runner.catch_up_reporting(move |events, position| {
        let _ = sender.send((events, position));
    });
    tokio::pin!(applying);
    let mut count = 0_usize;
    let mut last_report: Option<Instant> = None;
    let mut window = (Instant::now(), 0_u64);
    let mut rate = 0.0_f64;
    loop {
        tokio::select! {
            batch = batches.recv() => {
                let Some((events, position)) = batch else {
                    // The runner has finished: its result is all that is left.
                    let reached = (&mut applying).await?;
                    registry.report_progress(generation, reached, target.max(reached), rate).await?;
                    return Ok(Some(reached));
                };
                count += 1;
                progress(events, position);
                window.1 += events as u64;
                if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    let seconds = window.0.elapsed().as_secs_f64().max(1e-3);
                    rate = window.1 as f64 / seconds;
                    window = (Instant::now(), 0);
                    last_report = Some(Instant::now());
                    registry
                        .report_progress(generation, position, target.max(position), rate)
                        .await?;
                }
                if stop_after.is_some_and(|limit| count >= limit) {
                    return Ok(None);
                }
            }
            reached = &mut applying => {
                // Batches reported before the end are still in the channel.
                while let Ok((events, position)) = batches.try_recv() {
                    progress(events, position);
                }
                let reached = reached?;
                registry.report_progress(generation, reached, target.max(reached), rate).await?;
                return Ok(Some(reached));
            }
        }
    }
}

/// Waits, for at most `wait`, until every running server (row not expired) serves `generation`.
async fn every_server_serves(
    registry: &dyn GenerationRegistry,
    generation: u64,
    retired: u64,
    wait: Duration,
) -> Result<bool, StartupError> {
    let deadline = Instant::now() + wait;
    loop {
        let serving = registry.serving_generations(chrono::Utc::now()).await?;
        let behind: Vec<&str> = serving
            .iter()
            .filter(|(_, serves)| *serves != generation)
            .map(|(server, _)| server.as_str())
            .collect();
        if behind.is_empty() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                servers = ?behind,
                retired,
                "some servers still serve the old read-model generation; it is kept, and no \
                 later rebuild drops it: once they have switched or stopped, remove it by hand \
                 (SQLite: the file doorstep.read-models.g<retired>.db; PostgreSQL: DROP SCHEMA \
                 read_models_g<retired> CASCADE)"
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
