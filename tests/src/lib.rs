//! Test harness: each test gets its own data directory and a real server on a free port.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_server::auth::client::CallerCredential;
use doorstep_server::auth::jwt::{TokenClaims, issue_hs256};
use doorstep_server::clock::{Clock, SystemClock};
use doorstep_server::settings::TEST_JWT_SECRET;
use doorstep_server::{Application, Settings};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use doorstep_server::auth::client::AuthenticatedChannel;

pub mod programme;
pub mod requests;
pub mod smtp;
pub mod webhook;

/// Every role but `contractor` (which is bound to one contractor and excludes the others): what
/// `TestApp::channel` holds, so tests about behaviour need not care about permissions.
pub const STAFF_ROLES: [&str; 5] = ["intake", "officer", "manager", "admin", "auditor"];

/// The subject of the tokens `TestApp::channel` sends; events it causes name `jwt:<this>`.
pub const TEST_SUBJECT: &str = "test-staff";

/// A running server and clients connected to it.
pub struct TestApp {
    pub port: u16,
    /// Sends a token with every [`STAFF_ROLES`] role.
    pub client: ComplaintServiceClient<AuthenticatedChannel>,
    /// Sends a token with every [`STAFF_ROLES`] role.
    pub channel: AuthenticatedChannel,
    /// The same connection without any credential.
    pub anonymous_channel: Channel,
    /// Where the Prometheus endpoint listens (port 0 in the test settings picks a free one).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where the web console listens (port 0 in the test settings picks a free one).
    pub console_address: Option<std::net::SocketAddr>,
    /// The server's scheduler and delivery worker (roles `all` and `notifier`), whose rounds a
    /// test runs itself.
    notifier: Option<doorstep_server::notifier::Notifier>,
    data_dir: Arc<TempDir>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// The contractors every test server has registered, so complaints can name them.
pub const REGISTERED_CONTRACTORS: [&str; 2] = ["acme-retrofit", "brick-and-co"];

/// Starts a server on a fresh SQLite file, with [`REGISTERED_CONTRACTORS`] registered.
pub async fn spawn_app() -> TestApp {
    doorstep_telemetry::init_for_tests();
    let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let app = start(data_dir).await;
    for contractor_id in REGISTERED_CONTRACTORS {
        register_contractor(&app.channel, contractor_id).await;
    }
    app
}

/// A valid profile for a contractor registered under `contractor_id`.
pub fn contractor_profile(contractor_id: &str) -> v1::ContractorProfile {
    v1::ContractorProfile {
        legal_name: format!("{contractor_id} Ltd"),
        trading_names: vec![format!("{contractor_id} Warm Homes")],
        logo_url: format!("https://example.org/logos/{contractor_id}.png"),
        public_contact_name: "Sam Site".to_owned(),
        public_phone: "0113 496 0000".to_owned(),
        contracts: vec![v1::ContractTerms {
            reference: "RETRO-2026-01".to_owned(),
            standards: (1..=9).collect(),
            ..v1::ContractTerms::default()
        }],
    }
}

/// Registers a contractor through the real API.
pub async fn register_contractor(channel: &AuthenticatedChannel, contractor_id: &str) {
    ContractorServiceClient::new(channel.clone())
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: contractor_id.to_owned(),
            profile: Some(contractor_profile(contractor_id)),
            request_id: format!("register-{contractor_id}"),
        })
        .await
        .expect("the contractor is registered");
}

/// The master key every replica on a shared database is given: base64 of 32 bytes.
const REPLICAS_MASTER_KEY: &str = "ZG9vcnN0ZXAgcmVwbGljYXMgc2hhcmUgdGhpcyBrZXk=";

/// Starts a server whose event log and read models live in `database_url` (e.g. a PostgreSQL
/// database shared with other replicas).
pub async fn spawn_app_on_database(database_url: &str) -> TestApp {
    doorstep_telemetry::init_for_tests();
    let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let mut settings = Settings::for_tests(data_dir.path());
    settings.database = doorstep_server::settings::DatabaseSettings::new(database_url);
    // Replicas must share the master key that wraps residents' keys, as in production.
    settings.privacy.master_key = Some(REPLICAS_MASTER_KEY.into());
    let app = start_with(data_dir, settings).await;
    // Replicas share one registry: registering again with the same request id is a no-op.
    for contractor_id in REGISTERED_CONTRACTORS {
        register_contractor(&app.channel, contractor_id).await;
    }
    app
}

/// Starts a server on a data directory the test prepared (for example with old events in it).
pub async fn spawn_app_in(data_dir: TempDir) -> TestApp {
    doorstep_telemetry::init_for_tests();
    let app = start(Arc::new(data_dir)).await;
    for contractor_id in REGISTERED_CONTRACTORS {
        register_contractor(&app.channel, contractor_id).await;
    }
    app
}

/// The SQLite file a test server keeps its log in, inside `data_dir`.
pub fn database_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("doorstep.db")
}

/// Starts a server on a fresh SQLite file with settings the test adjusts (the notifier's role,
/// policy and receivers) and a clock the test controls, with [`REGISTERED_CONTRACTORS`]
/// registered.
pub async fn spawn_app_with(
    configure: impl FnOnce(&mut Settings, &std::path::Path),
    clock: Arc<dyn Clock>,
) -> TestApp {
    doorstep_telemetry::init_for_tests();
    let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let mut settings = Settings::for_tests(data_dir.path());
    configure(&mut settings, data_dir.path());
    let app = start_with_clock(data_dir, settings, clock).await;
    for contractor_id in REGISTERED_CONTRACTORS {
        register_contractor(&app.channel, contractor_id).await;
    }
    app
}

/// Starts a server on a fresh SQLite file with settings the test adjusts (limits, for example),
/// on the machine's clock, with [`REGISTERED_CONTRACTORS`] registered.
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings, _| configure(settings), Arc::new(SystemClock)).await
}

/// As [`spawn_app_on_database`], with settings the test adjusts and a clock it controls.
pub async fn spawn_app_on_database_with(
    database_url: &str,
    configure: impl FnOnce(&mut Settings),
    clock: Arc<dyn Clock>,
) -> TestApp {
    doorstep_telemetry::init_for_tests();
    let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let mut settings = Settings::for_tests(data_dir.path());
    settings.database = doorstep_server::settings::DatabaseSettings::new(database_url);
    // Replicas must share the master key that wraps residents' keys, as in production.
    settings.privacy.master_key = Some(REPLICAS_MASTER_KEY.into());
    configure(&mut settings);
    let serves_api = settings.server.role.serves_api();
    let app = start_with_clock(data_dir, settings, clock).await;
    // A notifier-only replica has no API to register through.
    if serves_api {
        for contractor_id in REGISTERED_CONTRACTORS {
            register_contractor(&app.channel, contractor_id).await;
        }
    }
    app
}

/// A notifier poll interval so long that, after the round every loop runs when it starts, the
/// scheduler and delivery worker run only when the test drives them (`TestApp::raise_due`,
/// `TestApp::deliver_due`): what a round did, or did not do, is then the test's to see.
pub const ROUNDS_DRIVEN_BY_THE_TEST_MS: u64 = 24 * 3_600_000;

/// One server in every role whose notifier rounds the test drives, telling the landlord's
/// complaints team of a breach and acme-retrofit's complaints address of `contractor_level`.
pub fn notify_on_test_rounds(settings: &mut Settings, contractor_level: &str) {
    settings.server.role = doorstep_server::settings::Role::All;
    settings.notifier.poll_interval_ms = ROUNDS_DRIVEN_BY_THE_TEST_MS;
    settings.escalation.recipients.insert(
        "breach".to_owned(),
        vec!["complaints-team@landlord.example".to_owned()],
    );
    settings
        .escalation
        .contractor_recipients
        .entry("acme-retrofit".to_owned())
        .or_default()
        .insert(
            contractor_level.to_owned(),
            vec!["complaints@acme.example".to_owned()],
        );
}

/// A clock the test sets and moves; it stands still between moves.
#[derive(Debug)]
pub struct TestClock(std::sync::Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(text: &str) -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(
            text.parse().expect("an RFC 3339 time"),
        )))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("the clock's lock") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().expect("the clock's lock");
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("the clock's lock")
    }
}

async fn start(data_dir: Arc<TempDir>) -> TestApp {
    let settings = Settings::for_tests(data_dir.path());
    start_with(data_dir, settings).await
}

async fn start_with(data_dir: Arc<TempDir>, settings: Settings) -> TestApp {
    start_with_clock(data_dir, settings, Arc::new(SystemClock)).await
}

async fn start_with_clock(
    data_dir: Arc<TempDir>,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> TestApp {
    let application = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("the application builds");
    let port = application.port();
    let metrics_address = application.metrics_address();
    let console_address = application.console_address();
    let notifier = application.notifier();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("the server runs until stopped");
    });
    let anonymous_channel = connect(port).await;
    let channel =
        credential_for(TEST_SUBJECT, &STAFF_ROLES, None).attach(anonymous_channel.clone());
    TestApp {
        port,
        client: ComplaintServiceClient::new(channel.clone()),
        channel,
        anonymous_channel,
        metrics_address,
        console_address,
        notifier,
        data_dir,
        settings,
        clock,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Connects to a local port, retrying briefly while the server starts.
pub async fn connect(port: u16) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid endpoint")
        .timeout(Duration::from_secs(30));
    for _ in 0..50 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server on port {port} never accepted a connection");
}

/// An HS256 token, valid for an hour, signed with the test servers' secret.
pub fn token(subject: &str, roles: &[&str], contractor_id: Option<&str>) -> String {
    let mut claims = TokenClaims::new(subject, roles, Duration::from_secs(3_600));
    claims.contractor_id = contractor_id.map(str::to_owned);
    issue_hs256(TEST_JWT_SECRET.as_bytes(), &claims).expect("a token is signed")
}

/// A bearer credential for `subject` with `roles` (and the contractor a contractor is bound to).
pub fn credential_for(
    subject: &str,
    roles: &[&str],
    contractor_id: Option<&str>,
) -> CallerCredential {
    CallerCredential::bearer(&token(subject, roles, contractor_id)).expect("a sendable token")
}

impl TestApp {
    /// The server's connection, sending a token with exactly `roles`.
    pub fn channel_as(&self, roles: &[&str]) -> AuthenticatedChannel {
        credential_for(&roles.join("+"), roles, None).attach(self.anonymous_channel.clone())
    }

    /// The server's connection, sending a contractor's token bound to `contractor_id`.
    pub fn channel_for_contractor(&self, contractor_id: &str) -> AuthenticatedChannel {
        credential_for(
            &format!("contractor-{contractor_id}"),
            &["contractor"],
            Some(contractor_id),
        )
        .attach(self.anonymous_channel.clone())
    }

    /// The data directory the server keeps its files in.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task ends cleanly");
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        start_with_clock(
            self.data_dir.clone(),
            self.settings.clone(),
            self.clock.clone(),
        )
        .await
    }

    /// Runs one scheduler round now and returns how many escalations it raised.
    pub async fn raise_due(&self) -> usize {
        self.notifier
            .as_ref()
            .expect("the server runs the notifier (role all or notifier)")
            .scheduler
            .raise_due()
            .await
            .expect("a scheduler round runs")
    }

    /// Runs one delivery round now and returns how many deliveries it claimed and tried.
    pub async fn deliver_due(&self) -> usize {
        self.notifier
            .as_ref()
            .expect("the server runs the notifier (role all or notifier)")
            .deliveries
            .deliver_due()
            .await
            .expect("a delivery round runs")
    }

    /// Runs scheduler rounds until one raises nothing, letting the read models apply the whole
    /// log before each (a raise puts the clock's next step in the schedule). Returns how many
    /// escalations were raised.
    pub async fn raise_all_due(&self) -> usize {
        let mut raised = 0;
        loop {
            let head = whole_log(&self.channel)
                .await
                .last()
                .map_or(0, |event| event.position);
            self.read_models_reach(head).await;
            match self.raise_due().await {
                0 => return raised,
                more => raised += more,
            }
        }
    }

    /// Every complaint the read models list, every page, once they have applied the log up to
    /// `position`.
    pub async fn list_every_complaint(&self, position: u64) -> Vec<v1::ComplaintSummary> {
        let mut client = ComplaintServiceClient::new(self.channel.clone());
        let mut complaints = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_complaints(v1::ListComplaintsRequest {
                    page_size: 500,
                    page_token,
                    min_position: Some(position),
                    ..Default::default()
                })
                .await
                .expect("the complaints are listed")
                .into_inner();
            complaints.extend(page.complaints);
            if page.next_page_token.is_empty() {
                return complaints;
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits until the read models have applied the log up to `position` (a write's answer).
    pub async fn read_models_reach(&self, position: u64) {
        ComplaintServiceClient::new(self.channel.clone())
            .list_complaints(v1::ListComplaintsRequest {
                min_position: Some(position),
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("the read models catch up");
    }

    /// The settings the server was started with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The web console's base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn console_url(&self) -> String {
        let address = self
            .console_address
            .expect("the console is enabled (console.enabled, a role that serves the API)");
        format!("http://{address}")
    }

    /// A new API key with `roles` (and the contractor a contractor key is bound to), for
    /// signing in to the console; the server reads the key file again when it changes
    /// (each write is a new file, renamed into place).
    pub fn create_api_key(
        &self,
        name: &str,
        roles: &[&str],
        contractor_id: Option<&str>,
    ) -> String {
        use secrecy::ExposeSecret;
        let roles: Vec<doorstep_server::auth::Role> = roles
            .iter()
            .map(|role| doorstep_server::auth::Role::parse(role).expect("a role name"))
            .collect();
        doorstep_server::auth::api_keys::create(
            &self.settings.auth.api_keys_file,
            name,
            &roles,
            contractor_id,
        )
        .expect("a key is created")
        .key
        .expose_secret()
        .to_owned()
    }
}

/// A free TCP port on the loopback interface, for a test that must know the console's address
/// before the server starts (an identity provider registered with its redirect URI, say).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Signs the console in through an OpenID Connect provider at `issuer_url`, on `console_port`
/// (its redirect URI is `http://127.0.0.1:{console_port}/auth/callback`), with the roles claim
/// `doorstep_roles` and the contractor claim `doorstep_contractor_id`.
pub fn console_oidc(
    settings: &mut Settings,
    console_port: u16,
    issuer_url: &str,
    client_id: &str,
    client_secret: Option<&str>,
) {
    settings.console.port = console_port;
    settings.console.public_url = format!("http://127.0.0.1:{console_port}");
    settings.console.oidc = Some(doorstep_server::settings::OidcSettings {
        issuer_url: issuer_url.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.map(|secret| secret.to_owned().into()),
        scopes: vec!["openid".to_owned(), "profile".to_owned()],
        roles_claim: "doorstep_roles".to_owned(),
        role_map: Default::default(),
        contractor_claim: "doorstep_contractor_id".to_owned(),
    });
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn timestamp(text: &str) -> prost_types::Timestamp {
    let at: DateTime<Utc> = text.parse().expect("an RFC 3339 time");
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

/// A valid complaint about a gate left open, received at `received_at`.
pub fn gate_left_open(idempotency_key: &str, received_at: &str) -> v1::LogComplaintRequest {
    v1::LogComplaintRequest {
        idempotency_key: idempotency_key.to_owned(),
        channel: v1::Channel::Phone as i32,
        source_system: "call-centre".to_owned(),
        resident: Some(v1::Resident {
            reference: "T-1001".to_owned(),
            name: "Ada Resident".to_owned(),
            phone: "07700 900123".to_owned(),
            email: "ada@example.org".to_owned(),
        }),
        property: Some(v1::Property {
            uprn: "100023336956".to_owned(),
            address: "1 Example Road, Leeds".to_owned(),
        }),
        contractor_id: "acme-retrofit".to_owned(),
        visit_id: Some("V-2026-0001".to_owned()),
        standards: vec![v1::ServiceStandard::GatesSecured as i32],
        description: "The side gate was left open and the dog got out".to_owned(),
        occurred_at: Some(timestamp(received_at)),
        received_at: Some(timestamp(received_at)),
        outcome_sought: "An apology and the gate kept shut".to_owned(),
        reasonable_adjustments: "Large print letters".to_owned(),
    }
}

/// A version 1 `ComplaintReceived` payload, as builds before `reasonable_adjustments` wrote it:
/// a letter from resident T-77 about dust sheets, received on Monday 2 March 2026, with no phone.
pub fn old_complaint_received(complaint_id: uuid::Uuid) -> serde_json::Value {
    serde_json::json!({
        "complaint_id": complaint_id,
        "channel": "LETTER",
        "source_system": "post-room",
        "resident": {"reference": "T-77", "name": "Old Resident", "phone": null, "email": null},
        "property": {"uprn": "4242", "address": "7 Old Street"},
        "contractor_id": "acme-retrofit",
        "visit_id": null,
        "standards": ["TIDINESS"],
        "description": "Dust sheets left behind",
        "occurred_at": null,
        "received_at": "2026-03-02T09:00:00Z",
        "outcome_sought": "",
        "acknowledgement_due": "2026-03-09",
        "calendar_version": "england-and-wales/2020-2030/91+0/8a918328e7e213a4"
    })
}

/// Stores a `ComplaintReceived` event as an older build wrote it (`schema_version`, `payload`)
/// straight into the SQLite log under `data_dir`, before any server opens it.
pub async fn store_legacy_complaint_received(
    data_dir: &std::path::Path,
    complaint_id: uuid::Uuid,
    schema_version: u32,
    payload: serde_json::Value,
) {
    use doorstep_store::{
        EventMetadata, EventStore, ExpectedVersion, NewEvent, SqliteEventStore, SqliteSettings,
        StreamId,
    };
    let store = SqliteEventStore::open(SqliteSettings::new(database_path(data_dir)))
        .await
        .expect("the store opens");
    store
        .append(
            &StreamId::new("complaint", complaint_id),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "ComplaintReceived".to_owned(),
                schema_version,
                payload,
                metadata: EventMetadata {
                    actor: "legacy-import".to_owned(),
                    source_channel: "LETTER".to_owned(),
                    ..Default::default()
                },
            }],
        )
        .await
        .expect("the old event is stored");
    store.close().await;
}

/// The field named in an INVALID_ARGUMENT status's BadRequest details.
pub fn violated_field(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_bad_request().and_then(|bad_request| {
        bad_request
            .field_violations
            .first()
            .map(|v| v.field.clone())
    })
}

/// Every event in the log, read with `SubscribeAll` until the server reports it has caught up.
pub async fn whole_log(channel: &AuthenticatedChannel) -> Vec<v1::RecordedEvent> {
    use doorstep_api::v1::subscribe_all_response::Message;
    let mut stream =
        doorstep_api::v1::event_service_client::EventServiceClient::new(channel.clone())
            .subscribe_all(v1::SubscribeAllRequest::default())
            .await
            .expect("subscribed")
            .into_inner();
    let mut log = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("the subscription answers")
            .expect("no error")
            .and_then(|response| response.message)
            .expect("the subscription stays open until caught up");
        match message {
            Message::Event(event) => log.push(event),
            Message::CaughtUp(_) => return log,
        }
    }
}

impl TestApp {
    /// `GET /metrics` from the server's Prometheus endpoint, as a scraper sends it.
    pub async fn scrape_metrics(&self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let address = self
            .metrics_address
            .expect("the metrics endpoint is enabled");
        let mut connection = tokio::net::TcpStream::connect(address)
            .await
            .expect("the metrics endpoint accepts connections");
        connection
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("the request is sent");
        let mut response = String::new();
        connection
            .read_to_string(&mut response)
            .await
            .expect("the response is text");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("an HTTP response has a head and a body");
        assert!(head.contains(" 200 "), "{head}");
        body.to_owned()
    }
}

/// The sum of the samples of `name` whose labels include every `labels` pair, in Prometheus'
/// text format; `None` when there is no such sample.
pub fn metric_value(scraped: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in scraped.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((label_text, value)) = rest
            .strip_prefix('{')
            .and_then(|rest| rest.rsplit_once("} "))
        else {
            continue;
        };
        let matches = labels
            .iter()
            .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")));
        if let (true, Ok(value)) = (matches, value.trim().parse::<f64>()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The 95% Wilson interval of `successes` out of `trials`, worked out here from the formula,
/// independently of the server's statistics: (share, lower, upper).
pub fn wilson(successes: u64, trials: u64) -> (f64, f64, f64) {
    let z: f64 = 1.959_963_984_540_054;
    let n = trials as f64;
    let p = successes as f64 / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    (p, centre - half, centre + half)
}
