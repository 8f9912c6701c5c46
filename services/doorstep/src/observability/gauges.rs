//! Gauges sampled from the log and the read models every few seconds, and read by the metrics
//! exporters from the last sample: open complaints by status and stage, how far the read
//! models trail the log (in events and in seconds), contractors overdue an equality audit, and
//! an online rebuild's progress (from the registry of read-model generations). Whether the read models are stuck at an
//! event is read from the runner at each collection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorstep_domain::complaint::Status;
use doorstep_projections::ReadModel;
use doorstep_store::{EventStore, GenerationRegistry, GenerationState};

use crate::contractors::AuditWindow;
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;
use tokio::task::JoinHandle;

/// How often the gauges are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// A sample that takes longer (the database is away) is given up, keeping the last one: a scrape
/// must answer within Prometheus' timeout whatever the database does.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Sample {
    open: Vec<(Status, u32, u64)>,
    lag_events: u64,
    lag_seconds: f64,
    /// None until the first sample with an audit window.
    overdue_equality_audits: Option<u64>,
    /// The read-model generation being built by an online rebuild, if any: its number, the
    /// position it has reached, the head it aims at and its rate (events per second).
    rebuild: Option<(u64, u64, u64, f64)>,
}

/// Samples the gauges; the instruments read the last sample.
pub struct GaugeSampler {
    store: Arc<dyn EventStore>,
    read_model: ReadModel,
    sample: Arc<Mutex<Sample>>,
    _instruments: [ObservableGauge<u64>; 4],
    _lag_seconds: ObservableGauge<f64>,
    _rebuild: [ObservableGauge<u64>; 2],
    _rebuild_rate: ObservableGauge<f64>,
    /// Where an online rebuild reports its progress; None: not sampled.
    generations: Option<Arc<dyn GenerationRegistry>>,
    /// Which equality audits are recent enough; None: the gauge is not sampled.
    audit_window: Option<AuditWindow>,
}

impl GaugeSampler {
    pub fn new(store: Arc<dyn EventStore>, read_model: ReadModel) -> Self {
        let meter = opentelemetry::global::meter(doorstep_telemetry::SCOPE);
        let sample = Arc::new(Mutex::new(Sample::default()));
        let open = {
            let sample = sample.clone();
            meter
                .u64_observable_gauge("doorstep.complaints.open")
                .with_unit("{complaint}")
                .with_description("Complaints neither closed nor withdrawn, by status and stage")
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock() {
                        for (status, stage, count) in &sample.open {
                            observer.observe(
                                *count,
                                &[
                                    KeyValue::new("status", status.code()),
                                    KeyValue::new("stage", i64::from(*stage)),
                                ],
                            );
                        }
                    }
                })
                .build()
        };
        let lag_events = {
            let sample = sample.clone();
            meter
                .u64_observable_gauge("doorstep.projection.lag.events")
                .with_unit("{event}")
                .with_description("Events in the log the read models have not applied yet")
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock() {
                        observer.observe(sample.lag_events, &[]);
                    }
                })
                .build()
        };
        let lag_seconds = {
            let sample = sample.clone();
            meter
                .f64_observable_gauge("doorstep.projection.lag.age")
                .with_unit("s")
                .with_description(
                    "Age of the oldest event the read models have not applied yet; 0 when they \
                     are up to date",
                )
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock() {
                        observer.observe(sample.lag_seconds, &[]);
                    }
                })
                .build()
        };
        // Read from the runner's own state at each collection, not sampled: it needs no database.
        let stalled = {
            let read_model = read_model.clone();
            meter
                .u64_observable_gauge("doorstep.projection.stalled")
                .with_unit("{event}")
                .with_description(
                    "1 while the read models are stuck at an event they cannot apply (the log \
                     says which), 0 otherwise",
                )
                .with_callback(move |observer| {
                    observer.observe(u64::from(read_model.stalled().is_some()), &[]);
                })
                .build()
        };
        let overdue_equality_audits = {
            let sample = sample.clone();
            meter
                .u64_observable_gauge("doorstep.contractors.equality_audit_overdue")
                .with_unit("{contractor}")
                .with_description(
                    "Registered contractors with no equality audit within \
                     [equality] audit_max_age_months",
                )
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock()
                        && let Some(overdue) = sample.overdue_equality_audits
                    {
                        observer.observe(overdue, &[]);
                    }
                })
                .build()
        };
        let rebuild_gauge = |name: &'static str,
                             description: &'static str,
                             pick: fn(&(u64, u64, u64, f64)) -> u64| {
            let sample = sample.clone();
            meter
                .u64_observable_gauge(name)
                .with_unit("{position}")
                .with_description(description)
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock()
                        && let Some(rebuild) = &sample.rebuild
                    {
                        observer.observe(
                            pick(rebuild),
                            &[KeyValue::new(
                                "generation",
                                i64::try_from(rebuild.0).unwrap_or(i64::MAX),
                            )],
                        );
                    }
                })
                .build()
        };
        let rebuild = [
            rebuild_gauge(
                "doorstep.projection.rebuild.position",
                "While an online rebuild runs: the log position its new read-model generation has \
                 reached",
                |rebuild| rebuild.1,
            ),
            rebuild_gauge(
                "doorstep.projection.rebuild.target",
                "While an online rebuild runs: the head of the log it is catching up to",
                |rebuild| rebuild.2,
            ),
        ];
        let rebuild_rate = {
            let sample = sample.clone();
            meter
                .f64_observable_gauge("doorstep.projection.rebuild.rate")
                .with_unit("{event}/s")
                .with_description("While an online rebuild runs: events it applies per second")
                .with_callback(move |observer| {
                    if let Ok(sample) = sample.lock()
                        && let Some(rebuild) = &sample.rebuild
                    {
                        observer.observe(
                            rebuild.3,
                            &[KeyValue::new(
                                "generation",
                                i64::try_from(rebuild.0).unwrap_or(i64::MAX),
                            )],
                        );
                    }
                })
                .build()
        };
        Self {
            store,
            read_model,
            sample,
            _instruments: [open, lag_events, stalled, overdue_equality_audits],
            _lag_seconds: lag_seconds,
            _rebuild: rebuild,
            _rebuild_rate: rebuild_rate,
            generations: None,
            audit_window: None,
        }
    }

    /// Also samples the progress of an online rebuild from the registry of generations.
    pub fn with_generations(mut self, generations: Arc<dyn GenerationRegistry>) -> Self {
        self.generations = Some(generations);
        self
    }

    /// Also samples how many contractors are overdue an equality audit in `window`.
    pub fn with_audit_window(mut self, window: AuditWindow) -> Self {
        self.audit_window = Some(window);
        self
    }

    /// Samples at once, then every few seconds until the task is aborted (for exporters that
    /// read the gauges on their own schedule, such as OTLP's).
    pub fn spawn(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.refresh().await;
                tokio::time::sleep(SAMPLE_INTERVAL).await;
            }
        })
    }

    /// Takes a new sample now. A failure (the database is away) leaves the last sample in place.
    pub async fn refresh(&self) {
        match tokio::time::timeout(SAMPLE_TIMEOUT, self.take_sample()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(error = %error, "cannot sample the gauges"),
            Err(_) => tracing::debug!("sampling the gauges timed out; keeping the last sample"),
        }
    }

    async fn take_sample(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let open = self.read_model.open_complaint_counts().await?;
        let applied = self.read_model.position();
        let lag_events = self.store.count_after(applied).await?;
        let lag_seconds = match self.store.read_all(applied + 1, 1).await?.first() {
            // The store stamps events with the wall clock, so the age is taken on it too.
            Some(oldest) => (chrono::Utc::now() - oldest.recorded_at)
                .to_std()
                .map_or(0.0, |age| age.as_secs_f64()),
            None => 0.0,
        };
        let overdue_equality_audits = match &self.audit_window {
            Some(window) => Some(
                self.read_model
                    .contractors_overdue_equality_audit(window.oldest_in_time())
                    .await?,
            ),
            None => None,
        };
        let rebuild = match &self.generations {
            Some(generations) => generations
                .current_generations()
                .await?
                .into_iter()
                .find(|generation| generation.state == GenerationState::Building)
                .map(|building| {
                    (
                        building.generation,
                        building.position,
                        building.target,
                        building.events_per_second,
                    )
                }),
            None => None,
        };
        if let Ok(mut sample) = self.sample.lock() {
            *sample = Sample {
                open,
                lag_events,
                lag_seconds,
                overdue_equality_audits,
                rebuild,
            };
        }
        Ok(())
    }
}
