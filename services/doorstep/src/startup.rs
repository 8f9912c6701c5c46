//! Builds the whole service from settings and runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use doorstep_api::v1::complaint_service_server::ComplaintServiceServer;
use doorstep_api::v1::contractor_service_server::ContractorServiceServer;
use doorstep_api::v1::escalation_service_server::EscalationServiceServer;
use doorstep_api::v1::event_service_server::EventServiceServer;
use doorstep_api::v1::performance_service_server::PerformanceServiceServer;
use doorstep_api::v1::visit_service_server::VisitServiceServer;
use doorstep_domain::WorkingDayCalendar;
use doorstep_projections::{ProjectionRunner, ReadModel, ReadModelDatabase};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::server::{ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};
use tonic_health::ServingStatus;

use crate::auth::api_keys::{self, ApiKeyStore};
use crate::auth::guard::{AuthLayer, Authenticator, FailedKeyLimit, PrincipalRateLimit};
use crate::auth::jwt::JwtVerifier;
use crate::backend::{OpenedStore, open_read_models};
use crate::clock::{Clock, SystemClock};
use crate::complaint_log::complaint_log;
use crate::complaints::ComplaintApi;
use crate::contractors::ContractorApi;
use crate::escalations::EscalationApi;
use crate::events::EventApi;
use crate::notifier::Notifier;
use crate::observability::calendar::CalendarCoverage;
use crate::observability::gauges::GaugeSampler;
use crate::observability::health::HealthMonitor;
use crate::observability::rpc::RpcTelemetryLayer;
use crate::observability::scrape::MetricsEndpoint;
use crate::performance::PerformanceApi;
use crate::privacy::ResidentVault;
use crate::settings::{Role, Settings, TlsSettings};
use crate::visits::VisitApi;

/// Every Doorstep service, as health checks name them.
const SERVICES: [&str; 6] = [
    <ComplaintServiceServer<ComplaintApi> as NamedService>::NAME,
    <PerformanceServiceServer<PerformanceApi> as NamedService>::NAME,
    <ContractorServiceServer<ContractorApi> as NamedService>::NAME,
    <VisitServiceServer<VisitApi> as NamedService>::NAME,
    <EventServiceServer<EventApi> as NamedService>::NAME,
    <EscalationServiceServer<EscalationApi> as NamedService>::NAME,
];

/// The health check name for liveness: SERVING for as long as the process runs, whatever the
/// database does, so an orchestrator restarts only a process that has stopped answering. The
/// overall status (the empty name) is readiness: NOT_SERVING while the database is unreachable
/// and while shutting down.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("cannot read the bank holiday file {path}")]
    CalendarFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Calendar(#[from] doorstep_domain::CalendarError),
    #[error("cannot open the event store")]
    Store(#[from] doorstep_store::StoreError),
    #[error("cannot open the read models")]
    Projections(#[from] doorstep_projections::ProjectionError),
    #[error("cannot listen for metrics scrapes on {address}")]
    MetricsBind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build gRPC reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("invalid JWT settings")]
    Jwt(#[from] crate::auth::jwt::JwtSetupError),
    #[error("cannot prepare the API keys")]
    ApiKeys(#[from] api_keys::ApiKeyError),
    #[error("cannot open the resident key vault")]
    Vault(#[from] crate::privacy::VaultSetupError),
    #[error("cannot create or restrict the data file or directory {path}")]
    DataFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the TLS file {path}")]
    TlsFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
    #[error("cannot set up the notifier's deliveries")]
    Notifier(#[from] doorstep_notifier::DeliveryError),
}

/// A built service, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    port: u16,
    store: OpenedStore,
    read_models: ReadModelDatabase,
    projection_runner: ProjectionRunner,
    /// The query side, for health to see whether the runner is stuck.
    read_model: ReadModel,
    complaint_api: ComplaintApi,
    contractor_api: ContractorApi,
    visit_api: VisitApi,
    performance_api: PerformanceApi,
    event_api: EventApi,
    escalation_api: EscalationApi,
    notifier: Option<Notifier>,
    gauges: Arc<GaugeSampler>,
    _calendar_coverage: CalendarCoverage,
    metrics_endpoint: Option<MetricsEndpoint>,
    role: Role,
    authenticator: Arc<Authenticator>,
    tls: Option<ServerTlsConfig>,
    max_message_bytes: usize,
    stop_subscriptions: watch::Sender<bool>,
    shutdown_grace: Duration,
}

/// Creates or upgrades every table the settings' database needs: the event log and the read
/// models.
pub async fn migrate(settings: &Settings) -> Result<(), StartupError> {
    let store = OpenedStore::open(&settings.database).await?;
    let read_models = open_read_models(&settings.database).await?;
    read_models.close().await;
    store.close().await;
    Ok(())
}

fn calendar(settings: &Settings) -> Result<WorkingDayCalendar, StartupError> {
    let calendar = match &settings.calendar.bank_holidays_file {
        Some(path) => {
            let json =
                std::fs::read_to_string(path).map_err(|source| StartupError::CalendarFile {
                    path: path.clone(),
                    source,
                })?;
            WorkingDayCalendar::from_gov_uk_json(&json)?
        }
        None => WorkingDayCalendar::england_and_wales(),
    };
    Ok(calendar.with_closure_days(settings.calendar.closure_days.iter().copied()))
}

/// Drops every read model and rebuilds it from position 0 of the log, with the server stopped.
/// `on_length` hears the number of events in the log when the backend knows it cheaply (SQLite's
/// positions are gap-free, so its head is the count); `progress` hears, after every batch, the
/// events applied and the position reached. Returns the events applied.
pub async fn rebuild_read_models(
    settings: &Settings,
    mut on_length: impl FnMut(u64),
    mut progress: impl FnMut(usize, u64),
) -> Result<u64, StartupError> {
    let store = OpenedStore::open(&settings.database).await?;
    let read_models = open_read_models(&settings.database).await?;
    let shared = store.shared();
    if let OpenedStore::Sqlite(_) = store {
        on_length(shared.head_position().await?);
    }
    let policy = settings
        .escalation
        .policy()
        .map_err(StartupError::Settings)?;
    let calendar = Arc::new(calendar(settings)?);
    let planner = crate::notifier::planner(settings, policy, calendar.as_ref().clone());
    let (runner, _) = ProjectionRunner::open(shared, read_models.clone(), calendar).await?;
    let runner = runner.with_escalations(planner);
    runner.reset().await?;
    let mut applied = 0_u64;
    runner
        .catch_up_reporting(|events, position| {
            applied += events as u64;
            progress(events, position);
        })
        .await?;
    read_models.close().await;
    store.close().await;
    Ok(applied)
}

/// TLS when a certificate and key are configured, with client certificates checked against
/// `client_ca_file` when that is set (mutual TLS).
fn tls_config(settings: &TlsSettings) -> Result<Option<ServerTlsConfig>, StartupError> {
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| StartupError::TlsFile {
            path: path.clone(),
            source,
        })
    };
    let (cert_file, key_file) = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(StartupError::Settings(
                "tls.cert_file and tls.key_file go together".to_owned(),
            ));
        }
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(cert_file)?, read(key_file)?));
    if let Some(ca_file) = &settings.client_ca_file {
        config = config
            .client_ca_root(Certificate::from_pem(read(ca_file)?))
            .client_auth_optional(settings.client_certificate_optional);
    }
    Ok(Some(config))
}

/// Creates the directories of the SQLite database, the API keys and the master key files that
/// do not exist yet, readable by their owner only (0700): they hold residents' keys and the
/// credentials. Existing directories are left as the operator made them.
pub fn create_data_directories(settings: &Settings) -> Result<(), StartupError> {
    let mut files = vec![
        settings.auth.api_keys_file.clone(),
        settings.privacy.master_key_file.clone(),
    ];
    if !settings.database.is_postgres() {
        files.push(
            settings
                .database
                .sqlite_path()
                .map_err(StartupError::Settings)?,
        );
    }
    for directory in files.iter().filter_map(|file| {
        file.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
    }) {
        if directory.exists() {
            continue;
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(directory)
            .map_err(|source| StartupError::DataFile {
                path: directory.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// The credentials the server accepts. On the first start of an installation without any key,
/// an admin key is created for the owner of the data directory to begin with: there is no
/// built-in password.
fn authenticator(settings: &Settings) -> Result<Authenticator, StartupError> {
    let jwt = JwtVerifier::from_settings(&settings.auth)?;
    let keys_file = &settings.auth.api_keys_file;
    if settings.auth.create_first_admin_key
        && let Some(written) = api_keys::ensure_first_admin_key(keys_file)?
    {
        tracing::warn!(
            path = %written.display(),
            "created the first admin API key; it is readable by this user only. Create the keys \
             you need with `doorstep api-keys create`, then delete this file"
        );
    }
    if jwt.is_none() {
        tracing::info!("no JWT key is configured: only API keys are accepted");
    }
    let rate_limit =
        PrincipalRateLimit::new(settings.limits.requests_per_second, settings.limits.burst);
    Ok(Authenticator::new(
        jwt,
        ApiKeyStore::new(keys_file.clone()),
        rate_limit,
        FailedKeyLimit::new(settings.limits.failed_api_keys_per_minute),
    ))
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Before anything makes an instrument: instruments made earlier would record nothing.
        doorstep_telemetry::ensure_metrics();
        settings.code.validate().map_err(StartupError::Settings)?;
        settings
            .notifier
            .validate()
            .map_err(StartupError::Settings)?;
        let policy = settings
            .escalation
            .policy()
            .map_err(StartupError::Settings)?;
        create_data_directories(&settings)?;
        let authenticator = Arc::new(authenticator(&settings)?);
        let tls = tls_config(&settings.tls)?;
        let calendar = Arc::new(calendar(&settings)?);
        let calendar_coverage = CalendarCoverage::watch(&calendar, clock.clone());
        let store = OpenedStore::open(&settings.database).await?;
        let shared_store = store.shared();
        let read_models = open_read_models(&settings.database).await?;
        // Every role schedules with the same policy: replicas share the schedule's tables.
        let planner =
            crate::notifier::planner(&settings, policy.clone(), calendar.as_ref().clone());
        let (projection_runner, read_model) =
            ProjectionRunner::open(shared_store.clone(), read_models.clone(), calendar.clone())
                .await?;
        let projection_runner = projection_runner.with_escalations(planner);
        let role = settings.server.role;
        let notifier = if role.runs_notifier() {
            Some(Notifier::build(
                &settings,
                complaint_log(
                    shared_store.clone(),
                    calendar.clone(),
                    settings.code.timescales(),
                ),
                policy,
                calendar.as_ref().clone(),
                read_model.clone(),
                clock.clone(),
            )?)
        } else {
            None
        };
        let log = complaint_log(
            shared_store.clone(),
            calendar.clone(),
            settings.code.timescales(),
        );
        let vault = Arc::new(ResidentVault::load(&settings.privacy, store.key_database()).await?);
        let complaint_api = ComplaintApi::new(log, read_model.clone(), clock.clone(), vault);
        let contractor_api =
            ContractorApi::new(shared_store.clone(), read_model.clone(), clock.clone());
        let performance_api = PerformanceApi::new(
            read_model.clone(),
            settings.report.extensions_count_as_within_code,
        );
        let (stop_subscriptions, subscriptions_stopped) = watch::channel(false);
        let escalation_api = EscalationApi::new(
            complaint_log(
                shared_store.clone(),
                calendar.clone(),
                settings.code.timescales(),
            ),
            read_model.clone(),
            clock.clone(),
            subscriptions_stopped.clone(),
        );
        let visit_api = VisitApi::new(shared_store.clone(), clock);
        let gauges = Arc::new(GaugeSampler::new(shared_store.clone(), read_model.clone()));
        let event_api = EventApi::new(shared_store, subscriptions_stopped);

        let metrics_endpoint = if settings.metrics.enabled {
            let address = SocketAddr::new(settings.metrics.host, settings.metrics.port);
            let endpoint = MetricsEndpoint::bind(address)
                .await
                .map_err(|source| StartupError::MetricsBind { address, source })?;
            tracing::info!(address = %endpoint.address(), "metrics are served at /metrics");
            Some(endpoint)
        } else {
            None
        };

        let address = SocketAddr::new(settings.server.host, settings.server.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        tracing::info!(
            %address,
            port,
            calendar = calendar.version(),
            role = ?role,
            "doorstep is listening"
        );
        Ok(Self {
            listener,
            port,
            store,
            read_models,
            projection_runner,
            read_model,
            complaint_api,
            contractor_api,
            visit_api,
            performance_api,
            event_api,
            escalation_api,
            notifier,
            gauges,
            _calendar_coverage: calendar_coverage,
            metrics_endpoint,
            role,
            authenticator,
            tls,
            max_message_bytes: settings.limits.max_message_bytes,
            stop_subscriptions,
            shutdown_grace: Duration::from_secs(settings.server.shutdown_grace_seconds),
        })
    }

    /// The port the server listens on (useful when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The notifier this server runs (roles `all` and `notifier`), for running one scheduler or
    /// delivery round explicitly: a test that something did not happen drives a round and asserts
    /// on what it did, rather than waiting for the background loop.
    pub fn notifier(&self) -> Option<Notifier> {
        self.notifier.clone()
    }

    /// Where the Prometheus endpoint listens, when it is enabled.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.as_ref().map(MetricsEndpoint::address)
    }

    /// Serves until `shutdown` completes, then: health goes NOT_SERVING, new calls are refused,
    /// in-flight calls finish (up to the grace period), the read models stop and the store closes
    /// after its last append.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let serves_api = self.role.serves_api();
        health_reporter
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        if serves_api {
            for service in SERVICES {
                health_reporter
                    .set_service_status(service, ServingStatus::Serving)
                    .await;
            }
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(doorstep_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let (stop_projections, projections_stopped) = watch::channel(false);
        let projections = self.projection_runner.spawn(projections_stopped.clone());
        // The notifier stops with the read models, after the API has drained.
        let notifier_tasks = self.notifier.map(|notifier| {
            [
                notifier.scheduler.spawn(projections_stopped.clone()),
                notifier.deliveries.spawn(projections_stopped),
            ]
        });

        // Health follows the databases until draining begins. The gauges and the scrape endpoint
        // run until the server has stopped, so scrapes still answer while calls drain.
        let (stop_monitoring, monitoring_stopped) = watch::channel(false);
        let health_services: Vec<&'static str> = if serves_api {
            SERVICES.to_vec()
        } else {
            Vec::new()
        };
        let health_monitor = HealthMonitor {
            store: self.store.clone(),
            read_models: self.read_models.clone(),
            read_model: self.read_model.clone(),
            reporter: health_reporter.clone(),
            services: health_services.clone(),
        }
        .spawn(monitoring_stopped);
        let gauge_sampler = self.gauges.clone().spawn();
        let metrics_endpoint = self
            .metrics_endpoint
            .map(|endpoint| tokio::spawn(endpoint.serve(self.gauges.clone())));

        let (drain_started, mut drain_signal) = watch::channel(false);
        let reporter = health_reporter.clone();
        let stop_subscriptions = self.stop_subscriptions;
        let graceful = async move {
            shutdown.await;
            // The monitor must not turn health back to SERVING once draining has begun.
            let _ = stop_monitoring.send(true);
            let _ = health_monitor.await;
            tracing::info!("shutdown requested: health is NOT_SERVING, draining calls");
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for service in health_services {
                reporter
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            // Subscriptions never end by themselves; end them so draining can finish.
            let _ = stop_subscriptions.send(true);
            let _ = drain_started.send(true);
        };

        // Small gRPC responses must not wait for Nagle's algorithm (about 40 ms a call).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        // A notifier-only replica answers health checks and nothing else.
        fn api<S>(serves_api: bool, service: S) -> Option<S> {
            serves_api.then_some(service)
        }
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        // Larger messages are refused before they are decoded (OUT_OF_RANGE).
        let limit = self.max_message_bytes;
        let server = builder
            .layer(RpcTelemetryLayer::new())
            .layer(AuthLayer::new(self.authenticator))
            .add_service(health_service)
            .add_service(reflection)
            .add_optional_service(api(
                serves_api,
                ComplaintServiceServer::new(self.complaint_api).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                ContractorServiceServer::new(self.contractor_api).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                VisitServiceServer::new(self.visit_api).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                PerformanceServiceServer::new(self.performance_api)
                    .max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                EventServiceServer::new(self.event_api).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                EscalationServiceServer::new(self.escalation_api).max_decoding_message_size(limit),
            ))
            .serve_with_incoming_shutdown(incoming, graceful);
        tokio::pin!(server);

        // In-flight calls get the grace period once shutdown starts; then the server is dropped.
        let grace = self.shutdown_grace;
        let result = tokio::select! {
            result = &mut server => result,
            () = async {
                let _ = drain_signal.wait_for(|started| *started).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("calls still running after the grace period were cut off");
                Ok(())
            }
        };

        let _ = stop_projections.send(true);
        // Neither holds anything that needs finishing; a scrape waiting on a database that has
        // gone must not hold the process past its grace period.
        gauge_sampler.abort();
        if let Some(endpoint) = metrics_endpoint {
            endpoint.abort();
        }
        let _ = projections.await;
        for task in notifier_tasks.into_iter().flatten() {
            let _ = task.await;
        }
        self.read_models.close().await;
        self.store.close().await;
        tracing::info!("doorstep stopped");
        result.map_err(StartupError::from)
    }
}
