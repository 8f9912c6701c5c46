//! Builds the whole service from settings and runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use doorstep_api::v1::complaint_service_server::ComplaintServiceServer;
use doorstep_api::v1::contractor_service_server::ContractorServiceServer;
use doorstep_api::v1::escalation_service_server::EscalationServiceServer;
use doorstep_api::v1::event_service_server::EventServiceServer;
use doorstep_api::v1::inspection_service_server::InspectionServiceServer;
use doorstep_api::v1::performance_service_server::PerformanceServiceServer;
use doorstep_api::v1::visit_service_server::VisitServiceServer;
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::EscalationPolicy;
use doorstep_projections::{ProjectionRunner, ReadModel, ReadModelDatabase};
use doorstep_store::EventStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::server::{Router, ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::api_keys::{self, ApiKeyStore};
use crate::auth::guard::{AuthLayer, Authenticator, FailedKeyLimit, PrincipalRateLimit};
use crate::auth::jwt::JwtVerifier;
use crate::backend::{BackendError, OpenedStore, open_read_models};
use crate::clock::{Clock, SystemClock};
use crate::complaint_log::{ComplaintLog, complaint_log};
use crate::complaints::ComplaintApi;
use crate::contractors::{AuditWindow, ContractorApi};
use crate::escalations::EscalationApi;
use crate::events::EventApi;
use crate::generations::{GenerationFollower, RunnerParts};
use crate::inspections::{InspectionApi, InspectionRules};
use crate::notifier::{ComplaintCases, Notifier};
use crate::observability::calendar::CalendarCoverage;
use crate::observability::gauges::GaugeSampler;
use crate::observability::health::HealthMonitor;
use crate::observability::rpc::{RpcDuration, RpcTelemetryLayer};
use crate::observability::scrape::MetricsEndpoint;
use crate::performance::PerformanceApi;
use crate::ports::BoundPorts;
use crate::privacy::ResidentVault;
use crate::registration::Registration;
use crate::settings::{Role, Settings, TlsSettings};
use crate::visits::{VisitApi, VisitContractors};

/// Every Doorstep service, as health checks name them.
const SERVICES: [&str; 7] = [
    <ComplaintServiceServer<ComplaintApi> as NamedService>::NAME,
    <PerformanceServiceServer<PerformanceApi> as NamedService>::NAME,
    <ContractorServiceServer<ContractorApi> as NamedService>::NAME,
    <VisitServiceServer<VisitApi> as NamedService>::NAME,
    <EventServiceServer<EventApi> as NamedService>::NAME,
    <EscalationServiceServer<EscalationApi> as NamedService>::NAME,
    <InspectionServiceServer<InspectionApi> as NamedService>::NAME,
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
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
    #[error("cannot find the address of a bound port")]
    LocalAddress(#[source] std::io::Error),
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
    #[error(
        "a Doorstep server is running on this database ({0}); stop it first (a rebuild beside \
         it would leave its read models wrong), or pass --force if it has gone"
    )]
    ServerRunning(String),
    #[error("cannot start the web console")]
    Console(#[from] crate::console::ConsoleSetupError),
    #[error("cannot set up the notifier's deliveries")]
    Notifier(#[from] doorstep_notifier::DeliveryError),
}

impl From<BackendError> for StartupError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Settings(message) => Self::Settings(message),
            BackendError::Store(error) => Self::Store(error),
            BackendError::Projections(error) => Self::Projections(error),
            BackendError::DataFile { path, source } => Self::DataFile { path, source },
        }
    }
}

/// A built service, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    port: u16,
    storage: Storage,
    api: ApiServices,
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
    /// This server's row in the database's registry of running servers.
    registration: Registration,
    /// The web console, on its own port (roles that serve the API, when enabled).
    console: Option<crate::console::Console>,
    /// Services served beside the API behind the same layers; see [`Application::serve_also`].
    extra_routes: Routes,
}

/// The databases, and the runner that keeps the read models following the log.
struct Storage {
    store: OpenedStore,
    shared_store: Arc<dyn EventStore>,
    /// The read-model generation served at start, its pool and its runner; the
    /// `GenerationFollower` runs them and moves to the next generation when one goes live.
    generation: u64,
    read_models: ReadModelDatabase,
    projection_runner: ProjectionRunner,
    runner_parts: RunnerParts,
    /// The query side every service and the notifier share (whichever generation it serves).
    read_model: ReadModel,
}

/// What is left of [`Storage`] once the follower has taken the read models' runner.
struct StorageRest {
    store: OpenedStore,
    read_model: ReadModel,
}

/// The gRPC services of the API (a notifier-only replica serves none of them).
/// The services are shared (`Arc`) with the console, which calls them in-process.
struct ApiServices {
    complaints: Arc<ComplaintApi>,
    contractors: Arc<ContractorApi>,
    visits: VisitApi,
    performance: Arc<PerformanceApi>,
    events: EventApi,
    escalations: Arc<EscalationApi>,
    inspections: InspectionApi,
}

/// Creates or upgrades every table the settings' database needs: the event log and the read
/// models.
pub async fn migrate(settings: &Settings) -> Result<(), StartupError> {
    let store = OpenedStore::open(&settings.database).await?;
    let live = store.generations().live_generation().await?;
    let read_models = open_read_models(&settings.database, live).await?;
    read_models.close().await;
    store.close().await;
    Ok(())
}

pub(crate) fn calendar(settings: &Settings) -> Result<WorkingDayCalendar, StartupError> {
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

/// Refuses while any server is registered as running on the settings' database (its row not
/// expired), naming each: maintenance such as a rebuild must not run beside one.
pub async fn ensure_no_server_running(settings: &Settings) -> Result<(), StartupError> {
    let store = OpenedStore::open(&settings.database).await?;
    let running = store.server_registry().running(chrono::Utc::now()).await;
    store.close().await;
    let running = running?;
    if running.is_empty() {
        return Ok(());
    }
    Err(StartupError::ServerRunning(crate::registration::describe(
        &running,
    )))
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
    let live = store.generations().live_generation().await?;
    let read_models = open_read_models(&settings.database, live).await?;
    let shared = store.shared();
    if let OpenedStore::Sqlite(_) = store {
        on_length(shared.head_position().await?);
    }
    let policy = settings
        .escalation
        .policy()
        .map_err(StartupError::Settings)?;
    let calendar = Arc::new(calendar(settings)?);
    let findings = crate::notifier::finding_ladder(settings, &policy, calendar.as_ref().clone())
        .map_err(StartupError::Settings)?;
    let planner = crate::notifier::planner(settings, policy, calendar.as_ref().clone());
    let (runner, _) = ProjectionRunner::open(shared, read_models.clone(), calendar).await?;
    let runner = runner
        .with_escalations(planner)
        .with_finding_ladder(findings);
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

impl Storage {
    /// Opens the event store and the read models, and the runner that follows the log with the
    /// escalation schedule (every role schedules with the same policy: replicas share the
    /// schedule's tables).
    async fn open(
        settings: &Settings,
        policy: EscalationPolicy,
        calendar: &Arc<WorkingDayCalendar>,
    ) -> Result<Self, StartupError> {
        let store = OpenedStore::open(&settings.database).await?;
        let shared_store = store.shared();
        // A server started while a generation is being built serves the live one.
        let generation = store.generations().live_generation().await?;
        let read_models = open_read_models(&settings.database, generation).await?;
        let findings =
            crate::notifier::finding_ladder(settings, &policy, calendar.as_ref().clone())
                .map_err(StartupError::Settings)?;
        let planner = crate::notifier::planner(settings, policy, calendar.as_ref().clone());
        let runner_parts = RunnerParts {
            database: settings.database.clone(),
            store: shared_store.clone(),
            calendar: calendar.clone(),
            planner: planner.clone(),
            findings: findings.clone(),
        };
        let (projection_runner, read_model) =
            ProjectionRunner::open(shared_store.clone(), read_models.clone(), calendar.clone())
                .await?;
        Ok(Self {
            store,
            shared_store,
            generation,
            read_models,
            projection_runner: projection_runner
                .with_escalations(planner)
                .with_finding_ladder(findings),
            runner_parts,
            read_model,
        })
    }

    /// Runs the read models' runner, following the live generation, for the server `server_id`.
    fn follower(self_: Storage, server_id: String) -> (StorageRest, GenerationFollower) {
        let follower = GenerationFollower {
            parts: self_.runner_parts,
            registry: self_.store.generations(),
            read_model: self_.read_model.clone(),
            server_id,
            generation: self_.generation,
            database: self_.read_models,
            runner: self_.projection_runner,
        };
        (
            StorageRest {
                store: self_.store,
                read_model: self_.read_model,
            },
            follower,
        )
    }

    /// What follows the databases' reachability for gRPC health.
    fn health_monitor(
        &self,
        reporter: &HealthReporter,
        services: &[&'static str],
    ) -> HealthMonitor {
        HealthMonitor {
            store: self.store.clone(),
            read_model: self.read_model.clone(),
            reporter: reporter.clone(),
            services: services.to_vec(),
        }
    }

    fn complaint_log(
        &self,
        settings: &Settings,
        calendar: &Arc<WorkingDayCalendar>,
    ) -> ComplaintLog {
        complaint_log(
            self.shared_store.clone(),
            calendar.clone(),
            settings.code.timescales(),
        )
    }
}

impl ApiServices {
    /// The API's services, with the resident key vault the server opened.
    fn build(
        settings: &Settings,
        storage: &Storage,
        calendar: &Arc<WorkingDayCalendar>,
        clock: Arc<dyn Clock>,
        subscriptions_stopped: watch::Receiver<bool>,
        vault: Arc<ResidentVault>,
    ) -> Self {
        let store = &storage.shared_store;
        let read_model = &storage.read_model;
        let visit_contractors = Arc::new(VisitContractors::new(store.clone()));
        Self {
            complaints: Arc::new(ComplaintApi::new(
                storage.complaint_log(settings, calendar),
                read_model.clone(),
                clock.clone(),
                vault,
                visit_contractors.clone(),
            )),
            contractors: Arc::new(
                ContractorApi::new(store.clone(), read_model.clone(), clock.clone())
                    .with_audit_window(settings.equality.audit_max_age_months),
            ),
            performance: Arc::new(
                PerformanceApi::new(
                    read_model.clone(),
                    settings.report.extensions_count_as_within_code,
                )
                .with_coverage_target(settings.inspections.coverage_target_per_100_visits),
            ),
            escalations: Arc::new(EscalationApi::new(
                storage.complaint_log(settings, calendar),
                read_model.clone(),
                clock.clone(),
                subscriptions_stopped.clone(),
            )),
            inspections: InspectionApi::new(
                store.clone(),
                InspectionRules {
                    calendar: calendar.clone(),
                    finding_due_working_days: settings.inspections.finding_due_working_days,
                },
                read_model.clone(),
                clock.clone(),
                visit_contractors,
            ),
            visits: VisitApi::new(store.clone(), clock),
            events: EventApi::new(store.clone(), subscriptions_stopped),
        }
    }

    /// The services the console calls in-process.
    fn for_console(&self) -> crate::console::Services {
        crate::console::Services {
            complaints: self.complaints.clone(),
            contractors: self.contractors.clone(),
            performance: self.performance.clone(),
            escalations: self.escalations.clone(),
        }
    }

    /// Adds every service to the server, or none on a replica that does not serve the API, each
    /// refusing larger messages than `limit` before they are decoded (OUT_OF_RANGE).
    fn add_to<L>(self, router: Router<L>, serves_api: bool, limit: usize) -> Router<L> {
        fn api<S>(serves_api: bool, service: S) -> Option<S> {
            serves_api.then_some(service)
        }
        router
            .add_optional_service(api(
                serves_api,
                ComplaintServiceServer::from_arc(self.complaints).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                ContractorServiceServer::from_arc(self.contractors)
                    .max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                VisitServiceServer::new(self.visits).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                PerformanceServiceServer::from_arc(self.performance)
                    .max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                EventServiceServer::new(self.events).max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                EscalationServiceServer::from_arc(self.escalations)
                    .max_decoding_message_size(limit),
            ))
            .add_optional_service(api(
                serves_api,
                InspectionServiceServer::new(self.inspections).max_decoding_message_size(limit),
            ))
    }
}

/// Checks the settings that decide the Code's timescales, the notifier and the escalation
/// ladder, and returns the ladder.
fn validated_policy(settings: &Settings) -> Result<EscalationPolicy, StartupError> {
    settings.code.validate().map_err(StartupError::Settings)?;
    settings
        .equality
        .validate()
        .map_err(StartupError::Settings)?;
    settings
        .notifier
        .validate()
        .map_err(StartupError::Settings)?;
    settings
        .inspections
        .validate()
        .map_err(StartupError::Settings)?;
    settings.escalation.policy().map_err(StartupError::Settings)
}

/// The notifier, for the roles that run it (`all` and `notifier`).
fn notifier(
    settings: &Settings,
    storage: &Storage,
    policy: EscalationPolicy,
    calendar: &Arc<WorkingDayCalendar>,
    clock: Arc<dyn Clock>,
    vault: Arc<ResidentVault>,
) -> Result<Option<Notifier>, StartupError> {
    if !settings.server.role.runs_notifier() {
        return Ok(None);
    }
    Ok(Some(Notifier::build(
        settings,
        storage.complaint_log(settings, calendar),
        policy,
        calendar.as_ref().clone(),
        storage.read_model.clone(),
        clock,
        Arc::new(ComplaintCases::new(
            storage.complaint_log(settings, calendar),
            vault,
            storage.read_model.clone(),
        )),
    )?))
}

/// The Prometheus endpoint, on its port bound at start, when metrics are enabled.
fn metrics_endpoint(ports: &mut BoundPorts) -> Result<Option<MetricsEndpoint>, StartupError> {
    let Some(listener) = ports.take(crate::ports::METRICS) else {
        return Ok(None);
    };
    let endpoint = MetricsEndpoint::on(listener).map_err(StartupError::LocalAddress)?;
    tracing::info!(address = %endpoint.address(), "metrics are served at /metrics");
    Ok(Some(endpoint))
}

/// The web console, bound to its port, for roles that serve the API when it is enabled.
async fn console(
    settings: &Settings,
    storage: &Storage,
    api: &ApiServices,
    authenticator: &Arc<Authenticator>,
    clock: Arc<dyn Clock>,
    ports: &mut BoundPorts,
) -> Result<Option<crate::console::Console>, StartupError> {
    if !settings.console.enabled || !settings.server.role.serves_api() {
        return Ok(None);
    }
    settings
        .console
        .validate()
        .map_err(StartupError::Settings)?;
    let listener = ports
        .take(crate::ports::CONSOLE)
        .ok_or_else(|| StartupError::Settings("the console's port was not bound".to_owned()))?;
    let console = crate::console::Console::serve_on(
        listener,
        &settings.console,
        crate::console::ConsoleParts {
            services: api.for_console(),
            authenticator: authenticator.clone(),
            sessions: storage.store.console_sessions(),
            clock,
        },
    )
    .await?;
    tracing::info!(
        address = %console.address(),
        "console listening on http://{}",
        console.address()
    );
    Ok(Some(console))
}

/// The gRPC listener, bound at start, and the port it got (port 0 asks for any).
fn listen(ports: &mut BoundPorts) -> Result<(TcpListener, u16), StartupError> {
    let listener = ports
        .take(crate::ports::GRPC)
        .ok_or_else(|| StartupError::Settings("the gRPC port was not bound".to_owned()))?;
    let port = listener
        .local_addr()
        .map_err(StartupError::LocalAddress)?
        .port();
    Ok((listener, port))
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
        let policy = validated_policy(&settings)?;
        // Every port first: a second instance must fail before it creates a key or a database.
        let mut ports = BoundPorts::bind(crate::ports::wanted(&settings)).await?;
        create_data_directories(&settings)?;
        let authenticator = Arc::new(authenticator(&settings)?);
        let tls = tls_config(&settings.tls)?;
        let calendar = Arc::new(calendar(&settings)?);
        let calendar_coverage = CalendarCoverage::watch(&calendar, clock.clone());
        let storage = Storage::open(&settings, policy.clone(), &calendar).await?;
        // Opening the vault takes the server's lease on the database, so a master key rotation
        // cannot run beside this server; the API and the notifier's emails share it.
        let vault =
            Arc::new(ResidentVault::load(&settings.privacy, storage.store.resident_keys()).await?);
        let notifier = notifier(
            &settings,
            &storage,
            policy,
            &calendar,
            clock.clone(),
            vault.clone(),
        )?;
        let (stop_subscriptions, subscriptions_stopped) = watch::channel(false);
        let clock_for_console = clock.clone();
        let api = ApiServices::build(
            &settings,
            &storage,
            &calendar,
            clock.clone(),
            subscriptions_stopped,
            vault,
        );
        let gauges = Arc::new(
            GaugeSampler::new(storage.shared_store.clone(), storage.read_model.clone())
                .with_generations(storage.store.generations())
                .with_audit_window(AuditWindow {
                    clock,
                    max_age_months: settings.equality.audit_max_age_months,
                }),
        );
        let metrics_endpoint = metrics_endpoint(&mut ports)?;
        let console = console(
            &settings,
            &storage,
            &api,
            &authenticator,
            clock_for_console,
            &mut ports,
        )
        .await?;
        let (listener, port) = listen(&mut ports)?;
        let role = settings.server.role;
        let registration = Registration::start(
            storage.store.server_registry(),
            SocketAddr::new(settings.server.host, port).to_string(),
            format!("{role:?}").to_lowercase(),
        )
        .await?;
        tracing::info!(
            address = %SocketAddr::new(settings.server.host, settings.server.port),
            port,
            calendar = calendar.version(),
            role = ?role,
            "doorstep is listening"
        );
        Ok(Self {
            listener,
            port,
            storage,
            api,
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
            registration,
            console,
            extra_routes: Routes::default(),
        })
    }

    /// Where the web console listens, when this server runs it.
    pub fn console_address(&self) -> Option<SocketAddr> {
        self.console.as_ref().map(crate::console::Console::address)
    }

    /// Serves `routes` beside the API, behind the same layers (telemetry, authentication, the
    /// rate limit), so that `doorstep-bench` can measure a trivial method through exactly the
    /// middleware every Doorstep call passes. A path needs a line in `auth::policy` or it is
    /// refused; the `doorstep` binary never calls this.
    pub fn serve_also(mut self, routes: Routes) -> Self {
        self.extra_routes = routes;
        self
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
        let serves_api = self.role.serves_api();
        let health_services: Vec<&'static str> = if serves_api {
            SERVICES.to_vec()
        } else {
            Vec::new()
        };
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        report_serving(&health_reporter, &health_services).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(doorstep_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let health_monitor = self
            .storage
            .health_monitor(&health_reporter, &health_services);
        let (storage, follower) =
            Storage::follower(self.storage, self.registration.server_id().to_owned());
        let background = Background::start(follower, self.notifier);
        // Health follows the databases until draining begins.
        let health_monitor = RunningHealthMonitor::start(health_monitor);
        let metrics = MetricsTasks::start(self.gauges, self.metrics_endpoint);
        let (drain_started, drain_signal) = watch::channel(false);
        // The console stops taking requests when draining begins, or when the gRPC server has
        // stopped for any other reason.
        let (console_stop, console_stopped) = watch::channel(false);
        let console = self.console.map(|console| {
            let mut draining = drain_signal.clone();
            let mut stopped = console_stopped.clone();
            tokio::spawn(console.serve(async move {
                tokio::select! {
                    _ = draining.wait_for(|started| *started) => {}
                    _ = stopped.wait_for(|stopped| *stopped) => {}
                }
            }))
        });
        let graceful = drain_on(
            shutdown,
            health_monitor,
            health_reporter,
            health_services,
            self.stop_subscriptions,
            drain_started,
        );

        // Small gRPC responses must not wait for Nagle's algorithm (about 40 ms a call).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let router = builder
            .layer(RpcTelemetryLayer::new(RpcDuration::new()))
            .layer(AuthLayer::new(self.authenticator))
            .add_routes(self.extra_routes)
            .add_service(health_service)
            .add_service(reflection);
        let server = self
            .api
            .add_to(router, serves_api, self.max_message_bytes)
            .serve_with_incoming_shutdown(incoming, graceful);
        tokio::pin!(server);
        let result = serve_with_grace(server.as_mut(), drain_signal, self.shutdown_grace).await;
        let _ = console_stop.send(true);
        if let Some(mut console) = console {
            // Pages in flight get the grace period too; the rest are cut off.
            if tokio::time::timeout(self.shutdown_grace, &mut console)
                .await
                .is_err()
            {
                console.abort();
                tracing::warn!(
                    "console requests still running after the grace period were cut off"
                );
            }
        }

        metrics.abort();
        background.stop().await;
        self.registration.end().await;
        // The follower closed the generation it served when it stopped.
        drop(storage.read_model);
        storage.store.close().await;
        tracing::info!("doorstep stopped");
        result.map_err(StartupError::from)
    }
}

/// Liveness, and every service this server runs, SERVING.
async fn report_serving(reporter: &HealthReporter, services: &[&'static str]) {
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    for service in services {
        reporter
            .set_service_status(*service, ServingStatus::Serving)
            .await;
    }
}

/// The read models' runner and the notifier's loops, stopped together after the API has
/// drained.
struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    fn start(follower: GenerationFollower, notifier: Option<Notifier>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![follower.spawn(stopped.clone())];
        if let Some(notifier) = notifier {
            tasks.push(notifier.scheduler.spawn(stopped.clone()));
            tasks.push(notifier.deliveries.spawn(stopped));
        }
        Self { stop, tasks }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The health monitor while it runs. It is stopped, and waited for, when draining begins, so
/// that it cannot turn health back to SERVING.
struct RunningHealthMonitor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningHealthMonitor {
    fn start(monitor: HealthMonitor) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = monitor.spawn(stopped);
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The gauge sampler and the scrape endpoint. They run until the server has stopped, so scrapes
/// still answer while calls drain, and are then aborted: neither holds anything that needs
/// finishing, and a scrape waiting on a database that has gone must not hold the process past
/// its grace period.
struct MetricsTasks {
    gauge_sampler: JoinHandle<()>,
    endpoint: Option<JoinHandle<()>>,
}

impl MetricsTasks {
    fn start(gauges: Arc<GaugeSampler>, endpoint: Option<MetricsEndpoint>) -> Self {
        Self {
            gauge_sampler: gauges.clone().spawn(),
            endpoint: endpoint.map(|endpoint| tokio::spawn(endpoint.serve(gauges))),
        }
    }

    fn abort(self) {
        self.gauge_sampler.abort();
        if let Some(endpoint) = self.endpoint {
            endpoint.abort();
        }
    }
}

/// Waits for `shutdown`, then begins draining: health goes NOT_SERVING (after the monitor has
/// stopped), subscriptions end, and `drain_started` says so.
async fn drain_on(
    shutdown: impl Future<Output = ()>,
    health_monitor: RunningHealthMonitor,
    reporter: HealthReporter,
    services: Vec<&'static str>,
    stop_subscriptions: watch::Sender<bool>,
    drain_started: watch::Sender<bool>,
) {
    shutdown.await;
    // The monitor must not turn health back to SERVING once draining has begun.
    health_monitor.stop().await;
    tracing::info!("shutdown requested: health is NOT_SERVING, draining calls");
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for service in services {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    // Subscriptions never end by themselves; end them so draining can finish.
    let _ = stop_subscriptions.send(true);
    let _ = drain_started.send(true);
}

/// Runs the server until it has drained, or, once draining has begun, for the grace period at
/// most: calls still running then are cut off (the server is dropped by the caller).
async fn serve_with_grace(
    mut server: Pin<&mut impl Future<Output = Result<(), tonic::transport::Error>>>,
    mut drain_signal: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    tokio::select! {
        result = &mut server => result,
        () = async {
            let _ = drain_signal.wait_for(|started| *started).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("calls still running after the grace period were cut off");
            Ok(())
        }
    }
}
